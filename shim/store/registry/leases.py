"""Leases: work that one replica does at a time for all of them (the training job). A replica
takes a lease for `ttl_ms`, renews it while it works and gives it back when done; a replica that
stops (a crash, a kill) stops renewing, and its lease is free once it expires."""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import psutil
from sqlalchemy import delete, select, update

from shim.store.registry.database import Database, insert
from shim.store.registry.tables import leases


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    job_id: str | None
    expires_ms: int

    def expired(self, now_ms: int) -> bool:
        return self.expires_ms <= now_ms


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def new_holder() -> str:
    """This process as a lease holder: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def holder_gone(holder: str) -> bool:
    """A lease holder on this host whose process is gone: its lease need not wait to expire."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not psutil.pid_exists(int(pid))


class Leases:
    def __init__(self, db: Database) -> None:
        self.db = db

    def take(self, name: str, holder: str, job_id: str | None, ttl_ms: int) -> Lease:
        """Take the lease `name` for `holder`; returns the lease as it now is: the holder's,
        or another holder's that has not expired (then nothing changed)."""
        now = now_ms()
        with self.db.transaction() as conn:
            row = conn.execute(
                select(leases).where(leases.c.name == name).with_for_update()
            ).first()
            if row is not None and row.holder != holder and row.expires_ms > now:
                return Lease(row.name, row.holder, row.job_id, row.expires_ms)
            values = {"holder": holder, "job_id": job_id, "expires_ms": now + ttl_ms}
            conn.execute(
                insert(conn, leases)
                .values(name=name, **values)
                .on_conflict_do_update(index_elements=["name"], set_=values)
            )
        return Lease(name, holder, job_id, now + ttl_ms)

    def renew(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Extend the holder's lease; False when it is not the holder's any more."""
        with self.db.transaction() as conn:
            renewed = conn.execute(
                update(leases)
                .where(leases.c.name == name, leases.c.holder == holder)
                .values(expires_ms=now_ms() + ttl_ms)
            )
        return bool(renewed.rowcount)

    def give_back(self, name: str, holder: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(delete(leases).where(leases.c.name == name, leases.c.holder == holder))

    def get(self, name: str) -> Lease | None:
        with self.db.reading() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
        return None if row is None else Lease(row.name, row.holder, row.job_id, row.expires_ms)

    def take_if_free(self, name: str, holder: str, job_id: str | None, ttl_ms: int) -> bool:
        """Take the lease `name` unless another holder keeps it alive; a holder on this host
        whose process is gone keeps nothing. Says whether `holder` has it now."""
        lease = self.get(name)
        if lease is not None and lease.holder != holder and holder_gone(lease.holder):
            self.free_expired(name, lease)
        return self.take(name, holder, job_id, ttl_ms).holder == holder

    def free_expired(self, name: str, lease: Lease) -> bool:
        """Delete `lease` if it is still the one stored (an expired one); says whether it did."""
        with self.db.transaction() as conn:
            gone = conn.execute(
                delete(leases).where(
                    leases.c.name == name,
                    leases.c.holder == lease.holder,
                    leases.c.expires_ms == lease.expires_ms,
                )
            )
        return bool(gone.rowcount)
