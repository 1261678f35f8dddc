"""Mass-task schedule rules (SPEC.md "Mass Operations Assistant"), pure functions."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")
WINDOW_START = time(8, 0)
WINDOW_END = time(22, 0)
REVOKE_BEFORE = timedelta(minutes=5)
TASK_NAME_MAX = 30


def check_task_name(name: str) -> str | None:
    """None when the name is fine, else the rule it breaks."""
    name = name.strip()
    if not name:
        return "the task name is required"
    if len(name) > TASK_NAME_MAX:
        return f"the task name may be at most {TASK_NAME_MAX} characters, got {len(name)}"
    return None


def check_schedule(start: datetime, now: datetime) -> str | None:
    """A scheduled start must be in the future and, in China time, between 08:00 and 22:00."""
    if start.tzinfo is None:
        return "the start time needs a time zone"
    if start <= now:
        return "the start time must be in the future"
    local = start.astimezone(CHINA).time()
    if not WINDOW_START <= local <= WINDOW_END:
        return (f"mainland numbers may only be sent between 08:00 and 22:00 Asia/Shanghai; "
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
