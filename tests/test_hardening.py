"""The service against a hostile local user and a dying TorchServe, with real processes.

One `ticketserve serve` with an API key and one trained version. A second local client (this
test, without the service's keys) tries TorchServe's management and inference ports directly;
then the real JVM is killed with SIGKILL and the service must bring it back with its model.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from api_service import Service, copy_data_dir, tickets_csv

from shim.limits import torchserve_properties
from shim.serving.torchserve import rotate_log
from shim.settings import Settings

pytestmark = pytest.mark.slow  # the real service and TorchServe

API_KEY = "hardening-key-0123456789"
TICKET = {"ticket_data": "Mein Drucker druckt nicht mehr seit dem Update"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, trained_data_dir: Path) -> Iterator[Service]:
    service = Service(
        copy_data_dir(trained_data_dir, tmp_path_factory.mktemp("hardening") / "var"),
        api_key=API_KEY,
        env={"TICKETSERVE_MAX_LOADED_VERSIONS": "2"},
    )
    service.start()
    try:
        service.wait_ready()
        yield service
    finally:
        service.cleanup()


def torchserve_config(service: Service) -> dict[str, str]:
    """The private TorchServe's config.properties, as key -> value."""
    text = (service.data_dir / "torchserve" / "config.properties").read_text()
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs if not key.startswith("#")}


def key_file(service: Service) -> Path:
    return service.data_dir / "torchserve" / "key_file.json"


def owner_key(service: Service, api: str) -> str:
    return json.loads(key_file(service).read_text())[api]["key"]


def jvm(service: Service) -> psutil.Process:
    pid = json.loads((service.data_dir / "torchserve" / "torchserve.pid.json").read_text())["pid"]
    return psutil.Process(pid)


def test_torchserve_refuses_a_local_client_without_its_keys(service: Service) -> None:
    config = torchserve_config(service)
    management, inference = config["management_address"], config["inference_address"]
    elsewhere = service.data_dir.parent / "copy.mar"
    attempts = [
        requests.post(f"{management}/models", params={"url": f"file://{elsewhere}"}, timeout=30),
        requests.delete(f"{management}/models/ticket/1", timeout=30),
        requests.put(f"{management}/models/ticket/1/set-default", timeout=30),
        requests.get(f"{management}/models", timeout=30),
        requests.post(f"{inference}/predictions/ticket", json=TICKET, timeout=30),
        requests.post(
            f"{management}/models",
            params={"url": "ticket-v1.mar"},
            headers={"Authorization": "Bearer not-the-key"},
            timeout=30,
        ),
    ]
    # TorchServe answers a missing or wrong token with 400 and says why.
    for answer in attempts:
        assert answer.status_code == 400, answer.text
        assert "Token Authorization failed" in answer.json()["message"], answer.text
    # The keys are readable by the service's user only.
    assert stat.S_IMODE(key_file(service).stat().st_mode) & 0o077 == 0
    # Still served: the version was neither deleted nor replaced.
    assert service.post("/api/v1/classify", json=TICKET).status_code == 200


def test_even_the_keys_owner_registers_only_archives_of_the_store(service: Service) -> None:
    management = torchserve_config(service)["management_address"]
    headers = {"Authorization": f"Bearer {owner_key(service, 'management')}"}
    store_copy = service.data_dir / "model_store" / "ticket-v1.mar"
    outside = service.data_dir.parent / "outside.mar"
    outside.write_bytes(store_copy.read_bytes())
    answer = requests.post(
        f"{management}/models",
        params={"url": f"file://{outside}", "model_name": "intruder"},
        headers=headers,
        timeout=60,
    )
    assert answer.status_code in (400, 403, 404), answer.text
    listed = requests.get(f"{management}/models", headers=headers, timeout=30).json()
    assert [model["modelName"] for model in listed["models"]] == ["ticket"]


def test_the_api_key_does_not_reach_torchserve_or_its_workers(service: Service) -> None:
    java = jvm(service)
    processes = [java, *java.children(recursive=True)]
    assert any("model_service_worker" in " ".join(p.cmdline()) for p in processes)
    for process in processes:
        environment = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert API_KEY.encode() not in environment
        assert b"TICKETSERVE_API_KEY" not in environment


def raw_request(service: Service, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a hand-made request; (status, whole answer). Only what is given is sent."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer


def test_the_key_is_checked_before_the_body_is_read(service: Service) -> None:
    head = (
        "POST /api/v1/classify HTTP/1.1\nHost: x\nContent-Type: application/json\n"
        "Content-Length: 100000000\nConnection: close\n"
    )
    status, answer = raw_request(service, head)  # no body sent at all
    assert status == 401, answer
    status, answer = raw_request(service, head.replace("Host: x", f"Host: x\n{auth()}"))
    assert status == 413 and b"the limit is" in answer, answer


def auth() -> str:
    return f"Authorization: Bearer {API_KEY}"


def test_a_client_still_sending_a_refused_body_reads_the_413(service: Service) -> None:
    """The 413 for a declared length too large comes once the body is in (LINGER_S at most): a
    client that goes on sending its 12 MB reads the answer instead of a connection reset (the
    fuzzing met this: the answer was lost when the service closed before the body was in)."""
    size = 12_000_000
    head = (
        f"POST /api/v1/feedback HTTP/1.1\nHost: x\n{auth()}\nContent-Type: application/json\n"
        f"Content-Length: {size}\nConnection: close\n\n"
    )
    with socket.create_connection(("127.0.0.1", service.port), timeout=30) as sock:
        sock.sendall(head.replace("\n", "\r\n").encode())
        time.sleep(0.5)  # the service has the head: before, it answered and closed here
        for _ in range(size // 1_000_000):
            sock.sendall(b"x" * 1_000_000)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ") and b"the limit is" in answer, answer[:300]


def test_a_streamed_body_is_cut_at_its_limit(service: Service) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"ticket_data": "'
        for _ in range(20):
            yield b"x" * 1_000_000

    answer = service.post("/api/v1/classify", data=chunks(),
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 413, answer.text


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("post", "/api/v1/classify?version=1180591620717411303424", {"json": TICKET}, 422),
        ("delete", "/api/v1/models/1180591620717411303424", {}, 422),
        ("post", "/api/v1/models/1180591620717411303424/activate", {}, 422),
        ("get", "/api/v1/train/" + "x" * 65, {}, 422),
        ("post", "/api/v1/classify", {"json": {"ticket_data": "\ud800 printer"}}, 422),
        ("post", "/api/v1/classify", {"json": {"ticket_data": "\x00\x00\u200b\u200b"}}, 422),
        ("post", "/api/v1/train", {"json": {"max_length": 100_000}}, 422),
        ("post", "/api/v1/train", {"json": {"seed": 2**32}}, 422),
        ("post", "/api/v1/train", {"json": {"epochs": 10**9}}, 422),
        ("post", "/api/v1/train-data?delimiter=%0A", {"data": b"text,queue\na,b\n"}, 422),
    ],
)
def test_out_of_range_input_is_a_4xx(
    service: Service, method: str, path: str, kwargs: dict, status: int
) -> None:
    content_type = {} if "json" in kwargs else {"Content-Type": "text/csv"}
    kwargs["headers"] = {**service.headers(), **content_type}
    answer = getattr(service, method)(path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib", "no-such-charset"])
def test_an_upload_in_a_non_text_charset_is_415(service: Service, charset: str) -> None:
    answer = service.post(
        "/api/v1/train-data",
        data=b"text,queue\na,b\n",
        headers={"Content-Type": f"text/csv; charset={charset}"},
    )
    assert answer.status_code == 415, answer.text


def test_deeply_nested_and_surrogate_uploads_are_4xx(service: Service) -> None:
    before = service.get("/api/v1/train-data").json()["rows"]
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = service.post("/api/v1/train-data", data=deep,
                          headers={"Content-Type": "application/json"})  # fmt: skip
    assert answer.status_code == 400 and "nested too deeply" in answer.text, answer.text
    lines = b'{"text": "\\ud800", "queue": "A"}\n' * 3
    answer = service.post("/api/v1/train-data", data=lines,
                          headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
    assert answer.status_code == 422, answer.text  # a single label once decoded
    assert service.get("/api/v1/train-data").json()["rows"] == before


def test_a_retried_upload_is_stored_once(service: Service) -> None:
    body = tickets_csv(40, seed=21)
    before = service.get("/api/v1/train-data").json()["rows"]
    first = service.upload_csv(body)
    assert first.status_code == 201 and first.json()["duplicate"] is False
    again = service.upload_csv(body)
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["dataset_id"] == first.json()["dataset_id"]
    keyed = {"Content-Type": "text/csv", "Idempotency-Key": "upload-2026-12-01-a"}
    one = service.post("/api/v1/train-data", data=tickets_csv(30, seed=22), headers=keyed)
    two = service.post("/api/v1/train-data", data=tickets_csv(30, seed=23), headers=keyed)
    assert (one.status_code, two.status_code) == (201, 200), two.text
    rows = service.get("/api/v1/train-data").json()["rows"]
    assert rows == before + first.json()["rows_accepted"] + one.json()["rows_accepted"]


def test_a_batch_of_long_tickets_is_answered_whole(service: Service) -> None:
    long_text = "Der Drucker im dritten Stock druckt nicht. " * 900  # ~39,000 characters
    bodies = [{"ticket_data": long_text if i % 3 == 0 else f"VPN drops {i}"} for i in range(9)]
    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(lambda b: service.post("/api/v1/classify", json=b), bodies))
    assert [a.status_code for a in answers] == [200] * 9, [a.text for a in answers]


def largest_classify_body(settings: Settings) -> bytes:
    """A classify body at every documented limit at once: `max_batch` tickets of
    `max_ticket_chars` characters each, in as many bytes as `max_request_bytes` allows."""

    def body(three_byte_chars: int) -> bytes:
        text = "€" * three_byte_chars + "Ä" * (settings.max_ticket_chars - three_byte_chars)
        tickets = [{"ticket_data": f"{i:02d}{text[2:]}"} for i in range(settings.max_batch)]
        return json.dumps({"tickets": tickets}, ensure_ascii=False).encode()

    low, high = 0, settings.max_ticket_chars  # the most 3-byte characters that still fit
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (
            (middle, high) if len(body(middle)) <= settings.max_request_bytes else (low, middle - 1)
        )
    return body(low).ljust(settings.max_request_bytes)  # JSON allows trailing white space


def test_the_largest_request_every_limit_allows_is_answered(service: Service) -> None:
    settings = Settings()  # the service runs with the documented defaults
    largest = largest_classify_body(settings)
    assert len(largest) == settings.max_request_bytes
    headers = {"Content-Type": "application/json"}
    answer = service.post("/api/v1/classify", data=largest, headers=headers)
    assert answer.status_code == 200, answer.text[:500]
    assert len(answer.json()["predictions"]) == settings.max_batch
    assert service.post("/api/v1/classify", data=largest + b" ", headers=headers).status_code == 413
    # Its private TorchServe has the limits derived from the service's settings.
    assert torchserve_config(service) | torchserve_properties(settings) == torchserve_config(
        service
    )


def test_small_things(service: Service) -> None:
    assert requests.head(f"{service.base}/healthz", timeout=30).status_code == 200
    docs = requests.get(f"{service.base}/docs", timeout=30)
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    script = requests.get(f"{service.base}/docs/static/swagger-ui-bundle.js", timeout=30)
    assert script.status_code == 200 and len(script.content) > 100_000
    assert stat.S_IMODE(service.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((service.data_dir / "registry.sqlite3").stat().st_mode) == 0o600
    for dataset in (service.data_dir / "datasets").glob("*.jsonl"):
        assert stat.S_IMODE(dataset.stat().st_mode) == 0o600
    huge_header = {"X-Padding": "x" * 1_000_000}
    try:
        answer = requests.get(f"{service.base}/healthz", headers=huge_header, timeout=30)
    except requests.ConnectionError as exc:
        raise AssertionError(f"a 1 MB header reset the connection: {exc}") from exc
    assert answer.status_code in (400, 431), answer.status_code
    assert service.get("/healthz").status_code == 200


def test_a_running_job_can_be_cancelled(service: Service) -> None:
    slow = {"mode": "full", "epochs": 20, "batch_size": 4, "max_length": 64}
    job = service.post("/api/v1/train", json=slow).json()
    service.wait_job(job["job_id"], until=("progress",), timeout=300)
    answer = service.post(f"/api/v1/train/{job['job_id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "cancelled"
    assert training_processes(job["job_id"]) == []
    assert service.get(f"/api/v1/train/{job['job_id']}").json()["status"] == "cancelled"
    again = service.post(f"/api/v1/train/{job['job_id']}/cancel")
    assert again.status_code == 409, again.text
    assert service.post("/api/v1/train/unknown-job/cancel").status_code == 404
    # The slot is free again; a job cancelled at once (queued, or just started) never trains on.
    second = service.post("/api/v1/train", json=slow)
    assert second.status_code == 202, second.text
    second_id = second.json()["job_id"]
    answer = service.post(f"/api/v1/train/{second_id}/cancel")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
    # Jobs run one after another: once a third job trains, a late start of the second would have
    # happened already.
    third = service.post("/api/v1/train", json=slow).json()["job_id"]
    service.wait_job(third, until=("progress",), timeout=300)
    assert training_processes(second_id) == []
    assert service.get(f"/api/v1/train/{second_id}").json()["status"] == "cancelled"
    assert service.post(f"/api/v1/train/{third}/cancel").json()["status"] == "cancelled"


def training_processes(job_id: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        alive = process.info["status"] != psutil.STATUS_ZOMBIE
        if "training.job" in cmdline and job_id in cmdline and alive:
            found.append(process)
    return found


def test_torchserve_logs_at_info_into_size_rotated_files(service: Service) -> None:
    logs = service.data_dir / "torchserve" / "logs"
    ts_log = (logs / "ts_log.log").read_text(errors="replace")
    assert "[INFO ]" in ts_log and "[DEBUG]" not in ts_log
    assert "batch size" in (logs / "model_log.log").read_text(errors="replace")
    assert (service.data_dir / "logs" / "service.log").stat().st_size > 0


def test_an_appended_log_is_rotated_past_its_limit(tmp_path: Path) -> None:
    log = tmp_path / "torchserve.out"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" * 100)
        rotate_log(log, limit=1000, kept=3)
    assert not log.exists()
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["torchserve.out.1", "torchserve.out.2", "torchserve.out.3"]
    assert (tmp_path / "torchserve.out.1").read_text().startswith("generation 4")
    log.write_text("small\n")
    rotate_log(log, limit=1000, kept=3)
    assert log.read_text() == "small\n"


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout}s")


def loaded_and_default(service: Service) -> tuple[set[int], int | None]:
    listing = service.get("/api/v1/models").json()
    return {v["version"] for v in listing["versions"] if v["loaded"]}, listing["default_version"]


def test_a_killed_jvm_is_restarted_with_every_loaded_version(service: Service) -> None:
    """Two versions are loaded; after the JVM is killed, the supervisor restarts TorchServe and
    registers both again, with the same default. Synchronised on the service's own state and log,
    not on a time window."""
    if len(service.get("/api/v1/models").json()["versions"]) < 2:
        job = service.post("/api/v1/train", json={"mode": "fast", "seed": 7}).json()
        assert service.wait_job(job["job_id"])["status"] == "succeeded"
    _, default = loaded_and_default(service)
    versions = [v["version"] for v in service.get("/api/v1/models").json()["versions"]]
    other = next(version for version in versions if version != default)
    answer = service.post("/api/v1/classify", params={"version": other}, json=TICKET)
    assert answer.status_code == 200, answer.text  # loads it (back) beside the default
    loaded, _ = loaded_and_default(service)
    assert loaded == {default, other}
    old_jvm = jvm(service)
    old_key = owner_key(service, "management")
    killed_at = time.monotonic()
    old_jvm.send_signal(signal.SIGKILL)
    old_jvm.wait(10)

    answer = service.post("/api/v1/classify", json=TICKET)
    if answer.status_code != 200:  # during the restart: the documented 503
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) > 0

    def logged(line: str) -> bool:
        return line in service.log_path.read_text(errors="replace")

    wait_for(lambda: logged("TorchServe died (exit"), 60, "the supervisor noticing the death")
    wait_for(lambda: logged("TorchServe is back after"), 120, "the restart")
    assert service.get("/healthz").json()["restarts"] == 1
    wait_for(lambda: loaded_and_default(service)[0] == loaded, 120, "every version loaded again")
    recovered_s = time.monotonic() - killed_at
    print(f"versions {sorted(loaded)} loaded again {recovered_s:.1f}s after the JVM was killed")
    assert loaded_and_default(service) == (loaded, default)
    for version in sorted(loaded):
        answer = service.post("/api/v1/classify", params={"version": version}, json=TICKET)
        assert answer.status_code == 200 and answer.json()["model_version"] == version
    health = service.get("/healthz").json()
    assert health == {"status": "ok", "torchserve": "up", "restarts": 1, "detail": None}
    assert service.wait_ready()["model_version"] == default
    # New JVM, new keys; the old launcher was reaped, not left a zombie.
    assert jvm(service).pid != old_jvm.pid
    assert owner_key(service, "management") != old_key
    zombies = [
        child
        for child in psutil.Process(service.process.pid).children(recursive=True)
        if child.status() == psutil.STATUS_ZOMBIE
    ]
    assert zombies == []


def test_more_versions_than_may_stay_loaded_each_answer_on_demand(service: Service) -> None:
    """TICKETSERVE_MAX_LOADED_VERSIONS (2 here): with three versions, asking each by version
    loads it back on demand, and never more than two stay registered."""
    while len(service.get("/api/v1/models").json()["versions"]) < 3:
        job = service.post("/api/v1/train", json={"mode": "fast", "seed": 8}).json()
        assert service.wait_job(job["job_id"])["status"] == "succeeded"
    versions = sorted(v["version"] for v in service.get("/api/v1/models").json()["versions"])
    assert len(versions) == 3
    _, default = loaded_and_default(service)
    for version in [*versions, *reversed(versions)]:
        answer = service.post("/api/v1/classify", params={"version": version}, json=TICKET)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == version
        loaded, now_default = loaded_and_default(service)
        assert version in loaded and len(loaded) <= 2, loaded
        assert now_default == default and default in loaded  # the default is never evicted
