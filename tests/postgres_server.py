"""A throw-away PostgreSQL for the tests: Debian's postgresql-15, `initdb` in a temporary folder,
listening on 127.0.0.1 only, trust authentication (nothing else can reach it). initdb refuses
root, so as root the server runs as the `postgres` user. A missing PostgreSQL fails the test with
what to install; it never skips."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from api_service import free_port

BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"),)
USER = "ticketserve"


def _tool(name: str) -> str:
    for directory in BIN_DIRS:
        if (directory / name).is_file():
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed: apt-get install postgresql-15 (.ci/run does)"
        )
    return found


class PostgresServer:
    """One cluster; `database()` hands each test a new, empty database."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ticketserve-pg-"))
        self.port = free_port()
        # As root, the cluster is the postgres user's; else the current user's.
        self.os_user = "postgres" if os.geteuid() == 0 else None
        if self.os_user is not None:
            shutil.chown(self.dir, self.os_user)
        self._run(_tool("initdb"), "-D", str(self.dir / "data"), "-U", USER,
                  "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off"
        self._run(_tool("pg_ctl"), "-D", str(self.dir / "data"), "-o", options,
                  "-l", str(self.dir / "server.log"), "-w", "start")  # fmt: skip

    def _run(self, *command: str) -> None:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=120, user=self.os_user, cwd=self.dir
        )
        if result.returncode != 0:
            raise RuntimeError(f"{command[0]} failed: {result.stderr or result.stdout}")

    def database(self) -> str:
        """A new database; its SQLAlchemy URL."""
        name = "t" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name, driver="postgresql+psycopg")

    def url(self, database: str, driver: str = "postgresql") -> str:
        return f"{driver}://{USER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        try:
            self._run(_tool("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
