"""Frequency control: how many messages one number may get from one account under one signature.

Alibaba's published limits are the defaults: verification codes 1 per minute, 5 per hour and 10 per
day; notifications, promotions and card messages 50 per day. The minute and the hour are sliding
windows (the last 60 s, the last 3,600 s); the day is the calendar day in mainland time, as Alibaba
counts it. An account may set its own limit for any kind and window (0: no limit) and exempt up to 300
numbers. Refusals carry Alibaba's codes: `isv.BUSINESS_LIMIT_CONTROL` for the minute and the hour,
`isv.DAY_LIMIT_CONTROL` for the day.

This module is the arithmetic only; services/frequency.py reads the history and applies it to a send.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

CHINA = ZoneInfo("Asia/Shanghai")
KINDS = ("verification", "notification", "promotion", "card")
PERIODS = ("minute", "hour", "day")
SECONDS = {"minute": 60, "hour": 3600}
DEFAULTS: dict[tuple[str, str], int] = {
    ("verification", "minute"): 1, ("verification", "hour"): 5, ("verification", "day"): 10,
    ("notification", "day"): 50, ("promotion", "day"): 50, ("card", "day"): 50,
}
LIMIT_CODES = ("isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL")
MAX_EXEMPT = 300  # numbers an account may exempt (Alibaba's allowlist size)
MAX_LIMIT = 100_000
MAX_DUPLICATE_SECONDS = 86_400
KIND_NAMES = {"verification": "verification codes", "notification": "notifications",
              "promotion": "promotions", "card": "card messages"}
PER = {"minute": "per minute", "hour": "per hour", "day": "per day (mainland time)"}


def kind_of(channel: str, template_type: int) -> str:
    """The kind a message counts as: card and digital legs are card messages; texts by template type (the
    international type 3 counts as a notification)."""
    if channel in ("card", "digital"):
        return "card"
    return {0: "verification", 2: "promotion"}.get(template_type, "notification")


def code_for(period: str) -> str:
    return "isv.DAY_LIMIT_CONTROL" if period == "day" else "isv.BUSINESS_LIMIT_CONTROL"


def effective_limits(own: Mapping[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The defaults overlaid with an account's own limits; 0 (no limit) entries dropped."""
    merged = {**DEFAULTS, **own}
    return {k: v for k, v in merged.items() if v > 0}


def check_limit(kind: str, period: str, value: int) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if period not in PERIODS:
        raise ValueError(f"window must be one of {', '.join(PERIODS)}, got {period!r}")
    if not 0 <= value <= MAX_LIMIT:
        raise ValueError(f"limit must be 0 (no limit) to {MAX_LIMIT}, got {value}")


@dataclass(frozen=True, slots=True)
class Refusal:
    phone: str
    code: str
    text: str


@dataclass
class History:
    """What one number got from one account: per (signature, kind), the send times (oldest first) since the
    start of the longest window; and per text, the last time it was sent (the duplicate-content guard)."""

    sends: dict[tuple[str, str], list[datetime]] = field(default_factory=dict)
    texts: dict[str, datetime] = field(default_factory=dict)


@dataclass
class Counter:
    """Decides message by message, counting what it allows, so several messages of one send to one number
    (SendBatchSms may repeat a number) are counted like messages of separate sends."""

    limits: dict[tuple[str, str], int]
    exempt: set[str]
    duplicate_seconds: int
    history: dict[str, History]

    def take(self, phone: str, sign: str, kind: str, content: str, now: datetime) -> Refusal | None:
        """None (and counted) when the number may get this message now; else why not and until when."""
        if phone in self.exempt:
            return None
        past = self.history.setdefault(phone, History())
        times = past.sends.setdefault((sign, kind), [])
        if self.duplicate_seconds and content:
            last = past.texts.get(content)
            if last is not None and now - last < timedelta(seconds=self.duplicate_seconds):
                again = last + timedelta(seconds=self.duplicate_seconds)
                return Refusal(phone, "isv.BUSINESS_LIMIT_CONTROL",
                               f"{phone}: the same text was sent to this number {int((now - last).total_seconds())} "
                               f"s ago (at most once per {self.duplicate_seconds} s); it may be sent again after "
                               f"{_when(again)}")
        for period in PERIODS:
            most = self.limits.get((kind, period))
            if most is None:
                continue
            counted = _within(times, period, now)
            if len(counted) >= most:
                again = _again(counted, most, period, now)
                return Refusal(phone, code_for(period),
                               f"{phone}: {KIND_NAMES[kind]} under signature {sign!r}: at most {most} "
                               f"{PER[period]}, reached; it may be sent again after {_when(again)}")
        times.append(now)
        if self.duplicate_seconds and content:
            past.texts[content] = now
        return None


def _within(times: list[datetime], period: str, now: datetime) -> list[datetime]:
    if period == "day":
        day = now.astimezone(CHINA).date()
        return [t for t in times if t.astimezone(CHINA).date() == day]
    since = now - timedelta(seconds=SECONDS[period])
    return [t for t in times if t > since]


def _again(counted: list[datetime], most: int, period: str, now: datetime) -> datetime:
    """When the window will hold fewer than `most` of these sends."""
    if period == "day":
        local = now.astimezone(CHINA)
        return datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), CHINA)
    ordered = sorted(counted)
    return ordered[len(ordered) - most] + timedelta(seconds=SECONDS[period])


def _when(at: datetime) -> str:
    return at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S") + " (Asia/Shanghai)"


def history_since(now: datetime) -> datetime:
    """The oldest send time any window can count: the start of the mainland day or an hour ago (in UTC, as
    the database compares times)."""
    local = now.astimezone(CHINA)
    midnight = datetime.combine(local.date(), datetime.min.time(), CHINA)
    return min(midnight, now - timedelta(seconds=SECONDS["hour"])).astimezone(UTC)


def parse_exempt(lines: Iterable[str]) -> list[str]:
    """Numbers of an allowlist, one per line or comma-separated, blank entries ignored."""
    out: list[str] = []
    for line in lines:
        out += [p.strip() for p in line.replace(",", "\n").splitlines() if p.strip()]
    return out
