"""The dispatcher: claims due messages in batches, submits them through the connectors (or the
digital channel), records the outcomes; the receipt writer applies what comes back.

Crash safety: a claim moves rows from `queued` to `submitting` and commits *before* anything is
sent. After a crash, rows still `submitting` may or may not have reached the SMSC: `recover()`
queues them again with `possible_duplicate` set — the only messages that can be sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog
from sqlalchemy import and_, false, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import fetch_all
from cardsms.db.schema import accounts, messages
from cardsms.delivery.connector import Inbound, LinkConnector, SubmitError
from cardsms.delivery.digital import DigitalChannel, DigitalMessage
from cardsms.delivery.journal import Journal
from cardsms.delivery.maintenance import EXPIRE_SECONDS, HOUSEKEEPING_SECONDS, Maintenance
from cardsms.delivery.receipt_loop import ReceiptLoop
from cardsms.domain.schedule import SendWindow
from cardsms.logs import pass_failed
from cardsms.services import receipts
from cardsms.services.core import Services, storage_unavailable
from cardsms.services.idle import Every, IdleWait
from cardsms.services.receipts import Outcome

log = structlog.get_logger("cardsms.dispatcher")


class Dispatcher(ReceiptLoop, Maintenance):
    """Claims, submits and records outcomes; the receipt loop and the housekeeping are its bases."""

    def __init__(self, svc: Services, connectors: Sequence[LinkConnector], digital: DigitalChannel,
                 journal: Journal | None = None) -> None:
        self.svc = svc
        self.journal = journal
        self.connectors = list(connectors)
        self.digital = digital
        self.inbound: asyncio.Queue[tuple[Inbound, int]] = asyncio.Queue()
        self.is_pg = not svc.settings.is_sqlite
        self.submitted = 0
        self.receipts = 0
        self._stopping = False
        self._expiry = Every(EXPIRE_SECONDS)
        self.worker_id = ""  # set under the scale-out: claims are marked with it (delivery/leases.py)
        self.recover_at_start = True  # one process (SQLite): everything `submitting` is ours from before
        self._windows: dict[int, tuple[SendWindow | None, bool]] = {}  # account: (its own window, holds API sends)
        self._windows_read = Every(1.0)
        self._default_window = SendWindow.parse(svc.settings.send_window)  # settings do not change while running

    # --- the dispatch loop ----------------------------------------------------------------------

    def _smpp_up(self) -> bool:
        return any(c.up for c in self.connectors)

    async def outside_windows(self, now: Any) -> Any:
        """The claim's condition for send windows, or None when every window is open: a mass task's messages go only
        inside their account's window (the task runner holds them at its end too; this makes the end exact), and so
        do the API sends of accounts that hold them, verification codes excepted. The accounts' own windows are read
        once a second; whether each is open is decided at every claim."""
        if self._windows_read.due():
            async with self.svc.point_read() as conn:
                rows = (await conn.execute(select(accounts.c.id, accounts.c.send_window, accounts.c.hold_api_sends)
                                           .where(or_(accounts.c.send_window.is_not(None),
                                                      accounts.c.hold_api_sends.is_(True))))).all()
            self._windows = {r.id: (SendWindow.parse(r.send_window) if r.send_window else None, bool(r.hold_api_sends))
                             for r in rows}
        default = self._default_window
        default_open = default.contains(now)
        own_open = [a for a, (w, _) in self._windows.items() if w is not None and w.contains(now)]
        own_closed = [a for a, (w, _) in self._windows.items() if w is not None and not w.contains(now)]
        held = [a for a, (w, hold) in self._windows.items() if hold and not (w or default).contains(now)]
        if default_open and not own_closed and not held:
            return None
        open_accounts: Any
        if default_open:
            open_accounts = messages.c.account_id.not_in(own_closed) if own_closed else true()
        else:
            open_accounts = messages.c.account_id.in_(own_open) if own_open else false()
        tasks_ok = or_(messages.c.task_id.is_(None), open_accounts)
        api_ok = or_(messages.c.task_id.is_not(None), messages.c.priority == 0, messages.c.account_id.not_in(held)) \
            if held else true()
        return and_(tasks_ok, api_ok)

    async def claim(self, limit: int) -> list[dict[str, Any]]:
        channels = ["digital"] + (["sms", "card"] if self._smpp_up() else [])
        now = self.svc.now()
        due: tuple[Any, ...] = (messages.c.state == "queued", messages.c.due_at <= now, messages.c.expires_at > now,
                                messages.c.channel.in_(channels))
        windows = await self.outside_windows(now)
        if windows is not None:
            due += (windows,)
        # on SQLite even an empty claim takes the one write lock: look first, without it
        if not self.is_pg and not await self._any(select(messages.c.id).where(*due)):
            return []
        stmt = (select(messages.c.id, messages.c.account_id, messages.c.channel, messages.c.e164,
                       messages.c.content, messages.c.priority, messages.c.attempts, messages.c.template_code,
                       messages.c.up_extend_code, messages.c.expires_at)
                .where(*due).order_by(messages.c.priority, messages.c.due_at, messages.c.id).limit(limit))
        if self.is_pg:
            stmt = stmt.with_for_update(skip_locked=True)
        worker_id = self.worker_id

        async def take(conn: AsyncConnection) -> list[dict[str, Any]]:
            rows = await fetch_all(conn, stmt)
            if rows:
                await conn.execute(update(messages).where(messages.c.id.in_([r["id"] for r in rows]),
                                                          messages.c.state == "queued")
                                   .values(state="submitting", attempts=messages.c.attempts + 1,
                                           claimed_by=worker_id))
            return rows

        return await self.svc.execute_write(take)

    def _route(self, e164: str) -> tuple[LinkConnector | None, bool]:
        """(a bound connector for the number, whether any connector serves it at all)."""
        serving = [c for c in self.connectors if c.cfg.serves(e164)]
        for c in serving:
            if c.up and c.throttled_until <= time.monotonic():
                return c, True
        for c in serving:
            if c.up:
                return c, True
        return None, bool(serving)

    async def _submit(self, row: dict[str, Any]) -> Outcome:
        mid, account = row["id"], row["account_id"]
        attempts = row["attempts"] + 1
        try:
            if row["channel"] == "digital":
                link, ident = await self.digital.submit(DigitalMessage(
                    row["e164"], account, row["template_code"], row["content"], row["expires_at"]))
                return Outcome(mid, account, "ok", link, [ident])
            connector, served = self._route(row["e164"])
            if connector is None:
                if not served:
                    return Outcome(mid, account, "fail", code="NO_ROUTE",
                                   text=f"no connector serves {row['e164']}")
                return Outcome(mid, account, "throttled", code="NOT_BOUND", text="no connector is bound", delay=1.0)
            ids = await connector.submit(row["e164"], row["content"], row["up_extend_code"], row["priority"])
            return _submitted(mid, account, connector, ids)
        except SubmitError as exc:
            if exc.throttled:
                return Outcome(mid, account, "throttled", code=exc.code, text=exc.text, delay=0.2,
                               maybe_sent=exc.sent_parts > 0)
            if exc.link:  # the bind broke: not the message's fault; the connector reconnects meanwhile
                return Outcome(mid, account, "throttled", code=exc.code, text=exc.text, delay=0.5,
                               maybe_sent=exc.code != "NOT_BOUND" or exc.sent_parts > 0)
            if exc.transient and attempts < self.svc.settings.retry_max_attempts:
                delay = min(self.svc.settings.retry_base_seconds * 2 ** (attempts - 1), 300.0)
                return Outcome(mid, account, "retry", code=exc.code, text=exc.text, delay=delay,
                               maybe_sent=exc.code == "TIMEOUT" or exc.sent_parts > 0)
            return Outcome(mid, account, "fail", code=exc.code,
                           text=exc.text + (f" (after {attempts} attempts)" if exc.transient else ""))

    async def _claim_due(self) -> list[dict[str, Any]]:
        if self._expiry.due():
            await self.expire()
        return await self.claim(self.svc.settings.dispatch_batch)

    async def _deliver(self, rows: list[dict[str, Any]]) -> None:
        """Submit a claimed batch and record the outcomes. If this fails, the rows stay `submitting` and are
        queued again (flagged) by the next recovery, like after a crash."""
        try:
            outcomes = list(await asyncio.gather(*(self._submit(r) for r in rows)))
            while True:  # the SMSC has them: keep trying to record that while the database cannot store
                try:
                    await self.svc.execute_write(partial(receipts.record_outcomes, svc=self.svc, outcomes=outcomes))
                    break
                except Exception as exc:
                    if self._stopping or not storage_unavailable(exc):
                        raise
                    log.warning("dispatcher.outcomes_waiting_for_storage", messages=len(rows), error=str(exc)[:200])
                    await asyncio.sleep(1)
            self.submitted += sum(o.kind == "ok" for o in outcomes)
        except Exception:
            pass_failed(log, "dispatcher.batch_failed", messages=len(rows))

    async def run(self) -> None:
        """Claim batches and send them; up to CARDSMS_DISPATCH_IN_FLIGHT batches are on their way at once (the
        next is claimed while the previous ones are submitted and recorded)."""
        if self.recover_at_start:
            await self.recover()
        housekeeping = Every(HOUSEKEEPING_SECONDS)
        slots = asyncio.Semaphore(self.svc.settings.dispatch_in_flight)
        idle = IdleWait(self.svc.settings.dispatch_poll_seconds, self.svc.settings.idle_poll_seconds)
        batches: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            batches.discard(task)
            slots.release()

        try:
            while not self._stopping:
                await slots.acquire()
                rows: list[dict[str, Any]] = []
                self.svc.wakeup.clear()  # before the claim: a send queued while it runs cuts the rest short
                try:
                    rows = await self._claim_due()
                    if housekeeping.due():
                        await self.close_unanswered()
                        await self.purge()
                except Exception:
                    pass_failed(log, "dispatcher.pass_failed")
                    await asyncio.sleep(1)
                rest = idle.after(bool(rows))
                if rows:
                    batch = asyncio.create_task(self._deliver(rows), name="dispatch-batch")
                    batches.add(batch)
                    batch.add_done_callback(finished)
                    continue
                slots.release()
                if not self._stopping and await self._rest(rest):
                    idle.after(True)  # new work: the next empty pass rests the shortest time again
        finally:
            if batches:  # what was claimed gets its outcome recorded before the dispatcher ends
                await asyncio.gather(*batches, return_exceptions=True)

    async def _rest(self, seconds: float) -> bool:
        """Wait up to `seconds` for a wake-up; True when one came."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.svc.wakeup.wait()
        return self.svc.wakeup.is_set()

    async def stop(self) -> None:
        self._stopping = True
        self.svc.wakeup.set()


def _submitted(mid: int, account: int, connector: LinkConnector, ids: list[str]) -> Outcome:
    """A submit's outcome under its link's receipt policy: with `first` or `last` only that part's id is
    matched (other parts' receipts, should they come, are not this message's), with `any` every id; either
    way one receipt settles the message."""
    policy = connector.cfg.receipts
    if policy == "all" or len(ids) < 2:
        return Outcome(mid, account, "ok", connector.name, ids)
    kept = ids[:1] if policy == "first" else ids[-1:] if policy == "last" else ids
    return Outcome(mid, account, "ok", connector.name, kept, one_receipt=True)
