"""Housekeeping of a dispatcher: recovery of what was in flight when a process died, expiry of messages past
their validity, closing submitted messages whose receipt never came, and retention's purge. The dispatch loop
runs expiry every EXPIRE_SECONDS and the other two every HOUSEKEEPING_SECONDS."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import fetch_all
from cardsms.db.schema import message_events, messages
from cardsms.services import receipts, webhooks
from cardsms.services.core import Services

log = structlog.get_logger("cardsms.dispatcher")
EXPIRE_SECONDS = 1.0  # messages past their validity are expired at most this long after
HOUSEKEEPING_SECONDS = 600.0  # unanswered submits are closed and old records purged this often


class Maintenance:
    """The housekeeping half of a Dispatcher (delivery/dispatcher.py)."""

    svc: Services
    is_pg: bool

    async def recover(self, live_workers: Sequence[str] | None = None) -> int:
        """Queue again what was in flight when its process died, flagged as possible duplicates: every
        `submitting` row, or (scale-out) those claimed by workers not in `live_workers`."""
        now = self.svc.now()
        where = [messages.c.state == "submitting"]
        if live_workers is not None:
            where.append(messages.c.claimed_by.not_in(list(live_workers)))
        query = select(messages.c.id, messages.c.account_id).where(*where).limit(20_000)
        if self.is_pg:
            query = query.with_for_update(skip_locked=True)

        async def requeue(conn: AsyncConnection) -> int:
            rows = (await conn.execute(query)).all()
            if rows:
                await conn.execute(update(messages).where(messages.c.id.in_([r.id for r in rows]),
                                                          messages.c.state == "submitting").values(
                    state="queued", possible_duplicate=True, due_at=now, claimed_by=""))
                await conn.execute(insert(message_events), [
                    {"account_id": r.account_id, "message_id": r.id, "kind": "recovered", "at": now,
                     "detail": "in flight when the server stopped; sent again and flagged as a possible duplicate"}
                    for r in rows])
            return len(rows)

        count = await self.svc.execute_write(requeue)
        if count:
            log.warning("dispatcher.recovered", messages=count)
        return count

    async def _close(self, state: str, cond: Any, to: str, code: str, text: str) -> int:
        """Close up to 5,000 messages in `state` matching `cond` as `to` with error `code`, and report them."""
        now = self.svc.now()

        async def close(conn: AsyncConnection) -> int:
            rows = await fetch_all(conn, select(messages).where(messages.c.state == state, cond).limit(5000))
            if not rows:
                return 0
            ids = [r["id"] for r in rows]
            await conn.execute(update(messages).where(messages.c.id.in_(ids), messages.c.state == state).values(
                state=to, error_code=code, error_text=text, done_at=now))
            await conn.execute(insert(message_events), [
                {"account_id": r["account_id"], "message_id": r["id"], "kind": to, "at": now,
                 "detail": text if to == "expired" else f"{code}: {text}"} for r in rows])
            await webhooks.enqueue(conn, self.svc, [receipts.sms_report(r, False, code, text, now) for r in rows])
            return len(rows)

        return await self.svc.execute_write(close)

    async def close_unanswered(self) -> int:
        """Submitted messages whose receipt never came (the SMSC lost it, or it was lost in transit) are closed
        as failed with NO_RECEIPT after CARDSMS_RECEIPT_TIMEOUT_HOURS, so nothing stays pending forever."""
        cutoff = self.svc.now() - timedelta(hours=self.svc.settings.receipt_timeout_hours)
        return await self._close("submitted", messages.c.submitted_at < cutoff, "failed", "NO_RECEIPT",
                                 "no delivery receipt arrived in time")

    async def expire(self) -> int:
        return await self._close("queued", messages.c.expires_at <= self.svc.now(), "expired", "EXPIRED",
                                 "validity period ended before submission")

    async def purge(self) -> int:
        """Fold records older than the retention period into daily counts and delete them, in small batches
        (services/retention.py): sends never wait for more than one batch."""
        from cardsms.services import retention

        return (await retention.purge(self.svc)).messages
