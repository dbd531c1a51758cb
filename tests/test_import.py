"""History import: a help desk's closed tickets into the training data, through the real service
(and its TorchServe) and the Zammad stand-in (tests/zammad_standin.py, written from Zammad's API
documentation and source).

Every page's rows are stored with the cursor of the next page: an import cut short by a help-desk
error goes on at its cursor when started again, one cut short by a stop when the service starts
again, and both end with each ticket stored exactly once. A second import stores nothing twice.
The CLI follows an import with a progress bar. Bad input is a 4xx that stores nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_service import TICKETSERVE, Service, running
from zammad_standin import PRIORITY_MAP, ZammadStandIn, closed_ticket, service_env

from training.text import sample_data

pytestmark = pytest.mark.slow  # the real service and TorchServe

SECRET = "webhook-secret-5e2a"
API_KEY = "api-key-for-imports-77c1"
IMPORT_WAIT_S = 120.0


def zammad_env(zammad: ZammadStandIn, work: Path) -> dict[str, str]:
    # A stop waits for the help-desk call in progress: keep it short.
    return service_env(zammad, work, SECRET, CONNECTOR_TIMEOUT_S="5")


@pytest.fixture(scope="module")
def zammad() -> Iterator[ZammadStandIn]:
    standin = ZammadStandIn(groups=list(sample_data.QUEUES)).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def service(zammad: ZammadStandIn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """No data, no model: an import needs neither. The tests use tickets and days of their own,
    so they pass in any order."""
    work = tmp_path_factory.mktemp("import")
    with running(work / "var", env=zammad_env(zammad, work), api_key=API_KEY) as s:
        yield s


def history(first_id: int, count: int, seed: int) -> tuple[list[dict[str, Any]], Counter]:
    """`count` closed tickets from id `first_id`, and the training labels they should become
    (head:label -> tickets): the queue as Zammad's group, the priority by Zammad's name."""
    frame = sample_data.generate_tickets(count, seed=seed)
    tickets, expected = [], Counter()
    for offset, row in enumerate(frame.itertuples()):
        ticket_id = first_id + offset
        body = "".join(f"<p>{line}</p>" for line in row.body.split("\n"))
        tickets.append(
            closed_ticket(
                ticket_id, f"{row.subject} (case {ticket_id})", body, row.queue,
                PRIORITY_MAP[row.priority],
            )
        )  # fmt: skip
        expected.update([f"queue:{row.queue}", f"priority:{row.priority}"])
    return tickets, expected


def noise(first_id: int) -> list[dict[str, Any]]:
    """Tickets the import must not store: still open, closed before the day, no text at all."""
    return [
        closed_ticket(first_id, "Still open", "<p>The VPN drops</p>", "Hardware", "2 normal",
                      state="open"),
        closed_ticket(first_id + 1, "Closed long ago", "<p>Old invoice question</p>",
                      "Billing and Payments", "1 low", updated_at="2023-05-01T08:00:00.000Z"),
        closed_ticket(first_id + 2, "", "", "Hardware", "2 normal"),  # skipped: no text
    ]  # fmt: skip


def start(service: Service, since: str, page_size: int) -> dict[str, Any]:
    answer = service.post(
        "/api/v1/connectors/zammad/import", json={"since": since, "page_size": page_size}
    )
    assert answer.status_code == 202, answer.text
    return answer.json()


def wait_import(service: Service, timeout: float = IMPORT_WAIT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = service.get("/api/v1/connectors/zammad/import").json()
        if state["status"] != "running":
            return state
        assert time.monotonic() < deadline, f"import still running: {state}\n{service.log()}"
        time.sleep(0.2)


def imported_labels(service: Service, since: str) -> tuple[int, Counter]:
    """Rows and head:label counts of the datasets imported for `since`."""
    prefix = f"import-zammad-{since.replace('-', '')}-"
    datasets = [
        d for d in service.get("/api/v1/train-data").json()["datasets"]
        if d["id"].startswith(prefix)
    ]  # fmt: skip
    counts: Counter = Counter()
    for dataset in datasets:
        for head, labels in dataset["label_counts"].items():
            counts.update({f"{head}:{label}": n for label, n in labels.items()})
    return sum(d["rows"] for d in datasets), counts


def stored_rows(service: Service) -> int:
    return service.get("/api/v1/train-data").json()["rows"]


def test_closed_tickets_become_training_rows_once(service: Service, zammad: ZammadStandIn) -> None:
    since = "2024-03-01"
    tickets, expected = history(1001, 12, seed=31)
    zammad.tickets = tickets + noise(1100)
    before = stored_rows(service)
    searches = len(zammad.searches)
    started = start(service, since, page_size=5)
    assert started["status"] == "running" and started["resumed"] is False
    done = wait_import(service)
    # 13 tickets match (12, and the one without text): pages of 5, 5 and 3.
    assert done["status"] == "done", done
    assert (done["pages"], done["imported"], done["duplicates"], done["skipped"]) == (3, 12, 0, 1)
    assert done["cursor"] is None and done["error"] is None and done["finished_at"]
    assert stored_rows(service) == before + 12
    rows, labels = imported_labels(service, since)
    assert rows == 12 and labels == expected  # Zammad's "3 high" is the model's "high"
    for search in zammad.searches[searches:]:
        assert search["query"].startswith(f"state.name:closed AND updated_at:>={since}")
        assert (search["expand"], search["per_page"], search["sort_by"]) == ("true", "5", "id")
    # Each row is the customer's first mail, cleaned: no internal note, no agent's reply.
    texts = [
        json.loads(line)["text"]
        for path in (service.data_dir / "datasets").glob("import-zammad-20240301-*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert len(texts) == 12 and not any("<p>" in t for t in texts)
    assert not any("checked the account" in t or "closing the ticket" in t for t in texts)
    assert {t.split("\n")[0] for t in texts} == {t["title"].strip() for t in tickets}

    # The same import again: every ticket was imported before, nothing is stored twice.
    again = start(service, since, page_size=5)
    assert again["resumed"] is False and again["imported"] == 0
    repeat = wait_import(service)
    assert (repeat["status"], repeat["imported"], repeat["duplicates"]) == ("done", 0, 12)
    assert stored_rows(service) == before + 12


def test_an_import_cut_by_a_help_desk_error_resumes_at_its_cursor(
    service: Service, zammad: ZammadStandIn
) -> None:
    since = "2024-03-02"
    tickets, expected = history(2001, 11, seed=32)
    zammad.tickets = tickets
    before = stored_rows(service)
    zammad.fail_searches = {zammad.search_calls + 2}  # page 2 answers 500
    try:
        start(service, since, page_size=4)
        failed = wait_import(service)
    finally:
        zammad.fail_searches = set()
    assert failed["status"] == "failed", failed
    assert "HTTP 500" in failed["error"] and "search" in failed["error"]
    assert (failed["pages"], failed["imported"], failed["cursor"]) == (1, 4, "2004")
    assert stored_rows(service) == before + 4
    searches = len(zammad.searches)
    resumed = start(service, since, page_size=4)
    assert resumed["resumed"] is True and resumed["cursor"] == "2004"
    done = wait_import(service)
    assert (done["status"], done["pages"], done["imported"], done["error"]) == ("done", 3, 11, None)
    # Page 1 was not asked again: the resumed run began after its last ticket.
    assert zammad.searches[searches]["query"].endswith(" AND id:>2004")
    assert stored_rows(service) == before + 11
    assert imported_labels(service, since) == (11, expected)


def test_a_stopped_service_resumes_its_import_when_it_starts(
    zammad: ZammadStandIn, tmp_path: Path
) -> None:
    since = "2024-03-04"  # the day the tickets were closed (closed_ticket)
    tickets, expected = history(3001, 10, seed=33)
    with running(tmp_path / "var", env=zammad_env(zammad, tmp_path), api_key=API_KEY) as service:
        missing = service.get("/api/v1/connectors/zammad/import")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_import"
        zammad.tickets = tickets
        zammad.release.clear()
        zammad.held.clear()
        zammad.hold_searches = {zammad.search_calls + 2}  # page 2 waits
        try:
            start(service, since, page_size=4)
            assert zammad.held.wait(30), service.log()
            busy = service.post("/api/v1/connectors/zammad/import", json={"since": since})
            assert busy.status_code == 409 and busy.json()["error"]["code"] == "import_running"
            assert service.stop() == 0, service.log()  # page 2 is cut short by the stop
        finally:
            zammad.hold_searches = set()
            zammad.release.set()
        assert stored_rows_on_disk(service) == 4
        service.start()
        done = wait_import(service)
        assert done["status"] == "done" and done["resumed"] is True, done
        assert (done["pages"], done["imported"], done["duplicates"]) == (3, 10, 0)
        assert stored_rows(service) == 10
        assert imported_labels(service, since) == (10, expected)


def stored_rows_on_disk(service: Service) -> int:
    """Rows in the dataset files of a stopped service."""
    return sum(
        len(path.read_text().splitlines()) for path in (service.data_dir / "datasets").iterdir()
    )


def test_the_cli_follows_an_import_with_a_progress_bar(
    service: Service, zammad: ZammadStandIn, tmp_path: Path
) -> None:
    since = "2024-03-03"
    tickets, expected = history(4001, 9, seed=34)
    zammad.tickets = tickets
    key = tmp_path / "api-key"
    key.write_text(API_KEY + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETSERVE_")}
    command = [TICKETSERVE, "import", "zammad", "--since", since, "--page-size", "4",
               "--url", service.base, "--api-key-file", str(key)]  # fmt: skip
    before = stored_rows(service)

    zammad.fail_searches = {zammad.search_calls + 3}  # page 3 answers 500
    try:
        failed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        zammad.fail_searches = set()
    assert failed.returncode == 1, failed
    assert "ticketserve import: error: the import failed: Zammad GET" in failed.stderr
    assert "HTTP 500" in failed.stderr and "run the same command again" in failed.stderr

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done
    assert "resuming the import at cursor '4008'" in done.stderr
    assert f"zammad since {since}" in done.stderr and "imported=9" in done.stderr
    assert done.stdout.startswith(f"imported 9 ticket(s) from zammad closed since {since}: ")
    assert stored_rows(service) == before + 9
    assert imported_labels(service, since) == (9, expected)

    bad = subprocess.run([*command[:3], "--since", "2024-3-3"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2 and "not a day as YYYY-MM-DD" in bad.stderr
    off = subprocess.run([*command[:3], "--since", since, "--url", "http://127.0.0.1:9"],
                         env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert off.returncode == 1 and "does not answer" in off.stderr


@pytest.mark.parametrize(
    ("body", "where"),
    [({"since": "yesterday"}, "since"), ({"since": "2024-3-1"}, "since"),
     ({"since": "2024-02-30"}, "since"), ({"since": 1709251200}, "since"),
     ({"since": "2024-03-01T00:00:00"}, "since"), ({"since": "1970-01-01"}, "since"),
     ({"since": "2999-01-01"}, "future"), ({}, "since"),
     ({"since": "2024-03-01", "page_size": 0}, "page_size"),
     ({"since": "2024-03-01", "page_size": 201}, "page_size"),
     ({"since": "2024-03-01", "page_size": 10**30}, "page_size"),
     ({"since": "2024-03-01", "cursor": "7"}, "cursor")],
)  # fmt: skip
def test_bad_input_is_refused_and_stores_nothing(
    service: Service, body: dict[str, Any], where: str
) -> None:
    before = stored_rows(service)
    answer = service.post("/api/v1/connectors/zammad/import", json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "validation_error" and where in error["message"], error
    assert stored_rows(service) == before


def test_unknown_connectors_and_keys(service: Service) -> None:
    for name in ("otrs", "znuny", "rt"):  # not configured here
        for answer in (
            service.post(f"/api/v1/connectors/{name}/import", json={"since": "2024-03-01"}),
            service.get(f"/api/v1/connectors/{name}/import"),
        ):
            assert answer.status_code == 404, answer.text
            assert answer.json()["error"]["code"] == "connector_off"
    odd = service.get("/api/v1/connectors/Zammad%20x/import")
    assert odd.status_code == 422
    for answer in (
        service.post("/api/v1/connectors/zammad/import", json={"since": "2024-03-01"},
                     headers={"Authorization": "Bearer wrong"}),
        service.get("/api/v1/connectors/zammad/import", headers={}),
    ):  # fmt: skip
        assert answer.status_code == 401
    spec = service.get("/openapi.json").json()
    route = spec["paths"]["/api/v1/connectors/{name}/import"]
    assert set(route) == {"get", "post"}
    assert {"ConnectorImportPublic", "ImportRequest"} <= set(spec["components"]["schemas"])
