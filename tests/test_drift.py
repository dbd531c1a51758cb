"""The drift watch and the retraining policy, over real HTTP with a real TorchServe.

The module trains one version (fast mode, the bundled MiniLM) on English tickets only, once, in
a stopped service's data directory; every service test starts its own service on a copy of it,
so each begins with an empty drift window, no drift seen yet, a clean log, no labelled data since
its only job (trigger "api"), and builds whatever window it asserts on itself. Live tickets come
from the same generator with other seeds: English tickets like the training data's, English
tickets of one queue only, and German tickets. The drift window is 100 answers, so a batch of
100 replaces the whole window.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from api_service import Service, running, running_copy
from transformers import AutoTokenizer

from shim.cli import main as ticketserve
from shim.quality.drift import assess
from shim.settings import Settings
from training.encoders.base_models import bundled_minilm_path
from training.fit.drift import distance, reference
from training.inference.model import rare_token_shares
from training.text.sample_data import generate_tickets

API_KEY = "drift-key-0123456789abcdef"
WINDOW = 100
FAST = {"mode": "fast", "max_length": 64}
HEADS = ("queue", "priority")
TRAINING_ROWS, TRAINING_SEED = 240, 51
SCORE = re.compile(r'^ticketserve_drift_score\{head="(\w+)",version="(\d+)"\} (\S+)$', re.MULTILINE)
ENV = {
    "TICKETSERVE_DRIFT_WINDOW": str(WINDOW),
    "TICKETSERVE_DRIFT_MIN_PREDICTIONS": str(WINDOW),
    "TICKETSERVE_DRIFT_CHECK_EVERY": "25",
    "TICKETSERVE_RETRAIN_AFTER_FEEDBACK": "3",
    "TICKETSERVE_RETRAIN_WHEN_DRIFT": "true",
}
# What ends a job the tests cancel: cancelled, or succeeded when it was already publishing.
ENDED = ("succeeded", "cancelled")


def tickets(rows: int, seed: int, language: str = "en", queue: str | None = None) -> pd.DataFrame:
    """`rows` generated tickets of one language (and queue, when given)."""
    frame = generate_tickets(rows * (30 if queue else 3), seed=seed)
    frame = frame[frame["language"] == language]
    if queue is not None:
        frame = frame[frame["queue"] == queue]
    assert len(frame) >= rows
    return frame.head(rows)


@pytest.fixture(scope="module")
def english_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stopped service's data directory: English tickets uploaded, version 1 trained on them
    by the API (trigger "api"), nothing classified. Tests start services on copies of it."""
    data_dir = tmp_path_factory.mktemp("drift-trained") / "var"
    with running(data_dir, env=ENV, api_key=API_KEY) as service:
        training = tickets(TRAINING_ROWS, seed=TRAINING_SEED).to_csv(index=False).encode()
        assert service.upload_csv(training).status_code == 201
        job = service.post("/api/v1/train", json=FAST)
        assert job.status_code == 202, job.text
        done = service.wait_job(job.json()["job_id"])
        assert done["status"] == "succeeded" and done["model_version"] == 1, done
    return data_dir


@pytest.fixture
def service(english_data_dir: Path, tmp_path: Path) -> Iterator[Service]:
    """A service of its own: the drift watch's state (which heads drift, which warnings were
    logged) lives in the process, and the policy's decisions depend on every job and
    correction, so no test may see another's."""
    with running_copy(english_data_dir, tmp_path / "var", env=ENV, api_key=API_KEY) as service:
        yield service


def classify(service: Service, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Classify `frame`'s tickets in batches of 50; the answers in order."""
    out = []
    for start in range(0, len(frame), 50):
        part = frame.iloc[start : start + 50]
        pairs = zip(part.subject, part.body, strict=True)
        body = {"tickets": [{"subject": s, "body": b} for s, b in pairs]}
        answer = service.post("/api/v1/classify", json=body)
        assert answer.status_code == 200, answer.text
        out += answer.json()["predictions"]
    return out


def drift(service: Service, version: int = 1) -> dict[str, Any]:
    answer = service.get("/api/v1/monitoring", params={"version": version, "days": 1})
    assert answer.status_code == 200, answer.text
    return answer.json()["versions"][0]["drift"]


def gauges(service: Service) -> dict[tuple[str, int], float]:
    text = service.get("/metrics").text
    return {(head, int(v)): float(value) for head, v, value in SCORE.findall(text)}


def warnings(service: Service) -> list[str]:
    return [line for line in service.log().splitlines() if "drift: version" in line]


def latest_job(service: Service) -> dict[str, Any]:
    answer = service.get("/api/v1/train")
    assert answer.status_code == 200, answer.text
    return answer.json()


def retrain_cli(service: Service, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    code = ticketserve(["retrain", "--url", service.base, *flags])
    out = capsys.readouterr()
    assert code in (0, None), out.err
    return out.out.strip()


def cancel(service: Service, job_id: str) -> None:
    """Cancel a job and wait until it has ended (409: it finished, or is publishing, first)."""
    cancelled = service.post(f"/api/v1/train/{job_id}/cancel")
    assert cancelled.status_code in (200, 409), cancelled.text
    service.wait_job(job_id, until=ENDED)


# -- the scores, in process -----------------------------------------------------------------


def test_distance_is_zero_for_the_same_shape_and_one_for_disjoint() -> None:
    assert distance([10, 30, 60], [1, 3, 6]) == pytest.approx(0.0, abs=1e-6)
    assert distance([5, 0], [0, 5]) == pytest.approx(1.0)
    assert distance([0, 0], [1, 1]) is None


def test_assess_needs_a_reference_and_enough_answers() -> None:
    settings = Settings(drift_window=20, drift_min_predictions=10, drift_threshold=0.3)
    ref = reference({"queue": {"A": 50, "B": 50}}, {"queue": [0.95] * 80 + [0.55] * 20}, [0.0])
    like = [({"queue": {"label": label, "confidence": 0.95}}, 0.0) for label in "AB" * 4]
    like += [({"queue": {"label": label, "confidence": 0.55}}, 0.0) for label in "AB"]
    shifted = [({"queue": {"label": "A", "confidence": 0.35}}, 0.6)] * 10

    assert assess(None, like, settings).status == "no_reference"
    few = assess(ref, like[:9], settings)
    assert few.status == "not_enough_data" and few.heads["queue"].score is None
    same = assess(ref, like, settings)
    assert same.status == "ok" and same.heads["queue"].score == pytest.approx(0.0, abs=1e-6)
    far = assess(ref, shifted, settings)
    assert far.status == "drifting" and far.heads["queue"].drifting
    assert far.heads["queue"].labels.live == [1.0, 0.0]
    assert far.rare_tokens.distance == pytest.approx(1.0)
    assert far.rare_token_share == 0.6 and far.reference_rare_token_share == 0.0


def test_rare_token_share_counts_split_and_unknown_words() -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_path()))
    english, german, unknown, empty = rare_token_shares(
        tokenizer,
        [
            "My printer stopped printing after the update",
            "Mein Drucker druckt seit dem Update nicht mehr",  # dr ##uck ##er: 3 pieces
            "printer \u2fff",  # a character outside the vocabulary: the unknown token
            "",
        ],
        64,
    )
    assert english == 0.0 and german == 0.25 and unknown == 0.5 and empty == 0.0


# -- the running service ----------------------------------------------------------------------


@pytest.mark.slow  # the real service
def test_a_model_keeps_its_reference_and_few_answers_get_no_score(service: Service) -> None:
    report = drift(service)
    assert (report["status"], report["window"]) == ("not_enough_data", 0)
    learned = tickets(TRAINING_ROWS, seed=TRAINING_SEED)
    for head in HEADS:
        labels = report["heads"][head]["labels"]
        assert labels["bins"] == sorted(learned[head].unique())
        # The train and validation splits: the uploaded tickets less the test split's tenth.
        shares = learned[head].value_counts(normalize=True)
        assert labels["reference"] == pytest.approx([shares[b] for b in labels["bins"]], abs=0.03)
        assert sum(labels["reference"]) == pytest.approx(1.0, abs=1e-4)
        assert sum(report["heads"][head]["confidence"]["reference"]) == pytest.approx(1.0, abs=1e-4)
    assert report["reference_rare_token_share"] < 0.1  # English text, an English tokenizer

    classify(service, tickets(40, seed=52))
    report = drift(service)
    assert (report["status"], report["window"], report["threshold"]) == (
        "not_enough_data",
        40,
        Settings().drift_threshold,
    )
    assert all(head["score"] is None for head in report["heads"].values())


@pytest.mark.slow  # the real service
def test_tickets_like_the_training_data_do_not_drift(service: Service) -> None:
    answers = classify(service, tickets(WINDOW, seed=53))
    assert all(a["rare_token_share"] is not None for a in answers)
    report = drift(service)
    assert report["status"] == "ok", report
    assert report["window"] == WINDOW
    for head in HEADS:
        assert report["heads"][head]["score"] <= report["threshold"]
    assert gauges(service).keys() == {("queue", 1), ("priority", 1)}
    assert warnings(service) == []


@pytest.mark.slow  # the real service
def test_tickets_of_one_queue_drift_on_the_queue_head(service: Service) -> None:
    classify(service, tickets(WINDOW, seed=54, queue="Billing and Payments"))
    report = drift(service)
    queue = report["heads"]["queue"]
    assert report["status"] == "drifting" and queue["drifting"], report
    assert queue["labels"]["distance"] > report["threshold"]
    live = dict(zip(queue["labels"]["bins"], queue["labels"]["live"], strict=True))
    assert live["Billing and Payments"] > 0.9
    assert gauges(service)[("queue", 1)] == queue["score"]
    text = service.get("/metrics").text
    labels_gauge = 'ticketserve_drift_distance{head="queue",signal="labels",version="1"} '
    assert f"{labels_gauge}{queue['labels']['distance']}" in text
    drift(service)  # assessed again: still drifting, no second warning
    logged = [line for line in warnings(service) if "head queue" in line]
    assert len(logged) == 1 and "WARNING" in logged[0], logged
    # Drift with no labelled data since the latest job: nothing to learn, no job.
    assert "no labelled data arrived" in service.log()
    assert latest_job(service)["trigger"] == "api"


@pytest.mark.slow  # the real service
def test_back_to_normal_then_another_language(service: Service) -> None:
    # A drifting window first: "back under" is logged only by a head that drifted.
    classify(service, tickets(WINDOW, seed=54, queue="Billing and Payments"))
    assert drift(service)["status"] == "drifting"
    assert "back under the threshold" not in service.log()
    classify(service, tickets(WINDOW, seed=55))
    assert drift(service)["status"] == "ok"
    assert "back under the threshold" in service.log()
    answers = classify(service, tickets(WINDOW, seed=56, language="de"))
    report = drift(service)
    assert report["status"] == "drifting", report
    assert report["rare_tokens"]["distance"] > report["threshold"]
    assert report["rare_token_share"] > 3 * report["reference_rare_token_share"]
    assert sum(a["rare_token_share"] for a in answers) / len(answers) == pytest.approx(
        report["rare_token_share"], abs=1e-4
    )


@pytest.mark.slow  # the real service
def test_retrain_from_cron_needs_new_data(
    service: Service, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETSERVE_API_KEY", API_KEY)
    assert retrain_cli(service, capsys, "--if-new-data").startswith("no new labelled data")
    assert latest_job(service)["trigger"] == "api"
    monkeypatch.setenv("TICKETSERVE_API_KEY", "wrong-key-0123456789")
    assert ticketserve(["retrain", "--url", service.base]) == 1
    assert "401" in capsys.readouterr().err


@pytest.mark.slow  # the real service
def test_drift_with_new_corrections_starts_a_job(service: Service) -> None:
    # A window like the training data's, then two corrections: new data, still under
    # retrain_after_feedback (3).
    answers = classify(service, tickets(WINDOW, seed=57))
    assert drift(service)["status"] == "ok"
    for answer in answers[:2]:
        sent = service.post(
            "/api/v1/feedback", json={"prediction_id": answer["prediction_id"], "priority": "low"}
        )
        assert sent.status_code == 201, sent.text
    assert latest_job(service)["trigger"] == "api"
    classify(service, tickets(WINDOW, seed=58, queue="Hardware"))
    job = latest_job(service)
    assert job["trigger"] == "drift", job
    done = service.wait_job(job["job_id"])
    assert done["status"] == "succeeded" and done["feedback_rows"] == 2, done


@pytest.mark.slow  # the real service
def test_enough_corrections_start_a_job(service: Service) -> None:
    answers = classify(service, tickets(3, seed=59))
    before = latest_job(service)
    assert before["trigger"] == "api"
    for i, answer in enumerate(answers):
        sent = service.post(
            "/api/v1/feedback", json={"prediction_id": answer["prediction_id"], "priority": "high"}
        )
        assert sent.status_code == 201, sent.text
        job = latest_job(service)
        assert (job["job_id"] == before["job_id"]) == (i < 2)  # the third one starts it
    assert job["trigger"] == "feedback"
    cancel(service, job["job_id"])


@pytest.mark.slow  # the real service
def test_retrain_from_cron_after_an_upload(
    service: Service, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TICKETSERVE_API_KEY", API_KEY)
    assert service.get("/readyz").json()["training"] is False
    assert retrain_cli(service, capsys, "--if-new-data").startswith("no new labelled data")
    more = tickets(30, seed=60).to_csv(index=False).encode()
    assert service.upload_csv(more).status_code == 201
    said = retrain_cli(service, capsys, "--if-new-data")
    assert (
        said.startswith("job ") and "1 upload(s) and 0 correction(s) since the latest job (" in said
    )
    job = latest_job(service)
    assert job["trigger"] == "retrain" and job["params"]["max_length"] == FAST["max_length"]
    assert retrain_cli(service, capsys).startswith("nothing started")  # one job at a time
    cancel(service, job["job_id"])
