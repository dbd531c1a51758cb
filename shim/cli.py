"""The `ticketserve` console script: the training commands plus `serve` (the /api/v1 service).

It lives on the shim side so that `training` never imports `shim`: the training CLI's parser is
reused and gains one subcommand.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from training import cli as training_cli


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The training CLI's parser with the `serve` subcommand added."""
    parser, commands = training_cli.build_parser()
    serve = commands.add_parser(
        "serve",
        help="run the /api/v1 service (starts TorchServe, then the API)",
        description="Settings not given as flags come from TICKETSERVE_* environment variables "
        "(see docs/api.md).",
    )
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument(
        "--data-dir", type=Path, help="registry, uploads, models and archives (default var/)"
    )
    serve.add_argument(
        "--api-key-file", type=Path, help="file holding the API key (or TICKETSERVE_API_KEY)"
    )
    serve.set_defaults(handler=cmd_serve)
    return parser, commands


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the service with settings from the environment and the flags."""
    from shim.settings import Settings, SettingsError

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # One line per TorchServe call would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = Settings.from_env(
            host=args.host, port=args.port, data_dir=args.data_dir, api_key_file=args.api_key_file
        )
        settings.check_exposure()  # before the heavy imports below: a refusal is immediate
    except SettingsError as exc:
        _fail(exc)
    from shim.serve import serve
    from shim.torchserve import TorchServeStartError

    try:
        serve(settings)
    except (SettingsError, TorchServeStartError) as exc:
        _fail(exc)


def _fail(exc: Exception) -> NoReturn:
    print(f"ticketserve serve: error: {exc}", file=sys.stderr)
    raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ticketserve` console script; returns the exit status."""
    return training_cli.main(argv, build=build_parser)


if __name__ == "__main__":
    sys.exit(main())
