"""The Znuny connector against a stand-in Znuny (tests/znuny_standin.py, written from Znuny's
source: Znuny cannot be installed here) and the real service and TorchServe.

The invoker's secret is checked before anything is stored (none: 401, wrong: 403); a new ticket
is answered at once with what `/api/v1/classify` answers for its text (queue and priority in
route mode where the gate allows, the note and the confidence field always), and the stand-in
applies it as Znuny's invoker would; a redelivery answers the same prediction and stores nothing
twice; an agent's move becomes feedback, our own changes do not; the client reads closed tickets
page by page; the shipped web service YAML names our route and the operations the client calls.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
import yaml
from api_service import Service, copy_data_dir, running_copy
from znuny_standin import PASSWORD, USERS, ZnunyStandIn, invoke

from connectors.base import DeskError, WriteBack
from connectors.znuny import CONFIDENCE_FIELD, ROUTES, ZnunyClient
from shim.api.app import API_PREFIX
from shim.api.routes.znuny import INVOKE_PATH
from training.text import sample_data

SECRET = "invoker-secret-8b3f"
API_KEY = "api-key-for-the-rest-4c1a"
PRIORITY_MAP = {"priority": {"high": "4 high", "medium": "3 normal", "low": "2 low"}}
HTML = "<p>Hello,</p><p>I was charged twice for invoice 4471. Please refund one payment.</p>"
YAML_PATH = Path(__file__).resolve().parents[1] / "deploy" / "znuny" / "ticketserve-router.yml"
ANNA = USERS["anna"][0]
CONFIDENCE_KEY = f"OTRS_TicketDynamicFieldSet_{CONFIDENCE_FIELD}"


@pytest.fixture(scope="module")
def znuny() -> Iterator[ZnunyStandIn]:
    standin = ZnunyStandIn(queues=[*sample_data.QUEUES, "Postmaster", "Raw"]).start()
    yield standin
    standin.stop()


def service_env(znuny: ZnunyStandIn, work: Path, mode: str) -> dict[str, str]:
    (work / "password").write_text(PASSWORD + "\n")
    (work / "labels.json").write_text(json.dumps(PRIORITY_MAP))
    return {
        "TICKETSERVE_ZNUNY_URL": znuny.url,
        "TICKETSERVE_ZNUNY_USER": "ticketserve",
        "TICKETSERVE_ZNUNY_PASSWORD_FILE": str(work / "password"),
        "TICKETSERVE_ZNUNY_WEBHOOK_SECRET": SECRET,
        "TICKETSERVE_ZNUNY_MODE": mode,
        "TICKETSERVE_ZNUNY_QUEUES": ",".join(znuny.queues),
        "TICKETSERVE_CONNECTOR_LABEL_MAP": str(work / "labels.json"),
    }


@pytest.fixture(scope="module")
def service(
    trained_data_dir: Path, znuny: ZnunyStandIn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    work = tmp_path_factory.mktemp("znuny")
    env = service_env(znuny, work, "route")
    service = Service(copy_data_dir(trained_data_dir, work / "var"), env=env, api_key=API_KEY)
    service.start()
    service.wait_ready()
    yield service
    code = service.stop()
    service.cleanup()
    assert code == 0, service.log()


def new_ticket(znuny: ZnunyStandIn, title: str, body: str = HTML) -> int:
    return znuny.create_ticket(title, body, mime_type="text/html")


def answered_logs(service: Service) -> int:
    """Classify answers the predictions log holds (the default version's, queue head)."""
    versions = service.get("/api/v1/monitoring").json()["versions"]
    return sum(version["auto_route"]["queue"]["answers"] for version in versions)


def test_the_web_service_yaml_names_our_route_and_the_client_s_operations() -> None:
    """deploy/znuny: the invokers call our route on the right events, the provider has every
    operation the client calls, on the routes it calls."""
    service = yaml.safe_load(YAML_PATH.read_text())
    requester, provider = service["Requester"], service["Provider"]
    invokers = requester["Invoker"]
    assert {invoker["Type"] for invoker in invokers.values()} == {"Ticket::Generic"}
    events = {event["Event"]: event["Asynchronous"] for i in invokers.values()
              for event in i["Events"]}  # fmt: skip
    assert events == {"TicketCreate": "0", "TicketQueueUpdate": "1", "TicketPriorityUpdate": "1"}
    transport = requester["Transport"]
    assert transport["Type"] == "HTTP::REST"
    assert transport["Config"]["Authentication"]["AuthType"] == "BasicAuth"
    mapping = transport["Config"]["InvokerControllerMapping"]
    assert set(mapping) == set(invokers)
    assert {(m["Command"], m["Controller"]) for m in mapping.values()} == {
        ("POST", API_PREFIX + INVOKE_PATH)
    }
    types = {name: operation["Type"] for name, operation in provider["Operation"].items()}
    # Each operation is Znuny's of its name: Session::SessionCreate, Ticket::TicketGet, ...
    kind = {name: "Session" if name.startswith("Session") else "Ticket" for name in ROUTES}
    assert types == {name: f"{kind[name]}::{name}" for name in ROUTES}
    routes = provider["Transport"]["Config"]["RouteOperationMapping"]
    assert {name: (r["RequestMethod"], r["Route"]) for name, r in routes.items()} == {
        name: ([method], route) for name, (method, route) in ROUTES.items()
    }


@pytest.mark.parametrize(
    ("secret", "how", "status", "code"),
    [(None, "basic", 401, "secret_missing"), ("wrong", "basic", 403, "secret_wrong"),
     ("wrong", "header", 403, "secret_wrong")],
)  # fmt: skip
def test_a_missing_or_wrong_secret_is_refused_and_stores_nothing(
    service: Service, znuny: ZnunyStandIn, secret: str | None, how: str, status: int, code: str
) -> None:
    ticket_id = new_ticket(znuny, "Printer jams")
    before = answered_logs(service)
    refused = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), secret, how)
    assert refused.status_code == status and refused.json()["error"]["code"] == code
    assert answered_logs(service) == before  # not classified
    # Nothing was stored: the same invocation with the secret is a new ticket.
    accepted = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET, how)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["TicketServe"]["status"] == "accepted"


def test_a_new_ticket_gets_the_classify_answer_and_znuny_applies_it(
    service: Service, znuny: ZnunyStandIn
) -> None:
    ticket_id = new_ticket(znuny, "Invoice charged twice")
    answer = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET)
    assert answer.status_code == 200, answer.text
    fields = answer.json()
    outcome = fields["TicketServe"]
    assert outcome["status"] == "accepted" and outcome["ticket_id"] == str(ticket_id)
    # What the model answered, asked the usual way: the same cleaning, gate and labels.
    direct = service.post(
        "/api/v1/classify", json={"subject": "Invoice charged twice", "body": HTML,
                                  "content_type": "text/html"}
    ).json()  # fmt: skip
    queue, priority = direct["queue"], direct["priority"]
    assert ("OTRS_TicketQueueSet" in fields) == queue["auto_route"]
    if queue["auto_route"]:
        assert fields["OTRS_TicketQueueSet"] == queue["model_label"]  # equal names, no map
    assert ("OTRS_TicketPrioritySet" in fields) == priority["auto_route"]
    if priority["auto_route"]:
        assert fields["OTRS_TicketPrioritySet"] == PRIORITY_MAP["priority"][priority["model_label"]]
    note = fields["OTRS_TicketArticleAdd"]
    assert f"queue: {queue['model_label']}" in note["Body"]
    assert outcome["prediction_id"] in note["Body"]
    assert f"queue={queue['model_label']} {queue['confidence']:.2f}" in fields[CONFIDENCE_KEY]
    # Znuny's invoker applies the answer to the ticket, as user 1.
    assert CONFIDENCE_KEY in znuny.handle_response(ticket_id, fields)
    applied = znuny.deep_ticket(ticket_id)
    assert applied[f"DynamicField_{CONFIDENCE_FIELD}"] == fields[CONFIDENCE_KEY]
    assert applied["Queue"] == fields.get("OTRS_TicketQueueSet", "Postmaster")
    assert applied["Articles"][-1]["Body"] == note["Body"] and applied["ChangeBy"] == 1


def test_a_redelivery_answers_the_same_prediction_and_stores_nothing_twice(
    service: Service, znuny: ZnunyStandIn
) -> None:
    ticket_id = new_ticket(znuny, "VPN", "<p>The VPN drops every ten minutes.</p>")
    first = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET).json()
    logged = answered_logs(service)
    again = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET)
    assert again.status_code == 200, again.text
    repeated = again.json()
    assert repeated["TicketServe"]["status"] == "duplicate"
    assert repeated["TicketServe"]["prediction_id"] == first["TicketServe"]["prediction_id"]
    # The same decisions and confidences (the log keeps no top 3 for the note).
    for key in ("OTRS_TicketQueueSet", "OTRS_TicketPrioritySet", CONFIDENCE_KEY):
        assert repeated.get(key) == first.get(key), key
    assert answered_logs(service) == logged  # not classified again


def test_an_agent_s_move_becomes_feedback_and_our_own_changes_do_not(
    service: Service, znuny: ZnunyStandIn
) -> None:
    ticket_id = new_ticket(znuny, "Refund")
    created = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET).json()
    prediction_id = created["TicketServe"]["prediction_id"]
    znuny.handle_response(ticket_id, created)  # the invoker's own change, as user 1
    ours = invoke(service.base, "TicketQueueUpdate", znuny.deep_ticket(ticket_id), SECRET)
    assert ours.status_code == 200 and ours.json()["TicketServe"]["status"] == "ignored"
    moved_to = next(q for q in sample_data.QUEUES if q != created.get("OTRS_TicketQueueSet"))
    znuny.agent_update(ticket_id, ANNA, Queue=moved_to, Priority="4 high")
    moved = invoke(service.base, "TicketQueueUpdate", znuny.deep_ticket(ticket_id), SECRET)
    assert moved.status_code == 200, moved.text
    assert moved.json()["TicketServe"] == {
        "status": "feedback", "delivery": moved.json()["TicketServe"]["delivery"],
        "ticket_id": str(ticket_id), "prediction_id": prediction_id,
    }  # fmt: skip
    assert not {"OTRS_TicketQueueSet", "OTRS_TicketArticleAdd"} & set(moved.json())
    rows = service.get("/api/v1/feedback").json()["feedback"]
    [row] = [r for r in rows if r["prediction_id"] == prediction_id]
    assert row["labels"] == {"queue": moved_to, "priority": "high"}
    # Our REST user's change, and a move to a queue the model does not know, change nothing.
    znuny.agent_update(ticket_id, USERS["ticketserve"][0], Priority="2 low")
    by_us = invoke(service.base, "TicketPriorityUpdate", znuny.deep_ticket(ticket_id), SECRET)
    assert by_us.json()["TicketServe"]["status"] == "ignored"
    znuny.agent_update(ticket_id, ANNA, Queue="Raw")
    unknown = invoke(service.base, "TicketQueueUpdate", znuny.deep_ticket(ticket_id), SECRET)
    assert unknown.json()["TicketServe"]["status"] == "ignored"
    rows = service.get("/api/v1/feedback").json()["feedback"]
    [row] = [r for r in rows if r["prediction_id"] == prediction_id]
    assert row["labels"] == {"queue": moved_to, "priority": "high"}


def test_bad_bodies_and_tickets_without_a_customer_article(
    service: Service, znuny: ZnunyStandIn
) -> None:
    url = f"{service.base}{API_PREFIX}{INVOKE_PATH}"
    headers = {"X-TicketServe-Secret": SECRET, "Content-Type": "application/json"}
    for body in (b"not json", b'{"Ticket": {"TicketID": 1}}', b"[]", b'{"Ticket": {}}'):
        bad = requests.post(url, data=body, headers=headers, timeout=30)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_payload"
    ticket_id = new_ticket(znuny, "Phone call")
    ticket = znuny.deep_ticket(ticket_id)
    ticket["Articles"][0]["SenderType"] = "agent"
    ignored = invoke(service.base, "TicketCreate", ticket, SECRET)
    assert ignored.status_code == 200 and ignored.json()["TicketServe"]["status"] == "ignored"
    assert set(ignored.json()) == {"TicketServe"}


def test_suggest_mode_answers_no_fields_and_the_start_up_check_is_reported(
    trained_data_dir: Path, znuny: ZnunyStandIn, tmp_path: Path
) -> None:
    env = {**service_env(znuny, tmp_path, "suggest"), "TICKETSERVE_ZNUNY_PASSWORD": "wrong"}
    env.pop("TICKETSERVE_ZNUNY_PASSWORD_FILE")
    with running_copy(trained_data_dir, tmp_path / "var", env=env) as service:
        ticket_id = new_ticket(znuny, "Invoice charged twice")
        answer = invoke(service.base, "TicketCreate", znuny.deep_ticket(ticket_id), SECRET)
        assert answer.status_code == 200, answer.text
        assert {"OTRS_TicketArticleAdd", CONFIDENCE_KEY, "TicketServe"} == set(answer.json())
        assert "suggest mode" in answer.json()["OTRS_TicketArticleAdd"]["Body"]
        deadline = time.monotonic() + 30
        while service.get("/readyz").json()["connectors"] == {} and time.monotonic() < deadline:
            time.sleep(0.2)
        problem = service.get("/readyz").json()["connectors"]["znuny"]
        assert "SessionCreate.AuthFail" in problem
        stats = service.get("/api/v1/monitoring").json()["connectors"]["znuny"]
        assert stats["mode"] == "suggest" and stats["problem"] == problem
        assert stats["pending"] == 0  # answered in the request: nothing waits in the outbox


def test_the_client_reads_closed_tickets_page_by_page_and_writes_back(
    znuny: ZnunyStandIn,
) -> None:
    """History: closed tickets changed since the date, oldest change first, each once, across
    pages that split tickets closed in the same second; a session Znuny ended is made again."""
    same = datetime(2023, 6, 1, 12, 0, 0)
    closed = [znuny.create_ticket(f"old {n}", f"body {n}", state="closed successful",
                                  changed=same if n < 4 else datetime(2023, 5, 1 + n))
              for n in range(6)]  # fmt: skip
    client = ZnunyClient(znuny.url, "ticketserve", PASSWORD, timeout_s=10)
    assert client.check() is None and client.own_user_id() == str(USERS["ticketserve"][0])
    read, cursor, pages = [], None, 0
    while True:
        page = client.history("2023-05-01", cursor, 2)
        read += [t for t in page.tickets if int(t.ticket_id) in closed]
        pages, cursor = pages + 1, page.cursor
        if cursor is None:
            break
        znuny.sessions.clear()  # Znuny ended the session: the client logs in again
    assert [int(t.ticket_id) for t in read] == closed[4:] + closed[:4]  # oldest change first
    assert read[0].body == "body 4" and read[0].queue == "Postmaster" and pages >= 3
    assert read[0].priority == "3 normal" and read[0].content_type == "text/plain"
    client.write(WriteBack(str(closed[0]), queue="Raw", priority="4 high", note="moved"))
    assert znuny.updates[-1][1]["Ticket"] == {"Queue": "Raw", "Priority": "4 high"}
    with pytest.raises(DeskError, match="InvalidParameter") as refused:
        client.write(WriteBack(str(closed[0]), queue="No such queue"))
    assert refused.value.permanent
    with pytest.raises(ValueError, match="cursor"):
        client.history("2023-05-01", "garbage", 2)
    wrong = ZnunyClient(znuny.url, "ticketserve", "wrong").check()
    assert wrong is not None and "AuthFail" in wrong


def test_no_secret_reaches_a_log_or_the_data_directory(service: Service) -> None:
    files = [p for p in service.data_dir.rglob("*") if p.is_file()]
    files += list(service.data_dir.parent.glob("*.log"))
    for path in files:
        content = path.read_bytes()
        for secret in (SECRET, PASSWORD, API_KEY):
            assert secret.encode() not in content, f"a secret in {path}"
