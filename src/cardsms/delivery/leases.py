"""Worker leases for the scale-out (several `cardsms worker` processes on one PostgreSQL).

- Every dispatching process registers a worker row and renews its lease every LEASE/4 seconds.
- An SMPP bind slot (`connector#n`, n < the connector's `binds`) is leased by one worker at a
  time; a worker holds at most one slot per connector, so N workers need `binds` >= N.
- `submitting` messages carry the id of the worker that claimed them; when that worker's lease
  runs out (it was killed), any live worker queues them again, flagged as possible duplicates.
- Wake-ups: a send commits `NOTIFY cardsms_work`; idle workers LISTEN and claim at once.

SQLite runs one process, so none of this applies there: `serve` recovers everything at start.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import make_url

from cardsms.db.engine import WORK_CHANNEL
from cardsms.db.schema import bind_leases, workers
from cardsms.services.core import Services

log = structlog.get_logger("cardsms.leases")


class WorkerLease:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.worker_id = f"{socket.gethostname()[:20]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.seconds = svc.settings.worker_lease_seconds
        self.slots: set[str] = set()

    def _until(self) -> Any:
        return self.svc.now() + timedelta(seconds=self.seconds)

    async def register(self) -> None:
        async with self.svc.hold_writer() as conn:
            await conn.execute(workers.insert().values(worker_id=self.worker_id, host=socket.gethostname()[:255],
                                                       pid=os.getpid(), started_at=self.svc.now(),
                                                       expires_at=self._until()))
        log.info("worker.registered", worker=self.worker_id)

    async def renew(self) -> None:
        async with self.svc.hold_writer() as conn:
            await conn.execute(update(workers).where(workers.c.worker_id == self.worker_id)
                               .values(expires_at=self._until()))
            if self.slots:
                await conn.execute(update(bind_leases).where(bind_leases.c.slot.in_(self.slots),
                                                             bind_leases.c.owner == self.worker_id)
                                   .values(expires_at=self._until()))

    async def try_slot(self, connector: str, binds: int) -> str | None:
        """Lease a free bind slot of a connector this worker does not run yet; None when all are taken."""
        now = self.svc.now()
        for n in range(binds):
            slot = f"{connector}#{n}"
            take = pg_insert(bind_leases).values(slot=slot, owner=self.worker_id, expires_at=self._until())
            stmt = take.on_conflict_do_update(
                index_elements=[bind_leases.c.slot],
                set_={"owner": self.worker_id, "expires_at": self._until()},
                where=(bind_leases.c.expires_at < now) | (bind_leases.c.owner == self.worker_id),
            ).returning(bind_leases.c.owner)
            async with self.svc.hold_writer() as conn:
                owner = (await conn.execute(stmt)).scalar()
            if owner == self.worker_id:
                self.slots.add(slot)
                log.info("bind.leased", slot=slot, worker=self.worker_id)
                return slot
        return None

    async def live_workers(self) -> list[str]:
        async with self.svc.read() as conn:
            return [r[0] for r in await conn.execute(select(workers.c.worker_id).where(
                workers.c.expires_at > self.svc.now()))]

    async def release(self) -> None:
        async with self.svc.hold_writer() as conn:
            await conn.execute(delete(bind_leases).where(bind_leases.c.owner == self.worker_id))
            await conn.execute(delete(workers).where(workers.c.worker_id == self.worker_id))

    async def forget_dead(self) -> None:
        """Drop worker rows long expired (their messages were recovered a lease period ago)."""
        cutoff = self.svc.now() - timedelta(seconds=self.seconds * 10)
        async with self.svc.hold_writer() as conn:
            await conn.execute(delete(workers).where(workers.c.expires_at < cutoff))


async def listen(svc: Services, on_notify: Callable[[], None]) -> Any:
    """LISTEN for new work on PostgreSQL; returns the connection (close it to stop)."""
    import asyncpg

    url = make_url(svc.settings.sqlalchemy_url).set(drivername="postgresql")
    conn = await asyncpg.connect(url.render_as_string(hide_password=False))
    await conn.add_listener(WORK_CHANNEL, lambda *_: on_notify())
    return conn
