"""Logs people can use: text or JSON lines, and one request id per HTTP request, on its answer
(`X-Request-ID`) and on every log line written while it is handled.

One real `ticketserve serve` logging JSON (no model needed), plus the app in-process for what a
real client cannot provoke (a 500) and for the text format.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_service import TICKETSERVE, Service, tickets_csv
from fastapi.testclient import TestClient

from shim.api.app import create_app
from shim.api.logs import configure_logging
from shim.api.request_id import accepted_id
from shim.settings import Settings, SettingsError

pytestmark = pytest.mark.slow  # the real service

API_KEY = "logs-key-0123456789"
NEW_ID = re.compile(r"[0-9a-f]{32}")
UNSAFE_IDS = [
    "x" * 129,
    "two words",
    "tab\tinside",
    "[req=forged]",
    'quote"d',
    "café-1",  # sent as latin-1 bytes
]


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of `path` as JSON (fails on any other line)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines, f"{path} is empty"
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON in {path.name}: {line!r}") from exc
    return parsed


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"TICKETSERVE_LOG_FORMAT": "json", "TICKETSERVE_MAX_REQUEST_BYTES": "1024"}
    service = Service(tmp_path_factory.mktemp("logs") / "var", env=env, api_key=API_KEY)
    service.start()
    try:
        yield service
    finally:
        service.cleanup()


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers: give pytest its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def failing_app(settings: Settings) -> TestClient:
    """The real app with one route that fails, for the 500 no client input can cause."""
    app = create_app(settings)

    @app.get("/fail")
    def fail() -> None:
        raise RuntimeError("a bug")

    return TestClient(app, raise_server_exceptions=False)


# -- the id on every answer ------------------------------------------------------------------


def test_every_answer_of_the_service_has_a_request_id(service: Service) -> None:
    key = service.headers()
    answers = {
        200: service.get("/api/v1/models"),
        401: requests.get(f"{service.base}/api/v1/models", timeout=30),
        404: service.get("/api/v1/nothing-here"),
        413: service.post("/api/v1/classify", data=b"x" * 2048),
        422: service.post("/api/v1/classify", json={"ticket_data": ""}),
    }
    ids = set()
    for status, answer in answers.items():
        assert answer.status_code == status, answer.text
        assert NEW_ID.fullmatch(answer.headers["X-Request-ID"]), answer.headers
        ids.add(answer.headers["X-Request-ID"])
    with requests.Session() as session:  # one kept-alive connection: still one id per request
        for _ in range(2):
            answer = session.get(f"{service.base}/api/v1/models", headers=key, timeout=30)
            ids.add(answer.headers["X-Request-ID"])
    assert len(ids) == len(answers) + 2


def test_a_safe_client_id_is_reused(service: Service) -> None:
    for given in ("nginx-0f3a9c.2_~+", "x" * 128):
        answer = service.get("/api/v1/models", headers={**service.headers(), "X-Request-ID": given})
        assert answer.status_code == 200 and answer.headers["X-Request-ID"] == given


@pytest.mark.parametrize("given", UNSAFE_IDS)
def test_an_unsafe_client_id_is_replaced(service: Service, given: str) -> None:
    header = given.encode("latin-1")
    answer = service.get("/api/v1/models", headers={**service.headers(), "X-Request-ID": header})
    assert answer.status_code == 200
    assert NEW_ID.fullmatch(answer.headers["X-Request-ID"]), answer.headers


@pytest.mark.parametrize(
    "given", [b"a\nb", b"id\r\nX-Evil: 1", b"nul\x00", b"caf\xc3\xa9", b"", b" padded "]
)
def test_ids_no_client_library_would_send_are_replaced_too(given: bytes) -> None:
    assert NEW_ID.fullmatch(accepted_id(given))
    assert accepted_id(None) != accepted_id(None)


def test_errors_of_the_app_have_a_request_id_too(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, api_key="k3y")
    with failing_app(settings) as client:
        key = {"Authorization": "Bearer k3y"}
        answers = {
            405: client.delete("/api/v1/classify", headers=key),
            400: client.post("/api/v1/train", headers=key),  # no data yet
            503: client.post("/api/v1/classify", json={"ticket_data": "printer"}, headers=key),
            500: client.get("/fail"),
        }
        for status, answer in answers.items():
            assert answer.status_code == status, answer.text
            assert NEW_ID.fullmatch(answer.headers["X-Request-ID"]), (status, answer.headers)
        given = client.get("/fail", headers={"X-Request-ID": "trace-500"})
        assert given.headers["X-Request-ID"] == "trace-500"


# -- the id in the log -----------------------------------------------------------------------


def test_json_lines_on_the_console_and_in_the_file(service: Service) -> None:
    """A cancelled job: the line the cancel request writes carries the request's id."""
    assert service.upload_csv(tickets_csv(150, seed=4)).status_code == 201
    job_id = service.post("/api/v1/train", json={}).json()["job_id"]
    service.wait_job(job_id, until=("running",))
    cancel = service.post(f"/api/v1/train/{job_id}/cancel", headers={"X-Request-ID": "cancel-7"})
    assert cancel.status_code == 200 and cancel.headers["X-Request-ID"] == "cancel-7"

    for path in (service.data_dir / "logs" / "service.log", service.log_path):
        lines = json_lines(path)
        for line in lines:
            assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
        cancelled = [line for line in lines if line["message"] == f"job {job_id} cancelled"]
        assert [line["request_id"] for line in cancelled] == ["cancel-7"], path
        # uvicorn's own lines go the same way; outside a request the id is null.
        started = [line for line in lines if line["message"] == "Application startup complete."]
        assert started and started[0]["request_id"] is None, path
        # The API's address (uvicorn names none for the socket the service bound first).
        assert f"API on http://127.0.0.1:{service.port}" in [line["message"] for line in lines]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_the_lines_about_a_failed_request_carry_its_id(
    tmp_path: Path, root_logging: None, log_format: str
) -> None:
    log = tmp_path / "logs" / "service.log"
    configure_logging(log_format, log)  # type: ignore[arg-type]
    logging.getLogger("shim.test").warning("outside any request")
    with failing_app(Settings(data_dir=tmp_path / "var")) as client:
        assert client.get("/fail", headers={"X-Request-ID": "fail-1"}).status_code == 500
    if log_format == "text":
        text = log.read_text(encoding="utf-8")
        assert "WARNING shim.test [req=-]: outside any request" in text
        assert "ERROR shim.api.app [req=fail-1]: unhandled error in GET /fail" in text
        assert "RuntimeError: a bug" in text
    else:
        lines = {line["message"]: line for line in json_lines(log)}
        assert lines["outside any request"]["request_id"] is None
        failed = lines["unhandled error in GET /fail"]
        assert failed["request_id"] == "fail-1" and "RuntimeError: a bug" in failed["exc_info"]


# -- the setting -----------------------------------------------------------------------------


def test_the_log_format_setting(tmp_path: Path) -> None:
    assert Settings.from_env({}).log_format == "text"
    assert Settings.from_env({"TICKETSERVE_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(SettingsError, match=r"TICKETSERVE_LOG_FORMAT \(log_format\): Input should"):
        Settings.from_env({"TICKETSERVE_LOG_FORMAT": "yaml"})
    env = {**os.environ, "TICKETSERVE_LOG_FORMAT": "JSON"}
    env.pop("TICKETSERVE_API_KEY", None)
    run = subprocess.run(
        [TICKETSERVE, "serve", "--data-dir", str(tmp_path / "var")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 1
    assert (
        "error: invalid settings: TICKETSERVE_LOG_FORMAT (log_format): Input should" in run.stderr
    )
    assert not (tmp_path / "var").exists()
