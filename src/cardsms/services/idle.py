"""How long a polling loop rests after a pass that found nothing to do.

An idle server should cost close to nothing: the dispatcher, the webhook sender and the task runner poll
the database, and at their busy intervals (50 ms, 200 ms, 500 ms) an idle `serve` spent about 8% of a core
on empty passes. New work wakes the dispatcher at once (`Services.wake`, and NOTIFY on PostgreSQL), so
what a longer rest delays is only work that falls due by itself (a retry's backoff, a scheduled send, a
webhook's next attempt, a task's start or window), by at most `longest`."""

from __future__ import annotations


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
