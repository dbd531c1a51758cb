"""The archive served by a real TorchServe (Java 17), started from the project's config.properties.

One TorchServe per module (its own TMPDIR, logs and free ports). Tests run in any order: the
version-management test leaves version 1 the only and default version, as it found it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from shim.serving.torchserve import TorchServe
from shim.serving.torchserve_client import TorchServeClient, TorchServeError
from training.export.archive import ServingSettings, build_archive
from training.export.predict import Predictor

pytestmark = pytest.mark.slow  # the real TorchServe

MODEL = "ticket"
# A second model for the batching tests: its batches close when 16 requests are in (the window is
# only a time-out), so what they check does not depend on how fast the requests arrive.
BATCHED = "batched"
BATCH_SIZE = 16
BATCH_LINE = re.compile(r"batch size (\d+): (\d+) tickets, (\d+) bad requests")


@dataclass
class Served:
    server: TorchServe
    client: TorchServeClient
    store: Path


@pytest.fixture(scope="module")
def served(trained_model, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    store = tmp_path_factory.mktemp("model_store")
    build_archive(trained_model.model_dir, store, version="1")
    build_archive(trained_model.model_dir, store, version="2")
    full_batches = ServingSettings(batch_size=BATCH_SIZE, max_batch_delay_ms=60_000)
    build_archive(trained_model.model_dir, store, "1", BATCHED, full_batches)
    server = TorchServe(store, tmp_path_factory.mktemp("ts"), load_models="ticket-v1.mar")
    server.start(timeout=300)
    client = server.client(timeout=120)
    client.register(f"{BATCHED}-v1.mar")
    jvm = psutil.Process(server.pid)
    workers = jvm.children(recursive=True)
    try:
        yield Served(server, client, store)
    finally:
        client.close()
        server.stop()
    # stop() returns only once the JVM and its Python workers are gone
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [jvm, *workers])


def batch_lines(server: TorchServe, since: int = 0) -> list[tuple[int, int, int]]:
    """(requests, tickets, bad requests) of every batch the handler logged after byte `since`."""
    text = server.model_log.read_bytes()[since:].decode("utf-8", errors="replace")
    return [tuple(map(int, m.groups())) for m in BATCH_LINE.finditer(text)]


def log_size(server: TorchServe) -> int:
    return server.model_log.stat().st_size


def concurrently(client: TorchServeClient, bodies: list[object]) -> list[httpx.Response]:
    """Send all bodies to the batched model at once, answers in the same order."""
    barrier = threading.Barrier(len(bodies))

    def send(body: object) -> httpx.Response:
        barrier.wait()
        return client.predict(BATCHED, body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


def test_single_ticket_in_every_request_form(served: Served) -> None:
    forms = [
        ({"ticket_data": "Mein Drucker druckt nicht mehr"}, "application/json"),
        ({"subject": "Drucker", "body": "druckt nicht mehr"}, "application/json"),
        ("Mein Drucker druckt nicht mehr", "text/plain"),
    ]
    for body, content_type in forms:
        response = served.client.predict(MODEL, body, content_type=content_type)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == "1"
        assert answer["predicted_label"] == answer["queue"]["label"]
        assert answer["confidence"] == answer["queue"]["confidence"]
        for head in ("queue", "priority"):
            top = answer[head]["top_k"]
            assert top[0] == [answer[head]["label"], answer[head]["confidence"]]
            assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]


def test_list_request_matches_training_predict(served: Served, trained_model) -> None:
    texts = trained_model.probe_texts
    expected = Predictor.load(trained_model.model_dir, device="cpu").predict(texts)
    listed = served.client.predict(MODEL, {"tickets": [{"ticket_data": t} for t in texts]})
    assert listed.status_code == 200, listed.text
    singles = [served.client.predict(MODEL, {"ticket_data": t}).json() for t in texts]
    for answers in (listed.json()["predictions"], singles):
        assert len(answers) == len(texts)
        for got, want in zip(answers, expected, strict=True):
            for head in ("queue", "priority"):
                assert got[head]["label"] == want[head]["label"]
                assert got[head]["auto_route"] == want[head]["auto_route"]
                assert got[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=1e-4)
                for (label, p), (want_label, want_p) in zip(
                    got[head]["top_k"], want[head]["top_k"], strict=True
                ):
                    assert label == want_label and p == pytest.approx(want_p, abs=1e-4)


DIRTY_MAIL = (
    "From: Jonas Becker <jonas.becker@contoso.example>\r\nSubject: Rechnung doppelt\r\n"
    "Content-Type: text/html; charset=utf-8\r\n\r\n<p>Hallo Anna,</p><p>die Rechnung wurde "
    "doppelt abgebucht: DE89 3704 0044 0532 0130 00.</p><p>Viele Grüße<br>Jonas<br>"
    "+49 30 9876 5432</p><blockquote>Am Mo. schrieb Support: VPN wieder da?</blockquote>\r\n"
)


def test_dirty_mail_is_answered_as_the_in_process_model_answers_it(
    served: Served, trained_model
) -> None:
    """The archive cleans with the model directory's own cleaning: TorchServe's answers on a
    whole mail and on an HTML body are the in-process predictor's on the same mail."""
    predictor = Predictor.load(trained_model.model_dir, device="cpu")
    html = DIRTY_MAIL.split("\r\n\r\n", 1)[1]
    cleaned = [predictor.cleaning.ticket(None, DIRTY_MAIL, "message/rfc822"),
               predictor.cleaning.ticket("Rechnung doppelt", html, "text/html")]  # fmt: skip
    assert (
        cleaned[0]
        == cleaned[1]
        == ("Rechnung doppelt\nHallo [NAME],\n\ndie Rechnung wurde doppelt abgebucht: [IBAN].")
    )
    whole = served.client.predict(MODEL, DIRTY_MAIL.encode(), content_type="message/rfc822")
    listed = served.client.predict(MODEL, {"tickets": [
        {"ticket_data": DIRTY_MAIL, "content_type": "message/rfc822"},
        {"subject": "Rechnung doppelt", "body": html, "content_type": "text/html"},
    ]})  # fmt: skip
    assert whole.status_code == listed.status_code == 200, (whole.text, listed.text)
    want = predictor.predict(cleaned[:1])[0]
    for got in (whole.json(), *listed.json()["predictions"]):
        for head in ("queue", "priority"):
            assert got[head]["label"] == want[head]["label"]
            assert got[head]["confidence"] == pytest.approx(want[head]["confidence"], abs=1e-4)


def test_concurrent_requests_run_in_batches(served: Served) -> None:
    start = log_size(served.server)
    bodies = [{"ticket_data": f"ticket {i}: the VPN drops every few minutes"} for i in range(32)]
    responses = concurrently(served.client, bodies)
    assert [r.status_code for r in responses] == [200] * 32
    # Two full batches of the archive's batchSize, one forward pass each.
    assert batch_lines(served.server, start) == [(BATCH_SIZE, BATCH_SIZE, 0)] * 2
    # the handler's own counters reach Prometheus too
    metrics = httpx.get(f"{served.server.metrics_url}/metrics", timeout=30).text
    counted = re.search(r'^TicketBatchRequests\{ModelName="batched".*\} (\S+)$', metrics, re.M)
    assert counted and float(counted.group(1)) >= 32


def test_bad_request_in_a_batch_gets_its_own_400(served: Served) -> None:
    bodies: list[object] = [{"ticket_data": f"laptop {i} will not boot"} for i in range(15)]
    bodies.insert(5, {"ticket": "misspelt field"})
    start = log_size(served.server)
    responses = concurrently(served.client, bodies)
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 5 + [400] + [200] * 10
    assert "needs 'ticket_data'" in responses[5].json()["message"]
    assert all(r.json()["predicted_label"] for i, r in enumerate(responses) if i != 5)
    # One batch: the bad request did not fail its 15 neighbours.
    assert batch_lines(served.server, start) == [(BATCH_SIZE, BATCH_SIZE - 1, 1)]


def test_json_sent_as_form_data_is_refused_with_a_hint(served: Served) -> None:
    response = served.client.predict(
        MODEL, '{"ticket_data": "x"}', content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["message"]


def test_second_instance_on_the_same_host_does_not_collide(served: Served, tmp_path: Path) -> None:
    other = TorchServe(served.store, tmp_path / "other", load_models="")
    with other, other.client() as client:
        assert other.ports != served.server.ports
        assert client.list_models() == []
        assert served.client.describe(MODEL)[0]["workers"][0]["status"] == "READY"
        jvm = psutil.Process(other.pid)
    assert not jvm.is_running() or jvm.status() == psutil.STATUS_ZOMBIE


def test_versions_register_set_default_describe_unregister(served: Served) -> None:
    client = served.client
    registered = client.register("ticket-v2.mar")
    assert "Version: 2 registered" in registered["status"]
    client.wait_ready(MODEL, "2")
    versions = {d["modelVersion"]: d for d in client.describe(MODEL, "all")}
    assert set(versions) == {"1", "2"}
    assert versions["2"]["batchSize"] == 16  # from the archive's model-config.yaml

    body = {"ticket_data": "Please reset my password"}
    assert client.predict(MODEL, body).json()["model_version"] == "1"
    client.set_default(MODEL, "2")
    assert client.predict(MODEL, body).json()["model_version"] == "2"
    assert client.predict(MODEL, body, version="1").json()["model_version"] == "1"
    assert client.describe(MODEL)[0]["modelVersion"] == "2"

    with pytest.raises(TorchServeError) as missing:
        client.set_default(MODEL, "9")
    assert missing.value.status == 404 and "9" in missing.value.message
    with pytest.raises(TorchServeError) as default:
        client.unregister(MODEL, "2")  # the default, while version 1 still exists
    assert default.value.status == 403

    client.unregister(MODEL, "1")
    assert [d["modelVersion"] for d in client.describe(MODEL, "all")] == ["2"]
    assert (served.store / "ticket-v1.mar").is_file()  # unregistering keeps the archive
    client.register("ticket-v1.mar")
    client.set_default(MODEL, "1")
    client.unregister(MODEL, "2")
    assert [d["modelVersion"] for d in client.describe(MODEL, "all")] == ["1"]
    assert sorted(m["modelName"] for m in client.list_models()) == [BATCHED, MODEL]
