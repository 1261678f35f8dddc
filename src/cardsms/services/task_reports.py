"""What a task did: its counts by state, its progress and current rate, and its records as CSV (cells
that a spreadsheet would read as formulas made safe)."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import case, func, literal, select

from cardsms.db.schema import daily_stats, messages, replies
from cardsms.domain.frequency import LIMIT_CODES
from cardsms.services import accounts as account_service
from cardsms.services.core import Services, as_utc
from cardsms.services.retention import stats_filters
from cardsms.services.tasks import get_task


async def task_stats(svc: Services, task_id: int) -> dict[str, int]:
    """submitted, card, fallback, delivered, failed, rendered, opened, replies, skipped, queued."""
    return (await tasks_stats(svc, [task_id]))[task_id]


def _count(stats: dict[str, int], channel: str, state: str, n: int, rendered: int, opened: int,
           limited: int) -> None:
    """Add one (channel, state) group of a task's messages to its counts."""
    if state == "skipped":
        stats["skipped"] += n
        stats["limited"] += limited
        return
    stats["card" if channel == "card" else "fallback"] += n
    stats["queued" if state in ("queued", "paused", "submitting") else "submitted"] += n
    if state == "delivered":
        stats["delivered"] += n
    elif state in ("failed", "expired"):
        stats["failed"] += n
    stats["rendered"] += rendered
    stats["opened"] += opened


async def tasks_stats(svc: Services, task_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """`task_stats` of several tasks in two grouped queries (the task list refreshes them all)."""
    keys = ("queued", "submitted", "card", "fallback", "delivered", "failed", "rendered", "opened", "skipped",
            "limited", "replies")  # limited: skipped by frequency control (a part of skipped)
    out = {t: dict.fromkeys(keys, 0) for t in task_ids}
    if not task_ids:
        return out
    async with svc.read() as conn:
        rows = (await conn.execute(select(
            messages.c.task_id, messages.c.channel, messages.c.state, func.count(),
            func.sum(case((messages.c.render_status == 1, 1), else_=0)),
            func.sum(case((messages.c.opens > 0, 1), else_=0)),
            func.sum(case((messages.c.error_code.in_(LIMIT_CODES), 1), else_=0)),
        ).where(messages.c.task_id.in_(task_ids)).group_by(messages.c.task_id, messages.c.channel,
                                                            messages.c.state))).all()
        replied = [*(await conn.execute(select(messages.c.task_id, func.count()).select_from(replies).join(
            messages, messages.c.id == replies.c.message_id).where(messages.c.task_id.in_(task_ids))
            .group_by(messages.c.task_id))).all()]
        # the tasks' purged messages, folded into daily counts (services/retention.py)
        d = daily_stats.c
        rows = [*rows, *(await conn.execute(select(
            d.task_id, d.channel, d.state, func.sum(d.messages), func.sum(d.rendered), func.sum(d.opened), literal(0),
        ).where(*stats_filters(task_ids=list(task_ids))).group_by(d.task_id, d.channel, d.state))).all()]
        replied += (await conn.execute(select(d.task_id, func.sum(d.replies)).where(
            *stats_filters(task_ids=list(task_ids))).group_by(d.task_id))).all()
    for task_id, channel, state, n, rendered, opened, limited in rows:
        _count(out[task_id], channel, state, n, int(rendered or 0), int(opened or 0), int(limited or 0))
    for task_id, n in replied:
        out[task_id]["replies"] += int(n or 0)
    return out


RATE_SECONDS = 10  # the current rate is what the task submitted in the last 10 seconds


async def progress(svc: Services, task: Any, stats: dict[str, int]) -> dict[str, Any]:
    """The task page's live figures: the current rate (msg/s over the last RATE_SECONDS), the send window, when a
    waiting task starts, and the expected finish (at the current rate, or the configured one; across the night
    when the window closes first)."""
    now = svc.now()
    window = await account_service.send_window(svc, task["account_id"])
    done = stats["submitted"] + stats["skipped"]
    current = await _current_rate(svc, task["id"], stats["submitted"])
    remaining = max(0, int(task["total"]) - done)
    next_start = as_utc(task["next_start_at"]) if task["next_start_at"] is not None else None
    out: dict[str, Any] = {"window": str(window), "current_rate": round(current, 1), "remaining": remaining,
                           "next_start": next_start, "finish": None}
    pace = current if task["state"] == "sending" and current > 0 else float(task["rate"] or 0)
    if task["state"] not in ("sending", "waiting") or not pace or not remaining:
        return out
    start = now if task["state"] == "sending" else (next_start or window.next_start(now))
    finish = start + timedelta(seconds=remaining / pace)
    closes = window.closes(start)
    if closes is not None and finish > closes:  # what is left at the window's end goes after it opens again
        left = remaining - pace * (closes - start).total_seconds()
        finish = window.next_start(closes) + timedelta(seconds=left / pace)
    out["finish"] = finish
    return out


async def _current_rate(svc: Services, task_id: int, submitted: int) -> float:
    """Messages per second the task submitted over the last RATE_SECONDS: from the submitted counts this process saw
    (a task page refreshes every second and has them already), else counted in the database (`task show`)."""
    mono = time.monotonic()
    samples = [s for s in svc.task_samples.get(task_id, []) if mono - s[0] <= RATE_SECONDS]
    samples.append((mono, submitted))
    if len(svc.task_samples) > 1000:
        svc.task_samples.clear()
    svc.task_samples[task_id] = samples
    if mono - samples[0][0] >= 2:
        return max(0, submitted - samples[0][1]) / (mono - samples[0][0])
    async with svc.point_read() as conn:
        recent = await conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.task_id == task_id,
            messages.c.submitted_at > svc.now() - timedelta(seconds=RATE_SECONDS)))
    return (recent or 0) / RATE_SECONDS


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """A CSV cell a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_text(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as CSV text with every cell made formula-safe."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows([safe_cell(v) for v in row] for row in rows)
    return buffer.getvalue()


async def export_rows(svc: Services, account_id: int, task_id: int) -> AsyncIterator[str]:
    """The per-recipient results of a task as CSV text, streamed in batches."""
    await get_task(svc, account_id, task_id)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["phone", "channel", "state", "error_code", "error_text", "biz_id", "submitted_at",
                     "done_at", "rendered", "link_opens", "content"])
    last = 0
    while True:
        async with svc.read() as conn:
            rows = (await conn.execute(select(messages).where(
                messages.c.account_id == account_id, messages.c.task_id == task_id, messages.c.id > last
            ).order_by(messages.c.id).limit(5000))).mappings().all()
        for m in rows:
            writer.writerow([safe_cell(v) for v in (
                m["phone"], m["channel"], m["state"], m["error_code"], m["error_text"], m["biz_id"],
                m["submitted_at"] and as_utc(m["submitted_at"]).isoformat(),
                m["done_at"] and as_utc(m["done_at"]).isoformat(), m["render_status"] == 1, m["opens"],
                m["content"])])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        if len(rows) < 5000:
            return
        last = rows[-1]["id"]
