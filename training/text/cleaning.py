"""Mail as it arrives, cleaned to the text a ticket router should read, with personal data masked.

Self-contained (the standard library and the libraries below, no project imports) so the same
file can travel inside a model directory and its archive and serving can never clean differently
from training.

    clean_ticket(subject, body, content_type, settings) -> the text the model reads of a ticket
    clean_text(raw, content_type, settings)             -> the same for one text
    read_mail(raw) -> Mail          subject and best text part of an RFC 822 message (.eml)
    read_mbox(raw) -> list[Mail]    the messages of an mbox file
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

import email
import email.policy
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, NamedTuple

import phonenumbers
from inscriptis import get_text
from lxml import html as lxml_html
from lxml.etree import ParserError
from mailparser_reply import EmailMessage as ThreadParser
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException

CLEANING_VERSION = 2
# Languages whose reply headers, signatures and disclaimers are recognised.
MAIL_LANGUAGES = ("en", "de", "fr", "es", "it", "nl")
# Phone numbers are read as written in these countries (a number with + is read anywhere).
PHONE_REGIONS = ("DE", "AT", "CH", "US", "GB", "FR")
PLAIN_TYPE = "text/plain"
HTML_TYPES = ("text/html", "application/xhtml+xml")
MAIL_TYPE = "message/rfc822"
CONTENT_TYPES = (PLAIN_TYPE, *HTML_TYPES, MAIL_TYPE)
MAX_PASSES = 4

# Hidden elements (preheaders, trackers), and the quote containers of the common mail clients.
HIDDEN_XPATH = (
    "//*[@hidden] | //head | //script | //style | //template"
    " | //*[contains(concat(' ', normalize-space(@class), ' '), ' preheader ')]"
    + "".join(
        f" | //*[contains(concat(translate(@style, ' ', ''), ';'), '{rule};')]"
        for rule in (
            "display:none",
            "visibility:hidden",
            "mso-hide:all",
            "opacity:0",
            "max-height:0",
            "max-height:0px",
        )
    )
)
QUOTE_XPATH = (
    "//blockquote | //*[contains(concat(' ', normalize-space(@class), ' '), ' gmail_quote ')]"
    " | //*[@id='divRplyFwdMsg'] | //*[contains(@class, 'moz-cite-prefix')]"
    " | //*[@id='appendonsend'] | //*[@id='appendonsend']/following-sibling::*"
    f" | {HIDDEN_XPATH}"
)

# What the thread parser misses at a mail's end: closings it does not know (and the short block
# after them), disclaimers standing alone, and "sent from my phone" lines.
CLOSING = re.compile(
    r"(?i)^[ \t]*(?:(?:many|warm(?:est)?|kind(?:est)?|best|with|thanks and|thanks &)[ ]+)?"
    r"(?:regards|thanks|thank you|cheers|sincerely|yours(?: sincerely| truly| faithfully)?|"
    r"best(?: wishes)?|mfg|lg|vg|gruß|grüße|(?:mit )?(?:freundlichen|freundliche|besten|"
    r"herzlichen|herzliche|schönen|schöne|liebe|lieben|viele|beste)[ ]+grüße?n?|"
    r"danke(?: und gruß| im voraus| schön)?|cordialement|bien (?:à vous|cordialement)|"
    r"salutations(?: distinguées)?|merci(?: d'avance| beaucoup)?|atentamente|"
    r"(?:un )?saludos?(?: cordiales)?|gracias|cumprimentos|atenciosamente|obrigad[oa]|"
    r"abraços?|grazie|cordiali saluti|distinti saluti|met vriendelijke groet(?:en)?|groeten)"
    r"[ \t]*[,!.]?(?:[ \t]*[\w .'\u2019-]{0,40})?[ \t]*$"
)
MAX_SIGNATURE_LINES = 8
MAX_SIGNATURE_LINE_CHARS = 80
DISCLAIMER = re.compile(
    r"(?i)confidential|intended (?:solely )?for|intended recipient|privileged|vertraulich|"
    r"adressat|empfänger|destinataire|destinatario|confidencial|confidenziale|riservat|"
    r"umwelt|environment before printing|amtsgericht|registergericht|\bHRB\b|"
    r"geschäftsführer|ust-id"
)
MOBILE_LINE = re.compile(
    r"(?im)^[ \t]*(?:sent|gesendet|von|envoyé|enviado|get|obtenir|obtener|obter|inviato|"
    r"verzonden)\b.{0,40}\b(?:iphone|ipad|android|outlook|samsung|galaxy|mail|proton|web\.de|"
    r"gmx|blackberry|mobile|handy|smartphone)\b.{0,30}$\n?"
)
QUOTED_LINE = re.compile(r"(?m)^[ \t]*>.*(?:\n|$)")
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# scheme://user:password@host... : the whole URL goes (its host may name the customer too).
CREDENTIAL_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/:@]+:[^\s/@]+@\S+", re.IGNORECASE)
IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
CARD_CANDIDATE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IPV4_CANDIDATE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
# Dates read as (valid) phone numbers in some countries: 03.11.2025, 2025-11-03, 3/11/25.
DATE = re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}")
# A greeting and the name after it: "Hi Anna,", "Dear Mr. Miller", "Sehr geehrte Frau Dr. Weiß".
# The name is matched case-sensitively ("Hello support," names nobody); words that address a
# group are no names.
NOT_NAMES = (
    "all|everyone|everybody|there|folks|colleagues|sir|madam|zusammen|alle|kollegen|"
    "kolleginnen|leute|damen|herren|tous|todos|equipo|équipe|[\\w-]*(?:service|support|team|"
    "care|desk|kunden|helpdesk)[\\w-]*"
)
UPPER = "".join(re.escape(c) for c in map(chr, range(0x250)) if c.isupper())
PARTICLES = "van|von|der|den|de|la|le|da|dos|das|di|del|du|ter|zu|ó|o'"
_WORD = rf"(?!(?i:{NOT_NAMES})\b)[{UPPER}][\w'\u2019-]+"
NAME = rf"(?-i:(?:(?:{PARTICLES})[ ])*{_WORD}(?:[ ](?:(?:{PARTICLES})[ ])*{_WORD}){{0,3}})"
GREETING = re.compile(
    r"(?m)^(?P<greeting>(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hallo|"
    r"liebe[rs]?|guten (?:morgen|tag|abend)|servus|moin|bonjour|hola|ciao|cher|chère|"
    r"estimad[oa]s?|buenos días|buenas tardes|olá|ola|bom dia|boa tarde|prezad[oa]s?|"
    r"car[oa]|gentile|sehr geehrte[rs]?)[ ]*,?(?:[ ]+(?:mr|mrs|ms|miss|dr|prof|herr|frau|"
    r"monsieur|madame|mme|m|señor|señora|sr|sra)\.?)*(?:[ ]+dr\.)?[ ]+)"
    rf"(?P<name>{NAME})(?=[ ]*(?:[,!:\-\u2013]|(?:and|und|et|y|e)[ ]|$))",
    re.IGNORECASE,
)


MASK_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,31}$")  # an added pattern's placeholder name
MAX_MASK_PATTERNS = 8
MAX_PATTERN_CHARS = 200


@dataclass(frozen=True)
class CleaningSettings:
    """How a model cleans: written into its card, read back by serving."""

    clean_mail: bool = True  # HTML to text, newest message only, no signature or disclaimer
    mask_personal_data: bool = True
    # Added patterns: placeholder name -> regular expression, e.g. {"CUSTOMER": r"KD-\d{6}"}.
    mask_patterns: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if problem := patterns_problem(self.mask_patterns):
            raise ValueError(f"mask_patterns: {problem}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": CLEANING_VERSION,
            "clean_mail": self.clean_mail,
            "mask_personal_data": self.mask_personal_data,
            "mask_patterns": dict(self.mask_patterns),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CleaningSettings:
        return cls(
            clean_mail=bool(values.get("clean_mail", True)),
            mask_personal_data=bool(values.get("mask_personal_data", True)),
            mask_patterns=dict(values.get("mask_patterns") or {}),
        )


def patterns_problem(patterns: Mapping[str, str]) -> str | None:
    """Why added mask patterns cannot be used (None when they can)."""
    if len(patterns) > MAX_MASK_PATTERNS:
        return f"{len(patterns)} patterns; at most {MAX_MASK_PATTERNS}"
    for name, pattern in patterns.items():
        if not isinstance(name, str) or not MASK_NAME.match(name):
            return f"name {str(name)[:40]!r}: use A-Z, 0-9 and _, starting with a letter (1-32)"
        if not isinstance(pattern, str) or not 0 < len(pattern) <= MAX_PATTERN_CHARS:
            return f"{name}: a regular expression of 1 to {MAX_PATTERN_CHARS} characters"
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            return f"{name}: not a regular expression ({exc})"
        if compiled.fullmatch(""):
            return f"{name}: the pattern matches the empty text"
    return None


class Mail(NamedTuple):
    """What a ticket router reads of a mail: its subject and its best text part."""

    subject: str
    body: str
    content_type: str  # text/plain or text/html


def clean_ticket(
    subject: str | None,
    body: str | None,
    content_type: str | None = None,
    settings: CleaningSettings = CleaningSettings(),
) -> str:
    """The text a model reads of one ticket: its subject and body (plain text, HTML, or a whole
    RFC 822 message whose own subject is used when `subject` is empty), cleaned as one text."""
    media = _media(content_type)
    if media == MAIL_TYPE:
        mail = read_mail(body or "")
        subject = subject or mail.subject
        body, media = mail.body, mail.content_type
    if media in HTML_TYPES:
        body = html_to_text(body or "", drop_quotes=settings.clean_mail)
    parts = [p.strip() for p in (subject, body) if p and p.strip()]
    return clean_text("\n".join(parts), settings=settings)


def clean_text(
    raw: str, content_type: str | None = None, settings: CleaningSettings = CleaningSettings()
) -> str:
    """The text a model reads from one ticket text (HTML when `content_type` says so)."""
    if _media(content_type) in (MAIL_TYPE, *HTML_TYPES):
        return clean_ticket(None, raw, content_type, settings)
    text = newest_message(raw) if settings.clean_mail else raw
    if settings.mask_personal_data:
        text = mask(text, settings.mask_patterns)
    return text


def read_mail(raw: str | bytes) -> Mail:
    """Subject and best text part of an RFC 822 message: its plain text, else its HTML."""
    # As bytes: 8-bit text is then decoded by the charset its part declares.
    data = raw.encode("utf-8", "surrogateescape") if isinstance(raw, str) else raw
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)  # the default policy's class
    subject = _header(message, "subject")
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return Mail(subject, "", PLAIN_TYPE)
    try:
        body = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(body, str):
        body = ""
    return Mail(subject, body, part.get_content_type())


def read_mbox(raw: bytes) -> list[Mail]:
    """The messages of an mbox file (each starts with a `From ` line), in file order."""
    messages = re.split(rb"(?m)^From [^\n]*\n", raw)
    return [read_mail(_unescape_from(m)) for m in messages if m.strip()]


def _unescape_from(message: bytes) -> bytes:
    """mboxrd quotes body lines starting with `From ` as `>From `: undo one level."""
    return re.sub(rb"(?m)^>(>*From )", rb"\1", message)


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name, "") or "").strip()
    except (ValueError, IndexError):  # a header the parser could not decode
        return ""


def _media(content_type: str | None) -> str:
    return (content_type or PLAIN_TYPE).split(";", 1)[0].strip().lower()


def html_to_text(markup: str, drop_quotes: bool = True) -> str:
    """Visible text of an HTML body, hidden elements and (unless told) quoted messages left
    out."""
    try:
        root = lxml_html.document_fromstring(markup)
    except (ParserError, ValueError):  # empty, or nothing an HTML parser can use
        return ""
    for element in root.xpath(QUOTE_XPATH if drop_quotes else HIDDEN_XPATH):
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
    # keep_hyphen_lists: "- printer broken" is a list item, not a signature ("-- " still is).
    message = ThreadParser(text=text, languages=list(MAIL_LANGUAGES), keep_hyphen_lists=True)
    message = message.read()
    first = message.replies[0] if message.replies else None
    # `>` lines are quoted wherever they stand (the parser keeps a mail that is only a quote,
    # and answers written between quoted lines stay).
    body = QUOTED_LINE.sub("", first.body if first is not None else text)
    return _strip_tail(_tidy(MOBILE_LINE.sub("", body)))


def _strip_tail(text: str) -> str:
    """Without trailing disclaimer paragraphs, and cut at a closing that only a short block
    follows; never down to nothing."""
    paragraphs = text.split("\n\n")
    while len(paragraphs) > 1 and DISCLAIMER.search(paragraphs[-1]):
        paragraphs.pop()
    lines = "\n\n".join(paragraphs).split("\n")
    written = [i for i, line in enumerate(lines) if line.strip()]
    # A closing is followed by at most MAX_SIGNATURE_LINES written lines, so only the lines from
    # the one before those can be it: a long mail costs one pass, not one per line.
    first = written[-MAX_SIGNATURE_LINES - 1] if len(written) > MAX_SIGNATURE_LINES else 1
    for i in range(max(first, 1), len(lines)):
        after = [lines[j] for j in written if j > i]
        if (
            CLOSING.match(lines[i])
            and len(after) <= MAX_SIGNATURE_LINES
            and all(len(line) <= MAX_SIGNATURE_LINE_CHARS for line in after)
            and written[0] < i  # something is written before the closing
        ):
            return _tidy("\n".join(lines[:i]))
    return _tidy("\n".join(lines))


def mask(text: str, patterns: Mapping[str, str] | None = None) -> str:
    """Personal data replaced by typed placeholders: [EMAIL], [URL], [IBAN], [CARD], [IP],
    [PHONE], [NAME] for the name a greeting addresses, and [KIND] for each added pattern KIND."""
    for name, pattern in (patterns or {}).items():
        text = re.sub(pattern, f"[{name}]", text)
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


def _tidy(text: str) -> str:
    """Trailing spaces cut, runs of blank lines made one, the ends stripped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
