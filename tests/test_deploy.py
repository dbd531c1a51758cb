"""The systemd unit and its environment file say only what the service understands."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from shim.cli import build_parser
from shim.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def unit(name: str = "ticketserve.service") -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    assert parser.read(DEPLOY / name)
    return parser


def test_the_environment_file_is_valid_settings() -> None:
    env = {}
    for line in (DEPLOY / "ticketserve.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    assert all(name.startswith("TICKETSERVE_") for name in env)
    settings = Settings.from_env({}, env_file=DEPLOY / "ticketserve.env")
    assert settings == Settings.from_env(env)  # as systemd's EnvironmentFile reads it
    assert settings.api_key == "change-me" and settings.host == "127.0.0.1"
    assert set(env) <= {f"TICKETSERVE_{name.upper()}" for name in Settings.model_fields}


def test_the_unit_starts_the_service_with_arguments_it_accepts() -> None:
    service = unit()["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/bin/ticketserve")
    args = build_parser()[0].parse_args(command[1:])
    assert args.command == "serve" and args.data_dir == Path("/var/lib/ticketserve")
    assert service["User"] == "ticketserve" and service["NoNewPrivileges"] == "yes"
    assert service["EnvironmentFile"] == "/etc/ticketserve/ticketserve.env"


def test_the_retrain_timer_runs_a_command_the_cli_accepts() -> None:
    service = unit("ticketserve-retrain.service")["Service"]
    command = shlex.split(service["ExecStart"])
    args = build_parser()[0].parse_args(command[1:])
    assert args.command == "retrain" and args.if_new_data
    assert service["EnvironmentFile"] == unit()["Service"]["EnvironmentFile"]
    assert service["User"] == "ticketserve" and service["Type"] == "oneshot"
    assert unit("ticketserve-retrain.timer")["Timer"]["OnCalendar"]
