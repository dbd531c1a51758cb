"""Dirty mail built around a clean ticket; personal data and harmless numbers in tickets.

For bench/cleaning.py. Everything is drawn from a `random.Random` the caller seeds, so a seed
fixes the output. Each part comes in many shapes, drawn independently and combined at random,
so that a cleaner tuned to one mail client's template cannot pass:

    dirty_mail(rng, ticket, quoted)  the ticket's body as it could arrive: a greeting; a
        signature (closings in five languages, `-- `, a block of name, title, company, address,
        phones, e-mail, on lines or on one line); a "Sent from my iPhone" line; a legal
        disclaimer (EN, DE, FR, ES, PT; sometimes two, sometimes below the quote); and an
        earlier message (`quoted`, another ticket) as Gmail, Apple Mail, Thunderbird, Outlook
        (desktop, web, Mac) and forwards write it, in the ticket's language or English. As
        plain text (sometimes CRLF) or as one of six clients' HTML (<style>, <script>, hidden
        preheaders of six kinds, tracking pixels, entities, lists).
    pii_item(rng, kind, body, language)  `body` holding one generated value of a kind:
        email, phone (15 countries, national and international writings), iban (valid, 12
        countries), card (Luhn-valid, 7 schemes, 3 groupings), ip (v4/v6, ports, CIDR, URLs),
        url (with credentials), name-greeting, name-signature (names of 11 countries)
    number_text(rng, body)  `body` with order numbers, dates, versions, EANs and the like
        mixed in: no personal data, nothing to mask
"""

from __future__ import annotations

import datetime as dt
import html
import random
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from schwifty import IBAN
from schwifty.exceptions import SchwiftyException
from schwifty.registry import get_iban_spec

LANGUAGES = ("en", "de", "fr", "es", "pt")
PLAIN, HTML = "text/plain", "text/html"

# ---------------------------------------------------------------------------------------------
# People and companies. Names from many countries: non-ASCII initials (Ł, Ö, É, Ç, Ş), particles
# (van der, de la), hyphens, apostrophes, double surnames.

FIRST_NAMES: dict[str, tuple[tuple[str, str], ...]] = {  # country -> (name, f/m)
    "de": (("Anna", "f"), ("Lukas", "m"), ("Jörg", "m"), ("Sabine", "f"), ("Maximilian", "m"),
           ("Katrin", "f"), ("Jürgen", "m"), ("Birgit", "f"), ("Anna-Lena", "f"), ("Uwe", "m"),
           ("Ömer", "m"), ("Ulrike", "f"), ("Hans-Peter", "m"), ("Franziska", "f")),
    "en": (("Sarah", "f"), ("James", "m"), ("Emily", "f"), ("Michael", "m"), ("Olivia", "f"),
           ("Connor", "m"), ("Siobhan", "f"), ("Mary-Kate", "f"), ("Jack", "m"), ("Grace", "f")),
    "fr": (("Élodie", "f"), ("Jean-Luc", "m"), ("Émile", "m"), ("Chloé", "f"), ("François", "m"),
           ("Amélie", "f"), ("Théo", "m"), ("Océane", "f")),
    "es": (("Lucía", "f"), ("Íñigo", "m"), ("Álvaro", "m"), ("María José", "f"), ("Óscar", "m"),
           ("Carmen", "f"), ("Javier", "m"), ("Ángela", "f")),
    "pt": (("João", "m"), ("Conceição", "f"), ("Gonçalo", "m"), ("Inês", "f"), ("Tiago", "m")),
    "it": (("Giulia", "f"), ("Niccolò", "m"), ("Francesca", "f"), ("Matteo", "m")),
    "tr": (("Çağla", "f"), ("Şebnem", "f"), ("Emre", "m"), ("Özlem", "f"), ("Ümit", "m")),
    "pl": (("Łukasz", "m"), ("Agnieszka", "f"), ("Żaneta", "f"), ("Paweł", "m"),
           ("Małgorzata", "f")),
    "nl": (("Sanne", "f"), ("Joost", "m"), ("Femke", "f"), ("Bram", "m")),
    "in": (("Priya", "f"), ("Rahul", "m"), ("Ananya", "f"), ("Vikram", "m")),
    "cn": (("Wei", "m"), ("Xiaoming", "m"), ("Mei", "f"), ("Jing", "f")),
}  # fmt: skip
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "de": ("Schmidt", "Müller", "Weiß", "Krüger", "Becker", "Hoffmann", "Schäfer", "Groß",
           "Meyer-Lüdenscheid", "Öztürk", "von Bülow", "Keßler", "Zimmermann", "Ebner"),
    "en": ("Johnson", "O'Brien", "McAllister", "Clarke", "Wilson", "Smith-Jones", "Ó Súilleabháin",
           "Taylor", "D'Arcy", "Fitzgerald"),
    "fr": ("Dubois", "Lefèvre", "Élie", "de la Fontaine", "Moreau", "Girard", "Bézier"),
    "es": ("García López", "Fernández", "de la Cruz", "Núñez", "Álvarez", "Martínez Ruiz"),
    "pt": ("da Silva", "Gonçalves", "dos Santos", "Conceição", "Ferreira"),
    "it": ("Rossi", "D'Angelo", "Di Stefano", "Esposito", "Bianchi"),
    "tr": ("Y\u0131lmaz", "Çelik", "Şahin", "Öztürk", "Demir", "Güneş"),
    "pl": ("Łuczak", "Wójcik", "Żak", "Nowak", "Kowalczyk", "Śliwiński"),
    "nl": ("van der Berg", "de Vries", "van Dijk", "Jansen", "Bakker"),
    "in": ("Patel", "Sharma", "Iyer", "Reddy", "Chatterjee"),
    "cn": ("Chen", "Wang", "Li", "Zhang", "Liu"),
}  # fmt: skip
# Where the help desk's customers write from, by ticket language.
COUNTRIES_BY_LANGUAGE = {
    "en": ("en", "en", "en", "in", "cn", "pl", "tr", "it", "nl"),
    "de": ("de", "de", "de", "de", "tr", "pl", "nl", "it"),
    "fr": ("fr", "fr", "fr", "it", "de"),
    "es": ("es", "es", "es", "pt", "it"),
    "pt": ("pt", "pt", "pt", "es"),
}
COMPANY_WORDS = (
    "Contoso",
    "Nordwind",
    "Acme",
    "Globex",
    "Initech",
    "Lumen",
    "Brightway",
    "Alpenblick",
    "Bäckerei Sonnenschein",
    "Müller & Söhne",
    "Hanse Logistik",
    "Vertex",
    "Soluciones Iberia",
    "Atelier Rive",
    "Quantum Retail",
    "Orion Data",
)
LEGAL_FORMS = {
    "de": ("GmbH", "AG", "GmbH & Co. KG", "e.K.", "KG"), "en": ("Ltd", "Inc.", "LLC", "plc"),
    "fr": ("SARL", "SAS", "SA"), "es": ("S.L.", "S.A."), "pt": ("Lda.", "S.A."),
}  # fmt: skip
JOB_TITLES = {
    "en": ("Head of IT", "Accounts Payable Specialist", "Office Manager", "Senior Buyer",
           "Operations Lead", "Customer Success Manager", "CFO", "IT Administrator"),
    "de": ("Leiterin Einkauf", "Teamleiter IT", "Sachbearbeiterin Buchhaltung", "Geschäftsführer",
           "Assistenz der Geschäftsführung", "Systemadministrator", "Projektleiterin"),
    "fr": ("Responsable informatique", "Comptable", "Directrice des achats"),
    "es": ("Responsable de compras", "Administrador de sistemas", "Contable"),
    "pt": ("Gestor de TI", "Responsável de compras", "Contabilista"),
}  # fmt: skip
STREETS = {
    "de": ("Hauptstraße {n}", "Am Markt {n}a", "Königsallee {n}", "Friedrich-Ebert-Str. {n}"),
    "en": ("{n} High Street", "{n} Baker Street, Suite {m}", "{n} Market St."),
    "fr": ("{n} rue de la République", "{n}, avenue Victor Hugo"),
    "es": ("Calle Mayor {n}, {m}º", "Avda. de la Constitución {n}"),
    "pt": ("Rua Augusta {n}, {m}º Esq.", "Avenida da Liberdade {n}"),
}  # fmt: skip
CITIES = {
    "de": ("10115 Berlin", "80331 München", "D-20095 Hamburg", "50667 Köln", "1010 Wien",
           "8001 Zürich"),
    "en": ("London EC1A 1BB", "Manchester M1 1AE", "Springfield, IL 62701", "Dublin 2"),
    "fr": ("75001 Paris", "69002 Lyon", "13001 Marseille"),
    "es": ("28013 Madrid", "08002 Barcelona"), "pt": ("1100-148 Lisboa", "4000-322 Porto"),
}  # fmt: skip
TLDS = ("de", "com", "co.uk", "fr", "es", "pt", "at", "ch", "net", "io", "eu", "online")
FREEMAIL = (
    "gmail.com",
    "web.de",
    "gmx.de",
    "outlook.com",
    "yahoo.fr",
    "hotmail.es",
    "t-online.de",
    "icloud.com",
    "proton.me",
    "sapo.pt",
)


@dataclass(frozen=True)
class Person:
    first: str
    last: str
    gender: str  # "f" or "m": German, French and Spanish greetings agree with it
    country: str
    title: str = ""  # "Dr." or "Prof. Dr."

    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def words(self) -> list[str]:
        """The words that identify the person (what must be gone after masking)."""
        return [w for w in re.split(r"[\s-]+", self.full) if w[:1].isupper() and len(w) > 1]


def person(rng: random.Random, language: str = "en") -> Person:
    country = rng.choice(COUNTRIES_BY_LANGUAGE.get(language, COUNTRIES_BY_LANGUAGE["en"]))
    first, gender = rng.choice(FIRST_NAMES[country])
    title = rng.choices(("", "Dr.", "Prof. Dr."), weights=(0.85, 0.12, 0.03))[0]
    return Person(first, rng.choice(LAST_NAMES[country]), gender, country, title)


def company(rng: random.Random, language: str) -> str:
    return f"{rng.choice(COMPANY_WORDS)} {rng.choice(LEGAL_FORMS.get(language, LEGAL_FORMS['en']))}"


def _ascii(text: str) -> str:
    """A name as an e-mail address spells it: lower case, ASCII letters and digits."""
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "\u0131": "i", "ł": "l"})
    folded = unicodedata.normalize("NFKD", text.lower().translate(table))
    return re.sub(r"[^a-z0-9]+", "", folded.encode("ascii", "ignore").decode())


def domain_of(rng: random.Random, company_name: str) -> str:
    stem = _ascii(company_name.split(" ")[0]) or "firma"
    sub = rng.choice(("", "", "", "mail.", "de.", "support."))
    return f"{sub}{stem}{rng.choice(('', '-group', '-online', '24'))}.{rng.choice(TLDS)}"


# ---------------------------------------------------------------------------------------------
# Structured personal data: each generator returns (value as written, shape).


def email_address(rng: random.Random, who: Person | None = None) -> tuple[str, str]:
    who = who or person(rng, rng.choice(LANGUAGES))
    first, last = _ascii(who.first) or "x", _ascii(who.last) or "y"
    domain = domain_of(rng, company(rng, "en"))
    local_first = re.sub(r"\W+", "", who.first.lower())  # keeps ü, é: Unicode local parts
    shapes: dict[str, Callable[[], str]] = {
        "first.last@company": lambda: f"{first}.{last}@{domain}",
        "flast@company": lambda: f"{first[0]}{last}@{domain}",
        "first@company": lambda: f"{first}@{domain}",
        "freemail+digits": lambda: f"{first}_{last}{rng.randint(1, 99)}@{rng.choice(FREEMAIL)}",
        "plus-tag": lambda: f"{first}.{last}+{rng.choice(('tickets', 'work', 'x1'))}@{domain}",
        "Mixed.Case": lambda: f"{first.title()}.{last.title()}@{domain.title()}",
        "subdomains": lambda: f"{first}.{last}@{rng.choice(('it', 'hr', 'eu'))}.corp.{domain}",
        "role": lambda: f"{rng.choice(('buchhaltung', 'accounts', 'it-support'))}@{domain}",
        "unicode-local": lambda: f"{local_first}.{last}@{domain}",
        "hyphen-digits": lambda: f"{first}-{last}.{rng.randint(1970, 2005)}@{rng.choice(FREEMAIL)}",
    }
    shape = rng.choice(list(shapes))
    return shapes[shape](), shape


# National formats only where the help desk's customers dial nationally; others write +CC.
NATIONAL_REGIONS = ("DE", "AT", "CH", "GB", "US", "FR")
INTERNATIONAL_REGIONS = (*NATIONAL_REGIONS, "NL", "IT", "ES", "PT", "PL", "TR", "IN", "BE", "IE")


def _valid_number(rng: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kind = rng.choice((PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE))
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(
        region
    )
    assert example is not None
    digits = str(example.national_number)
    for _ in range(200):  # vary the subscriber part until the number plan accepts it
        keep = max(2, len(digits) - rng.randint(4, 6))
        tail = "".join(rng.choice(string.digits) for _ in range(len(digits) - keep))
        number = phonenumbers.PhoneNumber(
            country_code=example.country_code, national_number=int(digits[:keep] + tail)
        )
        if phonenumbers.is_valid_number(number):
            return number
    return example


def phone_number(rng: random.Random) -> tuple[str, str, str]:
    """(as written, shape, the number without an extension: "ext. 245" identifies nobody)."""
    national = rng.random() < 0.45
    region = rng.choice(NATIONAL_REGIONS if national else INTERNATIONAL_REGIONS)
    number = _valid_number(rng, region)
    intl = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    nat = phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)
    cc, nsn = str(number.country_code), str(number.national_number)
    groups = intl.split(" ")[1:]
    if national:
        plain = re.sub(r"\D", "", nat)
        area = re.sub(r"\D", "", nat.split(" ")[0])  # the trunk prefix and area code
        rest = plain[len(area) :]
        shapes: dict[str, Callable[[], str]] = {
            "national": lambda: nat,
            "national-compact": lambda: plain,
            "national-slash": lambda: f"{area}/{rest}",
            "national-dash": lambda: f"{area}-{rest}",
            "national-pairs": lambda: f"{area} {' '.join(_pairs(rest))}",
            "national-parens": lambda: f"({area}) {rest}",
        }
        if region == "US":
            shapes = {
                "us-parens": lambda: f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}",
                "us-dots": lambda: f"{nsn[:3]}.{nsn[3:6]}.{nsn[6:]}",
                "us-1-dashes": lambda: f"1-{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}",
                "us-dashes": lambda: f"{nsn[:3]}-{nsn[3:6]}-{nsn[6:]}",
            }
    else:
        shapes = {
            "international": lambda: intl,
            "e164": lambda: phonenumbers.format_number(number, PhoneNumberFormat.E164),
            "00-prefix": lambda: f"00{cc} {' '.join(groups)}",
            "plus-dashes": lambda: f"+{cc}-{'-'.join(groups)}",
            "plus-slash": lambda: f"+{cc} {groups[0]}/{''.join(groups[1:])}",
            "rfc3966": lambda: phonenumbers.format_number(number, PhoneNumberFormat.RFC3966),
        }
        metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
        # "+49 (0)30 ...": only where a national call dials a trunk 0 that is not part of the
        # number (in Italy the 0 is the number's own).
        if region != "IT" and metadata is not None and metadata.national_prefix == "0":
            shapes["plus-(0)"] = lambda: f"+{cc} (0){' '.join(groups)}"
            shapes["plus-(0)-spaced"] = lambda: f"+{cc} (0) {' '.join(groups)}"
    shape = rng.choice(list(shapes))
    extension = ""
    fixed = phonenumbers.number_type(number) == PhoneNumberType.FIXED_LINE
    if fixed and shape != "rfc3966" and rng.random() < 0.15:
        # An office's direct dial: DIN 5008's "-45" in German-speaking countries, else "ext."
        dial = str(rng.randint(10, 299))
        german = region in ("DE", "AT", "CH")
        extension = f"-{dial}" if german else rng.choice((" ext. ", " x", " ext ")) + dial
    number_text = shapes[shape]()
    label = f"{shape}{' +extension' if extension else ''} ({region})"
    return number_text + extension, label, number_text


def _pairs(digits: str) -> list[str]:
    return [digits[i : i + 2] for i in range(0, len(digits), 2)]


IBAN_COUNTRIES = ("DE", "DE", "DE", "AT", "CH", "NL", "FR", "ES", "IT", "GB", "BE", "PL", "PT")
BANK_LETTERS = {"NL": ("ABNA", "INGB", "RABO", "TRIO", "KNAB"), "GB": ("NWBK", "BARC", "LOYD")}


def _bban(rng: random.Random, spec: str, country: str) -> str:
    """A random BBAN of a registry spec such as '4!a10!n' (n digits, a letters, c either)."""
    out = []
    for count, kind in re.findall(r"(\d+)!([nac])", spec):
        alphabet = {"n": string.digits, "a": string.ascii_uppercase}.get(
            kind, string.digits + string.ascii_uppercase
        )
        out.append("".join(rng.choice(alphabet) for _ in range(int(count))))
    if country in BANK_LETTERS:
        out[0] = rng.choice(BANK_LETTERS[country])
    return "".join(out)


def iban_number(rng: random.Random) -> tuple[str, str]:
    country = rng.choice(IBAN_COUNTRIES)
    for _ in range(500):  # national check digits (FR, IT, ES, BE, PT): retry until valid
        bban = _bban(rng, get_iban_spec(country).bban_spec, country)
        digits = "".join(str(int(c, 36)) for c in bban + country + "00")
        candidate = f"{country}{98 - int(digits) % 97:02d}{bban}"
        try:
            iban = IBAN(candidate, validate_bban=True)
            break
        except (SchwiftyException, ValueError):
            continue
    else:
        iban = IBAN.generate(country, bank_code="", account_code="1")
    compact, grouped = iban.compact, iban.formatted
    bank_len = len(iban.bank_code or "") + len(iban.branch_code or "")
    shapes: dict[str, Callable[[], str]] = {
        "grouped-4": lambda: grouped,
        "compact": lambda: compact,
        "bank|account": lambda: (
            f"{compact[:4]} {compact[4 : 4 + bank_len]} {compact[4 + bank_len :]}"
        ),
        "grouped-4-no-last-space": lambda: grouped.rsplit(" ", 1)[0] + grouped.rsplit(" ", 1)[1],
    }
    shape = rng.choice(list(shapes))
    return shapes[shape](), f"{shape} ({country})"


CARD_SCHEMES = {  # prefix choices, length, grouping
    "visa": (("4",), 16, (4, 4, 4, 4)),
    "mastercard": (("51", "53", "55", "2221", "2720"), 16, (4, 4, 4, 4)),
    "amex": (("34", "37"), 15, (4, 6, 5)),
    "diners": (("36",), 14, (4, 6, 4)),
    "discover": (("6011", "65"), 16, (4, 4, 4, 4)),
    "maestro-19": (("6759", "5018"), 19, (4, 4, 4, 4, 3)),
    "jcb": (("35",), 16, (4, 4, 4, 4)),
}


def _luhn_complete(partial: str) -> str:
    """`partial` plus the check digit that makes it pass the Luhn test."""
    total = 0
    for i, char in enumerate(reversed(partial)):
        digit = int(char)
        if i % 2 == 0:  # doubled: the check digit will take position 0
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return partial + str((10 - total % 10) % 10)


def card_number(rng: random.Random) -> tuple[str, str]:
    scheme = rng.choice(list(CARD_SCHEMES))
    prefixes, length, grouping = CARD_SCHEMES[scheme]
    prefix = rng.choice(prefixes)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    number = _luhn_complete(body)
    parts, start = [], 0
    for size in grouping:
        parts.append(number[start : start + size])
        start += size
    separator = rng.choice((" ", " ", "-", ""))
    shape = {" ": "spaced", "-": "dashed", "": "compact"}[separator]
    return separator.join(parts), f"{scheme} {shape}"


def ip_address(rng: random.Random) -> tuple[str, str, str]:
    """(as written, shape, the address itself: a port or a path beside it identifies nobody)."""

    def v4() -> str:
        first = rng.choice((10, 172, 192, rng.randint(11, 223)))
        second = {172: rng.randint(16, 31), 192: 168}.get(first, rng.randint(0, 255))
        return f"{first}.{second}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"

    def v6_groups() -> list[str]:
        return ["2001", "db8" if rng.random() < 0.3 else f"{rng.randint(0x2A00, 0x2A0F):x}"] + [
            f"{rng.randint(0, 0xFFFF):x}" for _ in range(6)
        ]

    def v6_compressed() -> str:
        groups = v6_groups()
        return ":".join(groups[:3]) + "::" + ":".join(groups[-2:])

    shapes: dict[str, tuple[Callable[[], str], str]] = {  # the address, how it is written
        "ipv4": (v4, "{}"),
        "ipv4:port": (v4, f"{{}}:{rng.choice((8080, 443, 3389, 22))}"),
        "ipv4/cidr": (lambda: f"{v4().rsplit('.', 1)[0]}.0", f"{{}}/{rng.choice((24, 16, 28))}"),
        "ipv4-in-url": (v4, f"http://{{}}/{rng.choice(('admin', 'login', 'status'))}"),
        "ipv6-full": (lambda: ":".join(g.zfill(4) for g in v6_groups()), "{}"),
        "ipv6-short": (lambda: ":".join(v6_groups()), "{}"),
        "ipv6-compressed": (v6_compressed, "{}"),
        "ipv6-link-local": (
            lambda: f"fe80::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}",
            "{}",
        ),
        "[ipv6]:port": (v6_compressed, f"[{{}}]:{rng.choice((443, 8443))}"),
        "ipv6-UPPER": (lambda: v6_compressed().upper(), "{}"),
    }
    shape = rng.choice(list(shapes))
    address, written = shapes[shape]
    core = address()
    return written.format(core), shape, core


def credential_url(rng: random.Random) -> tuple[str, str, str]:
    """(the URL, its scheme, the user and password it gives away)."""
    user = rng.choice(("admin", "svc_backup", "j.doe", "root", "app", "kunde4711"))
    password = "".join(
        rng.choice(string.ascii_letters + string.digits + "!#$%*") for _ in range(10)
    )
    host = rng.choice(("db.internal", "ftp.example-kunde.de", "10.0.3.7", "files.contoso.com"))
    scheme, tail = rng.choice(
        (
            ("https", "/share/reports"),
            ("ftp", "/upload/"),
            ("sftp", ":2222/in"),
            ("postgres", ":5432/prod"),
            ("mongodb+srv", "/orders?retryWrites=true"),
            ("smb", "/finance/2025"),
        )
    )
    return f"{scheme}://{user}:{password}@{host}{tail}", scheme, f"{user}:{password}"


# ---------------------------------------------------------------------------------------------
# Names in greetings and signatures.

HONORIFICS = {
    "en": {"f": ("Ms.", "Ms", "Mrs.", "Mrs"), "m": ("Mr.", "Mr")},
    "de": {"f": ("Frau",), "m": ("Herr",)},
    "fr": {"f": ("Madame",), "m": ("Monsieur",)},
    "es": {"f": ("Sra.",), "m": ("Sr.",)},
    "pt": {"f": ("Sra.",), "m": ("Sr.",)},
}
GREETINGS: dict[str, tuple[tuple[str, str], ...]] = {  # (shape, template); {hon} agrees
    "en": (("hi-first", "Hi {first},"), ("hello-first", "Hello {first},"),
           ("hey-first!", "Hey {first}!"), ("dear-first", "Dear {first},"),
           ("dear-hon-last", "Dear {hon} {last},"), ("dear-full", "Dear {full},"),
           ("dear-title-last", "Dear {title_or_dr} {last},"),
           ("good-morning-first", "Good morning {first},"), ("hi-first-dash", "Hi {first} -"),
           ("hello-hon-last:", "Hello {hon} {last}:"), ("hi-first-inline", "Hi {first}, {rest}"),
           ("hi-first-and-team", "Hi {first} and team,"), ("hi-lowercase", "hi {first_lower},")),
    "de": (("hallo-first", "Hallo {first},"), ("hallo-hon-last", "Hallo {hon} {last},"),
           ("liebe-first", "{liebe} {first},"),
           ("sehr-geehrte-hon-last", "{geehrte} {hon} {last},"),
           ("sehr-geehrte-hon-title-last", "{geehrte} {hon} {title_or_dr} {last},"),
           ("guten-tag-hon-last", "Guten Tag {hon} {last},"),
           ("guten-tag,-hon-last", "Guten Tag, {hon} {last},"), ("moin-first", "Moin {first},"),
           ("servus-first", "Servus {first},"), ("hallo-hon-full", "Hallo {hon} {full},"),
           ("hallo-first-inline", "Hallo {first}, {rest}"), ("hi-first", "Hi {first},")),
    "fr": (("bonjour-first", "Bonjour {first},"), ("bonjour-hon-last", "Bonjour {hon} {last},"),
           ("cher-first", "{cher} {first},")),
    "es": (("hola-first", "Hola {first},"), ("estimado-hon-last", "{estimado} {hon} {last}:"),
           ("buenos-dias-first", "Buenos días {first},")),
    "pt": (("ola-first", "Olá {first},"), ("prezado-hon-last", "{prezado} {hon} {last},"),
           ("bom-dia-first", "Bom dia {first},")),
}  # fmt: skip
GREETING_LANGUAGE_WEIGHTS = {"en": 0.4, "de": 0.4, "fr": 0.07, "es": 0.07, "pt": 0.06}


def greeting(rng: random.Random, language: str, who: Person, rest: str = "") -> tuple[str, str]:
    """A greeting addressing `who`; "-inline" shapes carry on with `rest` on the same line."""
    shape, template = rng.choice(GREETINGS[language])
    female = who.gender == "f"
    text = template.format(
        first=who.first,
        last=who.last,
        full=who.full,
        first_lower=who.first.lower(),
        hon=rng.choice(HONORIFICS[language][who.gender]),
        title_or_dr=who.title or "Dr.",
        liebe="Liebe" if female else "Lieber",
        geehrte="Sehr geehrte" if female else "Sehr geehrter",
        cher="Chère" if female else "Cher",
        estimado="Estimada" if female else "Estimado",
        prezado="Prezada" if female else "Prezado",
        rest=rest,
    )
    return text, f"{language}:{shape}"


CLOSINGS = {
    "en": ("Best regards", "Kind regards", "Regards", "Best", "Thanks", "Many thanks",
           "Thanks and regards", "Cheers", "Sincerely", "Warm regards", "Thank you",
           "All the best", "Yours sincerely"),
    "de": ("Mit freundlichen Grüßen", "Viele Grüße", "Beste Grüße", "Freundliche Grüße",
           "Liebe Grüße", "VG", "LG", "MfG", "Gruß", "Schöne Grüße aus Hamburg",
           "Mit besten Grüßen", "Danke und Gruß", "Herzliche Grüße"),
    "fr": ("Cordialement", "Bien cordialement", "Bien à vous", "Merci d'avance",
           "Salutations distinguées"),
    "es": ("Saludos", "Un saludo", "Saludos cordiales", "Atentamente", "Gracias"),
    "pt": ("Atenciosamente", "Cumprimentos", "Obrigado", "Abraços", "Com os melhores cumprimentos"),
}  # fmt: skip
PHONE_LABELS = {
    "en": ("Phone", "Tel", "T", "Mobile", "M", "Direct", "Fax"),
    "de": ("Telefon", "Tel.", "Mobil", "Handy", "Fax", "Durchwahl"),
    "fr": ("Tél.", "Portable", "Fax"),
    "es": ("Tel.", "Móvil", "Fax"),
    "pt": ("Tel.", "Telemóvel", "Fax"),
}  # fmt: skip
MAIL_LABELS = {
    "en": ("Email: ", "E: ", "mailto:", ""),
    "de": ("E-Mail: ", "Mail: ", ""),
    "fr": ("Courriel : ", ""),
    "es": ("Correo: ", ""),
    "pt": ("E-mail: ", ""),
}


def signature(rng: random.Random, language: str, who: Person) -> tuple[str, str]:
    """A closing and a block of name, title, company, address, phones and e-mail, or a `-- `
    delimited block, in one of many layouts."""
    firm = company(rng, language)
    name_line = rng.choice(
        (
            who.full,
            who.full,
            who.first,
            f"{who.title} {who.full}".strip(),
            f"{who.first[0]}. {who.last}",
            f"{who.full} | {rng.choice(JOB_TITLES[language])}",
            f"{who.full}, {rng.choice(JOB_TITLES[language])}",
        )
    )
    phone_lines = [
        rng.choice(PHONE_LABELS[language]) + rng.choice((": ", ":\t")) + phone_number(rng)[0]
        for _ in range(rng.choice((0, 1, 1, 2)))
    ]
    mail = email_address(rng, who)[0]
    block = [
        rng.choice(JOB_TITLES[language]) if rng.random() < 0.5 else "",
        firm if rng.random() < 0.7 else "",
        rng.choice(STREETS[language]).format(n=rng.randint(1, 180), m=rng.randint(1, 9))
        if rng.random() < 0.4
        else "",
        rng.choice(CITIES[language]) if rng.random() < 0.4 else "",
        *phone_lines,
        f"{rng.choice(MAIL_LABELS[language])}{mail}" if rng.random() < 0.5 else "",
        f"www.{domain_of(rng, firm)}" if rng.random() < 0.3 else "",
    ]
    block = [line for line in block if line]
    if rng.random() < 0.25:  # the block on one line, as many webmails style it
        block = [" | ".join(block)] if block else []
    punctuation = rng.choices((",", "", "!"), (0.45, 0.47, 0.08))[0]
    closing = rng.choice(CLOSINGS[language]) + punctuation
    layout = rng.choices(
        ("closing\\nname", "closing\\n\\nname", "closing, name", "-- \\nname", "closing\\n-- "),
        weights=(0.35, 0.2, 0.15, 0.15, 0.15),
    )[0]
    if layout == "closing, name":
        lines = [f"{closing.rstrip(',!')}, {who.first}", *block]
    elif layout == "-- \\nname":
        lines = ["-- ", name_line, *block]
    elif layout == "closing\\n-- ":
        lines = [closing, who.first, "", "-- ", name_line, *block]
    else:
        lines = [closing, *([""] if "\\n\\n" in layout else []), name_line, *block]
    return "\n".join(lines), f"{language}:{layout}"


MOBILE_LINES = {
    "en": ("Sent from my iPhone", "Sent from my iPad", "Sent from my Samsung Galaxy smartphone.",
           "Sent from Outlook for iOS", "Get Outlook for Android", "Sent from Mail for Windows",
           "Sent with Proton Mail secure email.", "Sent from my BlackBerry 10 smartphone."),
    "de": ("Von meinem iPhone gesendet", "Von meinem iPad gesendet",
           "Gesendet von meinem Samsung Galaxy Smartphone.", "Gesendet von Outlook für iOS",
           "Von Outlook für Android gesendet", "Gesendet von Mail für Windows",
           "Gesendet mit der WEB.DE Mail App",
           "Diese Nachricht wurde von meinem Android-Mobiltelefon mit GMX Mail gesendet."),
    "fr": ("Envoyé de mon iPhone", "Envoyé depuis mon smartphone Samsung Galaxy.",
           "Obtenir Outlook pour iOS"),
    "es": ("Enviado desde mi iPhone", "Enviado desde mi smartphone Samsung Galaxy.",
           "Obtener Outlook para Android"),
    "pt": ("Enviado do meu iPhone", "Enviado do meu smartphone Samsung Galaxy.",
           "Obter o Outlook para iOS"),
}  # fmt: skip
DISCLAIMERS = {
    "en": (
        "CONFIDENTIALITY NOTICE: This e-mail and any attachments are confidential and intended "
        "solely for the addressee. If you have received it in error, please notify the sender "
        "and delete it. Any unauthorised copying, disclosure or distribution is prohibited.",
        "This email and any files transmitted with it are confidential and intended solely for "
        "the use of the individual or entity to whom they are addressed. If you are not the "
        "intended recipient you are notified that disclosing, copying, distributing or taking "
        "any action in reliance on the contents of this information is strictly prohibited.",
        "Disclaimer: The information contained in this communication is confidential, may be "
        "legally privileged and is intended only for the recipient named above.\n{firm} is "
        "registered in England and Wales, company number {reg}.",
        "IMPORTANT: The contents of this email and any attachments are confidential. They are "
        "intended for the named recipient(s) only. If you have received this email by mistake, "
        "please notify the sender immediately and do not disclose the contents to anyone or "
        "make copies thereof.",
        "Please consider the environment before printing this e-mail.",
    ),
    "de": (
        "Diese E-Mail enthält vertrauliche und/oder rechtlich geschützte Informationen. Wenn Sie "
        "nicht der richtige Adressat sind oder diese E-Mail irrtümlich erhalten haben, "
        "informieren Sie bitte sofort den Absender und vernichten Sie diese Mail. Das unerlaubte "
        "Kopieren sowie die unbefugte Weitergabe dieser Mail ist nicht gestattet.",
        "Vertraulichkeitshinweis: Der Inhalt dieser E-Mail ist vertraulich und ausschließlich "
        "für den bezeichneten Adressaten bestimmt. Wenn Sie nicht der vorgesehene Adressat "
        "dieser E-Mail oder dessen Vertreter sein sollten, so beachten Sie bitte, dass jede Form "
        "der Kenntnisnahme, Veröffentlichung, Vervielfältigung oder Weitergabe des Inhalts "
        "dieser E-Mail unzulässig ist.",
        "{firm} | Sitz der Gesellschaft: {city} | Registergericht: Amtsgericht {city_name} HRB "
        "{reg} | Geschäftsführer: {boss} | USt-IdNr.: DE{vat}",
        "Wichtiger Hinweis: Diese Nachricht kann vertrauliche Informationen enthalten. Sollten "
        "Sie nicht der beabsichtigte Empfänger sein, löschen Sie sie bitte und benachrichtigen "
        "Sie uns.\nBitte denken Sie an die Umwelt, bevor Sie diese E-Mail ausdrucken.",
    ),
    "fr": (
        "Ce message et toutes les pièces jointes sont confidentiels et établis à l'intention "
        "exclusive de ses destinataires. Si vous avez reçu ce message par erreur, merci de le "
        "détruire et d'en avertir immédiatement l'expéditeur.",
    ),
    "es": (
        "AVISO LEGAL: Este mensaje y sus archivos adjuntos van dirigidos exclusivamente a su "
        "destinatario, pudiendo contener información confidencial. Si usted no es el "
        "destinatario, le rogamos que lo comunique al remitente y proceda a su borrado.",
    ),
    "pt": (
        "AVISO DE CONFIDENCIALIDADE: Esta mensagem e os seus anexos são confidenciais e "
        "destinados exclusivamente ao destinatário. Se a recebeu por engano, por favor informe "
        "o remetente e elimine-a.",
    ),
}


def disclaimer(rng: random.Random, language: str) -> tuple[str, str]:
    pool = DISCLAIMERS[language] + (DISCLAIMERS["en"] if language != "en" else ())
    index = rng.randrange(len(pool))
    city = rng.choice(CITIES["de"])
    text = pool[index].format(
        firm=company(rng, language),
        reg=rng.randint(10000, 99999),
        city=city,
        city_name=city.split(" ")[-1],
        boss=person(rng, "de").full,
        vat=rng.randint(100000000, 999999999),
    )
    if index < len(DISCLAIMERS[language]) and language != "en" and rng.random() < 0.3:
        text += "\n\n" + rng.choice(DISCLAIMERS["en"][:2])  # bilingual: local, then English
    rule = rng.choice(("", "", "_" * 40 + "\n", "*" * 30 + "\n", "-" * 50 + "\n"))
    return rule + text, f"{language}:{_slug(pool[index])}"


def _slug(template: str) -> str:
    """A template's first words, as a shape's name."""
    if template.startswith("{"):
        return "company-register"
    return "-".join(w.lower() for w in re.findall(r"[^\W\d_]+", template)[:3])


# ---------------------------------------------------------------------------------------------
# Quoted earlier messages: attribution lines, Outlook header blocks and forward markers.

WEEKDAYS = {
    "en": ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"),
    "de": ("Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"),
    "fr": ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"),
    "es": ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"),
    "pt": ("segunda-feira", "terça-feira", "quarta-feira", "quinta-feira", "sexta-feira",
           "sábado", "domingo"),
}  # fmt: skip
MONTHS = {
    "en": ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"),
    "de": ("Januar", "Februar", "März", "April", "Mai", "Juni", "Juli", "August", "September",
           "Oktober", "November", "Dezember"),
    "fr": ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre",
           "octobre", "novembre", "décembre"),
    "es": ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
           "septiembre", "octubre", "noviembre", "diciembre"),
    "pt": ("janeiro", "fevereiro", "março", "abril", "maio", "junho", "julho", "agosto",
           "setembro", "outubro", "novembro", "dezembro"),
}  # fmt: skip


def _date(rng: random.Random, language: str, when: dt.datetime, style: str) -> str:
    """`when` as a mail client of `language` writes it: "short" (Gmail's attribution), "long"
    (Outlook's Sent:) or "numeric"."""
    day, year, hm = when.day, when.year, when.strftime("%H:%M")
    weekday, month = WEEKDAYS[language][when.weekday()], MONTHS[language][when.month - 1]
    if style == "numeric":
        return rng.choice(
            (
                when.strftime("%d.%m.%Y %H:%M"),
                when.strftime("%d/%m/%Y, %H:%M"),
                when.strftime("%d.%m.%y um %H:%M")
                if language == "de"
                else when.strftime("%Y-%m-%d %H:%M"),
            )
        )
    if language == "en":
        ampm = when.strftime("%I:%M %p").lstrip("0")
        if style == "short":
            return rng.choice(
                (
                    f"{weekday[:3]}, {month[:3]} {day}, {year} at {ampm}",
                    f"{day} {month[:3]} {year}, at {hm}",
                    f"{month[:3]} {day}, {year}, at {ampm}",
                )
            )
        return rng.choice(
            (f"{weekday}, {month} {day}, {year} {ampm}", f"{weekday}, {day} {month} {year} at {hm}")
        )
    if language == "de":
        if style == "short":
            return rng.choice(
                (
                    f"{weekday[:2]}., {day}. {month} {year} um {hm} Uhr",
                    f"{when:%d.%m.%Y} um {hm}",
                    f"{day}. {month} {year} um {hm}",
                )
            )
        return rng.choice(
            (f"{weekday}, {day}. {month} {year} {hm}", f"{weekday}, {day}. {month} {year} um {hm}")
        )
    if language == "fr":
        return (
            f"{weekday[:3]}. {day} {month} {year} à {hm}"
            if style == "short"
            else (f"{weekday} {day} {month} {year} {hm}")
        )
    if language == "es":
        return (
            f"{weekday[:3]}, {day} {month[:3]} {year} a las {hm}"
            if style == "short"
            else (f"{weekday}, {day} de {month} de {year} {hm}")
        )
    return (
        f"{weekday[:3]}., {day} de {month[:3]}. de {year} às {hm}"
        if style == "short"
        else (f"{weekday}, {day} de {month} de {year} {hm}")
    )


ATTRIBUTION_NAMES = {  # quote_header's attribution lines, in order
    "en": ("on-date-addr-wrote", "on-date,-addr-wrote", "on-numeric,-name-wrote"),
    "de": ("am-date-schrieb-addr", "am-numeric-schrieb-name", "addr-schrieb-am-numeric"),
    "fr": ("le-date-addr-a-écrit",),
    "es": ("el-date-name-escribió",),
    "pt": ("em-date-addr-escreveu",),
}


@dataclass(frozen=True)
class Header:
    """How a client introduces a quoted message: its lines, and whether the quote is `>`-ed."""

    shape: str
    lines: tuple[str, ...]
    prefixed: bool
    kind: str  # "attribution", "outlook" (From/Sent block) or "forward"


def quote_header(
    rng: random.Random, language: str, sender: Person, sender_mail: str, to_mail: str, subject: str
) -> Header:
    when = dt.datetime(2025, 1, 1, 8) + dt.timedelta(minutes=rng.randint(0, 400_000))
    short, long_ = _date(rng, language, when, "short"), _date(rng, language, when, "long")
    numeric = _date(rng, language, when, "numeric")
    who, addr = sender.full, f"{sender.full} <{sender_mail}>"
    re_ = {"en": "RE: ", "de": "AW: ", "fr": "RE : ", "es": "RE: ", "pt": "RE: "}[language]
    fields = {  # From, Sent, To, Subject, Cc in the language's Outlook
        "en": ("From", "Sent", "To", "Subject", "Cc"),
        "de": ("Von", "Gesendet", "An", "Betreff", "Cc"),
        "fr": ("De ", "Envoyé ", "À ", "Objet ", "Cc "),
        "es": ("De", "Enviado el", "Para", "Asunto", "CC"),
        "pt": ("De", "Enviada em", "Para", "Assunto", "Cc"),
    }[language]
    f_from, f_sent, f_to, f_subject, f_cc = fields
    cc = [f"{f_cc}: {email_address(rng)[0]}"] if rng.random() < 0.3 else []
    outlook_block = [
        f"{f_from}: {addr}",
        f"{f_sent}: {long_}",
        f"{f_to}: {to_mail}",
        *cc,
        f"{f_subject}: {re_}{subject}",
    ]
    original = {
        "en": "-----Original Message-----",
        "de": "-----Ursprüngliche Nachricht-----",
        "fr": "-----Message d'origine-----",
        "es": "-----Mensaje original-----",
        "pt": "-----Mensagem original-----",
    }[language]
    attribution = {
        "en": (
            f"On {short} {addr} wrote:",
            f"On {short}, {addr} wrote:",
            f"On {numeric}, {who} wrote:",
        ),
        "de": (
            f"Am {short} schrieb {addr}:",
            f"Am {numeric} schrieb {who}:",
            f"{addr} schrieb am {numeric}:",
        ),
        "fr": (f"Le {short}, {addr} a écrit :",),
        "es": (f"El {short}, {who} (<{sender_mail}>) escribió:",),
        "pt": (f"Em {short}, {addr} escreveu:",),
    }[language]
    forward = {
        "en": (
            ("---------- Forwarded message ---------", "From", "Date", "Subject", "To"),
            ("Begin forwarded message:\n", "From", "Subject", "Date", "To"),
            ("-------- Forwarded Message --------", "Subject:\t", "Date:\t", "From:\t", "To:\t"),
        ),
        "de": (
            ("---------- Forwarded message ---------", "Von", "Date", "Subject", "To"),
            ("Anfang der weitergeleiteten Nachricht:\n", "Von", "Betreff", "Datum", "An"),
            (
                "-------- Weitergeleitete Nachricht --------",
                "Betreff:\t",
                "Datum:\t",
                "Von:\t",
                "An:\t",
            ),
        ),
        "fr": (
            ("---------- Forwarded message ---------", "De ", "Date", "Subject", "To"),
            ("-------- Message transféré --------", "Sujet :\t", "Date :\t", "De :\t", "Pour :\t"),
        ),
        "es": (
            ("---------- Forwarded message ---------", "De", "Date", "Subject", "To"),
            ("-------- Mensaje reenviado --------", "Asunto:\t", "Fecha:\t", "De:\t", "Para:\t"),
        ),
        "pt": (
            ("---------- Forwarded message ---------", "De", "Date", "Subject", "To"),
            ("-------- Mensagem encaminhada --------", "Assunto:\t", "Data:\t", "De:\t", "Para:\t"),
        ),
    }[language]
    values = {
        "From": addr,
        "Von": addr,
        "De ": addr,
        "De": addr,
        "Date": short,
        "Datum": long_,
        "Subject": subject,
        "Betreff": subject,
        "To": f"<{to_mail}>",
        "An": to_mail,
        "Sujet": subject,
        "Pour": to_mail,
        "Asunto": subject,
        "Fecha": long_,
        "Para": to_mail,
        "Assunto": subject,
        "Data": long_,
    }
    choice = rng.choices(
        (
            "attribution",
            "attribution-wrapped",
            "original",
            "underscores",
            "bare",
            "mailto",
            "mac",
            "forward",
            "quote-only",
        ),
        weights=(0.22, 0.05, 0.16, 0.1, 0.1, 0.05, 0.07, 0.17, 0.08),
    )[0]
    if choice == "attribution":
        index = rng.randrange(len(attribution))
        name = ATTRIBUTION_NAMES[language][index]
        return Header(f"{language}:{name}", (attribution[index],), True, "attribution")
    if choice == "attribution-wrapped":  # Gmail wraps a long attribution line before the address
        line = attribution[0]
        cut = line.find("<")
        lines = (line[:cut], line[cut:]) if cut > 0 else (line,)
        return Header(f"{language}:attribution-wrapped", lines, True, "attribution")
    if choice == "original":
        return Header(f"{language}:original-message", (original, *outlook_block), False, "outlook")
    if choice == "underscores":
        return Header(f"{language}:underscores", ("_" * 32, *outlook_block), False, "outlook")
    if choice == "bare":
        return Header(f"{language}:from-sent-block", tuple(outlook_block), False, "outlook")
    if choice == "mailto":
        first = f"{f_from}: {who} [mailto:{sender_mail}]"
        return Header(f"{language}:mailto-block", (first, *outlook_block[1:]), False, "outlook")
    if choice == "mac":  # Outlook for Mac: Date instead of Sent, no "RE:"
        f_date = {"en": "Date", "de": "Datum", "fr": "Date ", "es": "Fecha", "pt": "Data"}
        lines = (
            f"{f_from}: {addr}",
            f"{f_date[language]}: {long_}",
            f"{f_to}: {to_mail}",
            f"{f_subject}: {subject}",
        )
        return Header(f"{language}:outlook-mac", lines, False, "outlook")
    if choice == "forward":
        index = rng.randrange(len(forward))
        marker, *keys = forward[index]
        lines = (
            marker,
            *(
                f"{k}{'' if k.endswith(chr(9)) else ': '}{values[k.strip(' :' + chr(9))]}"
                for k in keys
            ),
        )
        client = ("gmail", "apple" if len(forward) == 3 else "thunderbird", "thunderbird")[index]
        return Header(f"{language}:forward-{client}", lines, False, "forward")
    return Header("quote-only", (), True, "attribution")


def quote_lines(text: str, prefixed: bool, nested: bool = False) -> str:
    if not prefixed:
        return text
    mark = "> > " if nested else "> "
    return "\n".join(
        (mark + line).rstrip() if line.strip() else mark.rstrip() for line in text.split("\n")
    )


# ---------------------------------------------------------------------------------------------
# A whole dirty mail.


@dataclass(frozen=True)
class Ticket:
    subject: str
    body: str
    language: str


@dataclass(frozen=True)
class DirtyMail:
    body: str
    content_type: str
    shapes: tuple[str, ...]  # every part added and its shape, and how the mail is rendered
    # (part, shape / rendering, the part's text): greeting, signature, mobile, disclaimer,
    # quote (its header and the quoted ticket), preheader; what a cleaner must remove or mask.
    parts: tuple[tuple[str, str, str], ...] = ()


# A ticket's own closing ("Best regards,\n<name>") is replaced by a generated signature.
OWN_CLOSING = re.compile(
    r"(?im)^[ \t]*(?:"
    + "|".join(re.escape(c) for lang in CLOSINGS.values() for c in lang if len(c) > 3)
    + r"|sincerely|thank you|vielen dank|danke|merci|gracias|obrigad[oa])\b[^\n]{0,25}$"
)


def without_own_closing(body: str) -> str:
    """The body without its trailing closing paragraph (a closing line in the last 6 lines)."""
    lines = body.rstrip().split("\n")
    start = max(0, len(lines) - 6)
    for i in range(len(lines) - 1, start - 1, -1):
        if OWN_CLOSING.match(lines[i]) and i > 0:
            return "\n".join(lines[:i]).rstrip()
    return body.rstrip()


def dirty_mail(rng: random.Random, ticket: Ticket, quoted: Ticket) -> DirtyMail:
    """`ticket`'s body as it would arrive by mail, with `quoted` as the earlier message."""
    language = ticket.language if ticket.language in LANGUAGES else "en"
    client = language if rng.random() < 0.75 else "en"  # the sender's mail client's language
    customer, agent = person(rng, language), person(rng, language)
    shapes: list[str] = []
    body = ticket.body.strip()
    if rng.random() < 0.85:
        body = without_own_closing(body)
    parts: dict[str, str] = {}
    part_shapes: dict[str, str] = {}
    first_line = body.split("\n", 1)[0]
    greeted = len(first_line) < 60 and first_line.rstrip().endswith((",", ":", "!"))
    if not greeted and rng.random() < 0.3:
        parts["greeting"], part_shapes["greeting"] = greeting(rng, language, agent)
    parts["body"] = body
    if rng.random() < 0.85:
        parts["signature"], part_shapes["signature"] = signature(rng, language, customer)
    if rng.random() < 0.2:
        parts["mobile"], part_shapes["mobile"] = rng.choice(MOBILE_LINES[client]), client
    if rng.random() < 0.45:
        parts["disclaimer"], part_shapes["disclaimer"] = disclaimer(rng, language)
    header = None
    if rng.random() < 0.8:
        customer_mail = email_address(rng, customer)[0]
        support_mail = f"support@{domain_of(rng, company(rng, 'en'))}"
        header = quote_header(rng, client, agent, support_mail, customer_mail, quoted.subject)
        parts["quote"] = "\n".join((*header.lines, quoted.body))
        part_shapes["quote"] = header.shape
    shapes = [f"{k} {v}" for k, v in part_shapes.items()]
    extra: list[tuple[str, str, str]] = []
    if rng.random() < 0.45:
        content_type, text = HTML, _html_mail(rng, parts, header, quoted, shapes, extra)
        rendering = next(s for s in shapes if s.startswith("html "))
    else:
        content_type, text = PLAIN, _plain_mail(rng, parts, header, quoted, shapes)
        rendering = "plain"
    found = tuple((k, f"{part_shapes[k]} / {rendering}", parts[k]) for k in part_shapes)
    return DirtyMail(text, content_type, tuple(shapes), found + tuple(extra))


def _plain_mail(
    rng: random.Random,
    parts: dict[str, str],
    header: Header | None,
    quoted: Ticket,
    shapes: list[str],
) -> str:
    blocks = [parts[k] for k in ("greeting", "body", "signature", "mobile") if k in parts]
    server_disclaimer = "disclaimer" in parts and rng.random() < 0.3  # added below the quote
    if "disclaimer" in parts and not server_disclaimer:
        blocks.append(parts["disclaimer"])
    if header is not None:
        quoted_text = quoted.body.strip()
        if rng.random() < 0.25:  # the earlier message quoted a message of its own
            quoted_text += "\n\n" + quote_lines(quoted.subject, True)
        quote = quote_lines(quoted_text, header.prefixed)
        head = "\n".join(header.lines)
        quote_block = f"{head}\n{'' if rng.random() < 0.5 else chr(10)}{quote}".strip("\n")
        # Bottom-posting, the new text under the quote: only under `>` lines, where a reader
        # (and a cleaner) can still tell the quote from the reply.
        if header.prefixed and rng.random() < 0.05:
            shapes.append("quote bottom-posted")
            blocks.insert(0, quote_block + "\n")
        else:
            blocks.append(quote_block)
    if server_disclaimer:
        shapes.append("disclaimer below quote")
        blocks.append(parts["disclaimer"])
    separator = rng.choice(("\n\n", "\n\n", "\n"))
    text = separator.join(blocks)
    if rng.random() < 0.2:  # Windows line ends
        text = text.replace("\n", "\r\n")
        shapes.append("crlf")
    return text


# ---------------------------------------------------------------------------------------------
# HTML, as the common clients write it.

ENTITIES = {
    "ä": "&auml;",
    "ö": "&ouml;",
    "ü": "&uuml;",
    "Ä": "&Auml;",
    "Ö": "&Ouml;",
    "Ü": "&Uuml;",
    "ß": "&szlig;",
    "é": "&eacute;",
    "è": "&egrave;",
    "à": "&agrave;",
    "ç": "&ccedil;",
    "ñ": "&ntilde;",
    "ã": "&atilde;",
    "õ": "&otilde;",
    "á": "&aacute;",
    "í": "&iacute;",
    "ó": "&oacute;",
    "ú": "&uacute;",
    "'": "&#39;",
    "€": "&euro;",
    "\u2019": "&#8217;",
    '"': "&quot;",
}
STYLES = (
    "<style>p{margin:0}body{font-family:Calibri,Arial,sans-serif;font-size:11pt}"
    ".ExternalClass{width:100%}</style>",
    '<style type="text/css"><!-- /* Font Definitions */ @font-face {font-family:\'Cambria '
    "Math';} p.MsoNormal, li.MsoNormal, div.MsoNormal {margin:0cm; font-size:11.0pt; "
    "font-family:'Calibri',sans-serif;} a:link {color:#0563C1;} --></style>",
    "<style>@media only screen and (max-width:600px){.container{width:100%!important}}"
    " .preheader{display:none!important}</style>",
)
SCRIPTS = (
    "<script>window.dataLayer=window.dataLayer||[];function gtag(){dataLayer.push(arguments)}"
    "gtag('js',new Date());gtag('config','UA-000000-1');</script>",
    '<script type="text/javascript">document.write("Kundenportal: Bitte melden Sie sich an");'
    "</script>",
)
HIDDEN = (  # (shape, opening tag, closing tag) of hidden preheaders
    ("display:none div", '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">',
     "</div>"),
    ("display:none!important span", '<span style="display: none !important; visibility: '
     'hidden; opacity: 0; color: transparent; height: 0; width: 0;">', "</span>"),
    ("hidden attribute", "<div hidden>", "</div>"),
    ("DISPLAY:NONE upper", '<div style="DISPLAY: none">', "</div>"),
    ("font-size:0 opacity:0", '<div style="font-size:0px;line-height:0px;max-height:0px;'
     'opacity:0;overflow:hidden;color:#ffffff">', "</div>"),
    ("class=preheader (css)", '<span class="preheader">', "</span>"),
)  # fmt: skip
PIXELS = (
    '<img src="https://track.mailer-example.com/open/{id}.gif" width="1" height="1" alt="" '
    'style="display:block;border:0">',
    '<img width="1" height="1" src="https://t.example-crm.io/o?u={id}" border="0">',
    '<img src="https://mandrillapp-example.com/track/open.php?u={id}" height="1" width="1" alt="">',
)


def _escape(text: str, entities: bool) -> str:
    text = html.escape(text, quote=False)
    if entities:
        text = "".join(ENTITIES.get(c, c) for c in text)
        text = re.sub(r"(?<=\d) (?=(?:EUR|€|&euro;|%))", "&nbsp;", text)
    return text


def _paragraphs_html(text: str, client: str, entities: bool) -> str:
    """Paragraphs (blank-line separated) as the client writes them; bullet lines as lists."""
    out = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [line for line in paragraph.split("\n") if line.strip()]
        bullets = [re.match(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.*)$", line) for line in lines]
        if lines and all(bullets):
            tag = "ol" if re.match(r"^\s*\d", lines[0]) else "ul"
            items = "".join(f"<li>{_escape(m.group(1), entities)}</li>" for m in bullets if m)
            out.append(f"<{tag}>{items}</{tag}>")
            continue
        escaped = [_escape(line, entities) for line in lines]
        if client == "gmail":
            out.append("".join(f"<div>{line}</div>" for line in escaped) + "<div><br></div>")
        elif client == "outlook":
            out.append(
                "".join(f"<p class=MsoNormal>{line}<o:p></o:p></p>" for line in escaped)
                + "<p class=MsoNormal><o:p>&nbsp;</o:p></p>"
            )
        else:
            out.append("<p>" + "<br>\n".join(escaped) + "</p>")
    return "\n".join(out)


def _html_mail(
    rng: random.Random,
    parts: dict[str, str],
    header: Header | None,
    quoted: Ticket,
    shapes: list[str],
    extra: list[tuple[str, str, str]],
) -> str:
    client = rng.choice(("gmail", "outlook", "owa", "apple", "thunderbird", "webform"))
    entities = rng.random() < 0.5
    shapes.append(f"html {client}" + (" entities" if entities else ""))
    head = []
    if client == "outlook" or rng.random() < 0.3:
        head.append(rng.choice(STYLES))
        shapes.append("html <style>")
    if rng.random() < 0.12:
        head.append(rng.choice(SCRIPTS))
        shapes.append("html <script>")
    body = []
    if rng.random() < 0.15:
        shape, opening, closing = rng.choice(HIDDEN)
        snippet = _escape(quoted.body.strip().split("\n")[0][:140], entities)
        body.append(f"{opening}{snippet}{closing}")
        shapes.append(f"html preheader {shape}")
        extra.append(("preheader", f"{shape} / html {client}", html.unescape(snippet)))
        if "css" in shape and not any(".preheader" in h for h in head):
            head.append(STYLES[2])
    paragraph_client = client if client in ("gmail", "outlook") else "p"
    text = "\n\n".join(parts[k] for k in ("greeting", "body") if k in parts)
    body.append(_paragraphs_html(text, paragraph_client, entities))
    if "signature" in parts:
        signature_html = "<br>".join(_escape(x, entities) for x in parts["signature"].split("\n"))
        if client == "thunderbird":
            escaped = _escape(parts["signature"], entities)
            body.append(f'<pre class="moz-signature" cols="72">{escaped}</pre>')
        elif client == "gmail":
            body.append(f'<div dir="ltr" class="gmail_signature">{signature_html}</div>')
        else:
            body.append(_paragraphs_html(parts["signature"], paragraph_client, entities))
    if "mobile" in parts:
        body.append(f'<div dir="ltr">{_escape(parts["mobile"], entities)}</div>')
    if "disclaimer" in parts:
        body.append(
            '<p style="font-size:8pt;color:#808080">'
            + _escape(parts["disclaimer"], entities).replace("\n", "<br>")
            + "</p>"
        )
    if header is not None:
        body.append(_html_quote(rng, client, header, quoted, entities))
    if rng.random() < 0.2:
        body.append(rng.choice(PIXELS).format(id=rng.getrandbits(48)))
        shapes.append("html tracking pixel")
    if client == "webform":  # a table layout, as ticket forms and CRM mails send
        inner = "\n".join(body)
        page = f'<table width="100%"><tr><td class="container">{inner}</td></tr></table>'
    elif client == "outlook":
        page = "<div class=WordSection1>\n" + "\n".join(body) + "\n</div>"
    else:
        page = '<div dir="ltr">\n' + "\n".join(body) + "\n</div>"
    doctype = rng.choice(
        ("", "<!DOCTYPE html>\n", '<html xmlns:o="urn:schemas-microsoft-com:office:office">\n')
    )
    if head or doctype:
        meta = '<meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        opening = doctype if doctype.startswith("<html") else doctype + "<html>\n"
        return f"{opening}<head>{meta}{''.join(head)}</head>\n<body>\n{page}\n</body></html>"
    return page


def _html_quote(
    rng: random.Random, client: str, header: Header, quoted: Ticket, entities: bool
) -> str:
    lines = [line for text in header.lines for line in text.split("\n") if line.strip()]
    head_html = "<br>".join(_escape(line, entities) for line in lines)
    if header.kind == "outlook":  # Outlook bolds the field names
        head_html = re.sub(r"(^|<br>)([^:<]{2,20}):", r"\1<b>\2:</b>", head_html)
    quoted_html = _paragraphs_html(quoted.body, "p", entities)
    if client == "gmail":
        return (
            f'<div class="gmail_quote"><div dir="ltr" class="gmail_attr">{head_html}<br></div>'
            '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px '
            f'solid rgb(204,204,204);padding-left:1ex">{quoted_html}</blockquote></div>'
        )
    if client == "apple":
        return (
            f'<div dir="ltr"><br><blockquote type="cite">{head_html}<br><br></blockquote>'
            f'</div><blockquote type="cite"><div dir="ltr">{quoted_html}</div></blockquote>'
        )
    if client == "thunderbird":
        return (
            f'<div class="moz-cite-prefix">{head_html}<br></div><blockquote type="cite" '
            f'cite="mid:{rng.getrandbits(40):x}@example.com">{quoted_html}</blockquote>'
        )
    if client == "owa":
        return (
            '<div id="appendonsend"></div><hr style="display:inline-block;width:98%" '
            'tabindex="-1"><div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, '
            f'sans-serif" style="font-size:11pt" color="#000000">{head_html}</font>'
            f"<div>&nbsp;</div></div><div>{quoted_html}</div>"
        )
    if client == "outlook":  # desktop Outlook: a border line, no container to recognise
        return (
            "<div><div style='border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm "
            f"0cm 0cm'><p class=MsoNormal>{head_html}<o:p></o:p></p></div></div>"
            f"<p class=MsoNormal><o:p>&nbsp;</o:p></p>{quoted_html}"
        )
    # A web form pastes the thread as text: `>` lines become escaped text.
    text = quote_lines(quoted.body.strip(), header.prefixed)
    lines = [*header.lines, "", *text.split("\n")]
    return "<div>" + "<br>\n".join(_escape(line, entities) for line in lines) + "</div>"


# ---------------------------------------------------------------------------------------------
# Personal data in sentences, for the masking recall.

PII_KINDS = ("email", "phone", "iban", "card", "ip", "url", "name-greeting", "name-signature")
VALUES: dict[str, Callable[[random.Random], tuple[str, ...]]] = {
    "email": email_address,
    "phone": phone_number,
    "iban": iban_number,
    "card": card_number,
    "ip": ip_address,
    "url": credential_url,
}
SENTENCES = {  # {v}: the value; the same frames for every kind, and some of each kind's own
    "en": ("You can reach me at {v}.", "My details: {v}", "({v})", "please use {v}, thanks",
           "See below:\n{v}\n", "Reference {v} - please check.", "{v} is the one to use.",
           "It is \"{v}\" as far as I know."),
    "de": ("Sie erreichen mich unter {v}.", "Meine Angaben: {v}", "Bitte an {v} wenden.",
           "Siehe unten:\n{v}\n", "({v}) - bitte prüfen.", "{v} ist die richtige Angabe."),
}  # fmt: skip
KIND_SENTENCES = {
    "email": ("Please send the invoice to {v} instead.", "E-Mail:{v}", "mailto:{v}",
              "Bitte die Rechnung an <{v}> schicken.", "cc {v};"),
    "phone": ("Call me back on {v} please.", "Tel.:{v}", "Rückruf bitte unter {v}.",
              "phone/WhatsApp: {v}", "mobil {v} (ab 14 Uhr)"),
    "iban": ("Please refund to IBAN {v}.", "IBAN:{v}", "Bitte auf {v} zurücküberweisen.",
             "Kontoverbindung: {v}, BIC COBADEFFXXX", "account {v} was debited twice"),
    "card": ("My card {v} was charged twice.", "Kreditkarte: {v}, gültig bis 09/27",
             "the payment with {v} failed", "Karte {v} wurde belastet."),
    "ip": ("The server at {v} is unreachable.", "Zugriff von {v} wird blockiert.",
           "ping {v} times out", "our VPN gateway ({v}) drops the connection",
           "Host: {v}"),
    "url": ("The backup job uses {v} and fails since Monday.", "Verbindung: {v}",
            "connection string {v}"),
}  # fmt: skip


@dataclass(frozen=True)
class PiiItem:
    kind: str
    text: str  # a whole ticket text holding the value
    value: str
    words: tuple[str, ...]  # what must be gone afterwards: the value's identifying pieces
    shape: str


def identifying_words(value: str) -> tuple[str, ...]:
    """The pieces of a value that identify it: its alphanumeric runs of 3 or more characters
    (a partly masked value leaks them), or the whole value when it has none."""
    runs = tuple(
        w
        for w in re.findall(r"\w+", value)
        if len(w) >= 3
        and w.lower()
        not in (
            "http",
            "https",
            "ftp",
            "sftp",
            "smb",
            "postgres",
            "mongodb",
            "srv",
            "www",
            "com",
            "mailto",
            "tel",
            "gmail",
            "web",
            "gmx",
            "outlook",
        )
    )
    return runs or (value,)


def pii_item(rng: random.Random, kind: str, body: str, language: str) -> PiiItem:
    """`body` (a clean ticket's text, no closing) with one generated value of `kind` in it."""
    language_key = language if language in ("en", "de") else "en"
    if kind == "name-greeting":
        language = _greeting_language(rng)
        who = person(rng, language)
        body = without_own_greeting(body)
        first_line, _, rest = body.partition("\n")
        line, shape = greeting(rng, language, who, rest=first_line)
        text = f"{line}\n{rest}" if shape.endswith("-inline") else f"{line}\n\n{body}"
        words = tuple(w for w in who.words if _has_word(line, w))
        return PiiItem(kind, text, who.full, words, shape)
    if kind == "name-signature":
        language = _greeting_language(rng)
        who = person(rng, language)
        block, shape = signature(rng, language, who)
        extra = ""
        if rng.random() < 0.3:
            extra = "\n\n" + rng.choice(MOBILE_LINES[language])
        if rng.random() < 0.3:
            extra += "\n\n" + disclaimer(rng, language)[0]
        text = f"{body}\n\n{block}{extra}"
        words = tuple(w for w in who.words if _has_word(block, w))
        return PiiItem(kind, text, who.full, words, shape)
    value, shape, *core = VALUES[kind](rng)  # ip and url name the part that identifies
    frames = SENTENCES[language_key] + KIND_SENTENCES[kind]
    sentence = rng.choice(frames).replace("{v}", value)
    sentences = re.split(r"(?<=[.!?])\s+", body)
    at = rng.randint(0, len(sentences))
    text = " ".join([*sentences[:at], sentence, *sentences[at:]]).strip()
    return PiiItem(kind, text, value, identifying_words(core[0] if core else value), shape)


def _greeting_language(rng: random.Random) -> str:
    languages = list(GREETING_LANGUAGE_WEIGHTS)
    return rng.choices(languages, list(GREETING_LANGUAGE_WEIGHTS.values()))[0]


def without_own_greeting(body: str) -> str:
    """The body without its greeting line ("Dear Customer Support,"): one greeting a mail."""
    first, _, rest = body.strip().partition("\n")
    greeting_line = len(first) < 60 and first.rstrip().endswith((",", ":", "!")) and rest.strip()
    return rest.strip() if greeting_line else body.strip()


def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


# ---------------------------------------------------------------------------------------------
# Numbers that are not personal data, for the false masking: a cleaner that masks every long
# number passes the recall above and ruins tickets about orders, invoices and versions.


def _ean13(rng: random.Random) -> str:
    digits = [rng.randint(0, 9) for _ in range(12)]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, digits)) + str(check)


NUMBERS: dict[str, Callable[[random.Random], str]] = {
    "order": lambda r: f"Bestellnummer {r.randint(100000, 99999999)}",
    "order#": lambda r: f"order #{r.randint(10**8, 10**10)}",
    "invoice": lambda r: f"invoice INV-{r.randint(2023, 2025)}-{r.randint(1, 99999):05d}",
    "date-de": lambda r: (
        f"am {r.randint(1, 28):02d}.{r.randint(1, 12):02d}.{r.randint(2023, 2026)}"
    ),
    "date-iso": lambda r: (
        f"since {r.randint(2023, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
    ),
    "time": lambda r: f"um {r.randint(0, 23):02d}:{r.randint(0, 59):02d} Uhr",
    "amount": lambda r: f"{r.randint(1, 9)}.{r.randint(100, 999)},{r.randint(0, 99):02d} €",
    "amount-usd": lambda r: f"${r.randint(1, 99)},{r.randint(100, 999)}.{r.randint(0, 99):02d}",
    "version-3": lambda r: f"version {r.randint(1, 30)}.{r.randint(0, 20)}.{r.randint(0, 300)}",
    "version-windows": lambda r: f"Build 10.0.{r.randint(19041, 26100)}.{r.randint(100, 5000)}",
    "version-4-small": lambda r: (
        f"driver {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)}"
    ),
    "serial": lambda r: f"S/N {r.choice(('5CG', 'C02', 'PF'))}{r.randint(1000, 9999)}K7Q",
    "error-hex": lambda r: f"error 0x{r.randint(0x80000000, 0x8007FFFF):08X}",
    "mac": lambda r: ":".join(f"{r.randint(0, 255):02X}" for _ in range(6)),
    "ean-13": lambda r: f"EAN {_ean13(r)}",
    "customer-13": lambda r: f"Kundennummer {r.randint(10**12, 10**13 - 1)}",
    "tracking-ups": lambda r: f"tracking 1Z{r.randint(100, 999)}AA1{r.randint(10**10, 10**11 - 1)}",
    "tracking-dhl": lambda r: f"Sendungsnummer 00340434{r.randint(10**11, 10**12 - 1)}",
    "ticket": lambda r: f"ticket INC{r.randint(1000000, 9999999)}",
    "room": lambda r: f"Raum {r.randint(1, 5)}.{r.randint(1, 40):02d}",
    "quantity": lambda r: f"{r.randint(2, 500)} x {r.choice(('Toner', 'Lizenzen', 'licences'))}",
}


def number_text(rng: random.Random, body: str, count: int = 3) -> tuple[str, list[tuple[str, str]]]:
    """`body` with `count` numbers of the kinds above mixed in; and each (kind, number)."""
    numbers = [(kind, NUMBERS[kind](rng)) for kind in rng.choices(list(NUMBERS), k=count)]
    sentences = re.split(r"(?<=[.!?])\s+", body.strip())
    for _, number in numbers:
        sentences.insert(rng.randint(0, len(sentences)), f"Ref.: {number}.")
    return " ".join(sentences), numbers
