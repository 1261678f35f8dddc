"""Recent events per key in a sliding time window, for a bounded number of keys: what the login limiter
(failed logins per address) and the link-open limiter (opens per link and address) both count."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Hashable


class RecentEvents:
    """When each key's events of the last `window` seconds happened; at most `max_keys` keys are kept (the least
    recently added to give way), so a flood of new keys cannot grow it without bound."""

    def __init__(self, window: float, max_keys: int) -> None:
        self.window, self.max_keys = window, max_keys
        self._events: OrderedDict[Hashable, deque[float]] = OrderedDict()

    def count(self, key: Hashable) -> int:
        """The key's events within the window."""
        recent = self._events.get(key)
        if recent is None:
            return 0
        cutoff = time.monotonic() - self.window
        while recent and recent[0] <= cutoff:
            recent.popleft()
        return len(recent)

    def add(self, key: Hashable) -> None:
        self.count(key)  # drops what left the window
        recent = self._events.setdefault(key, deque())
        recent.append(time.monotonic())
        self._events.move_to_end(key)
        while len(self._events) > self.max_keys:
            self._events.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        self._events.pop(key, None)

    def __len__(self) -> int:
        return len(self._events)
