"""The Zammad connector against a stand-in Zammad (tests/zammad_standin.py, written from Zammad's
API documentation: Zammad cannot be installed here) and the real service and TorchServe.

A signed trigger webhook leads to exactly one write-back (an internal note; group and priority
where the gate allows, in route mode); unsigned or wrongly signed ones are refused and store
nothing; a redelivery writes nothing twice; an agent's article is no new ticket; a help desk
that is down gets its write once it is back, also after our service restarts; no secret reaches
a log or the data directory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import Service, copy_data_dir, running_copy
from zammad_standin import (
    PRIORITY_MAP,
    TOKEN,
    ZammadStandIn,
    payload,
    service_env,
    trigger,
    update_payload,
)

from training.text import sample_data

pytestmark = pytest.mark.slow  # the real service and TorchServe

SECRET = "webhook-secret-7c1d"
API_KEY = "api-key-for-the-rest-2b8e"
HTML = "<p>Hello,</p><p>I was charged twice for invoice 4471. Please refund one payment.</p>"


@pytest.fixture(scope="module")
def zammad() -> Iterator[ZammadStandIn]:
    standin = ZammadStandIn(groups=list(sample_data.QUEUES)).start()
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def service(
    trained_data_dir: Path, zammad: ZammadStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("zammad")
    env = service_env(zammad, work, SECRET, ZAMMAD_MODE="route", OUTBOX_MAX_BACKOFF_S="1")
    service = Service(copy_data_dir(trained_data_dir, work / "var"), env=env, api_key=API_KEY)
    service.start()
    service.wait_ready()
    yield service
    code = service.stop()
    service.cleanup()
    assert code == 0, service.log()


def wait_updates(zammad: ZammadStandIn, ticket: str, count: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [update for tid, update in zammad.updates if tid == ticket]
        if len(found) >= count:
            return found
        time.sleep(0.2)
    return [update for tid, update in zammad.updates if tid == ticket]


def test_a_signed_webhook_is_written_back_once(service: Service, zammad: ZammadStandIn) -> None:
    answer = trigger(service.base, payload(101, "Invoice charged twice", HTML), SECRET)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status"] == "accepted" and accepted["ticket_id"] == "101"
    [update] = wait_updates(zammad, "101", 1)
    # What the model answered, asked the usual way: the same cleaning, gate and labels.
    direct = service.post(
        "/api/v1/classify", json={"subject": "Invoice charged twice", "body": HTML,
                                  "content_type": "text/html", "similar": 3}
    ).json()  # fmt: skip
    queue, priority = direct["queue"], direct["priority"]
    assert ("group" in update) == queue["auto_route"]
    if queue["auto_route"]:
        assert update["group"] == queue["model_label"]  # equal names, no map needed
    if priority["auto_route"]:
        assert update["priority"] == PRIORITY_MAP[priority["model_label"]]
    note = update["article"]
    assert note["internal"] is True and note["type"] == "note"
    assert f"queue: {queue['model_label']}" in note["body"]
    assert accepted["prediction_id"] in note["body"]
    # the three most similar stored tickets, for the agent to compare with
    assert "similar tickets:" in note["body"]
    for similar in direct["similar"]:
        assert f"- {similar['id']} (" in note["body"]
    # Zammad redelivers on a timeout: the same delivery id writes nothing again.
    time.sleep(1)
    assert len(wait_updates(zammad, "101", 2, timeout=2)) == 1


def test_redelivery_writes_nothing_twice(service: Service, zammad: ZammadStandIn) -> None:
    body = payload(102, "VPN", "<p>The VPN drops every ten minutes.</p>")
    first = trigger(service.base, body, SECRET, delivery="delivery-102")
    again = trigger(service.base, body, SECRET, delivery="delivery-102")
    assert (first.status_code, again.status_code) == (202, 200), (first.text, again.text)
    assert again.json()["status"] == "duplicate"
    wait_updates(zammad, "102", 1)
    time.sleep(2)
    assert len(wait_updates(zammad, "102", 2, timeout=1)) == 1


@pytest.mark.parametrize(
    ("signature", "status", "code"),
    [(None, 401, "signature_missing"), ("sha1=" + "0" * 40, 403, "signature_wrong"),
     ("garbage", 403, "signature_wrong")],
)  # fmt: skip
def test_unsigned_or_wrongly_signed_webhooks_store_nothing(
    service: Service, zammad: ZammadStandIn, signature: str | None, status: int, code: str
) -> None:
    body = payload(103, "Printer", "<p>The printer jams.</p>")
    secret = None if signature is None else SECRET
    refused = trigger(service.base, body, secret, delivery="delivery-103", signature=signature)
    assert refused.status_code == status and refused.json()["error"]["code"] == code
    # Nothing was stored: the same delivery, signed, is new and written back.
    signed = trigger(service.base, body, SECRET, delivery=f"delivery-103-{status}-{signature}")
    assert signed.status_code in (200, 202), signed.text


def test_a_bad_payload_and_an_agent_s_article(service: Service, zammad: ZammadStandIn) -> None:
    bad = trigger(service.base, b'{"tickets": []}', SECRET)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_payload"
    agent = trigger(service.base, payload(104, "Re: VPN", "<p>Try again.</p>", "Agent"), SECRET)
    assert agent.status_code == 200 and agent.json()["status"] == "ignored"
    time.sleep(1.5)
    assert wait_updates(zammad, "104", 1, timeout=0.5) == []


def test_an_agent_s_move_becomes_feedback_on_the_prediction(
    service: Service, zammad: ZammadStandIn
) -> None:
    """An update trigger after an agent moved the ticket: the group and priority it has now are
    a correction of our prediction; our own update and an unknown group are not."""
    accepted = trigger(service.base, payload(106, "Refund", HTML), SECRET).json()
    assert accepted["status"] == "accepted"
    wait_updates(zammad, "106", 1)
    moved_to = "Hardware"
    moved = trigger(service.base, update_payload(106, moved_to, "3 high", "agent.anna"), SECRET)
    assert moved.status_code == 200 and moved.json()["status"] == "feedback", moved.text
    assert moved.json()["prediction_id"] == accepted["prediction_id"]
    rows = service.get("/api/v1/feedback").json()["feedback"]
    [row] = [r for r in rows if r["prediction_id"] == accepted["prediction_id"]]
    assert row["labels"] == {"queue": moved_to, "priority": "high"}
    for login, group in (("ticketserve", moved_to), ("agent.anna", "Users")):
        other = trigger(service.base, update_payload(106, group, "1 low", login), SECRET)
        assert other.json()["status"] == "ignored", (login, group)
    rows = service.get("/api/v1/feedback").json()["feedback"]
    [row] = [r for r in rows if r["prediction_id"] == accepted["prediction_id"]]
    assert row["labels"]["priority"] == "high"  # neither changed the correction


def test_a_help_desk_that_was_down_gets_its_write_after_a_restart(
    service: Service, zammad: ZammadStandIn
) -> None:
    zammad.down = True
    try:
        answer = trigger(service.base, payload(105, "Laptop", "<p>Screen cracked.</p>"), SECRET)
        assert answer.status_code == 202, answer.text
        calls = zammad.calls
        time.sleep(3)
        assert zammad.calls > calls  # retried while down
        assert service.stop() == 0, service.log()
    finally:
        zammad.down = False
    service.start()
    service.wait_ready()  # the tests after this one (random order) need the model loaded
    [update] = wait_updates(zammad, "105", 1)
    assert "article" in update
    stats = service.get("/api/v1/monitoring").json()["connectors"]["zammad"]
    assert stats["pending"] == 0 and stats["done"] >= 1 and "503" in stats["last_error"]
    assert stats["problem"] is None and service.get("/readyz").json()["connectors"] == {
        "zammad": "ok"
    }


def test_a_wrong_token_is_reported_not_fatal(
    trained_data_dir: Path, zammad: ZammadStandIn, tmp_path: Path
) -> None:
    env = {"TICKETSERVE_ZAMMAD_URL": zammad.url, "TICKETSERVE_ZAMMAD_TOKEN": "wrong",
           "TICKETSERVE_ZAMMAD_WEBHOOK_SECRET": SECRET}  # fmt: skip
    with running_copy(trained_data_dir, tmp_path / "var", env=env) as service:
        deadline = time.monotonic() + 30
        while service.get("/readyz").json()["connectors"] == {} and time.monotonic() < deadline:
            time.sleep(0.2)
        ready = service.get("/readyz")
        assert ready.status_code == 200 and "HTTP 401" in ready.json()["connectors"]["zammad"]


def test_no_secret_reaches_a_log_or_the_data_directory(service: Service) -> None:
    files = [p for p in service.data_dir.rglob("*") if p.is_file()]
    files += list(service.data_dir.parent.glob("*.log"))
    for path in files:
        content = path.read_bytes()
        for secret in (SECRET, TOKEN, API_KEY):
            assert secret.encode() not in content, f"a secret in {path}"
