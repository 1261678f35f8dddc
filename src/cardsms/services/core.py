"""The services container: what every use case needs (settings, database, gateways, storage)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, CursorResult, Engine, Executable
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cardsms.crypto import Crypto
from cardsms.db.engine import READ_ONLY
from cardsms.media.store import MediaStore
from cardsms.services.batching import GroupCommit
from cardsms.services.cache import Caches
from cardsms.settings import Settings
from cardsms.vendors.gateway import HandsetDirectory, ReviewGateway

CHINA = ZoneInfo("Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def china_time(value: datetime) -> str:
    """The `yyyy-MM-dd HH:mm:ss` China-time form Alibaba's API uses."""
    return as_utc(value).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def random_digits(n: int) -> str:
    return str(10 ** (n - 1) + secrets.randbelow(9 * 10 ** (n - 1)))


class InlineConnection:
    """The part of AsyncConnection the services use, over a synchronous connection (point reads)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        return self._conn.execute(statement, params)


@dataclass
class Services:
    settings: Settings
    engine: AsyncEngine
    crypto: Crypto
    reviewer: ReviewGateway
    handsets: HandsetDirectory
    media_store: MediaStore
    clock: Callable[[], datetime] = field(default=utcnow)
    # Set when new work is queued, so the dispatcher in this process wakes at once.
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    point_reader: Engine | None = None

    def __post_init__(self) -> None:
        self._reader = self.engine.execution_options(**{READ_ONLY: True})
        self._write_lock = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None
        self.caches = Caches()
        self._group_commits: dict[str, GroupCommit[Any, Any]] = {}
        self.caches.watch(self.engine.sync_engine)

    @contextlib.asynccontextmanager
    async def point_read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for a few small indexed reads (`async with svc.point_read() as conn`). On SQLite
        the statements run on this thread (db.engine.make_point_reader): such a read takes tens of
        microseconds in SQLite, far less than a hop to a driver thread and back. Keep scans and large
        reads on `read()`."""
        if self.point_reader is None:
            async with self.read() as conn:
                yield conn
            return
        with self.point_reader.connect() as sync:
            yield cast(AsyncConnection, InlineConnection(sync))

    def group_commit(self, name: str, apply: Callable[..., Awaitable[Sequence[Any]]],
                     max_batch: int = 500) -> GroupCommit[Any, Any]:
        """This process's group commit called `name` (services.batching), made on first use;
        `apply(conn, items, svc=self)` writes a batch."""
        writer = self._group_commits.get(name)
        if writer is None:
            writer = self._group_commits[name] = GroupCommit(self.write, partial(apply, svc=self), max_batch)
        return writer

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (`async with svc.write() as conn`), committed at the end of the block.

        On SQLite the writers of this process take turns on an asyncio lock before BEGIN IMMEDIATE:
        waiting there wakes a writer as soon as the previous one committed, where SQLite's busy
        handler would poll with sleeps of up to 100 ms. Never open a write inside another."""
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()
        if self.point_reader is not None:
            self.point_reader.dispose()

    def read(self) -> AsyncConnection:
        """A connection for reading only (`async with svc.read() as conn`). On SQLite its transaction is
        deferred: it reads a WAL snapshot without taking the write lock, so reads neither wait for writers
        nor hold them up. Writes go through `svc.write()`."""
        return self._reader.connect()

    def now(self) -> datetime:
        return self.clock()
