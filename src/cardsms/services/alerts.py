"""The daily volume alert (Alibaba's 发送总量预警): an account sets a threshold of messages per day (mainland
time); when the day's messages pass it, an alert is raised once that day: an event on the console's
overview and a `VolumeAlert` webhook report (a cardsms addition).

A background pass (`check_volume`, every CARDSMS_ALERT_CHECK_SECONDS in `serve` and `api`) counts the day's messages of
the accounts that set a threshold (the index on account and day; skipped messages do not count). The alert
row's primary key (account, day, kind) makes it once per day, also with several `cardsms api` processes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cardsms.db.schema import account_alerts, accounts, messages
from cardsms.domain.errors import CardsmsError
from cardsms.services import audit, webhooks
from cardsms.services.core import CHINA, Services, china_time

MAX_THRESHOLD = 100_000_000


async def set_daily_alert(svc: Services, account_id: int, threshold: int | None) -> None:
    if threshold is not None and not 1 <= threshold <= MAX_THRESHOLD:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"daily_alert: 1 to {MAX_THRESHOLD} messages, or off; got "
                           f"{threshold}")
    async with svc.hold_writer() as conn:
        await conn.execute(update(accounts).where(accounts.c.id == account_id).values(daily_alert=threshold))
        await audit.record(conn, svc, account_id, "alert.daily", "daily volume alert",
                           "off" if threshold is None else f"{threshold} messages a day")


async def daily_alert(svc: Services, account_id: int) -> int | None:
    async with svc.read() as conn:
        value = await conn.scalar(select(accounts.c.daily_alert).where(accounts.c.id == account_id))
    return int(value) if value is not None else None


async def check_volume(svc: Services) -> int:
    """Raise today's volume alert of every account whose messages passed its threshold; returns how many."""
    now = svc.now()
    day = now.astimezone(CHINA).strftime("%Y%m%d")
    raised = 0
    async with svc.read() as conn:
        watched = (await conn.execute(select(accounts.c.id, accounts.c.daily_alert).where(
            accounts.c.daily_alert.is_not(None)))).all()
        done = {r[0] for r in await conn.execute(select(account_alerts.c.account_id).where(
            account_alerts.c.day == day, account_alerts.c.kind == "volume"))}
        due: list[tuple[int, int, int]] = []
        for account_id, threshold in watched:
            if account_id in done:
                continue
            count = int(await conn.scalar(select(func.count()).select_from(messages).where(
                messages.c.account_id == account_id, messages.c.send_day == day,
                messages.c.state != "skipped")) or 0)
            if count >= threshold:
                due.append((account_id, threshold, count))
    for account_id, threshold, count in due:
        try:
            async with svc.hold_writer() as wconn:
                await wconn.execute(insert(account_alerts).values(account_id=account_id, day=day, kind="volume",
                                                                  threshold=threshold, count=count, at=now))
                await webhooks.enqueue(wconn, svc, [(account_id, "VolumeAlert", {
                    "day": day, "threshold": threshold, "count": count, "alert_time": china_time(now),
                    "desc": f"{count} messages sent today passed the daily threshold of {threshold}"})])
            raised += 1
        except IntegrityError:  # another process raised it first
            continue
    return raised


async def recent_alerts(svc: Services, account_id: int, days: int = 7) -> list[dict[str, Any]]:
    async with svc.read() as conn:
        return [dict(r) for r in (await conn.execute(select(account_alerts).where(
            account_alerts.c.account_id == account_id).order_by(account_alerts.c.day.desc()).limit(days))).mappings()]
