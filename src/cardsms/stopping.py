"""A graceful stop that ends: every wait of a stop has a bound, and a watchdog ends the process when the stop
as a whole overruns its time (CARDSMS_STOP_SECONDS), after writing every thread's stack and every pending
task to the log, so that whatever held it is named.

What a stop cuts short is what a crash would leave, and the next start recovers it (messages still
`submitting` are queued again, flagged as possible duplicates; journaled receipts are applied again)."""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from cardsms.delivery.runtime import Delivery
    from cardsms.services.core import Services

log = structlog.get_logger("cardsms.stop")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[object]], timeout: float) -> list[str]:
    """Cancel the tasks and wait at most `timeout` seconds for them to end; the names of those still running."""
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return []
    _, stuck = await asyncio.wait(pending, timeout=timeout)
    names = sorted(t.get_name() for t in stuck)
    if names:
        log.warning("stop.tasks_stuck", tasks=names, waited=timeout)
    return names


async def bounded(what: str, step: Coroutine[Any, Any, object], timeout: float) -> bool:
    """Await a stop's step (a coroutine) for at most `timeout` seconds; False (and a warning) when it overran."""
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        task.cancel()
        log.warning("stop.step_overran", step=what, waited=timeout)
        return False
    if task.exception() is not None:
        log.warning("stop.step_failed", step=what, error=repr(task.exception())[:300])
    return True


class StopWatchdog:
    """Armed when a stop begins; when the process is still alive `seconds` later it logs every thread's stack
    and the event loop's pending tasks, then exits: 0 when the application had finished its own stop (only the
    interpreter's teardown was left), 1 otherwise."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.finished = False  # the application's stop has completed
        self.loop: asyncio.AbstractEventLoop | None = None
        self._timer: threading.Timer | None = None

    def arm(self) -> None:
        if self._timer is not None:
            return
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.loop = None
        self._timer = threading.Timer(self.seconds, self._overdue)
        self._timer.daemon = True
        self._timer.start()

    def _overdue(self) -> None:
        stream = sys.stderr
        stream.write(f"stop overdue: the process is still running {self.seconds:g} s after the stop began "
                     f"(application stop {'finished' if self.finished else 'NOT finished'}); stacks follow\n")
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
        if self.loop is not None:
            try:  # read from another thread: good enough for a diagnosis
                for task in list(asyncio.all_tasks(self.loop)):
                    stream.write(f"pending task {task.get_name()}: {task.get_coro()!r}\n")
                    for frame in task.get_stack(limit=8):
                        stream.write(f"    {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}\n")
            except Exception as exc:  # the set changed under us
                stream.write(f"(pending tasks could not be listed: {exc!r})\n")
        stream.flush()
        os._exit(0 if self.finished else 1)


async def stop_services(svc: Services, delivery: Delivery | None, background: Iterable[asyncio.Task[object]]) -> None:
    """The stop of a process's parts, each bounded: background loops (cancelled; a second), the delivery (its
    own deadline, CARDSMS_STOP_SECONDS), then storage (the last batched writes; a few seconds)."""
    await cancel_and_wait(background, 1.0)
    if delivery is not None:
        await delivery.stop()
    await bounded("close storage", svc.close(), 3.0)
