"""The task runner: one loop per deployment (a lock row elects it) that moves tasks between states by
imports, schedules and send windows, and feeds each sending task's next chunk into the message pipeline at
its rate and within its backlog."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.params import decode_params
from cardsms.db.schema import accounts, audience_numbers, audiences, messages, tasks
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import PhoneNumber
from cardsms.domain.schedule import SendWindow
from cardsms.logs import pass_failed
from cardsms.services import imports
from cardsms.services.card_sending import CardLegs, CardRecipient, CardSend, cached_plan, queue_card
from cardsms.services.core import Services, as_utc, storage_unavailable
from cardsms.services.idle import IdleWait
from cardsms.services.outbox import Outbox
from cardsms.services.sending import suppressed
from cardsms.services.tasks import hold_in, record_event, waiting_detail

log = structlog.get_logger("cardsms.tasks")
FEED_CHUNK = 2000
BACKLOG = 4 * FEED_CHUNK  # a task's messages waiting to be claimed, at most
TASK_PRIORITY = 3  # after the API's verification (0), notification and card (1) and promotional (2) sends
PACE_AHEAD = 3.0  # seconds of a rate-limited task's schedule fed ahead


RUNNER_LOCK = 0x7461736B73  # "tasks": one task runner at a time across processes on PostgreSQL


async def run_forever(svc: Services) -> None:
    """The task runner loop. On PostgreSQL only the process holding an advisory lock runs it, so
    imports and feeds are never done twice; another process takes over when that one dies."""
    while True:
        if svc.settings.is_sqlite:  # one process
            return await _run_loop(svc)
        async with svc.read() as conn:
            if await conn.scalar(text(f"SELECT pg_try_advisory_lock({RUNNER_LOCK})")):
                try:
                    await _run_loop(svc)
                finally:
                    await conn.execute(text(f"SELECT pg_advisory_unlock({RUNNER_LOCK})"))
        await asyncio.sleep(2)


async def _run_loop(svc: Services) -> None:  # runs until cancelled
    idle = IdleWait(0.5, svc.settings.idle_poll_seconds)
    while True:
        try:
            worked = await run_once(svc)
        except Exception:
            pass_failed(log, "tasks.pass_failed")
            worked = False
        if rest := idle.after(worked):
            await asyncio.sleep(rest)


async def run_once(svc: Services) -> bool:
    """One pass: imports, state changes, one chunk per sending task. True when work was done."""
    worked = False
    for audience_id in await imports.pending_imports(svc):
        try:
            await imports.run_import(svc, audience_id)
        except CardsmsError as exc:
            await imports.fail_import(svc, audience_id, exc.message)
        except Exception as exc:
            if storage_unavailable(exc):
                raise  # the database is away: the next pass tries again
            # anything else is this import's own: it fails alone instead of stopping every task behind it
            pass_failed(log, "tasks.import_failed", audience=audience_id)
            await imports.fail_import(svc, audience_id, f"the import failed: {str(exc)[:200]}")
        worked = True
    sending = await svc.execute_write(partial(_advance, svc=svc))
    for task_id in sending:
        worked = await feed(svc, task_id) or worked
    return worked


async def _advance(conn: AsyncConnection, svc: Services) -> list[int]:
    """Move tasks between states by imports, schedules and send windows; the ids of the tasks sending now."""
    rows = (await conn.execute(select(
        tasks.c.id, tasks.c.account_id, tasks.c.state, tasks.c.scheduled_at, tasks.c.next_start_at,
        tasks.c.started_at, audiences.c.state.label("import_state"), audiences.c.valid, audiences.c.duplicates,
        audiences.c.error, accounts.c.send_window).join(audiences, audiences.c.id == tasks.c.audience_id).join(
        accounts, accounts.c.id == tasks.c.account_id).where(
        tasks.c.state.in_(("importing", "scheduled", "waiting", "sending"))))).all()
    step = _Advance(conn, svc, svc.now())
    for r in rows:
        await step.task(r)
    return step.sending


class _Advance:
    """One pass of `_advance` over the open tasks, in the runner's write transaction."""

    def __init__(self, conn: AsyncConnection, svc: Services, now: datetime) -> None:
        self.conn, self.svc, self.now = conn, svc, now
        self.windows: dict[str | None, SendWindow] = {}
        self.sending: list[int] = []

    def window_of(self, own: str | None) -> SendWindow:
        if own not in self.windows:
            self.windows[own] = SendWindow.parse(own or self.svc.settings.send_window)
        return self.windows[own]

    async def move(self, r: Any, values: dict[str, Any]) -> bool:
        """Change the task if it is still in the state it was read in."""
        return bool((await self.conn.execute(update(tasks).where(tasks.c.id == r.id, tasks.c.state == r.state)
                                             .values(**values))).rowcount)

    async def event(self, r: Any, kind: str, detail: str = "") -> None:
        await record_event(self.conn, self.svc, r.account_id, r.id, kind, detail)

    async def task(self, r: Any) -> None:
        window = self.window_of(r.send_window)
        inside, now = window.contains(self.now), self.now
        if r.state == "importing" and r.import_state == "ready":
            if r.scheduled_at is not None:
                await self.move(r, {"state": "scheduled", "total": r.valid - r.duplicates})
            else:
                await self.conn.execute(update(tasks).where(tasks.c.id == r.id).values(total=r.valid - r.duplicates))
                await self.start(r, window, inside)
        elif r.state == "importing" and r.import_state == "failed":
            await self.move(r, {"state": "failed", "error": r.error, "finished_at": now})
            await self.event(r, "failed", r.error)
        elif (r.state == "scheduled" and as_utc(r.scheduled_at) <= now) or (r.state == "waiting" and inside):
            await self.start(r, window, inside)
        elif r.state == "sending" and not inside:  # the window closed: hold what is queued, keep the cursor
            if await self.move(r, {"state": "waiting", "next_start_at": window.next_start(now).astimezone(UTC)}):
                await hold_in(self.conn, self.svc, r.id, "queued", "paused")
                await self.event(r, "quiet", f"the send window {window} closed; {waiting_detail(window, now)}")
        elif r.state == "sending":
            if r.started_at is None:  # created sending (a saved audience, inside the window)
                await self.conn.execute(update(tasks).where(tasks.c.id == r.id).values(started_at=now))
                await self.event(r, "started")
            self.sending.append(r.id)

    async def start(self, r: Any, window: SendWindow, inside: bool) -> None:
        """The task may send now: inside the window it does, outside it waits for the window."""
        now = self.now
        if inside:
            if await self.move(r, {"state": "sending", "next_start_at": None, "started_at": r.started_at or now,
                                   "paced_until": None}):
                await hold_in(self.conn, self.svc, r.id, "paused", "queued")
                resumed = r.state == "waiting" and r.started_at is not None
                await self.event(r, "resumed" if resumed else "started",
                                 f"the send window {window} is open" if r.state == "waiting" else "")
                self.sending.append(r.id)
        elif r.state != "waiting" and await self.move(r, {"state": "waiting",
                                                          "next_start_at": window.next_start(now).astimezone(UTC)}):
            await self.event(r, "waiting", waiting_detail(window, now))


def _recipients(rows: Sequence[Any], sign_name: str) -> list[CardRecipient]:
    out = []
    for _, phone, params in rows:
        values = decode_params(params)
        out.append(CardRecipient(PhoneNumber("+86" + phone, True), sign_name, values, "", values, values, values))
    return out


async def feed(svc: Services, task_id: int) -> bool:
    """Queue the next chunk of a sending task; complete it when everything was fed and submitted.

    The chunk is read and its messages composed outside the write transaction, which only moves the
    task's cursor (if no one else did meanwhile) and writes the rows: the write lock is held briefly."""
    now = svc.now()
    async with svc.read() as conn:
        task = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).mappings().first()
        if task is None or task["state"] != "sending":
            return False
        chunk = await _allowance(conn, svc, task, now)
        if chunk <= 0:
            return False
        rows = (await conn.execute(select(audience_numbers.c.seq, audience_numbers.c.phone,
                                          audience_numbers.c.params).where(
            audience_numbers.c.account_id == task["account_id"], audience_numbers.c.audience_id == task["audience_id"],
            audience_numbers.c.seq > task["cursor"]).order_by(audience_numbers.c.seq).limit(chunk))).all()
        recipients = _recipients(rows, task["sign_name"])
        blocked = await suppressed(conn, task["account_id"], [r.number.national for r in recipients])
    if not rows:
        return await svc.execute_write(partial(_maybe_complete, svc=svc, task_id=task_id))
    box = await _compose(svc, task, recipients, blocked)
    if box is None:
        return True
    paced_until = _pace(box.rows, task, now)
    moved_from, moved_to = task["cursor"], rows[-1][0]

    async def queue(conn: AsyncConnection) -> bool:
        moved = (await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.cursor == moved_from,
                                                        tasks.c.state == "sending")
                                    .values(cursor=moved_to, paced_until=paced_until))).rowcount
        if not moved:  # another worker fed this chunk, or the task was paused meanwhile: nothing was written
            return False
        await box.write(conn)
        return True

    return await svc.execute_write(queue)


async def _compose(svc: Services, task: Any, recipients: list[CardRecipient], blocked: set[str]) -> Outbox | None:
    """A chunk's message rows; None when the task failed because its template or signature lost approval."""
    task_id = task["id"]
    spec = CardSend(task["card_template_code"], task["fallback_type"], task["sms_template_code"],
                    task["digital_template_code"], task["template_code"])
    try:
        plan = await cached_plan(svc, task["account_id"], spec, [task["sign_name"]])
    except CardsmsError as exc:  # a template or signature lost its approval after the task was created
        async with svc.hold_writer() as wconn:
            await wconn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == "sending").values(
                state="failed", error=exc.message, finished_at=svc.now()))
        return None
    box, legs = Outbox(svc, task["account_id"]), CardLegs()
    for r in recipients:  # one by one, so a row with a bad parameter value is skipped, not the chunk
        try:
            queue_card(svc, plan, spec, [r], blocked, box, legs, task_id)
        except CardsmsError as exc:
            box.add(biz_id=legs.biz["card"], channel="card", number=r.number, content="", priority=2,
                    sign_name=r.sign_name, template_code=spec.card_template_code, state="skipped",
                    error_code="BAD_PARAMS", error_text=exc.message, task_id=task_id,
                    card_template_code=spec.card_template_code)
    return box


async def _allowance(conn: AsyncConnection, svc: Services, task: Any, now: datetime) -> int:
    """How many recipients to feed now: a chunk, less what the task's backlog, hourly cap and rate allow."""
    task_id = task["id"]
    backlog = int(await conn.scalar(select(func.count()).select_from(
        select(messages.c.id).where(messages.c.task_id == task_id, messages.c.state == "queued").limit(BACKLOG)
        .subquery())) or 0)
    if BACKLOG - backlog < FEED_CHUNK:  # a whole chunk or nothing: no trickle of tiny transactions
        return 0
    chunk = FEED_CHUNK
    cap = task["hourly_cap"]
    if cap and chunk > 0:  # the sliding hour: what the task queued in the last 60 minutes
        recent = 0 if task["cursor"] == 0 else await conn.scalar(select(func.count()).select_from(
            select(messages.c.id).where(messages.c.task_id == task_id, messages.c.state != "skipped",
                                        messages.c.created_at > now - timedelta(hours=1)).limit(cap).subquery()))
        chunk = min(chunk, cap - recent)
    rate = task["rate"]
    if rate and chunk > 0:
        ahead = (as_utc(task["paced_until"]) - now).total_seconds() if task["paced_until"] is not None else 0.0
        if ahead > PACE_AHEAD / 2:  # top up when half of what is ahead has gone
            return 0
        chunk = min(chunk, max(1, int((PACE_AHEAD - max(0.0, ahead)) * rate)))
    return chunk


def _pace(rows: list[dict[str, Any]], task: Any, now: datetime) -> datetime | None:
    """Give a chunk's queued messages the task's priority and, with a rate, due times 1/rate apart after what was
    fed before; returns where the task's schedule now ends."""
    rate = task["rate"]
    start = max(now, as_utc(task["paced_until"])) if task["paced_until"] is not None else now
    step = timedelta(seconds=1 / rate) if rate else timedelta(0)
    n = 0
    for row in rows:
        if row["state"] == "queued":
            row["priority"] = TASK_PRIORITY
            if rate:
                row["due_at"] = start + step * n
                n += 1
    return start + step * n if rate else None


async def _maybe_complete(conn: AsyncConnection, svc: Services, task_id: int) -> bool:
    waiting = await conn.scalar(select(func.count()).select_from(messages).where(
        messages.c.task_id == task_id, messages.c.state.in_(("queued", "submitting", "paused"))))
    if waiting:
        return False
    account_id = int(await conn.scalar(select(tasks.c.account_id).where(tasks.c.id == task_id)) or 0)
    done = (await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == "sending").values(
        state="completed", finished_at=svc.now()))).rowcount
    if done:
        await record_event(conn, svc, account_id, task_id, "completed")
    return True
