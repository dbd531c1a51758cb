"""Settings, the request schemas, auth and the error shape, on an in-process app (no TorchServe).

The real service with TorchServe is tested over HTTP in test_api.py and test_api_restart.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from shim.api.app import create_app
from shim.metrics import route_template
from shim.schemas import ClassifyRequest, TrainRequest
from shim.settings import Settings, SettingsError, is_loopback


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {
        "TICKETSERVE_PORT": "9001",
        "TICKETSERVE_DATA_DIR": str(tmp_path),
        "TICKETSERVE_CONFIDENCE_THRESHOLDS": "queue=0.4, priority=0.3",
        "TICKETSERVE_FALLBACK_LABELS": '{"queue": "Triage"}',
        "TICKETSERVE_TRAIN_DEFAULTS": "epochs=2,max_length=64",
        "TICKETSERVE_PROMOTION": "always",
        "TICKETSERVE_RT_QUEUES": "General, Support desk",
        "TICKETSERVE_RT_PRIORITIES": '{"Low": 0, "Urgent": 90}',
        "UNRELATED": "x",
    }
    settings = Settings.from_env(env, port=9002)
    assert settings.port == 9002  # a flag beats the environment
    assert settings.data_dir == tmp_path
    assert settings.confidence_thresholds == {"queue": 0.4, "priority": 0.3}
    assert settings.fallback_labels == {"queue": "Triage"}
    assert settings.train_defaults == {"epochs": 2, "max_length": 64}
    assert settings.promotion == "always"
    assert settings.rt_queues == ["General", "Support desk"]
    assert settings.rt_priorities == {"Low": 0, "Urgent": 90}
    assert Settings.from_env({}).max_upload_bytes == 50 * 1024 * 1024


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TICKETSERVE_PORT": "eighty"}, "port"),
        ({"TICKETSERVE_PROMOTION": "sometimes"}, "promotion"),
        ({"TICKETSERVE_CONFIDENCE_THRESHOLDS": "queue=1.5"}, "threshold for 'queue'"),
        ({"TICKETSERVE_TRAIN_DEFAULTS": "epochs"}, "expected key=value"),
        ({"TICKETSERVE_TARGET_PRECISION": "queue=0"}, "target precision for 'queue'"),
        (
            {
                "TICKETSERVE_TARGET_PRECISION": "queue=0.9",
                "TICKETSERVE_CONFIDENCE_THRESHOLDS": "queue=0.5",
            },
            "both a confidence threshold and a target precision",
        ),
        ({"TICKETSERVE_RT_QUEUES": '["General", ""]'}, "rt_queues"),
        ({"TICKETSERVE_RT_QUEUES": "[General"}, "invalid JSON"),
        ({"TICKETSERVE_RT_POLL_S": "0"}, "rt_poll_s"),
        ({"TICKETSERVE_RT_URL": "ftp://rt.example.com"}, "rt_url"),
        ({"TICKETSERVE_DATABASE_URL": "db.example.com"}, "DATABASE_URL .* not a database URL"),
        (
            {"TICKETSERVE_DATABASE_URL": "mysql://u:hunter2@db/tickets"},
            "kept in sqlite or postgresql, not 'mysql'",
        ),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as error:
        Settings.from_env(env)
    assert "hunter2" not in str(error.value)  # a password in a URL is never repeated


def test_an_environment_file_is_read_under_the_environment_and_flags(tmp_path: Path) -> None:
    env_file = tmp_path / "ticketserve.env"
    env_file.write_text(
        "# comments, blanks and other programs' variables are allowed\n\n"
        "HTTPS_PROXY=http://proxy:3128\nTICKETSERVE_CACHE=/var/cache/ticketserve\n"
        "TICKETSERVE_PORT=9000\nTICKETSERVE_DRIFT_WINDOW=300\nTICKETSERVE_RT_QUEUES=A, B\n"
        "TICKETSERVE_PROMOTION=never\n"
    )
    settings = Settings.from_env({"TICKETSERVE_PORT": "9001"}, env_file, promotion="always")
    assert (settings.port, settings.drift_window, settings.rt_queues) == (9001, 300, ["A", "B"])
    assert settings.promotion == "always"  # flag > environment > file

    env_file.write_text("TICKETSERVE_PROMOTON=always\n")
    with pytest.raises(SettingsError, match="TICKETSERVE_PROMOTON names no setting"):
        Settings.from_env({}, env_file)
    env_file.write_text("TICKETSERVE_DRIFT_WINDOW=5\n")
    with pytest.raises(
        SettingsError, match=f"TICKETSERVE_DRIFT_WINDOW .drift_window. in {env_file}"
    ):
        Settings.from_env({}, env_file)
    with pytest.raises(SettingsError, match="environment file .*missing.env does not exist"):
        Settings.from_env({}, tmp_path / "missing.env")


def test_a_bad_value_names_its_variable() -> None:
    with pytest.raises(SettingsError, match=r"TICKETSERVE_MAX_BATCH \(max_batch\): Input should"):
        Settings.from_env({"TICKETSERVE_MAX_BATCH": "100000"})
    with pytest.raises(SettingsError, match="TICKETSERVE_TRAIN_DEFAULTS .* epochs must be"):
        Settings.from_env({"TICKETSERVE_TRAIN_DEFAULTS": "epochs=0"})
    with pytest.raises(SettingsError, match="invalid settings: port: Input should be less"):
        Settings.from_env({}, port=70_000)  # a flag is named as the flag's setting


def test_rt_on_without_a_token_names_the_setting() -> None:
    settings = Settings.from_env({"TICKETSERVE_RT_URL": "https://rt.example.com"})
    with pytest.raises(SettingsError, match="TICKETSERVE_RT_TOKEN"):
        settings.rt_token_value()
    off = {"TICKETSERVE_RT_URL": "https://rt.example.com", "TICKETSERVE_RT_MODE": "off"}
    assert Settings.from_env(off).rt_token_value() is None


def test_a_public_address_needs_an_api_key(tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    with pytest.raises(SettingsError, match="refusing to listen on 0.0.0.0"):
        Settings(host="0.0.0.0").check_exposure()
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    settings = Settings(host="0.0.0.0", api_key_file=key_file)
    settings.check_exposure()
    assert settings.resolved_api_key() == "s3cret"
    # A key from the environment is stripped; a blank one is no key.
    assert Settings.from_env({"TICKETSERVE_API_KEY": " k3y \n"}).resolved_api_key() == "k3y"
    with pytest.raises(SettingsError, match="refusing to listen on 0.0.0.0"):
        Settings.from_env(
            {"TICKETSERVE_API_KEY": "  \t ", "TICKETSERVE_HOST": "0.0.0.0"}
        ).check_exposure()


def test_classify_request_forms() -> None:
    assert ClassifyRequest(ticket_data=" printer ").items()[0].text() == "printer"
    assert ClassifyRequest(subject="Drucker", body="kaputt").items()[0].text() == "Drucker\nkaputt"
    batch = ClassifyRequest.model_validate({"tickets": [{"ticket_data": "a"}, {"body": "b"}]})
    assert [t.parts() for t in batch.items()] == [(None, "a"), (None, "b")]
    html = ClassifyRequest(body="<p>x</p>", content_type="text/html").items()[0]
    assert html.is_markup() and html.parts() == (None, "<p>x</p>")
    for bad in ({}, {"ticket_data": ""}, {"subject": " ", "body": ""}, {"tickets": []},
                {"ticket_data": "a", "subject": "b"}, {"ticket_data": "a", "tickets": []},
                {"tickets": [{"text": "a"}]}, {"ticket_data": "a", "content_type": "text/rtf"},
                {"tickets": [{"ticket_data": "a"}], "content_type": "text/html"}):  # fmt: skip
        with pytest.raises(ValidationError):
            ClassifyRequest.model_validate(bad)


def test_train_request_mirrors_the_training_config() -> None:
    assert TrainRequest(epochs=2).model_dump(exclude_none=True) == {"epochs": 2}
    schema = TrainRequest.model_json_schema()["properties"]
    assert {"epochs", "max_length", "learning_rate", "base_model"} <= set(schema)
    with pytest.raises(ValidationError):
        TrainRequest.model_validate({"epochs": "2"})


def test_route_template_keeps_the_mount_prefix() -> None:
    class Route:
        path = "/train/{job_id}"

    scope = {"route": Route(), "path": "/api/v1/train/abc", "path_params": {"job_id": "abc"}}
    assert route_template(scope) == "/api/v1/train/{job_id}"
    assert route_template({"path": "/nothing"}) == "unmatched"


def test_api_key_guards_every_api_route_but_not_operations(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path, api_key="k3y"))
    with TestClient(app) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic k3y"}):
            answer = client.get("/api/v1/train-data", headers=headers)
            assert answer.status_code == 401
            assert answer.json()["error"]["code"] == "unauthorized"
        ok = client.get("/api/v1/train-data", headers={"Authorization": "Bearer k3y"})
        assert ok.status_code == 200 and ok.json()["rows"] == 0
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_every_error_has_the_same_shape(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        answers = {
            404: client.get("/api/v1/nope"),
            405: client.delete("/api/v1/classify"),
            422: client.post("/api/v1/classify", json={"ticket_data": ""}),
            400: client.post("/api/v1/train"),  # no data yet
            503: client.post("/api/v1/classify", json={"ticket_data": "printer"}),
        }
        for status, answer in answers.items():
            assert answer.status_code == status
            assert set(answer.json()) == {"error"}
            assert set(answer.json()["error"]) == {"code", "message", "details"}
        assert answers[503].headers["retry-after"] == "10"
        assert client.get("/readyz").status_code == 503


def answer(confidence: float, auto_route: bool | None, version: str = "1") -> dict:
    """A ticket as the archive's handler answers it (auto_route None: a model without gates)."""
    head = {"label": "Hardware", "confidence": confidence, "top_k": [["Hardware", confidence]]}
    if auto_route is not None:
        head["auto_route"] = auto_route
    return {"queue": head, "model_version": version}


@pytest.mark.parametrize(
    ("settings", "raw", "auto_route", "label"),
    [
        ({}, answer(0.7, True), True, "Hardware"),  # the gate the model was trained with
        ({}, answer(0.7, False), False, "Unclassified"),
        ({}, answer(0.7, None), False, "Hardware"),  # an older model: no gate, label kept
        ({"confidence_thresholds": {"queue": 0.6}}, answer(0.7, False), True, "Hardware"),
        ({"confidence_thresholds": {"queue": 0.8}}, answer(0.7, True), False, "Unclassified"),
        ({"target_precision": {"queue": 0.9}}, answer(0.7, True, "7"), False, "Hardware"),
    ],
)
def test_the_gate_of_a_head(tmp_path: Path, settings, raw, auto_route, label) -> None:
    """Configured threshold first, then a target precision on the serving version's curve
    (version 7 is not in this registry: no curve, no gate), then the model's own gate."""
    from shim.metrics import ApiMetrics
    from shim.serving.classifier import Classifier
    from shim.store.registry import Store

    config = Settings(data_dir=tmp_path, **settings)
    classifier = Classifier(config, Store(tmp_path), None, None, ApiMetrics())  # type: ignore[arg-type]
    ticket = classifier.ticket(raw)
    assert ticket.auto_route is auto_route and ticket.queue is not None
    assert ticket.queue.label == label and ticket.queue.model_label == "Hardware"


def test_the_admin_commands_read_the_environment_file(tmp_path: Path, capsys, monkeypatch) -> None:
    """`--env-file` reaches the commands: backup finds the data directory the file names, and a
    bad line stops serve before anything starts."""
    from shim.cli import main

    def status(argv: list[str]) -> int:
        try:
            return main(argv)
        except SystemExit as exit_:  # serve exits with its status; a UserError returns it
            return int(exit_.code or 0)

    monkeypatch.delenv("TICKETSERVE_DATA_DIR", raising=False)
    env_file = tmp_path / "ticketserve.env"
    env_file.write_text(f"TICKETSERVE_DATA_DIR={tmp_path / 'from-file'}\n")
    assert status(["backup", str(tmp_path / "b.tar.gz"), "--env-file", str(env_file)]) == 1
    assert f"no registry at {tmp_path / 'from-file'}" in capsys.readouterr().err
    env_file.write_text("TICKETSERVE_PORT=eighty\n")
    assert status(["serve", "--env-file", str(env_file), "--data-dir", str(tmp_path / "var")]) == 1
    assert f"TICKETSERVE_PORT (port) in {env_file}" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()


def test_a_port_in_use_stops_serve_before_anything_starts(tmp_path: Path, capsys) -> None:
    """The API's socket is bound first: a taken port is one line and exit status 1, with no
    TorchServe started and nothing written (and TorchServe's own ports can never take it)."""
    import socket

    from shim.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "var"),
        ]
        with pytest.raises(SystemExit) as exit_:
            main(argv)
    assert exit_.value.code == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err
    assert not (tmp_path / "var").exists()
