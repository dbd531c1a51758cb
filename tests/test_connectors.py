"""The help-desk knowledge of connectors/ without a service: Zammad's signature and payload,
the label map, and what a write-back holds in each mode."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from connectors.label_map import LabelMap, LabelMapError
from connectors.writeback import plan_write
from connectors.zammad import PayloadError, signature_valid, ticket_from_payload

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
