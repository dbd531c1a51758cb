"""The package layout: dependencies point one way and no modules import each other in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "shim", "handlers")


def imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at the top or inside functions alike."""
    graph: dict[str, set[str]] = {}
    modules = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
    }
    for module in modules:
        path = ROOT / (module.replace(".", "/") + ".py")
        if not path.exists():
            path = ROOT / module.replace(".", "/") / "__init__.py"
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            found |= {name for name in names if name in modules and name != module}
        graph[module] = found
    return graph


def test_no_module_imports_itself_through_others() -> None:
    graph = imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert len(graph) > 40  # the walk saw the whole project


def test_dependencies_point_from_the_service_to_training() -> None:
    graph = imports()
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if (module.startswith("training") and not target.startswith("training"))
        or (module.startswith("handlers") and not target.startswith("handlers"))
    )
    assert upward == []


# shim's rooms, lowest first: a room imports only rooms below it and the shared modules at
# shim's top; the entry points compose them all. Rooms of one rank stand side by side and do not
# import each other.
SHIM_RANKS = {"store": 0, "serving": 1, "quality": 1, "desks": 1, "jobs": 2, "api": 3}
SHIM_SHARED = {"settings", "limits", "errors", "metrics", "schemas"}
SHIM_ENTRY_POINTS = {"cli", "serve"}
# training's rooms likewise. Its shared modules sit on the text room (config reads the rules of
# texts and head names), which imports only the two below it.
TRAINING_RANKS = {"text": 0, "inference": 1, "encoders": 2, "fit": 3, "export": 4}
TRAINING_SHARED = {"errors", "files", "config", "config_flags", "modes", "progress"}
TRAINING_BELOW_TEXT = {"training.errors", "training.files"}
TRAINING_ENTRY_POINTS = {"cli", "job", "train"}


def room_violations(
    package: str, ranks: dict[str, int], shared: set[str], entry_points: set[str]
) -> tuple[list[str], list[str]]:
    """Imports that break the rooms' order, and modules at the package's top that are neither
    shared nor an entry point."""

    def room(module: str) -> str | None:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 and parts[1] in ranks else None

    shared_modules = {package} | {f"{package}.{name}" for name in shared}
    entry_modules = {f"{package}.{name}" for name in entry_points}
    graph = imports()
    wrong = []
    for module, targets in graph.items():
        if not module.startswith(package) or module in entry_modules:
            continue
        for target in (t for t in targets if t.startswith(package)):
            source, into = room(module), room(target)
            if source is None:  # a shared module: other shared ones (training's: and text)
                ok = target in shared_modules or (package == "training" and into == "text")
            elif package == "training" and source == "text" and into is None:
                ok = target in TRAINING_BELOW_TEXT
            else:
                ok = into == source or (into is None and target in shared_modules)
                ok = ok or (into is not None and ranks[into] < ranks[source])
            if not ok:
                wrong.append(f"{module} -> {target}")
    loose = {
        module.removeprefix(f"{package}.")
        for module in graph
        if module.startswith(f"{package}.") and module.count(".") == 1 and room(module) is None
    }
    return sorted(wrong), sorted(loose - shared - entry_points)


@pytest.mark.parametrize(
    ("package", "ranks", "shared", "entry_points"),
    [
        ("shim", SHIM_RANKS, SHIM_SHARED, SHIM_ENTRY_POINTS),
        ("training", TRAINING_RANKS, TRAINING_SHARED, TRAINING_ENTRY_POINTS),
    ],
)
def test_rooms_import_only_rooms_below_them(
    package: str, ranks: dict[str, int], shared: set[str], entry_points: set[str]
) -> None:
    wrong, loose = room_violations(package, ranks, shared, entry_points)
    assert wrong == []
    assert loose == [], "a module at the top that is neither shared nor an entry point"


def test_every_package_is_installed() -> None:
    """A folder with an __init__.py that pyproject.toml does not list would be missing from the
    wheel, and so from the offline bundle."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for package in (*PACKAGES, "connectors")
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert found == set(setuptools["packages"])


def test_the_api_process_does_not_load_torch() -> None:
    """The API process only routes requests: torch (about a second and a few hundred MB) is for
    the training and TorchServe processes. Checked in a fresh interpreter, after the app is built
    and has answered an upload, a listing and a classify without a model. Nor does it start with
    scikit-learn or scipy (most of a second each service or CLI start): the few routes that
    compute with them import them when called."""
    script = """
import sys, tempfile
from fastapi.testclient import TestClient
import shim.cli, shim.serve
from shim.api.app import create_app
from shim.settings import Settings
client = TestClient(create_app(Settings(data_dir=tempfile.mkdtemp())))
print(sorted({name.split(".")[0] for name in sys.modules} & {"sklearn", "scipy"}))
csv = "text,queue\\n" + "".join(f"printer {i},Hardware\\nrefund {i},Billing\\n" for i in range(5))
answers = [
    client.post("/api/v1/train-data", content=csv, headers={"Content-Type": "text/csv"}),
    client.get("/api/v1/models"),
    client.post("/api/v1/classify", json={"ticket_data": "printer"}),
]
print([answer.status_code for answer in answers])
print(sorted({name.split(".")[0] for name in sys.modules} & {"torch", "transformers"}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    at_start, statuses, loaded = done.stdout.strip().splitlines()[-3:]
    assert at_start == "[]", at_start
    assert statuses == "[201, 200, 503]", done.stdout
    assert loaded == "[]", loaded


def test_the_long_files_handed_out_first_exist() -> None:
    """conftest.LONG_FILES orders the suite for time: a renamed file would silently drop out."""
    from conftest import LONG_FILES

    missing = [name for name in LONG_FILES if not (ROOT / "tests" / name).is_file()]
    assert not missing, f"conftest.LONG_FILES names files that do not exist: {missing}"
