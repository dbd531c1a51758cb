"""The benchmarks that train and measure in process run in their smoke setting
(tests/bench_smoke.py), and every script in bench/ has a smoke run."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_smoke import CASES, LIBRARIES, ROOT, RUN_BY, SERVING, run_smoke


@pytest.mark.slow  # every bench's smoke run
@pytest.mark.parametrize("name", [name for name in CASES if name not in SERVING])
def test_smoke_run_prints_its_table(name: str, request: pytest.FixtureRequest) -> None:
    if name == "base_encoders":  # it finds the e5 encoder in the run's cache, converted once
        request.getfixturevalue("e5_cache")
    run_smoke(name)


def test_every_script_in_bench_has_a_smoke_run() -> None:
    commands = {
        Path(part).name: name
        for name, (command, _) in CASES.items()
        for part in command
        if part.startswith("bench/")
    }
    for script in sorted((ROOT / "bench").glob("*.*")):
        if script.suffix not in (".py", ".sh") or script.name in LIBRARIES:
            continue
        case = commands.get(script.name) or RUN_BY.get(script.name)
        assert case in CASES, f"bench/{script.name} has no smoke run in tests/bench_smoke.py"
        if script.name in RUN_BY:  # the case's script must really run it
            runner = (ROOT / CASES[case][0][1]).read_text()
            assert f"bench/{script.name}" in runner, f"{case} does not run bench/{script.name}"
