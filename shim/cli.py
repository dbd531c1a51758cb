"""The `ticketserve` console script: the training commands plus `serve` (the /api/v1 service),
`backup` / `restore` of its data directory, `db upgrade` of its registry, and `retrain` (a client
of the running service).

It lives on the shim side so that `training` never imports `shim`: the training CLI's parser is
reused and gains these subcommands.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from training import cli as training_cli
from training.errors import UserError

if TYPE_CHECKING:
    from shim.settings import Settings
    from shim.store.backup import Summary
    from shim.store.registry.database import Database


def build_parser() -> tuple[argparse.ArgumentParser, Any]:
    """The training CLI's parser with the service's subcommands added."""
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
    _add_env_file(serve)
    serve.set_defaults(handler=cmd_serve)

    backup = commands.add_parser(
        "backup",
        help="back up the data directory to one .tar.gz (safe while the service runs)",
        description="Writes the registry, uploads, model versions and archives to OUT, a new "
        "file. Jobs' logs and TorchServe's files are not included.",
    )
    backup.add_argument("out", metavar="OUT", type=Path, help="backup file to write (.tar.gz)")
    _add_data_dir(backup, "data directory to back up")
    _add_env_file(backup)
    backup.set_defaults(handler=cmd_backup)

    restore = commands.add_parser(
        "restore",
        help="restore a backup into an empty or new data directory",
        description="Checks every file of IN against its manifest, then lays it out in the "
        "data directory; start the service there afterwards.",
    )
    restore.add_argument("archive", metavar="IN", type=Path, help="backup file to restore")
    _add_data_dir(restore, "data directory to fill: empty or new")
    _add_env_file(restore)
    restore.set_defaults(handler=cmd_restore)

    database = commands.add_parser(
        "db",
        help="the registry's database: `db upgrade` to this release's schema, `db copy --to URL` "
        "into another database",
        description="The service upgrades its registry when it starts; `db upgrade` does it "
        "beforehand. `db copy --to URL` copies the registry (SQLite in the data directory, or "
        "TICKETSERVE_DATABASE_URL) into an empty database, e.g. PostgreSQL; stop the service "
        "first, then start it with TICKETSERVE_DATABASE_URL=URL.",
    )
    database.add_argument(
        "action",
        choices=["upgrade", "copy"],
        help="upgrade: to this release's schema; copy: into the empty database --to names",
    )
    database.add_argument(
        "--to",
        metavar="URL",
        help="for copy: the target database, e.g. postgresql+psycopg://ticketserve@db/ticketserve",
    )
    _add_data_dir(database, "data directory whose registry to upgrade")
    _add_env_file(database)
    database.set_defaults(handler=cmd_db)

    retrain = commands.add_parser(
        "retrain",
        help="ask the running service to retrain with the latest job's settings (for cron)",
        description="POSTs /api/v1/retrain to the service named by TICKETSERVE_HOST/PORT (or "
        "--url), with TICKETSERVE_API_KEY or --api-key-file. Exit status 0 when a job started, "
        "nothing was new or a job is already running; 1 on an error.",
    )
    retrain.add_argument(
        "--if-new-data",
        action="store_true",
        help="only when uploads or corrections arrived since the latest job",
    )
    retrain.add_argument("--url", help="the service's base URL (default from the settings)")
    retrain.add_argument(
        "--api-key-file", type=Path, help="file holding the API key (or TICKETSERVE_API_KEY)"
    )
    _add_env_file(retrain)
    retrain.set_defaults(handler=cmd_retrain)

    history = commands.add_parser(
        "import",
        help="import a help desk's closed tickets into the running service's training data",
        description="Starts the import in the service named by TICKETSERVE_HOST/PORT (or --url), "
        "with TICKETSERVE_API_KEY or --api-key-file, and shows its progress. The tickets closed "
        "and changed since the day are stored with their final queue and priority; one "
        "imported before is not stored again. Exit status 0 when every page is read; 1 on an "
        "error (run the same command again: it resumes at the import's cursor).",
    )
    history.add_argument("connector", choices=IMPORT_CONNECTORS, help="the help desk")
    history.add_argument(
        "--since", required=True, type=_day, metavar="YYYY-MM-DD", help="the first day"
    )
    history.add_argument(
        "--page-size", type=int, default=100, help="tickets per page, 1 to 200 (default 100)"
    )
    history.add_argument("--url", help="the service's base URL (default from the settings)")
    history.add_argument(
        "--api-key-file", type=Path, help="file holding the API key (or TICKETSERVE_API_KEY)"
    )
    _add_env_file(history)
    history.set_defaults(handler=cmd_import)
    return parser, commands


IMPORT_CONNECTORS = ("zammad", "znuny", "rt")


def _day(text: str) -> str:
    """A --since value: a calendar day as YYYY-MM-DD."""
    from datetime import date

    try:
        if len(text) == len("YYYY-MM-DD"):
            return date.fromisoformat(text).isoformat()
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a day as YYYY-MM-DD: {text[:40]!r}")


def _add_env_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="FILE",
        help="TICKETSERVE_*=value lines, e.g. /etc/ticketserve/ticketserve.env (the process "
        "environment and the flags override them)",
    )


def _add_data_dir(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help=f"{what} (default TICKETSERVE_DATA_DIR, else var/)"
    )


def cmd_serve(args: argparse.Namespace) -> None:
    """Run the service with settings from the environment and the flags."""
    from shim.settings import Settings, SettingsError

    logging.getLogger().setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # One line per TorchServe call would drown the service's own log.
    logging.getLogger("httpx").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = Settings.from_env(
            env_file=args.env_file,
            host=args.host,
            port=args.port,
            data_dir=args.data_dir,
            api_key_file=args.api_key_file,
        )
        settings.check_exposure()  # before the heavy imports below: a refusal is immediate
    except SettingsError as exc:
        _fail(exc)
    from shim.serve import ListenError, serve
    from shim.serving.torchserve import TorchServeStartError

    try:
        serve(settings)
    except (SettingsError, ListenError, TorchServeStartError) as exc:
        _fail(exc)


def cmd_backup(args: argparse.Namespace) -> None:
    """Write a backup of the data directory; an error is one line and exit status 1."""
    from shim.store.backup import backup

    settings = _settings(args)
    if settings.database_url is not None or settings.shared_dir is not None:
        raise UserError(
            "backup copies a data directory that holds everything (SQLite registry and files); "
            "this service's registry is TICKETSERVE_DATABASE_URL or its files are in "
            "TICKETSERVE_SHARED_DIR: back up the database with its own tools (pg_dump) and the "
            "shared directory's datasets/, models/ and model_store/ beside it"
        )
    try:
        summary = backup(settings.data_dir, args.out)
    except OSError as exc:  # e.g. run as a user who may not read the data directory
        _fail(exc, args.command)
    print(
        f"wrote {summary.path} ({_megabytes(summary.bytes)}): {_contents(summary)}, "
        f"registry schema {summary.schema_version}"
    )


def cmd_restore(args: argparse.Namespace) -> None:
    """Restore a backup into an empty or new data directory."""
    from shim.store.backup import restore

    try:
        summary = restore(args.archive, _data_dir(args))
    except OSError as exc:  # e.g. a target the user may not create
        _fail(exc, args.command)
    print(
        f"restored {args.archive} into {summary.path}: {_contents(summary)}; start the service "
        f"with --data-dir {summary.path}"
    )


def cmd_db(args: argparse.Namespace) -> None:
    """Upgrade the registry's schema in place, or copy the registry into another database."""
    from shim.store.registry import SCHEMA_VERSION
    from shim.store.registry.database import SQLITE_FILE, Database, sqlite_url

    settings = _settings(args)
    root = settings.data_dir.resolve()
    url = settings.database_url
    if url is None:
        registry = root / SQLITE_FILE
        if not registry.is_file():
            raise UserError(f"no registry at {registry}: is {root} a ticketserve data directory?")
        url = sqlite_url(registry)
    if (args.action == "copy") != (args.to is not None):
        raise UserError("--to URL goes with copy, and only with copy")
    database = Database(url, root)
    try:
        if args.action == "copy":
            _copy(database, args.to, root)
            return
        old = database.upgrade()
    except OSError as exc:  # e.g. run as a user who may not write the data directory
        _fail(exc, args.command)
    finally:
        database.close()
    where = database.where()
    if old == SCHEMA_VERSION:
        print(f"the registry {where} has schema version {SCHEMA_VERSION}, this release's")
    else:
        print(f"upgraded the registry {where}: schema version {old} -> {SCHEMA_VERSION}")


def _copy(source: Database, to: str, root: Path) -> None:
    from sqlalchemy.exc import OperationalError

    from shim.settings import check_database_url
    from shim.store.registry.copy import copy_registry
    from shim.store.registry.database import Database

    try:
        check_database_url(to)
    except ValueError as exc:
        raise UserError(f"--to: {exc}") from None
    target = Database(to, root)
    try:
        copied = copy_registry(source, target)
    except OperationalError as exc:  # a server that does not answer, a refused login
        raise UserError(f"cannot copy into {target.where()}: {exc.orig}") from None
    finally:
        target.close()
    print(
        f"copied the registry {source.where()} into {target.where()}: "
        f"{sum(copied.values())} rows in {len(copied)} tables; start the service with "
        "TICKETSERVE_DATABASE_URL set to it"
    )


def cmd_retrain(args: argparse.Namespace) -> None:
    """POST /api/v1/retrain to the running service and print what it did; a refusal or an
    unreachable service is a UserError (one line, exit status 1)."""
    import httpx

    url, headers = _service_access(args)
    try:
        answer = httpx.post(
            f"{url}/api/v1/retrain",
            params={"if_new_data": "true" if args.if_new_data else "false"},
            headers=headers,
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise UserError(f"the service at {url} does not answer: {exc}") from exc
    try:
        body = answer.json()
    except ValueError:
        body = None
    if answer.status_code in (200, 202) and isinstance(body, dict):
        print(body.get("reason", ""))
        return
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or answer.text[:300]
    if answer.status_code == 409 and error.get("code") == "job_running":
        print(f"nothing started: {message}")  # for cron, not an error
        return
    raise UserError(f"{url} answered {answer.status_code}: {message}")


def cmd_import(args: argparse.Namespace) -> None:
    """Start a help desk's history import in the running service and follow it to its end."""
    from shim.desks.import_client import ImportClient, follow

    url, headers = _service_access(args)
    state = follow(ImportClient(url, headers, args.connector), args.since, args.page_size)
    print(
        f"imported {state['imported']} ticket(s) from {args.connector} closed since "
        f"{args.since}: {state['duplicates']} imported before, {state['skipped']} skipped "
        f"(no queue or priority, or no usable text), {state['pages']} page(s)"
    )


def _service_access(args: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """The running service's URL (--url, else the settings' host and port) and the headers
    with its API key (--api-key-file, else the settings'); a bad one is a UserError."""
    from shim.settings import Settings, SettingsError

    try:
        settings = Settings.from_env(env_file=args.env_file, api_key_file=args.api_key_file)
        key = settings.resolved_api_key()
    except SettingsError as exc:
        raise UserError(str(exc)) from exc
    url = (args.url or _service_url(settings.host, settings.port)).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise UserError(f"--url must start with http:// or https://; got {url[:80]!r}")
    return url, {"Authorization": f"Bearer {key}"} if key else {}


def _service_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a service listening on `host`:`port`."""
    if host in ("0.0.0.0", "::", ""):  # every address: this machine's loopback answers
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _settings(args: argparse.Namespace) -> Settings:
    """The service's settings (--env-file, the environment), with --data-dir."""
    from shim.settings import Settings, SettingsError

    try:
        return Settings.from_env(env_file=args.env_file, data_dir=args.data_dir)
    except SettingsError as exc:
        _fail(exc, args.command)


def _data_dir(args: argparse.Namespace) -> Path:
    """--data-dir, else the service's own setting (TICKETSERVE_DATA_DIR, else var/)."""
    return _settings(args).data_dir


def _contents(summary: Summary) -> str:
    versions = ", ".join(map(str, summary.versions)) or "none"
    default = summary.default_version if summary.default_version is not None else "none"
    return (
        f"{summary.files} files, model versions {versions} (default {default}), "
        f"{summary.dataset_rows} stored tickets"
    )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _fail(exc: Exception, command: str = "serve") -> NoReturn:
    print(f"ticketserve {command}: error: {exc}", file=sys.stderr)
    raise SystemExit(1) from None


def main(argv: Sequence[str] | None = None) -> int:
    """The `ticketserve` command on `argv`; returns the exit status."""
    return training_cli.main(argv, build=build_parser)


def run() -> NoReturn:
    """Entry point of the `ticketserve` console script: `main`, then a quick exit."""
    training_cli.exit_with(main())


if __name__ == "__main__":
    run()
