"""The benchmarks that start the service or TorchServe, and the GPU server kits, run in their
smoke setting (tests/bench_smoke.py)."""

from __future__ import annotations

import pytest
from bench_smoke import SERVING, run_smoke

pytestmark = pytest.mark.slow  # every bench's smoke run


@pytest.mark.parametrize("name", SERVING)
def test_smoke_run_prints_its_table(name: str) -> None:
    run_smoke(name)
