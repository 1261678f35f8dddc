"""Mass-task schedule rules (SPEC.md "Mass Operations Assistant"), pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")
WINDOW_START = time(8, 0)
WINDOW_END = time(22, 0)
REVOKE_BEFORE = timedelta(minutes=5)
TASK_NAME_MAX = 30
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True, slots=True)
class SendWindow:
    """The hours of the day (Asia/Shanghai) in which mass sending is allowed: [start, end). "00:00-24:00" is
    the whole day. Mainland rules: 08:00-22:00, the default."""

    start: time = WINDOW_START
    end: time | None = WINDOW_END  # None: 24:00

    @classmethod
    def parse(cls, text: str) -> SendWindow:
        """`HH:MM-HH:MM` with start before end (no window across midnight); ValueError naming the rule."""
        found = _WINDOW.match(text.strip())
        if not found:
            raise ValueError(f"{text!r}: a send window is HH:MM-HH:MM, e.g. 08:00-22:00")
        h1, m1, h2, m2 = (int(g) for g in found.groups())
        if h2 == 24 and m2:
            raise ValueError(f"{text!r}: the end is at most 24:00")
        start, end = time(h1, m1), None if h2 == 24 else time(h2, m2)
        if end is not None and end <= start:
            raise ValueError(f"{text!r}: the start must come before the end (a window does not cross midnight)")
        return cls(start, end)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{'24:00' if self.end is None else format(self.end, '%H:%M')}"

    @property
    def whole_day(self) -> bool:
        return self.start == time(0, 0) and self.end is None

    def contains(self, at: datetime) -> bool:
        local = at.astimezone(CHINA).time()
        return self.start <= local and (self.end is None or local < self.end)

    def next_start(self, at: datetime) -> datetime:
        """`at` itself when inside the window, else the moment the window next opens."""
        if self.contains(at):
            return at
        local = at.astimezone(CHINA)
        opening = local.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        if opening <= local:
            opening += timedelta(days=1)
        return opening.astimezone(at.tzinfo)

    def closes(self, at: datetime) -> datetime | None:
        """When the window that contains `at` closes (None for the whole day, or when outside)."""
        if self.end is None or not self.contains(at):
            return None
        local = at.astimezone(CHINA)
        return local.replace(hour=self.end.hour, minute=self.end.minute, second=0, microsecond=0).astimezone(at.tzinfo)


DEFAULT_WINDOW = SendWindow()


def check_task_name(name: str) -> str | None:
    """None when the name is fine, else the rule it breaks."""
    name = name.strip()
    if not name:
        return "the task name is required"
    if len(name) > TASK_NAME_MAX:
        return f"the task name may be at most {TASK_NAME_MAX} characters, got {len(name)}"
    return None


def check_schedule(start: datetime, now: datetime, window: SendWindow = DEFAULT_WINDOW) -> str | None:
    """A scheduled start must be in the future and, in China time, inside the send window (08:00-22:00)."""
    if start.tzinfo is None:
        return "the start time needs a time zone"
    if start <= now:
        return "the start time must be in the future"
    if not window.contains(start):
        start_s, end_s = str(window).split("-")
        return (f"mainland numbers may only be sent between {start_s} and {end_s} Asia/Shanghai; "
                f"{start.astimezone(CHINA):%H:%M} is outside that window")
    return None


def can_revoke(scheduled_at: datetime | None, now: datetime) -> bool:
    """A scheduled task may be revoked until 5 minutes before its start."""
    return scheduled_at is not None and now <= scheduled_at - REVOKE_BEFORE


def parse_local_start(value: str) -> datetime:
    """A `YYYY-MM-DDTHH:MM` (datetime-local input) or `YYYY-MM-DD HH:MM` in China time; ValueError if not."""
    text = value.strip().replace(" ", "T")
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=CHINA) if parsed.tzinfo is None else parsed
