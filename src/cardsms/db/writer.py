"""The SQLite writer: one thread owns the one write connection and runs every write.

SQLite has one write lock per database. When a transaction's statements each hop between the
event loop and a driver thread, the lock is held across every hop and every turn of a busy event
loop, and the lock's occupancy, not SQLite's work, sets the pace (docs/performance.md). Here a
write is a whole function — every statement of the transaction in one call — that the event loop
hands to this thread and awaits as one future (datasette's `execute_write_fn`). The thread drains
its queue and runs what is waiting in one transaction (group commit): each job inside a savepoint,
so a job that fails rolls back alone and its caller gets its exception, while the others commit.
Every caller is answered after the commit, so nothing is acknowledged that is not stored.

Two queues: urgent jobs (a send, a link open: someone waits for the answer) start a transaction
before bulk jobs (the dispatcher's claims, outcomes, receipts) and are merged first; a transaction
stops taking jobs after `budget` seconds, so an urgent write waits at most for one bounded
transaction, never behind a queue of dispatcher work.

Several processes may write one database (`cardsms serve --http-processes N`): each has its writer thread,
and a transaction is taken under an exclusive `flock` on a lock file beside the database, so the processes
take turns at once when one commits (SQLite's own busy handler would poll with sleeps of up to 100 ms).
The kernel drops the lock of a process that dies; SQLite rolls back its unfinished transaction.

A *hold* parks the thread so that the event loop can run a transaction of its own on the write
connection (`Services.hold_writer()`, for cold paths whose statements depend on
awaits in between); the statements then run inline, on the loop's thread.

The write functions are coroutine functions over a connection whose awaits never suspend
(`InlineConnection`), so one body serves SQLite (driven here, on this thread) and PostgreSQL
(awaited on asyncpg): `run_inline` refuses a function that awaits anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, CursorResult, Engine, Executable

R = TypeVar("R")


class InlineConnection:
    """The part of AsyncConnection that the services use, over a synchronous connection: every await
    completes at once (point reads on the loop's thread; write functions on the writer thread)."""

    def __init__(self, conn: Connection) -> None:
        self.sync = conn
        self.dialect = conn.dialect

    @property
    def info(self) -> dict[Any, Any]:
        return self.sync.info

    async def execute(self, statement: Executable, params: Any = None) -> CursorResult[Any]:
        return self.sync.execute(statement, params)

    async def scalar(self, statement: Executable, params: Any = None) -> Any:
        return self.sync.scalar(statement, params)

    async def exec_driver_sql(self, statement: str, params: Any = None) -> CursorResult[Any]:
        return self.sync.exec_driver_sql(statement, params)

    @contextlib.asynccontextmanager
    async def begin_nested(self) -> AsyncIterator[None]:
        with self.sync.begin_nested():
            yield


def run_inline(coro: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never suspends (it awaits only an InlineConnection) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        value: R = done.value
        return value
    coro.close()
    raise RuntimeError("a write function awaited something other than its connection; do that work before "
                       "or after the write")


WriteFn = Callable[[Any], Coroutine[Any, Any, R]]


@dataclass(slots=True)
class _Job:
    fn: WriteFn[Any] | None  # None: a hold
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    release: threading.Event | None = None


@dataclass
class WriterStats:
    transactions: int = 0
    jobs: int = 0
    failed_jobs: int = 0
    holds: int = 0
    busy_seconds: float = 0.0  # time inside transactions (the write lock held)
    largest_merge: int = 0


def _settle(outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in outcomes:
        if future.done():  # the caller went away (cancelled); the write stands
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class ProcessLock:
    """An exclusive `flock` on a file, taken by the writer thread around each transaction (blocking: the
    thread sleeps in the kernel, without the GIL, until the process before it commits)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @contextlib.contextmanager
    def held(self) -> Any:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class SqliteWriter:
    def __init__(self, engine: Engine, *, budget: float = 0.02, max_jobs: int = 200,
                 lock_path: Path | None = None) -> None:
        self.engine = engine
        self._lock = ProcessLock(lock_path) if lock_path is not None else None
        self.budget = budget
        self.max_jobs = max_jobs
        self.stats = WriterStats()
        self._cv = threading.Condition()
        self._urgent: deque[_Job] = deque()
        self._bulk: deque[_Job] = deque()
        self._closing = False
        self._conn: Connection | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()
        self._started.wait()

    # --- the event loop's side ----------------------------------------------------------------

    def _enqueue(self, job: _Job, urgent: bool) -> None:
        with self._cv:
            if self._closing:
                raise RuntimeError("the database writer is closed")
            (self._urgent if urgent else self._bulk).append(job)
            self._cv.notify()

    async def run(self, fn: WriteFn[R], *, urgent: bool = False) -> R:
        """Run `fn(conn)` in a write transaction on the writer thread; its result once committed."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop.create_future(), loop)
        self._enqueue(job, urgent)
        result: R = await job.future
        return result

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[InlineConnection]:
        """Park the writer thread and run a transaction on its connection from this thread."""
        loop = asyncio.get_running_loop()
        job = _Job(None, loop.create_future(), loop, threading.Event())
        self._enqueue(job, urgent=False)
        assert job.release is not None
        try:
            await job.future
        except BaseException:
            job.release.set()  # cancelled while queued: the writer must not stay parked when it gets there
            raise
        try:
            assert self._conn is not None
            with self._conn.begin():
                yield InlineConnection(self._conn)
        finally:
            job.release.set()

    def close(self) -> None:
        """Run what is queued, then stop the thread (blocking: call it off the loop)."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join()

    # --- the writer thread -------------------------------------------------------------------

    def _next(self, merge: bool) -> _Job | None:
        """The next job (urgent first); when merging, never a hold."""
        for queue in (self._urgent, self._bulk):
            if queue and not (merge and queue[0].fn is None):
                return queue.popleft()
        return None

    def _run(self) -> None:
        self._conn = conn = self.engine.connect()
        self._started.set()
        try:
            while True:
                with self._cv:
                    while not (self._urgent or self._bulk or self._closing):
                        self._cv.wait()
                    job = self._next(merge=False)
                    if job is None:
                        return  # closing and drained
                if job.fn is None:
                    self._serve_hold(job)
                else:
                    self._transaction(conn, job)
        finally:
            conn.close()
            if self._lock is not None:
                self._lock.close()

    def _locked(self) -> contextlib.AbstractContextManager[Any]:
        return self._lock.held() if self._lock is not None else contextlib.nullcontext()

    def _serve_hold(self, job: _Job) -> None:
        assert job.release is not None
        self.stats.holds += 1
        ready: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = [(job.future, None, None)]
        with self._locked():
            job.loop.call_soon_threadsafe(_settle, ready)
            job.release.wait()

    def _transaction(self, conn: Connection, first: _Job) -> None:
        with self._locked():
            self._merged(conn, first)

    def _merged(self, conn: Connection, first: _Job) -> None:
        started = time.perf_counter()
        jobs: list[_Job] = [first]
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            with conn.begin():
                job: _Job | None = first
                while job is not None:
                    outcomes.append(self._one(conn, job))
                    if len(jobs) >= self.max_jobs or time.perf_counter() - started > self.budget:
                        break
                    with self._cv:
                        job = self._next(merge=True)
                    if job is not None:
                        jobs.append(job)
        except BaseException as exc:  # BEGIN or COMMIT failed (disk full, I/O error): nothing was stored
            outcomes = [(j.future, None, exc) for j in jobs]
        self.stats.transactions += 1
        self.stats.jobs += len(jobs)
        self.stats.busy_seconds += time.perf_counter() - started
        self.stats.largest_merge = max(self.stats.largest_merge, len(jobs))
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for j, outcome in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(j.loop, []).append(outcome)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle, items)

    def _one(self, conn: Connection, job: _Job) -> tuple[asyncio.Future[Any], Any, BaseException | None]:
        assert job.fn is not None
        try:
            with conn.begin_nested():
                return job.future, run_inline(job.fn(InlineConnection(conn))), None
        except Exception as exc:
            self.stats.failed_jobs += 1
            return job.future, None, exc
