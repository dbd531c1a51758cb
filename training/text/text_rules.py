"""What a ticket text and a label must be, wherever they come in: file, upload or classify.

text_problem(text, max_chars) -> str | None    why it cannot be a ticket, or None
label_problem(label) -> str | None             why it cannot be a label, or None
"""

from __future__ import annotations

import re
import unicodedata

MAX_TICKET_CHARS = 50_000
# An HTML body or a whole mail may be this many times longer than a ticket's text: markup,
# styles and headers are most of it. The cleaned text must fit the text limit.
MARKUP_FACTOR = 20
# Unicode categories that show nothing: controls (NUL...), format characters (zero-width space,
# BOM...), surrogates, unassigned code points, and separators.
INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Cn", "Zs", "Zl", "Zp"})
# A cell starting with one of these is run as a formula by spreadsheet programs, which is how
# exported labels would attack whoever opens the export (OWASP: CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_SURROGATE = re.compile("[\ud800-\udfff]")


def text_problem(text: str, max_chars: int = MAX_TICKET_CHARS) -> str | None:
    """Why `text` cannot be classified or trained on (None when it can)."""
    if len(text) > max_chars:
        return f"the text has {len(text)} characters; at most {max_chars} are accepted"
    if (found := _SURROGATE.search(text)) is not None:
        return f"the text is not valid Unicode (a lone surrogate at character {found.start()})"
    if not any(unicodedata.category(char) not in INVISIBLE for char in text):
        return "the text has no visible characters"
    return None


MAX_FIELD_CHARS = 200  # longest value of a structured field (handlers/ticket_requests.py's too)


def field_problem(value: str) -> str | None:
    """Why a structured field's value cannot be read (None when it can)."""
    if len(value) > MAX_FIELD_CHARS:
        return f"the value has {len(value)} characters; at most {MAX_FIELD_CHARS}"
    return label_problem(value)


def label_problem(label: str) -> str | None:
    """Why `label` cannot be stored and served back (None when it can)."""
    if _SURROGATE.search(label) is not None:
        return "the label is not valid Unicode (a lone surrogate)"
    if label.startswith(FORMULA_PREFIXES):
        return f"the label {label[:40]!r} starts like a spreadsheet formula"
    return None


def replace_surrogates(text: str) -> str:
    """Lone surrogates become U+FFFD, as undecodable bytes do when decoding."""
    return _SURROGATE.sub("\ufffd", text)
