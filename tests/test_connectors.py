"""The help-desk knowledge of connectors/ without a service: Zammad's signature and payload,
Znuny's invoker requests and answers, the label map, and what a write-back holds in each
mode."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from connectors import znuny
from connectors.base import desk_fields
from connectors.label_map import LabelMap, LabelMapError
from connectors.writeback import plan_write
from connectors.zammad import PayloadError, signature_valid, ticket_from_payload
from handlers.ticket_requests import MAX_FIELD_CHARS, MAX_FIELDS

ANSWER = {
    "prediction_id": "0190abc",
    "model_version": 2,
    "queue": {"model_label": "Billing", "confidence": 0.93, "auto_route": True,
              "top_k": [["Billing", 0.93], ["IT", 0.05]]},
    "priority": {"model_label": "high", "confidence": 0.55, "auto_route": False,
                 "top_k": [["high", 0.55], ["low", 0.45]]},
}  # fmt: skip
NAMES = {"queue": ["billing", "IT"], "priority": ["1 low", "2 normal", "3 high"]}


def test_the_signature_is_hmac_sha1_of_the_exact_body() -> None:
    body = b'{"ticket": {"id": 1}}'
    good = hmac.new(b"s3cret", body, hashlib.sha1).hexdigest()
    assert signature_valid(body, f"sha1={good}", "s3cret")
    assert signature_valid(body, f"SHA1={good.upper()}", "s3cret")
    assert not signature_valid(body + b" ", f"sha1={good}", "s3cret")
    assert not signature_valid(body, f"sha1={good}", "other")
    assert not signature_valid(body, "", "s3cret")


def test_only_a_customer_s_article_is_a_ticket_to_route() -> None:
    article = {"sender": "Customer", "body": "<p>x</p>", "content_type": "text/html"}
    ticket = ticket_from_payload({"ticket": {"id": 7, "title": "VPN"}, "article": article})
    assert ticket is not None and (ticket.ticket_id, ticket.subject) == ("7", "VPN")
    assert ticket.content_type == "text/html"
    for other in ({**article, "sender": "Agent"}, {**article, "internal": True}, {}):
        assert ticket_from_payload({"ticket": {"id": 7}, "article": other}) is None
    for bad in ([], {"ticket": 1}, {"ticket": {"id": None}}, {"ticket": {"id": True}},
                {"ticket": {"id": 1}, "article": "x"}):  # fmt: skip
        with pytest.raises(PayloadError):
            ticket_from_payload(bad)


def test_route_sets_only_gated_mapped_fields_and_notes_everything() -> None:
    labels = LabelMap({"priority": {"high": "3 high"}})
    routed = plan_write("7", ANSWER, "route", labels, NAMES)
    assert (routed.queue, routed.priority) == ("billing", None)  # priority is below its gate
    assert "queue: Billing (0.93, set)" in routed.note and "prediction 0190abc" in routed.note
    suggested = plan_write("7", ANSWER, "suggest", labels, NAMES)
    assert not suggested.sets_fields() and "suggested" in suggested.note
    unmapped = plan_write("7", ANSWER, "route", LabelMap(), {"queue": ["IT"], "priority": []})
    assert unmapped.queue is None and unmapped.unmapped == ["queue=Billing", "priority=high"]


def test_the_note_lists_the_three_most_similar_stored_tickets() -> None:
    similar = [
        {"id": f"upload:{i}", "labels": {"queue": "Billing", "priority": "low"},
         "similarity": 0.9 - i / 10, "text": f"ticket {i} " + "long " * 40}
        for i in range(5)
    ]  # fmt: skip
    note = plan_write("7", {**ANSWER, "similar": similar}, "suggest", LabelMap(), NAMES).note
    lines = note.splitlines()
    start = lines.index("similar tickets:")
    assert lines[start + 1].startswith("- upload:0 (Billing, low; 0.90): ticket 0 long")
    assert [line.split()[1] for line in lines[start + 1 : start + 4]] == [
        "upload:0", "upload:1", "upload:2"
    ]  # fmt: skip
    assert all(len(line) < 160 for line in lines) and "upload:3" not in note
    for none in (None, []):
        plain = plan_write("7", {**ANSWER, "similar": none}, "suggest", LabelMap(), NAMES).note
        assert "similar tickets" not in plain


def test_a_label_map_file_is_checked(tmp_path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({"queue": {"Billing": "Finance"}}))
    assert LabelMap.from_file(path).target("queue", "Billing", []) == "Finance"
    for bad in ("[]", '{"team": {}}', '{"queue": {"a": 1}}', "not json"):
        path.write_text(bad)
        with pytest.raises(LabelMapError, match="map.json"):
            LabelMap.from_file(path)
    with pytest.raises(LabelMapError, match="cannot read"):
        LabelMap.from_file(tmp_path / "missing.json")


def test_an_update_by_someone_else_is_a_change() -> None:
    from connectors.zammad import DeskChange, change_from_payload

    ticket = {"id": 5, "group": {"name": "Sales"}, "priority": {"name": "3 high"},
              "updated_by": {"login": "anna"}}  # fmt: skip
    assert change_from_payload({"ticket": ticket}, "bot") == DeskChange("5", "Sales", "3 high")
    assert change_from_payload({"ticket": ticket}, "anna") is None  # our own update
    assert change_from_payload({"ticket": ticket}, None) is None  # who we are is unknown
    assert change_from_payload({"ticket": {"id": 5}}, "bot") is None
    assert change_from_payload([], "bot") is None
    labels = LabelMap({"priority": {"high": "3 high"}})
    assert labels.source("priority", "3 high") == "high"
    assert labels.source("queue", "Sales") == "Sales"


def test_znuny_s_secret_comes_as_basic_auth_password_or_header() -> None:
    basic = "Basic " + base64.b64encode(b"znuny:s3:cret").decode()
    assert znuny.given_secret(basic, None) == "s3:cret"  # the user name is free
    assert znuny.given_secret(None, "s3cret") == "s3cret"
    assert znuny.given_secret(None, None) is None
    assert znuny.given_secret("Basic !!!", None) == ""  # not base64: a wrong credential
    assert znuny.given_secret("Bearer s3cret", None) == ""
    assert znuny.given_secret("Bearer x", "s3cret") == "s3cret"
    assert znuny.secret_valid("s3cret", "s3cret") and not znuny.secret_valid("s3cre", "s3cret")
    assert not znuny.secret_valid("", "s3cret") and znuny.secret_valid("pässwort", "pässwort")


HTML_ARTICLE = {"SenderType": "customer", "Body": "<p>VPN down</p>",
                "ContentType": "text/html; charset=utf-8"}  # fmt: skip


def invocation(event: str, **ticket: object) -> znuny.Invocation:
    """What a Ticket::Generic invoker sends for `event`, the ticket's fields overridden."""
    articles = [{"SenderType": "agent", "Body": "internal", "MimeType": "text/plain"},
                HTML_ARTICLE, {"SenderType": "customer", "Body": "again"}]  # fmt: skip
    fields = {"TicketID": "42", "Title": "VPN", "Queue": "IT", "Priority": "4 high",
              "ChangeBy": 7, "Articles": articles, **ticket}  # fmt: skip
    return znuny.invocation_from_payload({"Ticket": fields, "Event": {"Event": event}})


def test_a_znuny_invocation_is_read_from_the_ticket_and_its_first_customer_article() -> None:
    created = invocation("TicketCreate")
    assert created.is_new_ticket and not created.is_change and created.ticket is not None
    assert (created.ticket.ticket_id, created.ticket.subject) == ("42", "VPN")
    assert (created.ticket.body, created.ticket.content_type) == ("<p>VPN down</p>", "text/html")
    one = invocation("TicketCreate", TicketID=42, Articles=None, Article=HTML_ARTICLE).ticket
    assert one is not None and one.ticket_id == "42" and one.body == "<p>VPN down</p>"
    plain = invocation("TicketCreate", Articles=[{"SenderType": "customer", "Body": "x"}]).ticket
    assert plain is not None and plain.content_type == "text/plain"
    assert invocation("TicketCreate", Articles=[{"SenderType": "agent"}]).ticket is None
    moved = invocation("TicketQueueUpdate")
    assert moved.is_change and moved.names() == {"queue": "IT", "priority": "4 high"}
    assert moved.changed_by == "7"


@pytest.mark.parametrize(
    "bad",
    [[], {"Ticket": []}, {"Ticket": {"TicketID": 1}}, {"Ticket": {"TicketID": 1}, "Event": {}},
     {"Ticket": {"TicketID": "1; DROP"}, "Event": {"Event": "TicketCreate"}},
     {"Ticket": {"TicketID": True}, "Event": {"Event": "TicketCreate"}},
     {"Ticket": {"TicketID": "9" * 21}, "Event": {"Event": "TicketCreate"}},
     {"Ticket": {"TicketID": 0}, "Event": {"Event": "TicketCreate"}},
     {"Ticket": {"TicketID": 1}, "Event": {"Event": "X" * 101}}],
)  # fmt: skip
def test_what_is_no_znuny_invocation_says_what_is_missing(bad: object) -> None:
    with pytest.raises(znuny.PayloadError, match="Ticket|Event"):
        znuny.invocation_from_payload(bad)


def test_a_ticket_s_scalar_attributes_are_its_classify_fields() -> None:
    """What a model trained with feature columns reads of a help desk's ticket: Znuny's Type,
    Service, dynamic fields (either shape); Zammad's own attributes; never nested objects,
    empty values or more than the request allows."""
    ticket = invocation("TicketCreate", Type="Incident", Service="Email", SLA="",
                        DynamicField_Channel="phone", CustomerUserID=None,
                        DynamicField=[{"Name": "Tier", "Value": "gold"}, {"Name": "X"}],
                        Owner={"UserLogin": "x"}).ticket  # fmt: skip
    assert ticket is not None
    fields = ticket.fields
    assert fields["Type"] == "Incident" and fields["Service"] == "Email"
    assert fields["DynamicField_Channel"] == "phone" and fields["DynamicField_Tier"] == "gold"
    assert "SLA" not in fields and "Owner" not in fields and "CustomerUserID" not in fields
    zammad = ticket_from_payload({
        "ticket": {"id": 7, "title": "VPN", "type": "Incident", "priority": {"name": "3 high"},
                   "escalated": False, "tier": "x" * 500},
        "article": {"sender": "Customer", "body": "VPN down"},
    })  # fmt: skip
    assert zammad is not None and zammad.fields["type"] == "Incident"
    assert zammad.fields["escalated"] == "false" and "priority" not in zammad.fields
    assert len(zammad.fields["tier"]) == MAX_FIELD_CHARS
    many = desk_fields((f"f{i}", i) for i in range(MAX_FIELDS + 10))
    assert len(many) == MAX_FIELDS and many["f0"] == "0"


def test_a_znuny_change_by_the_invoker_or_our_user_is_ours() -> None:
    def ours(user: object) -> bool:
        return znuny.is_ours(invocation("TicketQueueUpdate", ChangeBy=user), "3")

    assert ours(1) and ours("3") and ours(None) and ours("root")  # the invoker, us, unknown
    assert not ours(7) and not ours("12")


def test_the_znuny_answer_holds_the_note_the_confidences_and_routed_fields_only() -> None:
    labels = LabelMap({"priority": {"high": "4 high"}})
    routed = znuny.invoker_answer(plan_write("7", ANSWER, "route", labels, NAMES), ANSWER)
    assert routed["OTRS_TicketQueueSet"] == "billing" and "OTRS_TicketPrioritySet" not in routed
    note = routed["OTRS_TicketArticleAdd"]
    assert note["Subject"] and note["HistoryType"] == "AddNote" and note["HistoryComment"]
    assert "prediction 0190abc" in note["Body"]
    confidence = routed[f"OTRS_TicketDynamicFieldSet_{znuny.CONFIDENCE_FIELD}"]
    assert confidence == "queue=Billing 0.93; priority=high 0.55"
    suggested = znuny.invoker_answer(plan_write("7", ANSWER, "suggest", labels, NAMES), ANSWER)
    assert not {"OTRS_TicketQueueSet", "OTRS_TicketPrioritySet"} & set(suggested)
    # An answer rebuilt from the predictions log has no top 3: the note leaves them out.
    logged = {**ANSWER, "queue": {**ANSWER["queue"], "top_k": []}}
    assert "queue: Billing (0.93, set)\n" in plan_write("7", logged, "route", labels, NAMES).note
