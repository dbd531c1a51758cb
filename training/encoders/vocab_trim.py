"""Shrink a SentencePiece-Unigram encoder to the vocabulary of one training corpus.

multilingual-e5-small spends 96M of its 118M parameters on a 250k-piece embedding matrix, of
which a help desk's tickets use a few percent. `trim_vocabulary` keeps only the pieces that the
corpus tokenizes into (plus the special tokens), renumbers them in their original order, and
writes a model directory whose embedding matrix and tokenizer.json hold just those rows.

Texts of the corpus tokenize exactly as before (mapped to the new ids), so the trimmed encoder
gives the same hidden states on them: the full model's best Unigram segmentation only uses kept
pieces, and keeping the lowest-scoring piece of the full vocabulary keeps the score tokenizers
gives an unknown character (lowest piece score - 10) unchanged, so no other path can win.

Texts from outside the corpus still tokenize, with the kept pieces only: an unseen word is split
into smaller kept pieces, down to single characters (the single-character pieces of every
character in the corpus are kept for this), and a character the corpus never used becomes
`<unk>`. Trim on all the text the model will be trained on; keep extra pieces with
`extra_texts` (for example the labels' own words, or a sample of recent tickets).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.encoders.base_models import make_readable
from training.errors import ConfigError

logger = logging.getLogger(__name__)

TRIM_FILE = "TRIM.json"
WORD_EMBEDDINGS_SUFFIX = "embeddings.word_embeddings.weight"
_ENCODE_BATCH = 512
# Files describing the source that travel with the trimmed copy (licences, provenance).
_CARRIED_FILES = ("PROVENANCE.json", "README.md")


@dataclass(frozen=True)
class TrimResult:
    """What `trim_vocabulary` wrote; `kept_ids[new_id]` is the token's id in the source."""

    model_dir: Path
    kept_ids: list[int]
    vocab_before: int
    parameters_before: int
    parameters_after: int

    @property
    def vocab_after(self) -> int:
        return len(self.kept_ids)


def is_trimmable(model_dir: Path) -> bool:
    """Whether `model_dir` is a local encoder with a Unigram tokenizer.json to trim."""
    try:
        spec = _read_json(model_dir / "tokenizer.json")
    except (ConfigError, OSError):
        return False
    return (
        spec.get("model", {}).get("type") == "Unigram"
        and (model_dir / "model.safetensors").is_file()
    )


def corpus_token_ids(tokenizer_file: Path, texts: Iterable[str]) -> set[int]:
    """Ids of every piece the texts tokenize into (untruncated, with special tokens)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    used: set[int] = set()
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == _ENCODE_BATCH:
            used.update(i for e in tokenizer.encode_batch(batch) for i in e.ids)
            batch = []
    if batch:
        used.update(i for e in tokenizer.encode_batch(batch) for i in e.ids)
    return used


def trim_vocabulary(
    model_dir: str | Path,
    texts: Iterable[str],
    out_dir: str | Path,
    extra_texts: Iterable[str] = (),
) -> TrimResult:
    """Write a copy of `model_dir` into `out_dir` keeping only the pieces `texts` use.

    `model_dir` is a Hugging Face encoder directory with a Unigram tokenizer.json and
    model.safetensors (such as a prepared multilingual-e5-small). `out_dir` must not exist or
    be empty; it is written through a temporary sibling directory and a rename.
    """
    source, target = Path(model_dir), Path(out_dir)
    spec = _read_json(source / "tokenizer.json")
    config = _read_json(source / "config.json")
    if spec.get("model", {}).get("type") != "Unigram":
        raise ConfigError(f"{source}: vocabulary trimming needs a Unigram (SentencePiece) model")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} already exists and is not empty")
    vocab = spec["model"]["vocab"]
    keep = corpus_token_ids(source / "tokenizer.json", _chain(texts, extra_texts))
    # Single-character pieces of every character the corpus uses, so an unseen word made of
    # known characters always splits into pieces instead of <unk>.
    characters = {c for i in keep for c in vocab[i][0]}
    keep |= {i for i, (piece, _) in enumerate(vocab) if piece.removeprefix("▁") in characters}
    keep |= {t["id"] for t in spec.get("added_tokens", [])}
    keep.add(spec["model"]["unk_id"])
    keep |= {config[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id") if k in config}
    # The unknown-character score is (lowest piece score - 10): keep that piece so it stays put.
    keep.add(min(range(len(vocab)), key=lambda i: vocab[i][1]))
    kept_ids = sorted(keep)
    new_id = {old: new for new, old in enumerate(kept_ids)}

    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        before, after = _write_weights(source, work, kept_ids)
        _write_config(config, work, new_id, len(kept_ids))
        _write_tokenizer(source, spec, work, kept_ids, new_id)
        for name in _CARRIED_FILES:
            if (source / name).is_file():
                shutil.copyfile(source / name, work / f"SOURCE_{name}")
        trim = {
            "source": str(source.resolve()),
            "vocab_before": len(vocab),
            "vocab_after": len(kept_ids),
            "parameters_before": before,
            "parameters_after": after,
            "unseen_text": "re-split into kept pieces; characters not in the corpus -> <unk>",
            "kept_ids": kept_ids,
        }
        (work / TRIM_FILE).write_text(json.dumps(trim) + "\n", encoding="utf-8")
        make_readable(work)
        if target.exists():
            target.rmdir()  # empty, checked above
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("trimmed %s: %d -> %d pieces", source, len(vocab), len(kept_ids))
    return TrimResult(target, kept_ids, len(vocab), before, after)


def _chain(*parts: Iterable[str]) -> Iterable[str]:
    for part in parts:
        for text in part:
            if not isinstance(text, str):
                raise ConfigError(f"corpus texts must be strings, got {type(text).__name__}")
            yield text


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _write_weights(source: Path, work: Path, kept_ids: list[int]) -> tuple[int, int]:
    """Gather the kept embedding rows; every other tensor is copied unchanged."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(source / "model.safetensors"))
    names = [n for n in state if n.endswith(WORD_EMBEDDINGS_SUFFIX)]
    if len(names) != 1:
        raise ConfigError(f"{source}/model.safetensors has no single {WORD_EMBEDDINGS_SUFFIX}")
    before = sum(t.numel() for t in state.values())
    state[names[0]] = state[names[0]][torch.tensor(kept_ids)].contiguous()
    save_file(state, str(work / "model.safetensors"), metadata={"format": "pt"})
    return before, sum(t.numel() for t in state.values())


def _write_config(config: dict[str, Any], work: Path, new_id: dict[int, int], size: int) -> None:
    config = {**config, "vocab_size": size}
    for key in ("pad_token_id", "bos_token_id", "eos_token_id"):
        if isinstance(config.get(key), int):
            config[key] = new_id[config[key]]
    (work / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _write_tokenizer(
    source: Path, spec: dict[str, Any], work: Path, kept_ids: list[int], new_id: dict[int, int]
) -> None:
    """tokenizer.json with the kept pieces (and their scores) and every id renumbered, then a
    round trip through transformers so its own files match."""
    from transformers import AutoTokenizer

    vocab = spec["model"]["vocab"]
    spec = json.loads(json.dumps(spec))  # a deep copy to edit
    spec["model"]["vocab"] = [vocab[i] for i in kept_ids]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for token in spec.get("added_tokens", []):
        token["id"] = new_id[token["id"]]
    _renumber_post_processor(spec.get("post_processor"), new_id)
    if spec.get("padding"):
        spec["padding"]["pad_id"] = new_id[spec["padding"]["pad_id"]]
    (work / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    settings = _read_json(source / "tokenizer_config.json")
    settings.pop("added_tokens_decoder", None)  # ids of the full vocabulary
    (work / "tokenizer_config.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(str(work))
    if len(tokenizer) != len(kept_ids):
        raise ConfigError(f"trimmed tokenizer has {len(tokenizer)} tokens, not {len(kept_ids)}")
    tokenizer.save_pretrained(str(work))


def _renumber_post_processor(processor: dict[str, Any] | None, new_id: dict[int, int]) -> None:
    if not processor:
        return
    kind = processor.get("type")
    if kind == "Sequence":
        for inner in processor.get("processors", []):
            _renumber_post_processor(inner, new_id)
    elif kind == "TemplateProcessing":
        for token in processor.get("special_tokens", {}).values():
            token["ids"] = [new_id[i] for i in token["ids"]]
    elif kind in ("RobertaProcessing", "BertProcessing"):
        for key in ("sep", "cls"):
            processor[key] = [processor[key][0], new_id[processor[key][1]]]
    elif kind != "ByteLevel":
        raise ConfigError(f"cannot renumber a {kind} post-processor")
