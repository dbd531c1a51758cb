"""The Request Tracker connector against a real Request Tracker 5 (tests/rt_server.py: a fresh
SQLite database, RT's standalone server, REST 2.0 with an auth token) and the real service and
TorchServe.

New tickets in the watched queue are polled, classified through the classify path and written
back (a comment; Queue and Priority in route mode); a ticket in another queue, or there before
the connector started, is left alone; an agent's move becomes a feedback row on the ticket's
prediction; the connector's own changes do not.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_service import Service, copy_data_dir
from rt_server import RTServer

from connectors.rt import RTClient
from training.text import sample_data

pytestmark = pytest.mark.slow  # a real RT, the real service and TorchServe

PRIORITIES = {"Low": 0, "Medium": 50, "High": 100}  # RT 5's defaults
HTML = "<p>Hello,</p><p>I was charged twice for invoice 4471. Please refund one payment.</p>"


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RTServer]:
    server = RTServer(tmp_path_factory.mktemp("rt")).start()
    try:
        for queue in sample_data.QUEUES:
            server.create_queue(queue)
        server.create_queue("Sales")  # not watched
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def service(
    trained_data_dir: Path, rt: RTServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("rt-service")
    token = rt.user_token("ticketserve", "router-password-1")
    (work / "token").write_text(token + "\n")
    before = rt.create_ticket("General", "Old ticket", "Printer jams.", "text/plain")
    env = {
        "TICKETSERVE_RT_URL": rt.url,
        "TICKETSERVE_RT_TOKEN_FILE": str(work / "token"),
        "TICKETSERVE_RT_QUEUES": "General",
        "TICKETSERVE_RT_MODE": "route",
        "TICKETSERVE_RT_POLL_S": "1",
        # Every answer clears the gate: route mode then always sets Queue and Priority.
        "TICKETSERVE_CONFIDENCE_THRESHOLDS": "queue=0,priority=0",
    }
    service = Service(copy_data_dir(trained_data_dir, work / "var"), env=env)
    service.start()
    service.wait_ready()
    wait_for(lambda: cursor(service, "tickets") is not None, "the first poll")
    service.ticket_before = before  # type: ignore[attr-defined]
    service.rt_token = token  # type: ignore[attr-defined]
    yield service
    code = service.stop()
    service.cleanup()
    assert code == 0, service.log()


def cursor(service: Service, name: str) -> str | None:
    """Where the service's polling of RT stands (read from its registry)."""
    with sqlite3.connect(service.data_dir / "registry.sqlite3") as db:
        try:
            row = db.execute(
                "SELECT value FROM connector_cursors WHERE connector = 'rt' AND name = ?", (name,)
            ).fetchone()
        except sqlite3.OperationalError:  # not migrated yet
            return None
    return None if row is None else str(row[0])


def routed(rt: RTServer, ticket_id: str) -> dict[str, Any]:
    """The ticket once the router wrote to it: the comment first, then Queue and Priority."""
    return wait_for(
        lambda: (t := rt.ticket(ticket_id))["comments"] and t["queue"] != "General" and t,
        f"routing of ticket {ticket_id}",
    )


def wait_for(check: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"no {what} after {timeout}s")


def test_a_new_ticket_is_routed_in_rt(service: Service, rt: RTServer) -> None:
    ticket_id = rt.create_ticket("General", "Invoice charged twice", HTML, "text/html")
    ticket = routed(rt, ticket_id)
    # What the model answers, asked the usual way: the same cleaning, gate and labels.
    direct = service.post(
        "/api/v1/classify",
        json={"subject": "Invoice charged twice", "body": HTML, "content_type": "text/html"},
    ).json()
    queue, priority = direct["queue"]["model_label"], direct["priority"]["model_label"]
    assert ticket["queue"] == queue
    [priority_name] = [name for name in PRIORITIES if name.casefold() == priority.casefold()]
    assert ticket["priority"] == PRIORITIES[priority_name]
    [comment] = ticket["comments"]
    assert f"queue: {queue}" in comment and "route mode" in comment
    stats = service.get("/api/v1/monitoring").json()["connectors"]["rt"]
    assert stats["done"] >= 1 and stats["failed"] == 0
    assert service.get("/readyz").json()["connectors"] == {"rt": "ok"}


def test_tickets_outside_the_watched_queues_or_before_the_start_are_left_alone(
    service: Service, rt: RTServer
) -> None:
    elsewhere = rt.create_ticket("Sales", "Quote please", "A quote for 20 laptops.", "text/plain")
    marker = rt.create_ticket("General", "VPN", "The VPN drops every ten minutes.", "text/plain")
    routed(rt, marker)
    for ticket_id in (elsewhere, service.ticket_before):  # type: ignore[attr-defined]
        ticket = rt.ticket(ticket_id)
        assert ticket["comments"] == [] and ticket["priority"] == 0, ticket_id


def test_an_agent_s_move_becomes_feedback(service: Service, rt: RTServer) -> None:
    ticket_id = rt.create_ticket("General", "Screen", "My laptop screen is cracked.", "text/plain")
    first = routed(rt, ticket_id)
    prediction_id = first["comments"][0].rsplit("prediction ", 1)[1].strip()
    moved_to = next(q for q in sample_data.QUEUES if q != first["queue"])
    new_priority = next(name for name, n in PRIORITIES.items() if n != first["priority"])
    # As an agent would: root, in RT's own API.
    rt.call("PUT", f"/ticket/{ticket_id}", json={"Queue": moved_to, "Priority": new_priority})

    def feedback_row() -> dict | None:
        rows = service.get("/api/v1/feedback").json()["feedback"]
        return next((r for r in rows if r["prediction_id"] == prediction_id), None)

    row = wait_for(feedback_row, "feedback row")
    assert row["labels"]["queue"] == moved_to
    assert row["labels"]["priority"].casefold() == new_priority.casefold()
    # The router's own Queue/Priority writes (the other tickets) recorded nothing.
    rows = service.get("/api/v1/feedback").json()["feedback"]
    assert [r["prediction_id"] for r in rows] == [prediction_id]


def test_a_new_ticket_s_custom_fields_are_its_classify_fields(rt: RTServer) -> None:
    """A ticket's custom fields reach classify as `fields` (by name), for a model trained with
    feature columns of those names. Read with RTClient in a queue the service does not watch."""
    rt.create_custom_field("Channel")
    client = RTClient(rt.url, rt.user_token("fields", "fields-password-1"), ["Sales"])
    after = client.last_ticket_id()
    made = rt.create_ticket("Sales", "Quote", "A quote for 5 laptops.", "text/plain",
                            custom_fields={"Channel": "phone"})  # fmt: skip
    plain = rt.create_ticket("Sales", "Quote 2", "Another quote.", "text/plain")
    found = {t.ticket_id: t for t in client.new_tickets(after, 10)}
    assert found[made].fields == {"Channel": "phone"}
    assert found[made].body == "A quote for 5 laptops."
    assert found[plain].fields == {}


def test_closed_tickets_page_for_the_history_import(rt: RTServer) -> None:
    """RTClient.history, as `ticketserve import rt` calls it: resolved tickets of every queue,
    oldest first, with their final queue and priority, page by page from a cursor."""
    queues = sample_data.QUEUES
    made = []
    for i, queue in enumerate(queues[:3]):
        # Not in the watched queue: the running service's poller must not route them.
        ticket_id = rt.create_ticket(queue, f"Old case {i}", f"Case {i} text.", "text/plain")
        rt.call("PUT", f"/ticket/{ticket_id}", json={"Priority": "High", "Status": "resolved"})
        made.append((ticket_id, queue))
    client = RTClient(rt.url, rt.user_token("importer", "importer-password-1"), ["General"])
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86_400))
    # The cursor is the last ticket id read: start just before these three, whatever resolved
    # tickets the other tests left (any order).
    assert client.history(since, None, 2).tickets
    before = str(int(made[0][0]) - 1)
    first = client.history(since, before, 2)
    assert first.cursor is not None and len(first.tickets) == 2
    rest = client.history(since, first.cursor, 2)
    assert rest.cursor is None
    found = [(t.ticket_id, t.queue) for t in first.tickets + rest.tickets]
    assert found == made
    ticket = first.tickets[0]
    assert (ticket.subject, ticket.body, ticket.priority) == ("Old case 0", "Case 0 text.", "High")
    assert client.history("2999-01-01", None, 2).tickets == []


def test_the_token_reaches_no_log_and_no_file_of_the_data_directory(service: Service) -> None:
    token = service.rt_token.encode()  # type: ignore[attr-defined]
    files = [p for p in service.data_dir.rglob("*") if p.is_file()]
    files += list(service.data_dir.parent.glob("*.log"))
    assert files
    for path in files:
        assert token not in path.read_bytes(), f"the RT token in {path}"


def test_ticketserve_imports_rt_history_once(service: Service, rt: RTServer) -> None:
    """The history import through the service: resolved RT tickets of any queue become training
    rows with their final queue and priority, and a second import stores none of them again."""
    subjects = [f"Imported case {i}" for i in range(3)]
    for subject, queue in zip(subjects, sample_data.QUEUES, strict=False):
        ticket_id = rt.create_ticket(queue, subject, f"{subject}: the text.", "text/plain")
        rt.call("PUT", f"/ticket/{ticket_id}", json={"Priority": "Low", "Status": "resolved"})
    since = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86_400))
    rows_before = service.get("/api/v1/train-data").json()["rows"]

    def run_import() -> dict[str, Any]:
        started = service.post(
            "/api/v1/connectors/rt/import", json={"since": since, "page_size": 2}
        )
        assert started.status_code == 202, started.text
        return wait_for(
            lambda: (
                (s := service.get("/api/v1/connectors/rt/import").json())["status"] != "running"
                and s
            ),
            "the import's end",
        )

    first = run_import()
    assert first["status"] == "done", first
    assert first["imported"] >= len(subjects) and first["pages"] >= 2
    assert service.get("/api/v1/train-data").json()["rows"] == rows_before + first["imported"]
    again = run_import()
    assert again["status"] == "done" and again["imported"] == 0, again
    assert again["duplicates"] == first["imported"] + first["duplicates"]
