"""Heads are the data's label columns: three heads and one head, each trained, archived, served
by the real TorchServe and answered through the real API under their own names, with feedback,
monitoring and the versions API listing exactly those heads.

The generated tickets carry a `language` column (de/en) beside queue and priority: a third
label a help desk might route on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_service import Service, running, tickets_csv

from training.text import sample_data

pytestmark = pytest.mark.slow  # the real service and TorchServe

FAST = {"mode": "fast", "max_length": 64}
LABELS = {
    "queue": set(sample_data.QUEUES),
    "priority": set(sample_data.PRIORITIES),
    "language": {"de", "en"},
}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    with running(tmp_path / "var") as service:
        yield service


def train_heads(service: Service, label_columns: str, **settings: object) -> dict:
    """Upload the generated tickets with these label columns and train on them."""
    upload = service.upload_csv(tickets_csv(150, seed=61), label_columns=label_columns)
    assert upload.status_code == 201, upload.text
    assert list(upload.json()["label_counts"]) == label_columns.split(",")
    job = service.post("/api/v1/train", json={**FAST, **settings})
    assert job.status_code == 202, job.text
    done = service.wait_job(job.json()["job_id"])
    assert done["status"] == "succeeded", done
    return done


def check_round_trip(service: Service, heads: list[str], stored: list[str]) -> None:
    """Version 1 has `heads`, the stored training data `stored`."""
    [version] = service.get("/api/v1/models").json()["versions"]
    assert list(version["metrics"]["validation"]) == heads
    assert list(version["gates"]) == heads

    texts = ["Mein Drucker druckt nicht mehr", "Please refund the double charge on my invoice"]
    body = {"tickets": [{"ticket_data": text} for text in texts]}
    answer = service.post("/api/v1/classify", json=body)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    for prediction in predictions:
        assert prediction["heads"] == heads
        for head in heads:
            assert prediction[head]["model_label"] in LABELS[head]
        # no head the version lacks, under any name
        absent = set(LABELS) - set(heads)
        assert not absent & set(prediction), prediction
        primary = prediction["queue"]
        assert prediction["predicted_label"] == primary["label"]
        assert prediction["confidence"] == primary["confidence"]

    # A correction names the version's heads (each corrected here) and any other head of the
    # stored data (it becomes a training row of that data); a head the data lacks is refused.
    first = predictions[0]
    labels = {head: sorted(LABELS[head])[0] for head in stored}
    labels |= {head: sorted(LABELS[head] - {first[head]["model_label"]})[0] for head in heads}
    body = {"prediction_id": first["prediction_id"], **labels}
    sent = service.post("/api/v1/feedback", json=body)
    assert sent.status_code == 201, sent.text
    assert sent.json()["corrected"] == heads
    for head in [*sorted(set(LABELS) - set(stored)), "team"]:
        refused = service.post(
            "/api/v1/feedback",
            json={"prediction_id": predictions[1]["prediction_id"], head: "x"},
        )
        assert refused.status_code == 422, refused.text
        assert head in refused.json()["error"]["message"]

    [quality] = service.get("/api/v1/monitoring", params={"version": 1}).json()["versions"]
    assert list(quality["feedback"]["heads"]) == heads
    assert list(quality["auto_route"]) == heads
    assert all(quality["auto_route"][head]["answers"] == 2 for head in heads)
    assert quality["feedback"]["heads"][heads[-1]]["total"] == 1
    assert quality["feedback"]["heads"][heads[-1]]["agreed"] == 0


def test_three_heads_round_trip(service: Service) -> None:
    """The upload names the label columns: the data has three heads, the version too."""
    train_heads(service, "queue,priority,language")
    assert service.get("/api/v1/train-data").json()["heads"] == ["queue", "priority", "language"]
    check_round_trip(service, ["queue", "priority", "language"], ["queue", "priority", "language"])
    # the language is plain in the text: the third head learned it
    german = "Ich habe mein Passwort vergessen und kann mich nicht anmelden"
    answer = service.post("/api/v1/classify", json={"ticket_data": german})
    assert answer.json()["language"]["model_label"] == "de"


def test_one_head_round_trip(service: Service) -> None:
    """The training request names the label columns: one head of the three stored."""
    first = service.upload_csv(tickets_csv(30, seed=63), label_columns="queue")
    assert first.status_code == 201  # data of one head, stored; replaced below
    bad = service.post("/api/v1/train", json={**FAST, "label_columns": ["language"]})
    assert bad.status_code == 422 and "'language'" in bad.json()["error"]["message"], bad.text
    answer = service.upload_csv(
        tickets_csv(150, seed=61), label_columns="queue,priority,language", replace="true"
    )
    assert answer.status_code == 201, answer.text
    job = service.post("/api/v1/train", json={**FAST, "label_columns": ["queue"]})
    assert job.status_code == 202, job.text
    assert service.wait_job(job.json()["job_id"])["status"] == "succeeded"
    check_round_trip(service, ["queue"], ["queue", "priority", "language"])


def test_structured_fields_round_trip(service: Service) -> None:
    """Uploaded with a feature column (a customer tier that decides the priority), trained
    with it, archived and served: classify reads each ticket's `fields` through the .mar."""
    frame = sample_data.generate_tickets(150, seed=64)
    frame["tier"] = frame["priority"].map({"high": "gold", "medium": "silver", "low": "bronze"})
    frame.loc[::10, "tier"] = ""  # unknown for some rows
    for bad, says in (("body", "ticket's text"), ("a b", "use a letter"), ("queue", "label")):
        refused = service.upload_csv(frame.to_csv(index=False).encode(), feature_columns=bad)
        assert refused.status_code == 422 and says in refused.text, refused.text
    upload = service.upload_csv(frame.to_csv(index=False).encode(), feature_columns="tier")
    assert upload.status_code == 201, upload.text
    missing = service.post("/api/v1/train", json={**FAST, "feature_columns": ["channel"]})
    failed = service.wait_job(missing.json()["job_id"])
    assert failed["status"] == "failed" and "no stored ticket has a 'channel' field" in str(
        failed
    ), failed
    job = service.post("/api/v1/train", json={**FAST, "feature_columns": ["tier"]})
    assert job.status_code == 202, job.text
    done = service.wait_job(job.json()["job_id"])
    assert done["status"] == "succeeded", done
    text = "Our office printer shows a paper jam"
    tickets = [{"ticket_data": text, "fields": {"tier": tier}} for tier in ("gold", "bronze")]
    tickets += [{"ticket_data": text, "fields": {"tier": "platinum", "other": "x"}},
                {"ticket_data": text}]  # fmt: skip
    answer = service.post("/api/v1/classify", json={"tickets": tickets})
    assert answer.status_code == 200, answer.text
    gold, bronze, unknown, none = answer.json()["predictions"]
    assert (gold["priority"]["model_label"], bronze["priority"]["model_label"]) == ("high", "low")
    assert unknown["priority"] == none["priority"]  # an unseen value is unknown, no error
    single = service.post("/api/v1/classify", json={"subject": text, "fields": {"tier": "gold"}})
    assert single.json()["priority"]["model_label"] == "high"
    too_many = {f"f{i}": "x" for i in range(65)}
    refused = service.post("/api/v1/classify", json={"ticket_data": text, "fields": too_many})
    assert refused.status_code == 422, refused.text
    mixed = service.post("/api/v1/classify", json={"tickets": tickets[:1], "fields": {"a": "b"}})
    assert mixed.status_code == 422 and "give each ticket its own" in mixed.text


def test_label_columns_are_checked_before_the_body(service: Service) -> None:
    for label_columns, says in [
        ("queue,queue", "named twice"),
        ("queue,,priority", "separated by commas"),
        (",".join(f"h{i}" for i in range(9)), "1 to 8"),
        ("confidence", "answers use that key"),
        ("Ticket Type", "rename the column"),
    ]:
        answer = service.upload_csv(b"not, even, csv", label_columns=label_columns)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "validation_error" and says in error["message"], error
    assert service.get("/api/v1/train-data").json()["rows"] == 0
    missing = service.upload_csv(tickets_csv(30, seed=62), label_columns="queue,team")
    assert missing.status_code == 422 and "'team'" in missing.json()["error"]["message"]
