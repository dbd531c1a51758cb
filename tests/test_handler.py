"""The TorchServe handler in this process, against a fake TorchServe context: milliseconds, no JVM.

The archive is built from a real (tiny) trained model and unpacked as TorchServe unpacks it; the
handler class is imported from there, with the archive's own copies of the modules it imports.
Requests arrive as TorchServe hands them over: one row per request, a JSON body already parsed,
any other body as bytes, headers per request. The same handler behind the real TorchServe is
tested in test_torchserve.py.
"""

from __future__ import annotations

import ast
import json
import shutil
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from handler_context import FakeContext, archive_handler, unpack

from training.export.archive import build_archive
from training.export.predict import Predictor
from training.inference.similar_index import excerpt
from training.text.data import load_tickets


@pytest.fixture(scope="module")
def unpacked(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    archive = build_archive(tiny_model.model_dir, tmp_path_factory.mktemp("store"), version="3")
    return unpack(archive, tmp_path_factory.mktemp("unpacked"))


@pytest.fixture(scope="module")
def handler(unpacked: Path) -> Any:
    """The archive's handler, initialised as a TorchServe worker initialises it."""
    return archive_handler(unpacked)


JSON = {"Content-Type": "application/json"}


def answers(handler: Any, context: FakeContext, rows: list[dict]) -> list[dict]:
    return [json.loads(raw) for raw in handler.handle(rows, context)]


def test_a_batch_answers_each_request_with_its_own_status(handler: Any, unpacked: Path) -> None:
    context = FakeContext(unpacked).batch([JSON, JSON, {"Content-Type": "text/plain"}, JSON])
    rows = [
        {"body": {"ticket_data": "Mein Drucker druckt nicht mehr"}},
        {"body": {"tickets": [{"subject": "Invoice", "body": "charged twice"}, {"body": "VPN"}]}},
        {"body": bytearray(b"Laptop screen is cracked")},
        {"body": {"ticket_data": "   "}},
    ]
    single, listed, plain, bad = answers(handler, context, rows)
    assert context.statuses == {3: (400, "Bad Request")}  # only the bad request's status is set
    assert context.content_types == dict.fromkeys(range(4), "application/json")
    assert bad["code"] == 400 and "'ticket_data' is empty" in bad["message"]
    for answer in (single, plain, *listed["predictions"]):
        assert answer["model_version"] == "3"
        assert answer["predicted_label"] == answer["queue"]["label"]
        for head in ("queue", "priority"):
            top = answer[head]["top_k"]
            assert top[0] == [answer[head]["label"], answer[head]["confidence"]]
        assert 0 <= answer["rare_token_share"] <= 1  # for the service's drift watch
    assert len(listed["predictions"]) == 2
    # one batch, four requests, four tickets (the bad request has none), counted as TorchServe
    # metrics
    assert context.metrics.counters == Counter(
        TicketBatches=1, TicketBatchRequests=4, TicketsClassified=4
    )


def test_batched_answers_are_the_trained_model_s(handler: Any, unpacked: Path, tiny_model) -> None:
    """Batching (padding to the longest, sorting by length) changes no answer: each equals the
    training code's own prediction for that ticket alone."""
    texts = tiny_model.probe_texts
    expected = Predictor.load(tiny_model.model_dir, device="cpu").predict(texts)
    context = FakeContext(unpacked).batch([JSON] * len(texts))
    got = answers(handler, context, [{"body": {"ticket_data": text}} for text in texts])
    for answer, want in zip(got, expected, strict=True):
        for head in ("queue", "priority"):
            assert answer[head]["label"] == want[head]["label"]
            assert answer[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=1e-5)


def test_a_failing_pass_fails_each_request_alone_never_a_neighbour(
    handler: Any, unpacked: Path
) -> None:
    """When the batched pass raises, every request is answered alone: a bad one keeps its own
    400, one that fails again gets its own 500, and the handler keeps serving afterwards."""
    rows = [{"body": {"ticket_data": "VPN drops"}}, {"body": {"ticket_data": ""}}]
    handler.forward_batch_size = 0  # every forward pass now raises
    try:
        context = FakeContext(unpacked).batch([JSON, JSON])
        failed, bad = answers(handler, context, rows)
        assert context.statuses == {0: (500, "Internal Server Error"), 1: (400, "Bad Request")}
        assert failed["code"] == 500 and "could not be classified" in failed["message"]
        assert bad["code"] == 400
        with pytest.raises(ValueError):  # a batch of one raises: TorchServe answers it 500
            handler.handle(rows[:1], FakeContext(unpacked).batch([JSON]))
    finally:
        handler.forward_batch_size = 128
    context = FakeContext(unpacked).batch([JSON])
    [again] = answers(handler, context, rows[:1])
    assert context.statuses == {} and "queue" in again


MAIL = (
    "From: Anna Miller <anna.miller@example.com>\r\nSubject: Invoice charged twice\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n"
    "<p>Hi team,</p><p>my card was charged twice, IBAN DE89 3704 0044 0532 0130 00.</p>"
    "<blockquote>On Mon, Support wrote: did the VPN reset work?</blockquote>\r\n"
)


def test_mail_is_cleaned_by_the_archive_s_copy_as_in_process(
    handler: Any, unpacked: Path, tiny_model
) -> None:
    """HTML and whole mails are read as the model read its training data (the archive's
    ticket_cleaning.py): the same answers as the in-process predictor on the cleaned text; a
    mail that is only a quote is a 400 naming it."""
    predictor = Predictor.load(tiny_model.model_dir, device="cpu")
    html = "<p>Mein <b>Drucker</b> druckt nicht</p><blockquote>Rechnung doppelt</blockquote>"
    cleaned = [predictor.cleaning.ticket(None, html, "text/html"),
               predictor.cleaning.ticket(None, MAIL, "message/rfc822")]  # fmt: skip
    assert cleaned == [
        "Mein Drucker druckt nicht",
        "Invoice charged twice\nHi team,\n\nmy card was charged twice, IBAN [IBAN].",
    ]
    rows = [
        {"body": {"ticket_data": html, "content_type": "text/html"}},
        {"body": bytearray(MAIL.encode())},
        {"body": {"body": "> only an old quote", "content_type": "text/plain"}},
        {"body": {"ticket_data": "x", "content_type": "text/rtf"}},
    ]
    mail_header = {"Content-Type": "message/rfc822"}
    context = FakeContext(unpacked).batch([JSON, mail_header, JSON, JSON])
    got = answers(handler, context, rows)
    expected = predictor.predict(cleaned)
    for answer, want in zip(got[:2], expected, strict=True):
        for head in ("queue", "priority"):
            assert answer[head]["label"] == want[head]["label"]
            assert answer[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=1e-5)
    assert context.statuses == {2: (400, "Bad Request"), 3: (400, "Bad Request")}
    assert "nothing is left after cleaning" in got[2]["message"]
    assert "'content_type' must be one of" in got[3]["message"]


def test_a_per_class_gate_routes_alike_in_the_archive_and_in_process(
    handler: Any, tiny_model, tmp_path: Path
) -> None:
    """A model whose queue gate holds a threshold per class (`gate: class`), carried in its
    ticket_model.json into the archive: the handler and the in-process Predictor route the same
    answers, each at its predicted class's threshold (a class without one never routes)."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model.model_dir, model_dir)
    texts = [*tiny_model.probe_texts, "VPN keeps dropping", "Refund for order 4411", "Hello"]
    before = Predictor.load(model_dir, device="cpu").predict(texts)
    first = before[0]["queue"]
    routed = first["label"]  # opens at the first ticket's own confidence; every other is closed
    settings_file = model_dir / "ticket_model.json"
    settings = json.loads(settings_file.read_text())
    settings["gate"]["queue"] = {"classes": {routed: first["confidence"]}, "target_precision": 0.9}
    settings["gate"]["priority"] = {"threshold": 0.0, "target_precision": 0.9}
    settings_file.write_text(json.dumps(settings))
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(build_archive(model_dir, tmp_path / "store", version="4")) as mar:
        mar.extractall(unpacked)
    served = type(handler)()  # the archive's handler class, on the per-class archive
    served.initialize(FakeContext(unpacked))
    got = answers(
        served,
        FakeContext(unpacked).batch([JSON] * len(texts)),
        [{"body": {"ticket_data": text}} for text in texts],
    )
    expected = Predictor.load(model_dir, device="cpu").predict(texts)
    for answer, want in zip(got, expected, strict=True):
        for head in ("queue", "priority"):
            assert answer[head]["auto_route"] == want[head]["auto_route"]
        queue = want["queue"]
        assert queue["auto_route"] == (
            queue["label"] == routed and queue["confidence"] >= first["confidence"]
        )
        assert want["priority"]["auto_route"]
    assert expected[0]["queue"]["auto_route"]
    assert not all(want["queue"]["auto_route"] for want in expected), "some answers stay closed"


def test_similar_tickets_come_from_the_archive_s_index(
    handler: Any, unpacked: Path, tiny_model
) -> None:
    """A request with `similar: k` gets, per ticket, the k stored tickets nearest to it (a
    training ticket's own text finds it first); a request without it has no `similar` key,
    even in the same batch; a bad k is that request's own 400."""
    data = load_tickets(tiny_model.data_path)
    row = data.frame.iloc[7]
    rows = [
        {"body": {"ticket_data": row["text"], "similar": 3}},
        {"body": {"ticket_data": row["text"]}},
        {"body": {"tickets": [{"ticket_data": row["text"]}, "VPN drops"], "similar": 20}},
        {"body": {"ticket_data": "x", "similar": 21}},
        {"body": {"ticket_data": "x", "similar": True}},
        {"body": {"ticket_data": "x", "similar": 0}},
    ]
    context = FakeContext(unpacked).batch([JSON] * len(rows))
    asked, plain, listed, too_many, boolean, zero = answers(handler, context, rows)
    assert context.statuses == {3: (400, "Bad Request"), 4: (400, "Bad Request")}
    assert "'similar' must be a whole number from 0 to 20" in too_many["message"]
    assert "'similar' must be" in boolean["message"]
    assert "similar" not in plain and "similar" not in zero
    hits = asked["similar"]
    assert len(hits) == 3
    assert hits[0]["text"] == excerpt(row["text"])
    assert hits[0]["similarity"] == pytest.approx(1, abs=2e-3)
    assert hits[0]["labels"] == {"queue": row["queue"], "priority": row["priority"]}
    assert [h["similarity"] for h in hits] == sorted((h["similarity"] for h in hits), reverse=True)
    first, second = listed["predictions"]
    assert first["similar"][:3] == hits and len(first["similar"]) == 20
    assert len(second["similar"]) == 20
    assert asked["queue"] == plain["queue"]  # the lookup changes no answer


def test_a_model_without_an_index_answers_similar_as_null(
    handler: Any, tiny_model, tmp_path: Path
) -> None:
    """A model trained without the index (`similar_tickets` off, or before it existed)."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model.model_dir, model_dir)
    for name in ("similar_vectors.npy", "similar_tickets.json"):
        (model_dir / name).unlink()
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(build_archive(model_dir, tmp_path / "store", version="5")) as mar:
        mar.extractall(unpacked)
    served = type(handler)()
    served.initialize(FakeContext(unpacked))
    [answer] = answers(
        served, FakeContext(unpacked).batch([JSON]), [{"body": {"ticket_data": "x", "similar": 2}}]
    )
    assert answer["similar"] is None and "queue" in answer


def test_the_handler_module_defines_one_class() -> None:
    """TorchServe loads the handler module's only class as the handler; a second class in it
    (a NamedTuple, say) fails every worker at load."""
    source = Path(__file__).resolve().parents[1] / "handlers" / "ticket_handler.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    classes = [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    assert classes == ["TicketHandler"]


def test_fields_reach_the_model_through_the_archive(
    handler: Any, tiny_fields_model, tmp_path: Path
) -> None:
    """A model trained with a feature column (language): each ticket's `fields` are read by
    the archive's handler as in process; an unknown value is no value; a model without
    feature columns ignores fields."""
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(build_archive(tiny_fields_model.model_dir, tmp_path / "s", "6")) as mar:
        mar.extractall(unpacked)
    served = type(handler)()
    served.initialize(FakeContext(unpacked))
    text = "Mein Drucker druckt nicht mehr"
    fields = [{"language": "de"}, {"Language": "EN"}, {"language": "fr"}, None]
    rows = [{"body": {"ticket_data": text, "fields": f}} for f in fields[:3]]
    rows.append({"body": {"tickets": [{"ticket_data": text}]}})
    got = answers(served, FakeContext(unpacked).batch([JSON] * 4), rows)
    expected = Predictor.load(tiny_fields_model.model_dir, device="cpu").predict(
        [text] * 4, fields=fields
    )
    for answer, want in zip([*got[:3], got[3]["predictions"][0]], expected, strict=True):
        assert answer["queue"]["confidence"] == pytest.approx(want["queue"]["confidence"], 1e-5)
    assert got[0]["queue"]["confidence"] != got[1]["queue"]["confidence"]
    assert got[2]["queue"] == got[3]["predictions"][0]["queue"]
    # the text-only model takes the same request and reads the text alone
    [with_fields, without] = answers(
        handler,
        FakeContext(unpacked).batch([JSON, JSON]),
        [{"body": {"ticket_data": text, "fields": {"language": "de"}}},
         {"body": {"ticket_data": text}}],
    )  # fmt: skip
    assert with_fields["queue"] == without["queue"]
