"""The services container: what every use case needs (settings, database, gateways, storage)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Dialect, Engine, Select, Table, func, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cardsms.crypto import Crypto
from cardsms.db.engine import READ_ONLY
from cardsms.db.writer import InlineConnection, SqliteWriter, WriteFn
from cardsms.media.store import MediaStore
from cardsms.services.batching import GroupCommit
from cardsms.services.cache import Caches
from cardsms.services.hub import HubClient
from cardsms.services.idle import Every
from cardsms.settings import Settings
from cardsms.vendors.gateway import HandsetDirectory, ReviewGateway

CHINA = ZoneInfo("Asia/Shanghai")
R = TypeVar("R")
_IN_WRITE_BLOCK: ContextVar[bool] = ContextVar("cardsms_in_write_block", default=False)


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


def _plan_point_query(stmt: Select[Any], dialect: Dialect) -> tuple[Any, ...]:
    """(stmt, SQL, parameter names in order, bind processors, column keys, result processors, the values of
    parameters the statement carries itself)."""
    compiled = stmt.compile(dialect=dialect)
    names = list(compiled.positiontup or [])
    binds = {n: p for n, p in compiled._bind_processors.items() if n in names and p is not None}
    columns = list(stmt.selected_columns)
    processors = [(i, p) for i, p in enumerate(c.type._cached_result_processor(dialect, None) for c in columns) if p]
    defaults = {b.key: b.value for b in compiled.binds.values() if b.value is not None}
    return stmt, compiled.string, names, binds, [c.key for c in columns], processors, defaults


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
    writer: SqliteWriter | None = None  # SQLite: the one thread that runs every write (db.writer)
    hub: HubClient | None = None  # an HTTP process of `serve --http-processes N`: the main process (services.hub)

    def __post_init__(self) -> None:
        self._reader = self.engine.execution_options(**{READ_ONLY: True})
        self.caches = Caches()
        self._group_commits: dict[str, GroupCommit[Any, Any]] = {}
        self.caches.watch(self.engine.sync_engine)
        if self.writer is not None:
            self.caches.watch(self.writer.engine)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._point_plans: dict[int, Any] = {}
        self._point_raw: Any = None
        self.waiting: tuple[float, int] = (0.0, 0)  # (valid until, queued messages): services.outbox.check_queue
        self.waiting_lock = asyncio.Lock()
        # services.task_reports.progress: (monotonic time, messages done) per task, seen by this process's task pages
        self.task_samples: dict[int, list[tuple[float, int]]] = {}
        self.nonce_purge = Every(60.0)  # services.nonces: this process removes the expired API nonces once a minute

    def wake(self) -> None:
        """Tell this process's dispatcher that work was queued (callable from the writer thread too); in an
        HTTP process of `serve --http-processes N`, the main process's (through the hub)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the writer thread: hand it to the loop
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._wake_here)
            return
        self._wake_here()

    def _wake_here(self) -> None:
        self.wakeup.set()
        if self.hub is not None:
            self.hub.wake()

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

    async def point_query(self, stmt: Select[Any], **params: Any) -> list[dict[str, Any]]:
        """The rows of a small indexed SELECT that is built once (a module constant with bind parameters, never
        a statement made per call), as dicts. On SQLite it is compiled once and run on the point reader's
        DBAPI connection on this thread: a link open or an API call's key lookup then costs SQLite's
        microseconds, not SQLAlchemy's per-execution work (a connection, a BEGIN, a result object)."""
        if self.point_reader is None:
            async with self.read() as conn:
                return [dict(r) for r in (await conn.execute(stmt, params)).mappings()]
        plan = self._point_plans.get(id(stmt))
        if plan is None or plan[0] is not stmt:
            plan = self._point_plans[id(stmt)] = _plan_point_query(stmt, self.point_reader.dialect)
        _, sql, names, binds, keys, processors, defaults = plan
        values = {**defaults, **params}
        args = [binds[n](values[n]) if n in binds else values[n] for n in names]
        if self._point_raw is None:
            self._point_raw = self.point_reader.raw_connection()
        rows = self._point_raw.cursor().execute(sql, args).fetchall()
        out = []
        for row in rows:
            record = list(row)
            for i, processor in processors:
                record[i] = processor(record[i])
            out.append(dict(zip(keys, record, strict=True)))
        return out

    def group_commit(self, name: str, apply: Callable[..., Coroutine[Any, Any, Sequence[Any]]],
                     max_batch: int = 500, linger: float = 0.0, urgent: bool = True,
                     in_flight: int = 1) -> GroupCommit[Any, Any]:
        """This process's group commit called `name` (services.batching), made on first use;
        `apply(conn, items, svc=self)` writes a batch; `urgent`: before the dispatcher's work."""
        writer = self._group_commits.get(name)
        if writer is None:
            writer = self._group_commits[name] = GroupCommit(
                partial(self._write_fn, urgent=urgent), partial(apply, svc=self), max_batch, linger, in_flight)
        return writer

    def execute_write(self, fn: WriteFn[R], *, urgent: bool = False) -> Awaitable[R]:
        """Queue a write: `await svc.execute_write(fn)` runs `fn(conn)` — a coroutine function that awaits only
        `conn` — as one transaction and returns its result once committed. On SQLite it runs on the writer
        thread, merged with what else is queued (db.writer); `urgent` puts it before the dispatcher's bulk
        work (someone waits for the answer). On PostgreSQL it runs on an asyncpg connection. Hot paths use
        this (datasette's execute_write_fn)."""
        return self._write_fn(fn, urgent)

    def hold_writer(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """Hold the writer: `async with svc.hold_writer() as conn:` is for cold paths whose statements depend
        on other awaits. On SQLite it parks the writer thread and runs the block's statements on the write
        connection from the loop's thread; on PostgreSQL it is a transaction. Never write inside a block."""
        return self._write_block()

    async def _write_fn(self, fn: WriteFn[R], urgent: bool) -> R:
        if self.writer is None:
            async with self.engine.begin() as conn:
                return await fn(conn)
        if _IN_WRITE_BLOCK.get():
            raise RuntimeError("svc.execute_write(fn) inside a write block would wait for itself")
        self._loop = asyncio.get_running_loop()
        return await self.writer.run(fn, urgent=urgent)

    @contextlib.asynccontextmanager
    async def _write_block(self) -> AsyncIterator[AsyncConnection]:
        if self.writer is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        if _IN_WRITE_BLOCK.get():
            raise RuntimeError("svc.hold_writer() inside svc.hold_writer() would wait for itself")
        self._loop = asyncio.get_running_loop()
        token = _IN_WRITE_BLOCK.set(True)
        try:
            async with self.writer.hold() as conn:
                yield cast(AsyncConnection, conn)
        finally:
            _IN_WRITE_BLOCK.reset(token)

    async def close(self) -> None:
        if self._point_raw is not None:
            self._point_raw.close()
            self._point_raw = None
        for batcher in self._group_commits.values():
            await batcher.drain()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
        if self.hub is not None:
            await self.hub.close()
        await self.engine.dispose()
        if self.point_reader is not None:
            self.point_reader.dispose()

    def read(self) -> AsyncConnection:
        """A connection for reading only (`async with svc.read() as conn`). On SQLite its transaction is
        deferred: it reads a WAL snapshot without taking the write lock, so reads neither wait for writers
        nor hold them up. Writes go through `svc.hold_writer()`."""
        return self._reader.connect()

    def now(self) -> datetime:
        return self.clock()


async def read_page(svc: Services, table: Table, where: list[ColumnElement[bool]], page: int, size: int
                    ) -> tuple[int, list[Any]]:
    """One page of a table's rows, newest first, and how many rows match in all (the list operations)."""
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(table).where(*where))
        rows = (await conn.execute(select(table).where(*where).order_by(table.c.id.desc())
                                   .offset((page - 1) * size).limit(size))).mappings().all()
    return int(total or 0), list(rows)


# what a database that cannot store raises: SQLite's "database or disk is full" or I/O errors, a PostgreSQL
# server gone (refused connections, dropped sessions, a pool that cannot connect)
STORAGE_DOWN: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, SqlTimeoutError, OSError)


def storage_unavailable(exc: BaseException) -> bool:
    """Whether the database could not store: a lost or full SQLite/PostgreSQL, or PostgreSQL's SQLSTATE classes
    53 (insufficient resources: disk full, out of memory, too many connections), 57P (shutting down, cannot
    connect now) and 08 (connection exception), which asyncpg reports as plain database errors."""
    if isinstance(exc, STORAGE_DOWN):
        return True
    if isinstance(exc, DBAPIError):
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        return state.startswith(("53", "57P", "08"))
    return False
