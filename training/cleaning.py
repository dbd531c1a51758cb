"""Mail as it arrives, cleaned to the text a ticket router should read, with personal data masked.

Self-contained (the standard library and the libraries below, no project imports) so the same
file can travel inside a model directory and its archive and serving can never clean differently
from training.

    clean_text(raw, content_type)  -> the text the model reads
        1. HTML to text (inscriptis: paragraphs and lists kept); before that, quoted messages
           (<blockquote>, Gmail/Outlook/Thunderbird quote containers) and hidden elements are
           dropped from the markup, where they are still recognisable.
        2. The newest message only (mail-parser-reply, English and German and more): quoted
           replies ("On ... wrote:", "Am ... schrieb ...:", `>` lines, Outlook header blocks,
           forwarded-message markers), signatures and disclaimers go.
        3. Personal data masked by `mask`: typed placeholders keep that a ticket mentions an
           IBAN or a phone number while the value itself is gone.

Libraries: inscriptis renders HTML to text with the layout a reader sees (html2text writes
Markdown, whose `*` and `**` the model would learn); mail-parser-reply splits a thread into
messages and knows signatures and disclaimers in many languages (quotequail finds the quote but
keeps the signature); phonenumbers finds phone numbers by country rules and schwifty checks IBAN
checksums, so a ticket number is not taken for either.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable

import phonenumbers
from inscriptis import get_text
from lxml import html as lxml_html
from lxml.etree import ParserError
from mailparser_reply import EmailReplyParser
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

CLEANING_VERSION = 1
# Languages whose reply headers, signatures and disclaimers are recognised.
MAIL_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
# Phone numbers are read as written in these countries (a number with + is read anywhere).
PHONE_REGIONS = ("DE", "AT", "CH", "US", "GB", "FR")
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAX_PASSES = 4

# Quote containers of the common mail clients, and hidden elements (preheaders, trackers).
QUOTE_XPATH = (
    "//blockquote | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //*[@id='divRplyFwdMsg'] | //*[contains(@class, 'moz-cite-prefix')]"
    " | //*[@id='appendonsend'] | //*[@id='appendonsend']/following-sibling::*"
    " | //*[@hidden] | //*[contains(translate(@style, ' ', ''), 'display:none')]"
    " | //head | //script | //style | //template"
)

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# scheme://user:password@host... : the whole URL goes (its host may name the customer too).
CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@\S+", re.IGNORECASE)
IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IPV4_CANDIDATE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
# Dates read as (valid) phone numbers in some countries: 03.11.2025, 2025-11-03, 3/11/25.
DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
# A greeting and the name after it: "Hi Anna,", "Dear Mr. Miller", "Sehr geehrte Frau Dr. Weiß".
NAME = r"[A-ZÄÖÜ][\w'\u2019-]+(?:[ ][A-ZÄÖÜ][\w'\u2019-]+)?"
GREETING = re.compile(
    r"(?m)^(?P<greeting>(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hallo|"
    r"liebe[rs]?|guten (?:morgen|tag|abend)|servus|moin|bonjour|hola|ciao|"
    r"sehr geehrte[rs]?)(?:[ ]+(?:mr|mrs|ms|dr|prof|herr|frau)\.?)*(?:[ ]+dr\.)?[ ]+)"
    rf"(?P<name>{NAME})(?=[ ]*[,!:]?[ ]*$)",
    re.IGNORECASE,
)


def clean_text(raw: str, content_type: str | None = None, mask_data: bool = True) -> str:
    """The text a model reads from one ticket body (HTML when `content_type` says so)."""
    text = html_to_text(raw) if _is_html(content_type) else raw
    text = newest_message(text)
    return mask(text) if mask_data else text


def html_to_text(markup: str) -> str:
    """Visible text of an HTML body, quoted messages and hidden elements left out."""
    try:
        root = lxml_html.document_fromstring(markup)
    except (ParserError, ValueError):  # empty, or nothing an HTML parser can use
        return ""
    for element in root.xpath(QUOTE_XPATH):
        if element.getparent() is not None:
            element.drop_tree()
    return _tidy(get_text(lxml_html.tostring(root, encoding="unicode")))


def newest_message(text: str) -> str:
    """The newest message of a mail thread, without its signature and disclaimer."""
    # Removing a quote can bare a signature the parser then sees: repeat until nothing changes
    # (cleaning a cleaned text must change nothing), a few passes at most.
    for _ in range(MAX_PASSES):
        newer = _first_reply(text)
        if newer == text:
            break
        text = newer
    return text


def _first_reply(text: str) -> str:
    if not text.strip():
        return ""
    message = EmailReplyParser(languages=list(MAIL_LANGUAGES)).read(text=text)
    first = message.replies[0] if message.replies else None
    return _tidy(first.body if first is not None else text)


def mask(text: str) -> str:
    """Personal data replaced by typed placeholders: [EMAIL], [URL], [IBAN], [CARD], [IP],
    [PHONE], and [NAME] for the name a greeting addresses."""
    text = CREDENTIAL_URL.sub("[URL]", text)
    text = EMAIL.sub("[EMAIL]", text)
    text = _replace(IBAN_CANDIDATE, text, _is_iban, "[IBAN]")
    text = _replace(CARD_CANDIDATE, text, _passes_luhn, "[CARD]")
    text = _replace(IPV4_CANDIDATE, text, _is_ip, "[IP]")
    text = _replace(IPV6_CANDIDATE, text, _is_ip, "[IP]")
    text = _mask_phones(text)
    return GREETING.sub(lambda m: m.group("greeting") + "[NAME]", text)


def _mask_phones(text: str) -> str:
    spans: list[tuple[int, int]] = []
    for region in PHONE_REGIONS:
        for match in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
            if not DATE.fullmatch(match.raw_string.strip()):
                spans.append((match.start, match.end))
    return _replace_spans(text, spans, "[PHONE]")


def _replace(
    pattern: re.Pattern[str], text: str, valid: Callable[[str], bool], placeholder: str
) -> str:
    spans = [(m.start(), m.end()) for m in pattern.finditer(text) if valid(m.group())]
    return _replace_spans(text, spans, placeholder)


def _replace_spans(text: str, spans: Iterable[tuple[int, int]], placeholder: str) -> str:
    """Each span (overlaps merged) replaced by `placeholder`."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    for start, end in reversed(merged):
        text = text[:start] + placeholder + text[end:]
    return text


def _is_iban(candidate: str) -> bool:
    try:
        IBAN(candidate)
    except (SchwiftyException, ValueError):
        return False
    return True


def _passes_luhn(candidate: str) -> bool:
    digits = [int(d) for d in candidate if d.isdigit()]
    total = 0
    for i, digit in enumerate(reversed(digits)):
        if i % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0 and len(set(digits)) > 1  # 0000 0000 0000 0000 passes, means none


def _is_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _is_html(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in HTML_TYPES


def _tidy(text: str) -> str:
    """Trailing spaces cut, runs of blank lines made one, the ends stripped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
