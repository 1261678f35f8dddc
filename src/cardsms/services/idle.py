"""How long a polling loop rests after a pass that found nothing to do.

An idle server should cost close to nothing: the dispatcher, the webhook sender and the task runner poll
the database, and at their busy intervals (50 ms, 200 ms, 500 ms) an idle `serve` spent about 8% of a core
on empty passes. New work wakes the dispatcher at once (`Services.wake`, and NOTIFY on PostgreSQL), so
what a longer rest delays is only work that falls due by itself (a retry's backoff, a scheduled send, a
webhook's next attempt, a task's start or window), by at most `longest`.

`Every` is the other clock of these loops: a job done at most once a period (expiry, housekeeping, the
nonce purge), due at once the first time."""

from __future__ import annotations

import math
import time


class IdleWait:
    """`first` seconds after one empty pass, doubled after each further empty pass up to `longest`; back to
    `first` after a pass that did some work."""

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = max(first, longest)
        self._next = first

    def after(self, worked: bool) -> float:
        """The rest before the next pass, given whether the one just done did any work."""
        if worked:
            self._next = self.first
            return 0.0
        wait = self._next
        self._next = min(self.longest, self._next * 2)
        return wait


class Every:
    """A job's period: `due()` is True the first time it is asked and then once `seconds` have passed since the
    last True. The first time does not depend on the monotonic clock's origin (its zero is the machine's boot,
    so "last run at 0.0" would hold a 10-minute job back for the first 10 minutes after a boot)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = -math.inf

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True
