"""The write-back outbox on one registry shared by replicas: a due write is claimed by one of
them before it is sent, and is due again if that replica stops before recording it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from connectors.label_map import LabelMap
from shim.desks.outbox import Outbox
from shim.metrics import ApiMetrics
from shim.settings import Settings
from shim.store.registry import Store
from shim.store.registry.tables import outbox as outbox_table


def test_a_due_write_goes_to_one_replica(tmp_path: Path, database_url: str | None) -> None:
    store = Store(tmp_path, database_url)
    settings = Settings(data_dir=tmp_path, connector_timeout_s=10)
    a, b = (Outbox(store, settings, {}, LabelMap({}), ApiMetrics()) for _ in range(2))
    answer = {"prediction_id": "p" * 24, "queue": {"label": "Billing"}}
    assert a.accept("rt", "delivery-1", "17", "fields", answer)
    assert not b.accept("rt", "delivery-1", "17", "fields", answer)  # the same delivery: once
    with store.reading() as conn:
        [(seq, due_ms)] = conn.execute(select(outbox_table.c.seq, outbox_table.c.next_ms)).all()
    now = due_ms + 1
    assert a.claim(seq, due_ms, now)
    assert not b.claim(seq, due_ms, now)  # b read it as due too, before a took it
    assert b.deliver_due(now) == 0  # not due for anyone while a holds it
    held_until = now + (3 * 10 + 30) * 1000
    # a stopped without recording the write: it is due again, and b takes it.
    assert b.claim(seq, held_until, held_until)
    assert a.stats("rt").pending == 1
