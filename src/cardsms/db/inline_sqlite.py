"""An in-thread stand-in for aiosqlite's connection, for SQLAlchemy's `sqlite+aiosqlite` dialect.

aiosqlite runs every statement on a thread of its own: the statement is queued to that thread, the
thread must win the GIL from the busy event loop to run it, and the result comes back through
`call_soon_threadsafe`, after the loop has finished its current turn. A local SQLite statement
takes tens of microseconds; the round trip took 1-3 ms under load, and a write transaction of a few
statements held SQLite's write lock for that many loop turns. Here the statements run directly on
the event loop's thread (the coroutines finish without suspending, so SQLAlchemy's greenlet bridge
costs a switch, not a loop turn). The price: a long statement holds up the loop while it runs, and
a write transaction waiting for another *process* (the CLI) blocks the loop up to busy_timeout.

Only the parts of aiosqlite's API that SQLAlchemy's adapter uses are provided.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any


class _Tx:
    """aiosqlite's work queue, as the dialect's isolation_level setter uses it: run at once."""

    def put_nowait(self, item: tuple[Any, Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as exc:  # handed to the awaiting caller, as aiosqlite does
            future.set_exception(exc)


class Cursor:
    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    async def __aenter__(self) -> Cursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._cursor.close()

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> Cursor:
        self._cursor.execute(sql, () if parameters is None else parameters)
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Sequence[Any]]) -> Cursor:
        self._cursor.executemany(sql, seq_of_parameters)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class _CursorContext:
    """What `connection.cursor()` returns in aiosqlite: awaitable and an async context manager."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def __aenter__(self) -> Cursor:
        return Cursor(self._conn.cursor())

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __await__(self) -> Any:
        return self.__aenter__().__await__()


class Connection:
    def __init__(self, database: str, **kwargs: Any) -> None:
        self._database, self._kwargs = database, kwargs
        self._conn: sqlite3.Connection | None = None
        self._tx = _Tx()

    def __await__(self) -> Any:
        return self._open().__await__()

    async def _open(self) -> Connection:
        self._conn = sqlite3.connect(self._database, check_same_thread=False, **self._kwargs)
        return self

    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self._conn

    @property
    def isolation_level(self) -> str | None:
        assert self._conn is not None
        return self._conn.isolation_level

    def cursor(self) -> _CursorContext:
        assert self._conn is not None
        return _CursorContext(self._conn)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        assert self._conn is not None
        self._conn.create_function(*args, **kwargs)

    async def commit(self) -> None:
        assert self._conn is not None
        self._conn.commit()

    async def rollback(self) -> None:
        assert self._conn is not None
        self._conn.rollback()

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
