"""Record retention: messages older than CARDSMS_RETENTION_DAYS are deleted, and their daily counts kept.

A purge takes the oldest final messages in batches of PURGE_BATCH. Each batch is one write job: it folds
the batch into `daily_stats` (one row per account, day, task, channel, state, signature, templates,
template type and international or not; counts of messages, segments, rendered cards, opened links and
replies) and deletes the batch's messages and events, in one transaction, so every message is counted
exactly once: in its row while it lives, in the aggregate after. Statistics (QuerySendStatistics, the
console's overview, task reports) add the two. Batches are small and queued behind nothing urgent: a send
waits at most for the batch being written, never for the whole purge.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import case, delete, exists, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import (
    daily_stats,
    early_receipts,
    frequency_guard,
    link_opens,
    message_events,
    messages,
    replies,
    webhook_outbox,
)
from cardsms.services.core import Services
from cardsms.services.receipts import FINAL_STATES

PURGE_BATCH = 2_000
GUARD_DAYS = 2  # frequency_guard rows older than this are deleted (no window of frequency control is longer)
KEY = ("account_id", "day", "task_id", "channel", "state", "sign_name", "template_code", "card_template_code",
       "template_type", "international")
COUNTS = ("messages", "segments", "rendered", "opened", "replies")


@dataclass(frozen=True, slots=True)
class Purged:
    messages: int
    batches: int


def _fold_query(ids: list[int]) -> Any:
    reply_count = (select(func.count()).select_from(replies).where(replies.c.message_id == messages.c.id)
                   .scalar_subquery())
    # literals, not bound values: PostgreSQL matches the GROUP BY expressions to the selected ones by their text
    international = ~messages.c.e164.like(literal_column("'+86%'"))
    task = func.coalesce(messages.c.task_id, literal_column("0"))
    return (select(messages.c.account_id, messages.c.send_day, task,
                   messages.c.channel, messages.c.state, messages.c.sign_name, messages.c.template_code,
                   messages.c.card_template_code, messages.c.template_type, international,
                   func.count(), func.sum(messages.c.segments),
                   func.sum(case((messages.c.render_status == 1, 1), else_=0)),
                   func.sum(case((messages.c.opens > 0, 1), else_=0)), func.sum(reply_count))
            .where(messages.c.id.in_(ids))
            .group_by(messages.c.account_id, messages.c.send_day, task,
                      messages.c.channel, messages.c.state, messages.c.sign_name, messages.c.template_code,
                      messages.c.card_template_code, messages.c.template_type, international))


async def purge(svc: Services, batch: int = PURGE_BATCH, max_batches: int = 1_000,
                between: Callable[[int], Awaitable[None]] | None = None) -> Purged:
    """Fold and delete what is past retention, a batch per transaction; returns how much and in how many.
    `between(batches_done)` runs after each batch, outside any transaction (a test shows sends go on there)."""
    cutoff = svc.now() - timedelta(days=svc.settings.retention_days)
    total = batches = 0
    while batches < max_batches:
        n = await svc.execute_write(partial(_fold_batch, svc=svc, cutoff=cutoff, batch=batch))
        if not n:
            break
        total += n
        batches += 1
        await asyncio.sleep(0)  # between batches the writer takes whatever else is queued
        if between is not None:
            await between(batches)
    await svc.execute_write(partial(_tidy, cutoff=cutoff, guard_cutoff=svc.now() - timedelta(days=GUARD_DAYS)))
    return Purged(total, batches)


async def _fold_batch(conn: AsyncConnection, svc: Services, cutoff: datetime, batch: int) -> int:
    """Fold a batch of final messages older than the cutoff into daily_stats and delete them with their events."""
    ids = [r[0] for r in await conn.execute(select(messages.c.id).where(
        messages.c.created_at < cutoff, messages.c.state.in_(FINAL_STATES)).order_by(messages.c.id).limit(batch))]
    if not ids:
        return 0
    groups = [dict(zip(KEY + COUNTS, (*row[:9], bool(row[9]), *(int(x or 0) for x in row[10:])), strict=True))
              for row in await conn.execute(_fold_query(ids))]
    stmt = (pg_insert if not svc.settings.is_sqlite else sqlite_insert)(daily_stats)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=list(KEY), set_={c: getattr(daily_stats.c, c) + getattr(stmt.excluded, c) for c in COUNTS}),
        groups)
    await conn.execute(delete(message_events).where(message_events.c.message_id.in_(ids)))
    await conn.execute(delete(messages).where(messages.c.id.in_(ids)))
    return len(ids)


async def _tidy(conn: AsyncConnection, cutoff: datetime, guard_cutoff: datetime) -> None:
    await conn.execute(delete(link_opens).where(link_opens.c.at < cutoff))
    await conn.execute(delete(early_receipts).where(early_receipts.c.received_at < cutoff))
    # old replies whose message was folded (its aggregate counted them) or that answered no message
    await conn.execute(delete(replies).where(replies.c.received_at < cutoff, ~exists(
        select(messages.c.id).where(messages.c.id == replies.c.message_id))))
    await conn.execute(delete(webhook_outbox).where(webhook_outbox.c.created_at < cutoff,
                                                    webhook_outbox.c.state != "pending"))
    # frequency control's lock rows (PostgreSQL): a number not sent to for two days needs none
    await conn.execute(delete(frequency_guard).where(frequency_guard.c.at < guard_cutoff))


def stats_filters(*, account_id: int | None = None, days: tuple[str, str] | list[str] | None = None,
                  task_ids: list[int] | None = None) -> list[Any]:
    where: list[Any] = []
    if account_id is not None:
        where.append(daily_stats.c.account_id == account_id)
    if isinstance(days, tuple):
        where += [daily_stats.c.day >= days[0], daily_stats.c.day <= days[1]]
    elif days is not None:
        where.append(daily_stats.c.day.in_(days))
    if task_ids is not None:
        where.append(daily_stats.c.task_id.in_(task_ids))
    return where
