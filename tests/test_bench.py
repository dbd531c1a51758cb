"""The benchmarks that train and measure in process run in their smoke setting
(tests/bench_smoke.py)."""

from __future__ import annotations

import pytest
from bench_smoke import CASES, SERVING, run_smoke

pytestmark = pytest.mark.slow  # every bench's smoke run


@pytest.mark.parametrize("name", [name for name in CASES if name not in SERVING])
def test_smoke_run_prints_its_table(name: str) -> None:
    run_smoke(name)
