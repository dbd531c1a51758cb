"""`ticketserve …` run in this process (no interpreter start, no torch import per call), with its
exit status, standard output and error as a subprocess would give them."""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from unittest import mock

from shim.cli import main


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def ticketserve(*args: str, env: dict[str, str] | None = None) -> Run:
    """`args` after `ticketserve`; `env`: variables set for the run only."""
    out, err = io.StringIO(), io.StringIO()
    with mock.patch.dict(os.environ, env or {}), redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's refusals, and the commands' own
            code = int(exc.code or 0)
    return Run(code, out.getvalue(), err.getvalue())
