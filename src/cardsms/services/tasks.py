"""Mass tasks (SPEC.md "Mass Operations Assistant"): create, schedule, run, pause, revoke, report.

States: importing → scheduled → sending ⇄ paused → completed, or revoked / cancelled / failed.
The runner feeds recipients into `messages` in chunks from the task's `cursor` (the last audience
`seq` queued) and advances the cursor in the same transaction with a compare-and-set, so a pause,
a restart or a second worker never queues a recipient twice (listmonk's campaign cursor, made durable).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from sqlalchemy import case, func, select, text, update

from cardsms.db.schema import audience_numbers, audiences, daily_stats, messages, replies, tasks
from cardsms.domain.errors import CardsmsError, field_error
from cardsms.domain.numbers import PhoneNumber
from cardsms.domain.schedule import can_revoke, check_schedule, check_task_name
from cardsms.logs import pass_failed
from cardsms.services import audit, imports
from cardsms.services.core import Services, as_utc, storage_unavailable
from cardsms.services.retention import stats_filters
from cardsms.services.sending import (
    _VAR,
    CardLegs,
    CardRecipient,
    CardSend,
    Outbox,
    cached_plan,
    plan_card,
    queue_card,
    suppressed,
)

log = structlog.get_logger("cardsms.tasks")
FEED_CHUNK = 2000
OPEN_STATES = ("importing", "scheduled", "sending", "paused")
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


async def _check_form(svc: Services, account_id: int, form: TaskForm) -> None:
    problem = check_task_name(form.name)
    if problem:
        raise field_error("name", problem)
    if form.fallback_type not in FALLBACKS:
        raise field_error("fallback_type", f"the fallback type must be one of {', '.join(FALLBACKS)}")
    if form.fallback_type == "SMS" and not form.sms_template_code.strip():
        raise field_error("sms_template_code", "a text fallback needs an approved text template")
    if form.fallback_type == "DIGITALSMS" and not form.digital_template_code.strip():
        raise field_error("digital_template_code", "a digital fallback needs an approved digital template")
    if form.scheduled_at is not None:
        problem = check_schedule(form.scheduled_at, svc.now())
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
    await _check_form(svc, account_id, form)
    if (data is None) == (form.audience_id is None):
        raise field_error("file", "import a file of numbers or choose a saved audience (one of the two)")
    if form.audience_id is not None:
        aud = await imports.get_audience(svc, account_id, form.audience_id)
        if aud["state"] != "ready":
            raise field_error("audience_id", f"audience {aud['name']!r} is {aud['state']}, not ready")
        await _check_columns(svc, account_id, form, list(aud["columns"]))
        audience_id, state = int(aud["id"]), _start_state(form)
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
    async with svc.write() as conn:
        result = await conn.execute(tasks.insert().values(
            account_id=account_id, name=form.name.strip(), sign_name=form.sign_name.strip(),
            card_template_code=form.card_template_code.strip(), fallback_type=form.fallback_type,
            sms_template_code=form.sms_template_code.strip(), digital_template_code=form.digital_template_code.strip(),
            template_code=form.template_code.strip(), audience_id=audience_id, state=state, cursor=0,
            total=int(aud["valid"]) - int(aud["duplicates"]) if state != "importing" else int(aud["total"]),
            error="", created_by=created_by, created_at=svc.now(),
            scheduled_at=form.scheduled_at.astimezone(UTC) if form.scheduled_at else None))  # SQLite keeps no zone
    svc.wake()
    return int(result.inserted_primary_key[0])  # type: ignore[index]


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
    await _transition(svc, account_id, task_id, ("sending",), "paused", "paused")
    await _hold(svc, task_id, "queued", "paused")


async def resume_task(svc: Services, account_id: int, task_id: int) -> None:
    await _transition(svc, account_id, task_id, ("paused",), "sending", "resumed")
    await _hold(svc, task_id, "paused", "queued")
    svc.wake()


async def cancel_task(svc: Services, account_id: int, task_id: int) -> None:
    await _transition(svc, account_id, task_id, ("sending", "paused"), "cancelled", "cancelled",
                      finished_at=svc.now())
    async with svc.write() as conn:
        await conn.execute(update(messages).where(
            messages.c.task_id == task_id, messages.c.state.in_(("queued", "paused"))
        ).values(state="skipped", error_code="CANCELLED", error_text="the mass task was cancelled",
                 done_at=svc.now()))


async def _hold(svc: Services, task_id: int, from_state: str, to_state: str) -> None:
    """Queued messages of a paused task wait as `paused`; the dispatcher only claims `queued`."""
    async with svc.write() as conn:
        await conn.execute(update(messages).where(messages.c.task_id == task_id, messages.c.state == from_state)
                           .values(state=to_state, due_at=svc.now()))


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
    now = svc.now()

    async def advance(conn: Any) -> list[int]:
        rows = (await conn.execute(select(tasks.c.id, tasks.c.state, tasks.c.scheduled_at, audiences.c.state.label(
            "import_state"), audiences.c.valid, audiences.c.duplicates, audiences.c.error).join(
            audiences, audiences.c.id == tasks.c.audience_id).where(tasks.c.state.in_(("importing", "scheduled")))
        )).all()
        for r in rows:
            if r.state == "importing" and r.import_state == "ready":
                to = "scheduled" if r.scheduled_at is not None else "sending"
                await conn.execute(update(tasks).where(tasks.c.id == r.id, tasks.c.state == "importing").values(
                    state=to, total=r.valid - r.duplicates))
            elif r.state == "importing" and r.import_state == "failed":
                await conn.execute(update(tasks).where(tasks.c.id == r.id).values(
                    state="failed", error=r.error, finished_at=now))
            elif r.state == "scheduled" and as_utc(r.scheduled_at) <= now:
                await conn.execute(update(tasks).where(tasks.c.id == r.id, tasks.c.state == "scheduled").values(
                    state="sending", started_at=now))
        await conn.execute(update(tasks).where(tasks.c.state == "sending", tasks.c.started_at.is_(None))
                           .values(started_at=now))
        return [r[0] for r in await conn.execute(select(tasks.c.id).where(tasks.c.state == "sending"))]

    sending = await svc.write(advance)
    for task_id in sending:
        worked = await feed(svc, task_id) or worked
    return worked


def _recipients(rows: Sequence[Any], sign_name: str) -> list[CardRecipient]:
    out = []
    for _, phone, params in rows:
        values = json.loads(params) if params else {}
        out.append(CardRecipient(PhoneNumber("+86" + phone, True), sign_name, values, "", values, values, values))
    return out


async def feed(svc: Services, task_id: int) -> bool:
    """Queue the next chunk of a sending task; complete it when everything was fed and submitted.

    The chunk is read and its messages composed outside the write transaction, which only moves the
    task's cursor (if no one else did meanwhile) and writes the rows: the write lock is held briefly."""
    async with svc.read() as conn:
        task = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).mappings().first()
        if task is None or task["state"] != "sending":
            return False
        account_id = task["account_id"]
        rows = (await conn.execute(select(audience_numbers.c.seq, audience_numbers.c.phone,
                                          audience_numbers.c.params).where(
            audience_numbers.c.account_id == account_id, audience_numbers.c.audience_id == task["audience_id"],
            audience_numbers.c.seq > task["cursor"]).order_by(audience_numbers.c.seq).limit(FEED_CHUNK))).all()
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
    moved_from, moved_to = task["cursor"], rows[-1][0]

    async def queue(conn: Any) -> bool:
        moved = (await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.cursor == moved_from,
                                                        tasks.c.state == "sending")
                                    .values(cursor=moved_to))).rowcount
        if not moved:  # another worker fed this chunk, or the task was paused meanwhile: nothing was written
            return False
        await box.write(conn)
        return True

    return await svc.write(queue)


async def _maybe_complete(conn: Any, svc: Services, task_id: int) -> bool:
    waiting = await conn.scalar(select(func.count()).select_from(messages).where(
        messages.c.task_id == task_id, messages.c.state.in_(("queued", "submitting", "paused"))))
    if waiting:
        return False
    await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.state == "sending").values(
        state="completed", finished_at=svc.now()))
    return True


# --- reports ------------------------------------------------------------------------------------

async def task_stats(svc: Services, task_id: int) -> dict[str, int]:
    """submitted, card, fallback, delivered, failed, rendered, opened, replies, skipped, queued."""
    return (await tasks_stats(svc, [task_id]))[task_id]


async def tasks_stats(svc: Services, task_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """`task_stats` of several tasks in two grouped queries (the task list refreshes them all)."""
    keys = ("queued", "submitted", "card", "fallback", "delivered", "failed", "rendered", "opened", "skipped",
            "replies")
    out = {t: dict.fromkeys(keys, 0) for t in task_ids}
    if not task_ids:
        return out
    async with svc.read() as conn:
        rows = (await conn.execute(select(
            messages.c.task_id, messages.c.channel, messages.c.state, func.count(),
            func.sum(case((messages.c.render_status == 1, 1), else_=0)),
            func.sum(case((messages.c.opens > 0, 1), else_=0)),
        ).where(messages.c.task_id.in_(task_ids)).group_by(messages.c.task_id, messages.c.channel,
                                                            messages.c.state))).all()
        replied = [*(await conn.execute(select(messages.c.task_id, func.count()).select_from(replies).join(
            messages, messages.c.id == replies.c.message_id).where(messages.c.task_id.in_(task_ids))
            .group_by(messages.c.task_id))).all()]
        # the tasks' purged messages, folded into daily counts (services/retention.py)
        d = daily_stats.c
        rows = [*rows, *(await conn.execute(select(
            d.task_id, d.channel, d.state, func.sum(d.messages), func.sum(d.rendered), func.sum(d.opened),
        ).where(*stats_filters(task_ids=list(task_ids))).group_by(d.task_id, d.channel, d.state))).all()]
        replied += (await conn.execute(select(d.task_id, func.sum(d.replies)).where(
            *stats_filters(task_ids=list(task_ids))).group_by(d.task_id))).all()
    for task_id, channel, state, n, rendered, opened in rows:
        stats = out[task_id]
        if state == "skipped":
            stats["skipped"] += n
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
