"""The Containerfile, the Compose file and the Kubernetes Deployment agree with each other and
with the service: one image name and version, the port the image serves on, the data dir the
image declares, and only settings the service understands. (tests/test_image.py builds and runs
the image itself; the Compose file is checked here, not started: its PostgreSQL image comes from
a registry.)"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from shim.cli import build_parser
from shim.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
VERSION = importlib.metadata.version("ticketserve")
SECRETS = {"TICKETSERVE_API_KEY": "a-key", "POSTGRES_PASSWORD": "a-password"}


def containerfile() -> dict[str, str]:
    """The final stage's instructions, by name (the last of each wins, as in a build)."""
    text = (ROOT / "Containerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    return {
        match[1]: match[2].strip()
        for match in re.finditer(r"^([A-Z]+) (.*)$", final, flags=re.MULTILINE)
    }


def compose() -> dict:
    text = (ROOT / "deploy" / "compose.yaml").read_text()

    def interpolate(match: re.Match[str]) -> str:
        return SECRETS[match[1]]

    # ${NAME:?message}: Compose refuses to start without NAME; here every one has a value.
    return yaml.safe_load(re.sub(r"\$\{(\w+):\?[^}]*\}", interpolate, text))


def test_the_image_runs_the_service_as_its_own_user_on_its_data_volume() -> None:
    image = containerfile()
    entrypoint, command = json.loads(image["ENTRYPOINT"]), json.loads(image["CMD"])
    assert entrypoint[:2] == ["/usr/bin/tini", "--"] and entrypoint[2] == "ticketserve"
    args = build_parser()[0].parse_args(command)
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert image["EXPOSE"] == str(args.port)
    assert json.loads(image["VOLUME"]) == [str(args.data_dir)]
    assert image["USER"] == "10001:10001" and image["WORKDIR"] == str(args.data_dir)
    assert f":{args.port}/healthz" in image["HEALTHCHECK"]


def test_compose_runs_two_replicas_of_this_image_on_one_postgresql() -> None:
    image = containerfile()
    port = build_parser()[0].parse_args(json.loads(image["CMD"])).port
    data_dir = json.loads(image["VOLUME"])[0]
    services = compose()["services"]
    replicas = {
        name: s for name, s in services.items() if s["image"].endswith("/ticketserve:" + VERSION)
    }
    assert sorted(replicas) == ["replica-a", "replica-b"]
    database = services["database"]["environment"]
    published = set()
    for replica in replicas.values():
        env = replica["environment"]
        assert set(env) <= {f"TICKETSERVE_{name.upper()}" for name in Settings.model_fields}
        settings = Settings.from_env(env)  # every value is a valid setting
        url = urlsplit(settings.database_url)
        assert url.hostname == "database" and url.path == "/" + database["POSTGRES_DB"]
        assert (url.username, url.password) == (database["POSTGRES_USER"], "a-password")
        mounts = dict(volume.split(":")[::-1] for volume in replica["volumes"])
        assert mounts[env["TICKETSERVE_SHARED_DIR"]] == "shared", "one volume for every replica"
        published.add(mounts[data_dir])
        (mapping,) = replica["ports"]
        assert mapping.startswith("127.0.0.1:") and mapping.endswith(f":{port}")
        assert replica["read_only"] is True and replica["cap_drop"] == ["ALL"]
    assert len(published) == 2, "each replica keeps its own data volume"


def test_compose_and_kubernetes_run_the_image_of_this_version() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "deployment.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"ticketserve:{VERSION}"
    assert (
        container["ports"][0]["containerPort"]
        == build_parser()[0].parse_args(json.loads(containerfile()["CMD"])).port
    )
    assert compose()["x-replica"]["image"] == f"localhost/ticketserve:{VERSION}"
