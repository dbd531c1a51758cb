"""Label spelling: one canonical key per label, one display form shown to users."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def label_key(value: str) -> str:
    """Canonical key: whitespace collapsed and case folded, so 'Billing ' == 'billing'."""
    return " ".join(value.split()).casefold()


def display_forms(values: Iterable[str]) -> dict[str, str]:
    """Map each label key to its most frequent spelling (ties: the first seen)."""
    spellings: dict[str, Counter[str]] = {}
    for value in values:
        tidy = " ".join(value.split())
        spellings.setdefault(label_key(tidy), Counter())[tidy] += 1
    # Counter.most_common keeps insertion order among equal counts, so ties go to the first seen.
    return {key: counts.most_common(1)[0][0] for key, counts in spellings.items()}
