"""Group commit: many small writes of the same kind share one transaction.

A link open, a render receipt, a single send: each is a few rows, and on SQLite each write
transaction holds the database's one write lock for as long as its statements take (every
statement is a hop to the driver's thread). Under load those transactions queue for the lock and
throughput is capped by how long one holds it. `GroupCommit` queues the items instead; one flusher
writes everything queued so far in one transaction, with set-based statements, while the next
items queue. Each caller gets its own result only after the transaction committed, so nothing is
acknowledged that is not durable.

When a batch fails, its items are retried one at a time, so a bad item fails alone.

`record(item)` queues an item without waiting for it (a link open): the flusher first waits
`linger` seconds so that such items go to the database in large batches; what a crash catches in
that window is lost, so only use it where that is the documented contract. `drain()` writes what
is queued (at shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

log = structlog.get_logger("cardsms.batching")

T = TypeVar("T")
R = TypeVar("R")

Apply = Callable[[AsyncConnection, Sequence[T]], Coroutine[Any, Any, Sequence[R]]]
# `svc.execute_write`: runs fn(conn) as one transaction, returns its result once committed
Write = Callable[[Callable[[AsyncConnection], Coroutine[Any, Any, Sequence[R]]]], Awaitable[Sequence[R]]]


class GroupCommit(Generic[T, R]):
    def __init__(self, write: Write[R], apply: Apply[T, R], max_batch: int = 500, linger: float = 0.0,
                 in_flight: int = 1) -> None:
        self.write = write
        self.apply = apply
        self.max_batch = max_batch
        self.linger = linger
        # batches on their way at once: with 2, what queues while one is written goes to the writer at once
        # and joins that transaction if it is still open, instead of waiting for its commit
        self._slots = asyncio.Semaphore(in_flight)
        self._batches: set[asyncio.Task[None]] = set()
        self._pending: list[tuple[T, asyncio.Future[R] | None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """Queue the item and return its result once its transaction committed."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._start()
        return await future

    def record(self, item: T) -> None:
        """Queue the item; it is written within `linger` seconds (plus one transaction), unawaited."""
        self._pending.append((item, None))
        self._start()

    def _start(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="group-commit")

    async def drain(self) -> None:
        """Write everything queued so far (shutdown)."""
        self.linger = 0.0
        while (self._flusher is not None and not self._flusher.done()) or self._batches:
            with contextlib.suppress(Exception):
                await asyncio.gather(*[t for t in (self._flusher, *self._batches) if t is not None])

    async def _flush(self) -> None:
        batch: list[tuple[T, asyncio.Future[R] | None]] = []
        try:
            if self.linger:
                await asyncio.sleep(self.linger)
            while self._pending:
                await self._slots.acquire()
                batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch:]
                task = asyncio.create_task(self._commit(batch), name="group-commit-batch")
                self._batches.add(task)
                task.add_done_callback(self._batch_done)
                batch = []
        except BaseException:  # cancelled (shutdown): no caller may wait forever
            self._fail([*batch, *self._pending])
            self._pending = []
            raise

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._batches.discard(task)
        self._slots.release()

    @staticmethod
    def _fail(items: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        for _, future in items:
            if future is not None and not future.done():
                future.set_exception(RuntimeError("the group commit was stopped before this item was written"))

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        try:
            try:
                await self._write(batch)
            except Exception:
                for one in batch:  # isolate the item that failed; the others still commit
                    try:
                        await self._write([one])
                    except Exception as exc:
                        if one[1] is None:
                            log.exception("group_commit.item_failed", item=repr(one[0])[:200])
                        elif not one[1].done():
                            one[1].set_exception(exc)
        except BaseException:
            self._fail(batch)
            raise

    async def _write(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        items = [item for item, _ in batch]
        results = await self.write(lambda conn: self.apply(conn, items))
        self.batches += 1
        self.items += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future is not None and not future.done():  # the caller may have gone away (cancelled)
                future.set_result(result)
