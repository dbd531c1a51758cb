"""Synthetic labelled help-desk tickets (English and German) for demos, tests and smoke runs.

`generate_tickets` builds each ticket from the hand-written template tables in
`sample_tickets.json` (shipped next to this module): the queue picks the topic sentences, the
priority picks an urgency cue that is independent of the queue, and greetings, closings,
details and slot fillers (apps, devices, invoice numbers, names, dates) vary the wording. About
one ticket in ten is ambiguous on purpose (two topics, or only a mild urgency cue), so a model
can learn the labels without the data being perfectly separable.
All randomness comes from one `random.Random(seed)`, so (rows, seed) fixes the output.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from training.files import write_atomic

COLUMNS = ("subject", "body", "queue", "priority", "language")
LANGUAGES = ("en", "de")
PRIORITIES = ("high", "medium", "low")
PRIORITY_WEIGHTS = (0.30, 0.45, 0.25)
# Deliberately uneven (largest about 1.6x smallest), like a real help desk.
QUEUE_WEIGHTS: dict[str, float] = {
    "Technical Support": 1.45,
    "Billing and Payments": 1.2,
    "Account Access": 1.2,
    "Hardware": 1.0,
    "Returns and Exchanges": 0.9,
    "Sales and Pre-Sales": 1.0,
    "Human Resources": 0.9,
}
QUEUES = tuple(QUEUE_WEIGHTS)

EMPTY_SUBJECT_RATE = 0.05
MIXED_TOPIC_RATE = 0.08  # second topic from another queue; label stays the main topic
MILD_CUE_RATE = 0.02  # only a vague urgency sentence; label stays the chosen priority
NO_CUE_MEDIUM_RATE = 0.25  # an ordinary problem often says nothing about urgency
SUBJECT_MARK_RATE = {"high": 0.35, "medium": 0.0, "low": 0.25}
CUE_FIRST_RATE = {"high": 0.35, "medium": 0.0, "low": 0.1}  # "Urgent!" tends to come first

DATA_FILE = "sample_tickets.json"


class Templates(NamedTuple):
    """Text for one queue in one language; openings state the problem, details add context."""

    subjects: tuple[str, ...]
    openings: tuple[str, ...]
    details: tuple[str, ...]


def _load_tables() -> dict[str, Any]:
    """Read the data file; its lists become tuples so the shared tables stay immutable."""
    text = resources.files("training.text").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return json.loads(
        text,
        object_hook=lambda obj: {k: tuple(v) if isinstance(v, list) else v for k, v in obj.items()},
    )


# Read once, at import: the tables are module constants that callers and tests import.
_TABLES = _load_tables()
TEMPLATES: dict[str, dict[str, Templates]] = {
    queue: {language: Templates(**table) for language, table in by_language.items()}
    for queue, by_language in _TABLES["templates"].items()
}
# Urgency cues are shared by all queues so that priority never leaks the queue (or vice versa).
PRIORITY_CUES: dict[str, dict[str, tuple[str, ...]]] = _TABLES["priority_cues"]
# Vague cues used by the ambiguous tickets of every priority: the label is not in the text.
MILD_CUES: dict[str, tuple[str, ...]] = _TABLES["mild_cues"]
SUBJECT_MARKS: dict[str, dict[str, tuple[str, ...]]] = _TABLES["subject_marks"]
GREETINGS: dict[str, tuple[str, ...]] = _TABLES["greetings"]
CLOSINGS: dict[str, tuple[str, ...]] = _TABLES["closings"]
FILLERS: dict[str, tuple[str, ...]] = _TABLES["fillers"]
# "Also, ..." style lead-ins for the second topic of a mixed ticket.
SECOND_TOPIC_LEADS: dict[str, tuple[str, ...]] = _TABLES["second_topic_leads"]
MONTHS: dict[str, tuple[str, ...]] = {
    language: slots["month"] for language, slots in _TABLES["language_slots"].items()
}

Filler = tuple[str, ...] | Callable[[random.Random], str]

# Slot values: word lists come from the data file; a callable draws a fresh value (numbers,
# dates) from the ticket's generator.
COMMON_SLOTS: dict[str, Filler] = {
    **_TABLES["slots"],
    "invoice": lambda r: f"INV-{r.randint(2023, 2025)}-{r.randint(1, 99999):05d}",
    "order": lambda r: str(r.randint(100000, 999999)),
    "custno": lambda r: f"C-{r.randint(10000, 99999)}",
    "empno": lambda r: str(r.randint(1000, 9999)),
    "asset": lambda r: f"IT-{r.randint(1000, 9999)}",
    "room": lambda r: f"{r.randint(1, 4)}.{r.randint(1, 40):02d}",
    "years": lambda r: str(r.randint(2, 6)),
    "ext": lambda r: str(r.randint(100, 899)),
    "seats": lambda r: str(r.choice((5, 10, 15, 20, 25, 40, 50, 75, 100, 150, 250, 500))),
}
LANGUAGE_SLOTS: dict[str, dict[str, Filler]] = {
    "en": {
        **_TABLES["language_slots"]["en"],
        "date": lambda r: f"{r.choice(MONTHS['en'])} {r.randint(1, 28)}",
        "amount": lambda r: f"{r.randint(19, 4999)}.{r.choice(('00', '50', '90', '99'))} EUR",
    },
    "de": {
        **_TABLES["language_slots"]["de"],
        "date": lambda r: f"{r.randint(1, 28)}. {r.choice(MONTHS['de'])}",
        "amount": lambda r: f"{r.randint(19, 4999)},{r.choice(('00', '50', '90', '99'))} EUR",
    },
}


class _Slots(dict[str, str]):
    """Fills template fields on first use, so a field repeated in one ticket stays consistent."""

    def __init__(self, rng: random.Random, language: str) -> None:
        super().__init__()
        self._rng = rng
        self._fillers = {**COMMON_SLOTS, **LANGUAGE_SLOTS[language]}

    def __missing__(self, key: str) -> str:
        filler = self._fillers[key]
        value = self._rng.choice(filler) if isinstance(filler, tuple) else filler(self._rng)
        self[key] = value
        return value


def _ticket(rng: random.Random) -> tuple[str, str, str, str, str, str]:
    """Draw one ticket as (subject, body, queue, priority, language, topic); the topic is the
    queue and its main topic's English subject, a fine-grained label."""
    language = rng.choice(LANGUAGES)
    queue = rng.choices(QUEUES, weights=tuple(QUEUE_WEIGHTS.values()))[0]
    priority = rng.choices(PRIORITIES, weights=PRIORITY_WEIGHTS)[0]
    slots = _Slots(rng, language)
    main = TEMPLATES[queue][language]

    # Subjects and openings are parallel tuples; most subjects summarise their own opening.
    topic = rng.randrange(len(main.openings))
    sentences = [main.openings[topic]]
    subject = main.subjects[topic] if rng.random() < 0.75 else rng.choice(main.subjects)
    if rng.random() < MIXED_TOPIC_RATE:
        # The second topic gets equal weight (it may even own the subject); the label does not.
        other = TEMPLATES[rng.choice([q for q in QUEUES if q != queue])][language]
        other_topic = rng.randrange(len(other.openings))
        pair = [sentences[0], other.openings[other_topic]]
        if rng.random() < 0.5:
            pair.reverse()
        sentences = [pair[0], rng.choice(SECOND_TOPIC_LEADS[language]) + pair[1]]
        if rng.random() < 0.5:
            subject = other.subjects[other_topic]
    elif rng.random() < 0.55:
        sentences.append(rng.choice(main.details))

    mild = rng.random() < MILD_CUE_RATE
    if mild:
        cue: str | None = rng.choice(MILD_CUES[language])
    elif priority == "medium" and rng.random() < NO_CUE_MEDIUM_RATE:
        cue = None
    else:
        cue = rng.choice(PRIORITY_CUES[language][priority])
    if cue is not None:
        first = not mild and rng.random() < CUE_FIRST_RATE[priority]
        sentences.insert(0 if first else len(sentences), cue)
    if rng.random() < 0.2:
        sentences.append(rng.choice(FILLERS[language]))

    if not mild and rng.random() < SUBJECT_MARK_RATE[priority]:
        subject = rng.choice(SUBJECT_MARKS[language][priority]) + subject
    if rng.random() < EMPTY_SUBJECT_RATE:
        subject = ""

    body = " ".join(sentences)
    if rng.random() < 0.6:
        body = rng.choice(GREETINGS[language]) + rng.choice(("\n", " ")) + body
    if rng.random() < 0.55:
        body += rng.choice(("\n", " ")) + rng.choice(CLOSINGS[language])
    # "Report export in {app} fails" names the topic as "Report export in app fails".
    topic_name = f"{queue} / {TEMPLATES[queue]['en'].subjects[topic]}".replace("{", "")
    topic_name = topic_name.replace("}", "")
    return (
        subject.format_map(slots),
        body.format_map(slots),
        queue,
        priority,
        language,
        topic_name,
    )


def generate_tickets(rows: int, seed: int = 0, topics: bool = False) -> pd.DataFrame:
    """Return `rows` synthetic tickets with columns subject, body, queue, priority, language,
    and with `topics` a `topic` column: 70 fine-grained labels (queue / topic), for benchmarks
    of many-class data.

    The same (rows, seed) always gives the same frame; a larger `rows` with the same seed
    extends the smaller frame, since tickets are drawn one after another.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    rng = random.Random(seed)
    frame = pd.DataFrame([_ticket(rng) for _ in range(rows)], columns=[*COLUMNS, "topic"])
    return frame if topics else frame.drop(columns="topic")


def write_sample_csv(path: str | os.PathLike[str], rows: int, seed: int = 0) -> int:
    """Write `generate_tickets(rows, seed)` to `path` as UTF-8 CSV and return the row count.

    The file is written to a temporary name in the same directory and then renamed, so a
    reader never sees a half-written file. Empty subjects come back as NaN from a plain
    `pandas.read_csv`.
    """
    frame = generate_tickets(rows, seed)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, frame.to_csv(index=False).encode("utf-8"))
    return len(frame)
