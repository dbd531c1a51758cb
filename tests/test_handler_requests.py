"""Request parsing and answer formatting of the TorchServe handler (pure Python, no torch)."""

from __future__ import annotations

import json
import re

import pytest

from handlers.ticket_requests import (
    MAX_FIELD_CHARS,
    MAX_FIELDS,
    MAX_TICKETS_PER_REQUEST,
    BadRequest,
    batch_answers,
    parse_request,
    parse_row,
    plan_batch,
)


def prediction(queue: str = "Billing", priority: str = "high") -> dict:
    return {
        "queue": {"label": queue, "confidence": 0.8, "top_k": [[queue, 0.8], ["Other", 0.2]]},
        "priority": {"label": priority, "confidence": 0.6, "top_k": [[priority, 0.6]]},
    }


def test_ticket_data_is_one_ticket() -> None:
    parsed = parse_request({"ticket_data": "  printer broken \n"})
    assert (parsed.texts, parsed.is_list) == (["printer broken"], False)


def test_subject_and_body_are_joined_as_in_training() -> None:
    parsed = parse_request({"subject": " Invoice ", "body": "charged twice"})
    assert parsed.texts == ["Invoice\ncharged twice"]


def test_subject_or_body_alone_is_enough() -> None:
    assert parse_request({"subject": "VPN down"}).texts == ["VPN down"]
    assert parse_request({"body": "VPN down", "subject": None}).texts == ["VPN down"]


def test_tickets_list_mixes_both_forms_and_strings() -> None:
    parsed = parse_request({"tickets": [{"ticket_data": "a"}, {"subject": "b", "body": "c"}, "d"]})
    assert (parsed.texts, parsed.is_list) == (["a", "b\nc", "d"], True)


def test_bare_list_is_a_tickets_list() -> None:
    parsed = parse_request([{"ticket_data": "a"}, "b"])
    assert (parsed.texts, parsed.is_list) == (["a", "b"], True)


def test_plain_text_body() -> None:
    assert parse_request("my screen flickers").texts == ["my screen flickers"]


def test_bytes_are_decoded_by_content_type() -> None:
    body = json.dumps({"ticket_data": "Drucker kaputt"}).encode()
    assert parse_request(body, "application/json; charset=utf-8").texts == ["Drucker kaputt"]
    assert parse_request(b"plain words", "application/octet-stream").texts == ["plain words"]


@pytest.mark.parametrize(
    ("payload", "content_type", "message"),
    [
        (None, None, "empty request body"),
        ({}, None, "needs 'ticket_data' or 'subject'/'body'"),
        ({"text": "x"}, None, "got 'text'"),
        ({"ticket_data": "   "}, None, "'ticket_data' is empty"),
        ({"ticket_data": 42}, None, "'ticket_data' must be a string, not int"),
        ({"ticket_data": "a", "subject": "b"}, None, "not both"),
        ({"subject": "", "body": " "}, None, "both empty"),
        ({"tickets": []}, None, "'tickets' is an empty list"),
        ({"tickets": "abc"}, None, "'tickets' must be a list"),
        ({"tickets": ["ok", {"ticket_data": ""}]}, None, "tickets[1]: 'ticket_data' is empty"),
        ({"tickets": ["ok", 3]}, None, "tickets[1] must be an object or a string"),
        ({"tickets": ["a"], "ticket_data": "b"}, None, "cannot be combined with ticket_data"),
        (b"{not json", "application/json", "not valid JSON"),
        (b"\xff\xfe", "text/plain", "not UTF-8"),
        (12, None, "not int"),
    ],
)
def test_bad_requests_name_the_problem(payload: object, content_type: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        parse_request(payload, content_type)


def test_too_many_tickets() -> None:
    with pytest.raises(BadRequest, match=f"at most {MAX_TICKETS_PER_REQUEST}"):
        parse_request({"tickets": ["x"] * (MAX_TICKETS_PER_REQUEST + 1)})


def test_rows_as_torchserve_hands_them_over() -> None:
    assert parse_row({"body": {"ticket_data": "a"}}).texts == ["a"]
    assert parse_row({"data": "b"}).texts == ["b"]
    # an HTML form post: one field per name, values as bytes
    assert parse_row({"ticket_data": b"c"}).texts == ["c"]
    assert parse_row({"subject": b"d", "body": b"e"}).texts == ["d\ne"]


def test_json_sent_as_form_data_gets_a_hint() -> None:
    # TorchServe parses a form body; JSON sent that way (curl -d) leaves no fields at all
    with pytest.raises(BadRequest, match="Content-Type: application/json"):
        parse_row({}, "application/x-www-form-urlencoded")


def test_batch_answers_each_request_in_order_and_isolates_bad_ones() -> None:
    plan = plan_batch(
        [
            ({"body": {"ticket_data": "one"}}, "application/json"),
            ({"body": {"nonsense": True}}, "application/json"),
            ({"body": {"tickets": ["two", "three"]}}, "application/json"),
        ]
    )
    assert plan.texts == ["one", "two", "three"]
    assert plan.bad == 1
    answers = batch_answers(
        plan, [prediction("A"), prediction("B"), prediction("C", "low")], model_version="3"
    )
    assert [status for status, _ in answers] == [200, 400, 200]

    single = answers[0][1]
    assert single["predicted_label"] == "A" and single["confidence"] == 0.8
    assert single["queue"]["label"] == "A" and single["priority"]["label"] == "high"
    assert single["model_version"] == "3"

    error = answers[1][1]
    assert error["code"] == 400 and "needs 'ticket_data'" in error["message"]

    listed = answers[2][1]["predictions"]
    assert [p["predicted_label"] for p in listed] == ["B", "C"]
    assert listed[1]["priority"]["label"] == "low"
    assert all(p["model_version"] == "3" for p in listed)


def test_all_bad_batch_needs_no_predictions() -> None:
    plan = plan_batch([({"body": None}, None)])
    assert plan.texts == []
    assert batch_answers(plan, [], None)[0][0] == 400


def test_model_with_only_a_priority_head_reports_it_as_predicted_label() -> None:
    plan = plan_batch([({"body": "x"}, "text/plain")])
    only_priority = {"priority": {"label": "low", "confidence": 0.9, "top_k": [["low", 0.9]]}}
    answer = batch_answers(plan, [only_priority], "1")[0][1]
    assert answer["predicted_label"] == "low" and "queue" not in answer


def test_prediction_count_must_match_the_tickets() -> None:
    plan = plan_batch([({"body": "x"}, None)])
    with pytest.raises(ValueError, match="0 predictions for 1 tickets"):
        batch_answers(plan, [], "1")


def test_fields_are_read_per_ticket_and_bounded() -> None:
    parsed = parse_request(
        {"tickets": [{"ticket_data": "a", "fields": {"type": "Incident", "n": 3, "ok": True,
                                                      "gone": None}},
                     {"ticket_data": "b"}]}
    )  # fmt: skip
    assert [t.fields for t in parsed.tickets] == [
        {"type": "Incident", "n": "3", "ok": "true"},
        None,
    ]
    single = parse_request({"subject": "x", "fields": {"channel": "mail"}})
    assert single.tickets[0].fields == {"channel": "mail"}
    plan = plan_batch([({"body": {"ticket_data": "a", "fields": {"k": "v"}}}, None)])
    assert plan.fields == [{"k": "v"}]
    for bad, message in (
        ({"fields": []}, "'fields' must be an object"),
        ({"fields": {"a": {"b": 1}}}, "must be text, a number or null"),
        ({"fields": {f"f{i}": "x" for i in range(MAX_FIELDS + 1)}}, f"at most {MAX_FIELDS}"),
        ({"fields": {"a": "x" * (MAX_FIELD_CHARS + 1)}}, f"at most {MAX_FIELD_CHARS}"),
        ({"fields": {"a" * 65: "x"}}, "is longer than 64"),
    ):
        with pytest.raises(BadRequest, match=re.escape(message)):
            parse_request({"ticket_data": "t", **bad})
