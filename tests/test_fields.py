"""Structured fields as inputs: read from the data, fitted as one-hot features of every head,
carried in the model directory and applied in process (training/fit/fields.py, FieldEncoder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_CONFIG, TINY_ROWS
from scipy import sparse

from handlers.ticket_requests import MAX_FIELD_CHARS as HANDLER_MAX_FIELD_CHARS
from training.cli import main
from training.config import TrainConfig
from training.errors import ConfigError
from training.export.predict import Predictor
from training.fit.fields import field_matrix, fit_fields, row_fields
from training.fit.heads import Candidate, Features, fit_head, install_head
from training.fit.lexical import fit_lexical, lexical_matrix
from training.inference.model import FieldEncoder, model_inputs
from training.text.data import Columns, DataError, load_tickets, parse_feature_columns
from training.text.sample_data import generate_tickets, write_sample_csv
from training.text.text_rules import MAX_FIELD_CHARS
from training.train import train


def test_the_encoder_knows_the_seen_values_and_nothing_else(tmp_path: Path) -> None:
    rows = [{"type": "Incident", "channel": "mail"}, {"type": "incident "}, {"type": "Change"},
            None, {"type": ""}, {"channel": "phone"}]  # fmt: skip
    encoder = fit_fields(rows, ["type", "channel"])
    # the most frequent first, in the spelling seen most; empty values are no value
    assert encoder.columns == {"type": ["Incident", "Change"], "channel": ["mail", "phone"]}
    assert encoder.size == 4
    assert encoder.features({"type": "INCIDENT", "Channel": "phone"}) == [0, 3]
    # unknown values, columns and missing fields are "unknown": no feature, never an error
    for unknown in ({"type": "Outage"}, {"team": "x"}, {}, None, {"type": None}, {"type": 7}):
        assert encoder.features(unknown) == []
    matrix = field_matrix(encoder, [{"type": "Change"}, None])
    assert matrix.shape == (2, 4) and matrix.toarray().tolist() == [[0, 1, 0, 0], [0, 0, 0, 0]]
    encoder.save(tmp_path)
    assert FieldEncoder.load(tmp_path).columns == encoder.columns
    assert FieldEncoder.load(tmp_path / "none") is None
    assert fit_fields([{"id": str(i)} for i in range(50)], ["id"], max_values=10).size == 10


def test_the_data_keeps_feature_columns_as_each_row_s_fields(tmp_path: Path) -> None:
    frame = generate_tickets(30, seed=2)
    frame["channel"] = ["mail", "", "phone"] * 10
    frame.loc[4, "channel"] = "=cmd()"
    frame.loc[5, "channel"] = "x" * (MAX_FIELD_CHARS + 1)
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_tickets(tmp_path / "t.csv", Columns(features=("channel", "language")))
    fields = dict(zip(data.frame["row"], row_fields(data.frame), strict=True))
    assert fields[1] == {"channel": "mail", "language": frame.loc[0, "language"]}
    assert fields[2] == {"language": frame.loc[1, "language"]}  # an empty cell: unknown
    reasons = {r.row: r.reason for r in data.report.rejected}
    assert "column 'channel'" in reasons[5] and "formula" in reasons[5]
    assert f"at most {MAX_FIELD_CHARS}" in reasons[6]
    assert row_fields(load_tickets(tmp_path / "t.csv").frame) is None
    with pytest.raises(DataError, match="missing feature column 'tier'"):
        load_tickets(tmp_path / "t.csv", Columns(features=("tier",)))
    with pytest.raises(DataError, match="'queue' is a label column"):
        load_tickets(tmp_path / "t.csv", Columns(features=("queue",)))
    with pytest.raises(DataError, match="feature column 'body' is the ticket's text"):
        parse_feature_columns("body")
    with pytest.raises(ConfigError, match="feature_columns: 1 to 8 feature columns"):
        TrainConfig(feature_columns=[f"c{i}" for i in range(9)])
    with pytest.raises(ConfigError, match="'type' is a label column"):
        TrainConfig(feature_columns=["type"], label_columns=["queue", "type"])
    assert HANDLER_MAX_FIELD_CHARS == MAX_FIELD_CHARS


def test_a_batch_holds_each_text_s_ngrams_then_its_fields(tiny_model) -> None:
    """The lexical table's input: per text its TF-IDF n-grams, then its fields' one-hot
    features past the n-gram rows (each weighing 1); a text without either adds nothing."""
    model = Predictor.load(tiny_model.model_dir, device="cpu").model
    texts = ["printer jam in room 4", "", "VPN drops"]
    lexical = fit_lexical(["printer jam", "VPN drops daily", "room 4 printer"], min_df=1)
    model.set_lexical(lexical, fit_fields([{"tier": "gold"}, {"tier": "bronze"}], ["tier"]))
    fields = [{"tier": "bronze"}, {"tier": "gold"}, None]
    indices, weights, offsets = model.sparse_batch(texts, fields, torch.device("cpu"))
    first_ids, first_values = lexical.features(texts[0])
    third_ids, _ = lexical.features(texts[2])
    bronze, gold = lexical.size, lexical.size + 1  # equal counts: in name order
    assert offsets.tolist() == [0, len(first_ids) + 1, len(first_ids) + 2]
    assert indices.tolist() == [*first_ids, bronze, gold, *third_ids]
    assert np.allclose(weights[: len(first_ids)].numpy(), first_values)
    assert weights[len(first_ids) : len(first_ids) + 2].tolist() == [1.0, 1.0]
    assert model.lexical_weights.weight.shape[0] == lexical.size + 2
    model.set_lexical(None, None)
    assert model.lexical_weights is None and model.sparse_batch(texts, None, "cpu") is None


def test_an_installed_head_computes_its_fields_in_the_model(tiny_model) -> None:
    """The fields' one-hot block sits after the n-grams in the lexical table: the torch
    model's logits are the linear head's scores on [lexical, embedding, fields]."""
    predictor = Predictor.load(tiny_model.model_dir, device="cpu")
    model = predictor.model
    texts = tiny_model.probe_texts
    fields = [{"channel": c} for c in ("mail", "phone", "chat", "fax")]
    model.set_lexical(fit_lexical(texts, min_df=1), fit_fields(fields[:3], ["channel"]))
    names = model.labels["queue"]
    rng = np.random.default_rng(0)
    inputs = model_inputs(model, predictor.tokenizer, texts, torch.device("cpu"), fields)
    with torch.inference_mode():
        pooled = model.pool(inputs["input_ids"], inputs["attention_mask"]).numpy()
    features = Features(
        lexical_matrix(model.lexical, texts), pooled, field_matrix(model.fields, fields)
    )
    y = np.arange(len(texts)) % len(names)
    for candidate in (Candidate("both", 1.0, False, 2.0), Candidate("embedding", 1.0, False, 2.0)):
        fitted = fit_head(features, y, len(names), candidate, TrainConfig())
        assert fitted.fields_coef is not None and fitted.fields_coef.shape == (len(names), 3)
        fitted.fields_coef = rng.normal(size=fitted.fields_coef.shape)  # no zero hides a slip
        install_head(model, "queue", fitted)
        with torch.inference_mode():
            logits = model(**inputs)["queue"].numpy()
        assert np.allclose(logits, fitted.scores(features), atol=1e-3)
    # "fax" was never seen: that ticket scores as if it had no fields
    without = model_inputs(model, predictor.tokenizer, texts[3:], torch.device("cpu"))
    with torch.inference_mode():
        assert np.allclose(model(**without)["queue"].numpy(), logits[3:], atol=1e-5)
    assert sparse.issparse(features.fields)


def test_a_model_trained_with_fields_carries_and_applies_them(tiny_fields_model) -> None:
    model_dir = tiny_fields_model.model_dir
    stored = json.loads((model_dir / "fields.json").read_text())
    assert set(stored["columns"]["language"]) == {"en", "de"}
    assert json.loads((model_dir / "training_config.json").read_text())["feature_columns"] == [
        "language"
    ]
    predictor = Predictor.load(model_dir, device="cpu")
    assert predictor.feature_columns == ["language"]
    text = ["Mein Drucker druckt nicht mehr"]
    de = predictor.predict_proba(text, fields=[{"language": "de"}])
    en = predictor.predict_proba(text, fields=[{"LANGUAGE": "EN"}])
    unknown = predictor.predict_proba(text, fields=[{"language": "fr"}])
    none = predictor.predict_proba(text)
    assert not np.allclose(de["queue"], en["queue"])  # the field is read
    assert np.allclose(unknown["queue"], none["queue"])  # an unknown value is no value


@pytest.mark.slow  # a second model, through the command line
def test_the_command_line_trains_and_evaluates_with_feature_columns(tmp_path: Path) -> None:
    write_sample_csv(tmp_path / "t.csv", rows=TINY_ROWS, seed=1)
    args = ["train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "model"),
            "--base-model", TINY_CONFIG.base_model, "--mode", "fast", "--max-length", "32",
            "--feature-columns", "language"]  # fmt: skip
    assert main(args) == 0
    assert Predictor.load(tmp_path / "model", device="cpu").feature_columns == ["language"]
    # evaluate reads the model's feature columns from the file; predict takes them as flags
    assert main(["evaluate", str(tmp_path / "model"), str(tmp_path / "t.csv")]) == 0
    for field in ("language=de", "language=en"):
        assert main(["predict", str(tmp_path / "model"), "Drucker kaputt", "--field", field]) == 0
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path / "model"), "x", "--field", "language"])


def test_train_reports_a_missing_feature_column(tmp_path: Path, capsys) -> None:
    write_sample_csv(tmp_path / "t.csv", rows=40, seed=1)
    code = main(["train", str(tmp_path / "t.csv"), "--out", str(tmp_path / "m"),
                 "--feature-columns", "tier", "--base-model", "all-MiniLM-L6-v2"])  # fmt: skip
    assert code != 0 and "missing feature column 'tier'" in capsys.readouterr().err


@pytest.mark.slow  # a second model
def test_fast_training_with_fields_uses_them(tmp_path: Path) -> None:
    """A field that decides the priority on its own: the model reads it."""
    frame = generate_tickets(TINY_ROWS, seed=4)
    frame["tier"] = frame["priority"].map({"high": "gold", "medium": "silver", "low": "bronze"})
    frame.to_csv(tmp_path / "t.csv", index=False)
    data = load_tickets(tmp_path / "t.csv", Columns(features=("tier",)))
    config = TrainConfig.from_dict(TINY_CONFIG.to_dict() | {"feature_columns": ["tier"]})
    result = train(data, config, tmp_path / "m", embedding_cache=tmp_path / "e.sqlite")
    assert result.metrics["test"]["priority"]["macro_f1"] == 1.0
    gold = result.predictor.predict(["hello"], fields=[{"tier": "gold"}])[0]
    assert gold["priority"]["label"] == "high"


def test_the_model_card_names_the_fields(tiny_fields_model) -> None:
    card = (tiny_fields_model.model_dir / "report.md").read_text()
    assert "structured fields read beside the text: language (2 values)" in card
    assert tiny_fields_model.metrics["feature_columns"] == {"language": 2}
