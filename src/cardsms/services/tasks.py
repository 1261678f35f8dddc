"""Mass tasks (SPEC.md "Mass Operations Assistant"): create, schedule, run, pause, revoke, report.

States: importing → scheduled → sending ⇄ paused → completed, or revoked / cancelled / failed; and
waiting ⇄ sending at the edges of the account's send window (quiet hours, 08:00-22:00 Asia/Shanghai by
default): a task outside it waits, a running one is held at its end with its cursor kept (its queued
messages wait as `paused`) and resumes by itself when the window opens.
The runner feeds recipients into `messages` in chunks from the task's `cursor` (the last audience
`seq` queued) and advances the cursor in the same transaction with a compare-and-set, so a pause,
a restart or a second worker never queues a recipient twice (listmonk's campaign cursor, made durable).

Fair sharing: a task has at most BACKLOG messages waiting to be claimed, and its messages come after
the API's (TASK_PRIORITY), so one large task neither starves a small one (their chunks interleave) nor
the transactional sends. A task's optional rate (messages per second) spaces its messages' due times,
fed at most PACE_AHEAD seconds ahead, so a change takes effect within that; its optional hourly cap is
a sliding window over the last hour of what it queued.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import structlog
from sqlalchemy import case, func, literal, select, text, update

from cardsms.db.params import decode_params
from cardsms.db.schema import accounts, audience_numbers, audiences, daily_stats, messages, replies, task_events, tasks
from cardsms.domain.errors import CardsmsError, field_error
from cardsms.domain.frequency import LIMIT_CODES
from cardsms.domain.numbers import PhoneNumber
from cardsms.domain.schedule import CHINA, SendWindow, can_revoke, check_schedule, check_task_name
from cardsms.logs import pass_failed
from cardsms.services import accounts as account_service
from cardsms.services import audit, imports
from cardsms.services.card_sending import CardLegs, CardRecipient, CardSend, cached_plan, plan_card, queue_card
from cardsms.services.core import Services, as_utc, storage_unavailable
from cardsms.services.outbox import Outbox
from cardsms.services.retention import stats_filters
from cardsms.services.sending import _VAR, suppressed

log = structlog.get_logger("cardsms.tasks")
FEED_CHUNK = 2000
BACKLOG = 4 * FEED_CHUNK  # a task's messages waiting to be claimed, at most
TASK_PRIORITY = 3  # after the API's verification (0), notification and card (1) and promotional (2) sends
PACE_AHEAD = 3.0  # seconds of a rate-limited task's schedule fed ahead
MAX_RATE = 100_000
MAX_HOURLY_CAP = 10_000_000
OPEN_STATES = ("importing", "scheduled", "waiting", "sending", "paused")
FALLBACKS = {"NONE": "none", "SMS": "text", "DIGITALSMS": "digital"}


@dataclass
class TaskForm:
    name: str
    sign_name: str
    card_template_code: str
    fallback_type: str = "NONE"
    sms_template_code: str = ""
    digital_template_code: str = ""
    template_code: str = ""
    audience_id: int | None = None
    scheduled_at: datetime | None = None
    rate: int | None = None  # messages per second
    hourly_cap: int | None = None  # messages per sliding hour

    def spec(self) -> CardSend:
        return CardSend(self.card_template_code, self.fallback_type, self.sms_template_code,
                        self.digital_template_code, self.template_code)


_FIELD_OF = {"SignName": "sign_name", "CardTemplateCode": "card_template_code", "SmsTemplateCode": "sms_template_code",
             "DigitalTemplateCode": "digital_template_code", "TemplateCode": "template_code",
             "FallbackType": "fallback_type"}


_FIELD_OF_CODE = {"isv.SMS_SIGNATURE_ILLEGAL": "sign_name", "TEMPLATE_NOT_EXIST": "card_template_code",
                  "TEMPLATE_NOT_APPROVED": "card_template_code"}


def _as_field_error(exc: CardsmsError) -> CardsmsError:
    """Name the form field an API-style error is about (by its code, else the API name in its message)."""
    if exc.code in _FIELD_OF_CODE:
        return CardsmsError(exc.code, exc.message, field=_FIELD_OF_CODE[exc.code])
    for api_name, form_name in _FIELD_OF.items():
        if api_name in exc.message:
            return CardsmsError(exc.code, exc.message, field=form_name)
    return exc


async def _check_form(svc: Services, account_id: int, form: TaskForm, window: SendWindow) -> None:
    problem = check_task_name(form.name)
    if problem:
        raise field_error("name", problem)
    if form.fallback_type not in FALLBACKS:
        raise field_error("fallback_type", f"the fallback type must be one of {', '.join(FALLBACKS)}")
    if form.fallback_type == "SMS" and not form.sms_template_code.strip():
        raise field_error("sms_template_code", "a text fallback needs an approved text template")
    if form.fallback_type == "DIGITALSMS" and not form.digital_template_code.strip():
        raise field_error("digital_template_code", "a digital fallback needs an approved digital template")
    check_rate(form.rate, form.hourly_cap)
    if form.scheduled_at is not None:
        problem = check_schedule(form.scheduled_at, svc.now(), window)
        if problem:
            raise field_error("scheduled_at", problem)
    if not form.sign_name.strip():
        raise field_error("sign_name", "choose an approved signature")
    if not form.card_template_code.strip():
        raise field_error("card_template_code", "choose an approved card template or a public template")
    async with svc.read() as conn:
        try:
            await plan_card(conn, account_id, form.spec(), [form.sign_name])
        except CardsmsError as exc:
            raise _as_field_error(exc) from None


def check_rate(rate: int | None, hourly_cap: int | None) -> None:
    if rate is not None and not 1 <= rate <= MAX_RATE:
        raise field_error("rate", f"the send rate is 1-{MAX_RATE:,} messages per second (empty: as fast as the "
                                  "links allow)")
    if hourly_cap is not None and not 1 <= hourly_cap <= MAX_HOURLY_CAP:
        raise field_error("hourly_cap", f"the hourly cap is 1-{MAX_HOURLY_CAP:,} messages per hour (empty: none)")


async def _check_columns(svc: Services, account_id: int, form: TaskForm, columns: list[str]) -> None:
    """Text templates that fill `${var}` need those variables as columns of the import."""
    codes = {"sms_template_code": form.sms_template_code if form.fallback_type == "SMS" else "",
             "template_code": form.template_code}
    from cardsms.services.templates import get_template

    async with svc.read() as conn:
        for field_name, code in codes.items():
            if not code.strip():
                continue
            tpl = await get_template(conn, account_id, code, ("text",))
            missing = [n for n in dict.fromkeys(_VAR.findall(tpl["content"])) if n not in columns]
            if missing:
                raise field_error(field_name, f"template {code} needs the column(s) {', '.join(missing)}; "
                                  f"the recipients have {', '.join(columns) or 'no parameter columns'}")


async def create_task(svc: Services, account_id: int, form: TaskForm, *, file_name: str = "",
                      data: bytes | None = None, created_by: str = "") -> int:
    """Check every field, then create the task; with a file, its import runs in the background."""
    window = await account_service.send_window(svc, account_id)
    await _check_form(svc, account_id, form, window)
    if (data is None) == (form.audience_id is None):
        raise field_error("file", "import a file of numbers or choose a saved audience (one of the two)")
    if form.audience_id is not None:
        aud = await imports.get_audience(svc, account_id, form.audience_id)
        if aud["state"] != "ready":
            raise field_error("audience_id", f"audience {aud['name']!r} is {aud['state']}, not ready")
        await _check_columns(svc, account_id, form, list(aud["columns"]))
        audience_id, state = int(aud["id"]), _start_state(form)
        if state == "sending" and not window.contains(svc.now()):
            state = "waiting"
    else:
        assert data is not None
        audience_id = await imports.start_import(svc, account_id, name=form.name, saved=False,
                                                 file_name=file_name, data=data)
        aud = await imports.get_audience(svc, account_id, audience_id)
        try:
            await _check_columns(svc, account_id, form, list(aud["columns"]))
        except CardsmsError:
            await imports.delete_audience(svc, account_id, audience_id)
            raise
        state = "importing"
    now = svc.now()
    async with svc.write() as conn:
        result = await conn.execute(tasks.insert().values(
            account_id=account_id, name=form.name.strip(), sign_name=form.sign_name.strip(),
            card_template_code=form.card_template_code.strip(), fallback_type=form.fallback_type,
            sms_template_code=form.sms_template_code.strip(), digital_template_code=form.digital_template_code.strip(),
            template_code=form.template_code.strip(), audience_id=audience_id, state=state, cursor=0,
            total=int(aud["valid"]) - int(aud["duplicates"]) if state != "importing" else int(aud["total"]),
            error="", created_by=created_by, created_at=now, rate=form.rate, hourly_cap=form.hourly_cap,
            next_start_at=window.next_start(now).astimezone(UTC) if state == "waiting" else None,
            scheduled_at=form.scheduled_at.astimezone(UTC) if form.scheduled_at else None))  # SQLite keeps no zone
        task_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        await _event(conn, svc, account_id, task_id, "created", _created_detail(form, window))
        if state == "waiting":
            await _event(conn, svc, account_id, task_id, "waiting", _waiting_detail(window, now))
    svc.wake()
    return task_id


def _created_detail(form: TaskForm, window: SendWindow) -> str:
    parts = [f"send window {window} Asia/Shanghai"]
    if form.scheduled_at is not None:
        parts.append(f"scheduled for {form.scheduled_at.astimezone(CHINA):%Y-%m-%d %H:%M}")
    parts.append(_rate_text(form.rate, form.hourly_cap))
    return "; ".join(parts)


def _rate_text(rate: int | None, hourly_cap: int | None) -> str:
    if rate is None and hourly_cap is None:
        return "no rate limit"
    return ", ".join(([f"{rate:,} per second"] if rate else []) + ([f"at most {hourly_cap:,} per hour"]
                                                                  if hourly_cap else []))


def _waiting_detail(window: SendWindow, now: datetime) -> str:
    start = window.next_start(now).astimezone(CHINA)
    return f"outside the send window {window}: waiting for {start:%Y-%m-%d %H:%M} Asia/Shanghai"


async def _event(conn: Any, svc: Services, account_id: int, task_id: int, kind: str, detail: str = "") -> None:
    await conn.execute(task_events.insert().values(account_id=account_id, task_id=task_id, kind=kind,
                                                   detail=detail[:1000], at=svc.now()))


async def events(svc: Services, account_id: int, task_id: int) -> list[Any]:
    """What happened to a task, oldest first (the task page's timeline, `cardsms task show`)."""
    async with svc.read() as conn:
        return list((await conn.execute(select(task_events).where(
            task_events.c.account_id == account_id, task_events.c.task_id == task_id).order_by(task_events.c.id)
        )).mappings().all())


def _start_state(form: TaskForm) -> str:
    return "scheduled" if form.scheduled_at is not None else "sending"


async def get_task(svc: Services, account_id: int, task_id: int) -> Any:
    async with svc.read() as conn:
        row = (await conn.execute(select(tasks).where(tasks.c.account_id == account_id, tasks.c.id == task_id))
               ).mappings().first()
    if row is None:
        raise CardsmsError("NotFound", f"task {task_id} does not exist in this account", field="task")
    return row


async def list_tasks(svc: Services, account_id: int, limit: int = 100) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(tasks).where(tasks.c.account_id == account_id)
                                        .order_by(tasks.c.id.desc()).limit(limit))).mappings().all())


async def _transition(svc: Services, account_id: int, task_id: int, allowed: tuple[str, ...], to: str,
                      verb: str, task: Any = None, **values: Any) -> None:
    task = task if task is not None else await get_task(svc, account_id, task_id)
    async with svc.write() as conn:
        done = (await conn.execute(update(tasks).where(
            tasks.c.id == task_id, tasks.c.account_id == account_id, tasks.c.state.in_(allowed)
        ).values(state=to, **values))).rowcount
        if not done:
            raise CardsmsError("TaskStateConflict", f"task {task_id} is {task['state']}; only a task that is "
                               f"{' or '.join(allowed)} can be {verb}", field="task")
        await audit.record(conn, svc, account_id, f"task.{verb}", f"task {task_id} {task['name']}")
        await _event(conn, svc, account_id, task_id, verb, f"by {audit.actor()}")


async def revoke_task(svc: Services, account_id: int, task_id: int) -> None:
    task = await get_task(svc, account_id, task_id)
    start = as_utc(task["scheduled_at"]) if task["scheduled_at"] is not None else None
    if task["state"] in ("scheduled", "importing") and not can_revoke(start, svc.now()):
        why = (f"it starts at {start:%Y-%m-%d %H:%M} UTC and a task can be revoked only until 5 minutes "
               "before its start" if start else "it has no scheduled start; pause or cancel it instead")
        raise CardsmsError("TaskStateConflict", f"task {task_id} cannot be revoked: {why}", field="task")
    await _transition(svc, account_id, task_id, ("scheduled", "importing"), "revoked", "revoked", task,
                      finished_at=svc.now())


async def pause_task(svc: Services, account_id: int, task_id: int) -> None:
    await _transition(svc, account_id, task_id, ("sending", "waiting"), "paused", "paused", next_start_at=None)
    await _hold(svc, task_id, "queued", "paused")


async def resume_task(svc: Services, account_id: int, task_id: int) -> None:
    """Resume a paused task: it sends at once inside the send window, else it waits for the window to open."""
    window = await account_service.send_window(svc, account_id)
    now = svc.now()
    if window.contains(now):
        await _transition(svc, account_id, task_id, ("paused",), "sending", "resumed")
        await _hold(svc, task_id, "paused", "queued")
    else:
        await _transition(svc, account_id, task_id, ("paused",), "waiting", "resumed",
                          next_start_at=window.next_start(now).astimezone(UTC))
        async with svc.write() as conn:
            await _event(conn, svc, account_id, task_id, "waiting", _waiting_detail(window, now))
    svc.wake()


async def set_rate(svc: Services, account_id: int, task_id: int, rate: int | None, hourly_cap: int | None) -> None:
    """Change a task's send rate and hourly cap (None: none), also while it runs: the new rate applies to what is
    fed from now on, within PACE_AHEAD seconds."""
    check_rate(rate, hourly_cap)
    task = await get_task(svc, account_id, task_id)
    if task["state"] not in OPEN_STATES:
        raise CardsmsError("TaskStateConflict", f"task {task_id} is {task['state']}; the rate of a finished task "
                           "cannot change", field="task")
    async with svc.write() as conn:
        await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.account_id == account_id).values(
            rate=rate, hourly_cap=hourly_cap, paced_until=None))
        text_ = f"{_rate_text(task['rate'], task['hourly_cap'])} -> {_rate_text(rate, hourly_cap)}"
        await audit.record(conn, svc, account_id, "task.rate", f"task {task_id} {task['name']}", text_)
        await _event(conn, svc, account_id, task_id, "rate", text_)
    svc.wake()


async def cancel_task(svc: Services, account_id: int, task_id: int) -> None:
    await _transition(svc, account_id, task_id, ("sending", "paused", "waiting"), "cancelled", "cancelled",
                      finished_at=svc.now())
    async with svc.write() as conn:
        await conn.execute(update(messages).where(
            messages.c.task_id == task_id, messages.c.state.in_(("queued", "paused"))
        ).values(state="skipped", error_code="CANCELLED", error_text="the mass task was cancelled",
                 done_at=svc.now()))


async def _hold(svc: Services, task_id: int, from_state: str, to_state: str) -> None:
    async with svc.write() as conn:
        await _hold_in(conn, svc, task_id, from_state, to_state)


async def _hold_in(conn: Any, svc: Services, task_id: int, from_state: str, to_state: str) -> None:
    """Queued messages of a paused (or quiet) task wait as `paused`; the dispatcher only claims `queued`. Released,
    their validity starts again: they never left."""
    now = svc.now()
    values: dict[str, Any] = {"state": to_state, "due_at": now}
    if to_state == "queued":
        values["expires_at"] = now + timedelta(seconds=svc.settings.message_validity_seconds)
    await conn.execute(update(messages).where(messages.c.task_id == task_id, messages.c.state == from_state)
                       .values(**values))


# --- the runner ---------------------------------------------------------------------------------

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
    while True:
        try:
            worked = await run_once(svc)
        except Exception:
            pass_failed(log, "tasks.pass_failed")
            worked = False
        if not worked:
            await asyncio.sleep(0.5)


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
    sending = await svc.write(partial(_advance, svc=svc))
    for task_id in sending:
        worked = await feed(svc, task_id) or worked
    return worked


async def _advance(conn: Any, svc: Services) -> list[int]:
    """Move tasks between states by imports, schedules and send windows; the ids of the tasks sending now."""
    now = svc.now()
    windows: dict[str | None, SendWindow] = {}

    def window_of(own: str | None) -> SendWindow:
        if own not in windows:
            windows[own] = SendWindow.parse(own or svc.settings.send_window)
        return windows[own]

    rows = (await conn.execute(select(
        tasks.c.id, tasks.c.account_id, tasks.c.state, tasks.c.scheduled_at, tasks.c.next_start_at,
        tasks.c.started_at, audiences.c.state.label("import_state"), audiences.c.valid, audiences.c.duplicates,
        audiences.c.error, accounts.c.send_window).join(audiences, audiences.c.id == tasks.c.audience_id).join(
        accounts, accounts.c.id == tasks.c.account_id).where(
        tasks.c.state.in_(("importing", "scheduled", "waiting", "sending"))))).all()
    sending = []
    for r in rows:
        window = window_of(r.send_window)
        inside = window.contains(now)

        async def move(values: dict[str, Any], r: Any = r) -> bool:
            return bool((await conn.execute(update(tasks).where(tasks.c.id == r.id, tasks.c.state == r.state)
                                            .values(**values))).rowcount)

        async def start(r: Any = r, window: SendWindow = window, inside: bool = inside) -> None:
            """The task may send now: inside the window it does, outside it waits for the window."""
            if inside:
                if await move({"state": "sending", "next_start_at": None,
                               "started_at": r.started_at or now, "paced_until": None}):
                    await _hold_in(conn, svc, r.id, "paused", "queued")
                    resumed = r.state == "waiting" and r.started_at is not None
                    await _event(conn, svc, r.account_id, r.id, "resumed" if resumed else "started",
                                 f"the send window {window} is open" if r.state == "waiting" else "")
                    sending.append(r.id)
            elif r.state != "waiting" and await move({"state": "waiting",
                                                      "next_start_at": window.next_start(now).astimezone(UTC)}):
                await _event(conn, svc, r.account_id, r.id, "waiting", _waiting_detail(window, now))

        if r.state == "importing" and r.import_state == "ready":
            if r.scheduled_at is not None:
                await move({"state": "scheduled", "total": r.valid - r.duplicates})
            else:
                await conn.execute(update(tasks).where(tasks.c.id == r.id).values(total=r.valid - r.duplicates))
                await start()
        elif r.state == "importing" and r.import_state == "failed":
            await move({"state": "failed", "error": r.error, "finished_at": now})
            await _event(conn, svc, r.account_id, r.id, "failed", r.error)
        elif (r.state == "scheduled" and as_utc(r.scheduled_at) <= now) or (r.state == "waiting" and inside):
            await start()
        elif r.state == "sending" and not inside:  # the window closed: hold what is queued, keep the cursor
            if await move({"state": "waiting", "next_start_at": window.next_start(now).astimezone(UTC)}):
                await _hold_in(conn, svc, r.id, "queued", "paused")
                await _event(conn, svc, r.account_id, r.id, "quiet",
                             f"the send window {window} closed; {_waiting_detail(window, now)}")
        elif r.state == "sending":
            if r.started_at is None:  # created sending (a saved audience, inside the window)
                await conn.execute(update(tasks).where(tasks.c.id == r.id).values(started_at=now))
                await _event(conn, svc, r.account_id, r.id, "started")
            sending.append(r.id)
    return sending


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
        account_id = task["account_id"]
        chunk = await _allowance(conn, svc, task, now)
        if chunk <= 0:
            return False
        rows = (await conn.execute(select(audience_numbers.c.seq, audience_numbers.c.phone,
                                          audience_numbers.c.params).where(
            audience_numbers.c.account_id == account_id, audience_numbers.c.audience_id == task["audience_id"],
            audience_numbers.c.seq > task["cursor"]).order_by(audience_numbers.c.seq).limit(chunk))).all()
        recipients = _recipients(rows, task["sign_name"])
        blocked = await suppressed(conn, account_id, [r.number.national for r in recipients])
    if not rows:
        return await svc.write(partial(_maybe_complete, svc=svc, task_id=task_id))
    spec = CardSend(task["card_template_code"], task["fallback_type"], task["sms_template_code"],
                    task["digital_template_code"], task["template_code"])
    try:
        plan = await cached_plan(svc, account_id, spec, [task["sign_name"]])
    except CardsmsError as exc:  # a template or signature lost its approval after the task was created
        async with svc.write() as wconn:
            await wconn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == "sending").values(
                state="failed", error=exc.message, finished_at=svc.now()))
        return True
    box, legs = Outbox(svc, account_id), CardLegs()
    for r in recipients:  # one by one, so a row with a bad parameter value is skipped, not the chunk
        try:
            queue_card(svc, plan, spec, [r], blocked, box, legs, task_id)
        except CardsmsError as exc:
            box.add(biz_id=legs.biz["card"], channel="card", number=r.number, content="", priority=2,
                    sign_name=r.sign_name, template_code=spec.card_template_code, state="skipped",
                    error_code="BAD_PARAMS", error_text=exc.message, task_id=task_id,
                    card_template_code=spec.card_template_code)
    paced_until = _pace(box.rows, task, now)
    moved_from, moved_to = task["cursor"], rows[-1][0]

    async def queue(conn: Any) -> bool:
        moved = (await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.cursor == moved_from,
                                                        tasks.c.state == "sending")
                                    .values(cursor=moved_to, paced_until=paced_until))).rowcount
        if not moved:  # another worker fed this chunk, or the task was paused meanwhile: nothing was written
            return False
        await box.write(conn)
        return True

    return await svc.write(queue)


async def _allowance(conn: Any, svc: Services, task: Any, now: datetime) -> int:
    """How many recipients to feed now: a chunk, less what the task's backlog, hourly cap and rate allow."""
    task_id = task["id"]
    backlog = await conn.scalar(select(func.count()).select_from(
        select(messages.c.id).where(messages.c.task_id == task_id, messages.c.state == "queued").limit(BACKLOG)
        .subquery()))
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


async def _maybe_complete(conn: Any, svc: Services, task_id: int) -> bool:
    waiting = await conn.scalar(select(func.count()).select_from(messages).where(
        messages.c.task_id == task_id, messages.c.state.in_(("queued", "submitting", "paused"))))
    if waiting:
        return False
    account_id = await conn.scalar(select(tasks.c.account_id).where(tasks.c.id == task_id))
    done = (await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == "sending").values(
        state="completed", finished_at=svc.now()))).rowcount
    if done:
        await _event(conn, svc, account_id, task_id, "completed")
    return True


# --- reports ------------------------------------------------------------------------------------

async def task_stats(svc: Services, task_id: int) -> dict[str, int]:
    """submitted, card, fallback, delivered, failed, rendered, opened, replies, skipped, queued."""
    return (await tasks_stats(svc, [task_id]))[task_id]


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
        stats = out[task_id]
        if state == "skipped":
            stats["skipped"] += n
            stats["limited"] += int(limited or 0)
            continue
        stats["card" if channel == "card" else "fallback"] += n
        stats["queued" if state in ("queued", "paused", "submitting") else "submitted"] += n
        if state == "delivered":
            stats["delivered"] += n
        elif state in ("failed", "expired"):
            stats["failed"] += n
        stats["rendered"] += int(rendered or 0)
        stats["opened"] += int(opened or 0)
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
