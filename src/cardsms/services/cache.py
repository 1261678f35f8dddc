"""Short-lived caches of what hot paths read again and again (a card template with its vendor
approvals and media URLs for every link open; an access key, a signature's approval for every send).

A cache names the tables its values come from. A transaction of this process that wrote to one of
them clears the cache when it commits, so this process never serves what it has itself changed;
writes of other processes (scale-out on PostgreSQL) are seen after at most `ttl` seconds.
A value computed while such a write committed is not stored (the generation moved on).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection

_WRITE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+\"?(\w+)", re.IGNORECASE)
MISSING: Any = object()
V = TypeVar("V")


class TableCache:
    def __init__(self, tables: set[str], ttl: float = 1.0, max_entries: int = 10_000) -> None:
        self.tables = tables
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0
        self._values: dict[Hashable, tuple[float, Any]] = {}

    def get(self, key: Hashable) -> Any:
        found = self._values.get(key)
        if found is not None and found[0] > time.monotonic():
            return found[1]
        return MISSING

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        """Store a value read when the cache was at `generation` (read `.generation` before reading)."""
        if generation != self.generation:
            return
        if len(self._values) >= self.max_entries:
            self._values.clear()
        self._values[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        self.generation += 1
        self._values.clear()


class Caches:
    """The caches of one process, cleared by the commits of its engine that touch their tables."""

    def __init__(self) -> None:
        self._by_name: dict[str, TableCache] = {}
        self._loading: dict[tuple[str, Hashable], asyncio.Future[Any]] = {}

    def named(self, name: str, tables: set[str]) -> TableCache:
        """The cache called `name`, made on first use."""
        cache = self._by_name.get(name)
        if cache is None:
            cache = self._by_name[name] = TableCache(tables)
        return cache

    async def memo(self, name: str, tables: set[str], key: Hashable, load: Callable[[], Awaitable[V]]) -> V:
        """The cached value of `key`, or `load()`'s (stored unless a write to `tables` committed meanwhile;
        an exception is not stored). Concurrent misses of one key share one load: when a hot entry
        expires under load, hundreds of requests would otherwise all read the database at once."""
        cache = self.named(name, tables)
        found = cache.get(key)
        if found is not MISSING:
            value: V = found
            return value
        flight = (name, key)
        loading = self._loading.get(flight)
        if loading is not None:
            shared: V = await asyncio.shield(loading)
            return shared
        generation = cache.generation
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[flight] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a load nobody else waited for must not warn
            raise
        finally:
            del self._loading[flight]
        future.set_result(value)
        cache.put(key, value, generation)
        return value

    def written(self, tables: set[str]) -> None:
        for cache in self._by_name.values():
            if cache.tables & tables:
                cache.clear()

    def watch(self, engine: Engine) -> None:
        @event.listens_for(engine, "after_cursor_execute")
        def _statement(conn: AsyncConnection, _cursor: Any, statement: str, *_: Any) -> None:
            found = _WRITE.match(statement)
            if found:
                conn.info.setdefault("cardsms_written", set()).add(found.group(1).lower())

        @event.listens_for(engine, "commit")
        def _commit(conn: AsyncConnection) -> None:
            tables = conn.info.pop("cardsms_written", None)
            if tables:
                self.written(tables)

        @event.listens_for(engine, "rollback")
        def _rollback(conn: AsyncConnection) -> None:
            # a connection invalidated mid-statement (a task cancelled at shutdown) cannot even show its
            # info; raising here would replace the cancellation with PendingRollbackError
            if not conn.invalidated:
                conn.info.pop("cardsms_written", None)
