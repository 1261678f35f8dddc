"""Engine creation.

SQLite runs in WAL mode through `inline_sqlite`: statements run on the event loop's own thread
(aiosqlite's thread hop cost 1-3 ms per statement under load; a local statement takes tens of µs).
`engine.begin()` blocks are write transactions: they queue on one asyncio lock per event loop and
then take SQLite's write lock at BEGIN (BEGIN IMMEDIATE; a deferred transaction that reads then
writes can fail at once with SQLITE_BUSY, which busy_timeout does not cover). With statements
inline the asyncio lock is what keeps two write transactions of one process from meeting in
SQLite's busy handler, which would block the loop that the holder needs to finish. Do not nest
`engine.begin()` blocks. `engine.connect()` blocks only read (nothing in cardsms commits one):
they begin deferred and never wait for a writer (WAL readers see the last committed snapshot).
Other processes on the same file (the CLI) meet the write lock through busy_timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import event, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from cardsms.db import inline_sqlite
from cardsms.settings import Settings

_WRITE = "cardsms_write"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (and SAVEPOINTs work)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class SqliteEngine(AsyncEngine):
    """An AsyncEngine whose write transactions queue on one asyncio lock per event loop."""

    def __init__(self, sync_engine: Any) -> None:
        super().__init__(sync_engine)
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()

    def write_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.write_lock(), self.connect() as conn:
            info = (await conn.get_raw_connection()).info
            info[_WRITE] = True
            try:
                async with conn.begin():
                    yield conn
            finally:
                info.pop(_WRITE, None)


def make_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = make_url(url).database or ""
        engine = SqliteEngine(create_async_engine(
            url, async_creator=lambda: inline_sqlite.Connection(database, timeout=30), pool_size=32,
            max_overflow=32, **kwargs).sync_engine)

        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get(_WRITE) else "BEGIN")

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)
