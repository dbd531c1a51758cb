"""The text the service classifies, logs and stores of a ticket: cleaned by
training/text/cleaning.py with the service's cleaning settings (its training defaults), so raw mail,
quoted threads and personal data never reach the store, the predictions log or TorchServe.

A model cleans again what it receives (its own copy and settings); cleaning a cleaned text
changes nothing, so both agree whenever their settings do.
"""

from __future__ import annotations

from handlers.ticket_requests import EMPTY_AFTER_CLEANING
from shim.errors import Unprocessable
from shim.schemas import TicketIn
from shim.settings import Settings
from training.text.cleaning import clean_ticket
from training.text.text_rules import MARKUP_FACTOR


def cleaned_texts(tickets: list[TicketIn], settings: Settings) -> list[str]:
    """Each ticket's cleaned text; 422 naming the ticket when one is too long or empty."""
    cleaning = settings.cleaning()
    limit = settings.max_ticket_chars
    texts = []
    for i, ticket in enumerate(tickets):
        where = {"ticket": i}
        subject, body = ticket.parts()
        raw_chars = len(subject or "") + len(body)
        raw_limit = limit * MARKUP_FACTOR if ticket.is_markup() else limit
        if raw_chars > raw_limit:
            raise Unprocessable(
                f"ticket {i} has {raw_chars} characters; at most {raw_limit}"
                + (f" for {ticket.content_type}" if ticket.is_markup() else ""),
                where,
                code="ticket_too_long",
            )
        text = clean_ticket(subject, body, ticket.content_type, cleaning)
        if not text:
            raise Unprocessable(f"ticket {i}: {EMPTY_AFTER_CLEANING}", where, code="empty_text")
        if len(text) > limit:
            raise Unprocessable(
                f"ticket {i} has {len(text)} characters after cleaning; at most {limit}",
                where,
                code="ticket_too_long",
            )
        texts.append(text)
    return texts
