"""The Kubernetes manifests (deploy/kubernetes/) are valid objects of a current Kubernetes, and
say only what the service understands."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from shim.cli import build_parser
from shim.settings import Settings
from training.encoders.base_models import CACHE_ENV

MANIFESTS = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes"
KUBERNETES = "1.37.0"


def objects() -> dict[str, dict]:
    """Every manifest's object, by kind."""
    found = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            (document,) = yaml.safe_load_all(path.read_text())
            found[document["kind"]] = document
    return found


@pytest.mark.parametrize("path", sorted(MANIFESTS.glob("*.yaml")), ids=lambda p: p.name)
def test_each_manifest_validates_strictly(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    if path.name == "kustomization.yaml":
        listed = set(document["resources"])
        assert listed <= {p.name for p in MANIFESTS.glob("*.yaml")}
        assert "autoscaler.yaml" not in listed  # optional: named in a comment
        return
    kubernetes_validate.validate(document, KUBERNETES, strict=True)


def test_the_strict_validation_can_fail() -> None:
    deployment = objects()["Deployment"]
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)


def test_the_deployment_runs_two_confined_replicas_of_the_service() -> None:
    manifests = objects()
    spec = manifests["Deployment"]["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    args = build_parser()[0].parse_args(container["args"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e for e in container["env"]}
    settings = {f"TICKETSERVE_{name.upper()}" for name in Settings.model_fields}
    assert set(env) - {CACHE_ENV} <= settings
    secret = manifests["Secret"]["stringData"]
    for item in env.values():
        if "valueFrom" in item:
            assert item["valueFrom"]["secretKeyRef"]["key"] in secret
    # Every path the service writes is a volume: the data directory, the shared one, /tmp.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.keys() == {str(args.data_dir), env["TICKETSERVE_SHARED_DIR"]["value"], "/tmp"}
    assert env[CACHE_ENV]["value"].startswith(str(args.data_dir))
    claim = manifests["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    shared = volumes[mounts[env["TICKETSERVE_SHARED_DIR"]["value"]]]
    assert shared["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    labels = spec["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget"):
        selector = manifests[kind]["spec"]["selector"]
        assert selector.get("matchLabels", selector) == labels
