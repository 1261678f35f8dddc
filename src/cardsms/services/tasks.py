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
a sliding window over the last hour of what it queued. The runner is services/task_runner.py, the reports
services/task_reports.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.schema import messages, task_events, tasks
from cardsms.domain.errors import CardsmsError, field_error
from cardsms.domain.schedule import CHINA, SendWindow, can_revoke, check_schedule, check_task_name
from cardsms.services import accounts as account_service
from cardsms.services import audit, imports
from cardsms.services.card_sending import CardSend, plan_card
from cardsms.services.core import Services, as_utc
from cardsms.services.sending import _VAR

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


async def _recipients_of(svc: Services, account_id: int, form: TaskForm, data: bytes | None, file_name: str
                         ) -> tuple[Any, str]:
    """The task's audience (a saved one, or the file's import just started) and the state the task starts in."""
    if form.audience_id is not None:
        aud = await imports.get_audience(svc, account_id, form.audience_id)
        if aud["state"] != "ready":
            raise field_error("audience_id", f"audience {aud['name']!r} is {aud['state']}, not ready")
        await _check_columns(svc, account_id, form, list(aud["columns"]))
        return aud, _start_state(form)
    assert data is not None
    audience_id = await imports.start_import(svc, account_id, name=form.name, saved=False, file_name=file_name,
                                             data=data)
    aud = await imports.get_audience(svc, account_id, audience_id)
    try:
        await _check_columns(svc, account_id, form, list(aud["columns"]))
    except CardsmsError:
        await imports.delete_audience(svc, account_id, audience_id)
        raise
    return aud, "importing"


async def create_task(svc: Services, account_id: int, form: TaskForm, *, file_name: str = "",
                      data: bytes | None = None, created_by: str = "") -> int:
    """Check every field, then create the task; with a file, its import runs in the background."""
    window = await account_service.send_window(svc, account_id)
    await _check_form(svc, account_id, form, window)
    if (data is None) == (form.audience_id is None):
        raise field_error("file", "import a file of numbers or choose a saved audience (one of the two)")
    aud, state = await _recipients_of(svc, account_id, form, data, file_name)
    if state == "sending" and not window.contains(svc.now()):
        state = "waiting"
    audience_id = int(aud["id"])
    now = svc.now()
    async with svc.hold_writer() as conn:
        result = await conn.execute(tasks.insert().values(
            account_id=account_id, name=form.name.strip(), sign_name=form.sign_name.strip(),
            card_template_code=form.card_template_code.strip(), fallback_type=form.fallback_type,
            sms_template_code=form.sms_template_code.strip(), digital_template_code=form.digital_template_code.strip(),
            template_code=form.template_code.strip(), audience_id=audience_id, state=state, cursor=0,
            total=int(aud["valid"]) - int(aud["duplicates"]) if state != "importing" else int(aud["total"]),
            error="", created_by=created_by, created_at=now, rate=form.rate, hourly_cap=form.hourly_cap,
            next_start_at=window.next_start(now).astimezone(UTC) if state == "waiting" else None,
            scheduled_at=form.scheduled_at.astimezone(UTC) if form.scheduled_at else None))  # SQLite keeps no zone
        task_id = inserted_id(result)
        await record_event(conn, svc, account_id, task_id, "created", _created_detail(form, window))
        if state == "waiting":
            await record_event(conn, svc, account_id, task_id, "waiting", waiting_detail(window, now))
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


def waiting_detail(window: SendWindow, now: datetime) -> str:
    start = window.next_start(now).astimezone(CHINA)
    return f"outside the send window {window}: waiting for {start:%Y-%m-%d %H:%M} Asia/Shanghai"


async def record_event(conn: AsyncConnection, svc: Services, account_id: int, task_id: int, kind: str,
                       detail: str = "") -> None:
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
    async with svc.hold_writer() as conn:
        done = (await conn.execute(update(tasks).where(
            tasks.c.id == task_id, tasks.c.account_id == account_id, tasks.c.state.in_(allowed)
        ).values(state=to, **values))).rowcount
        if not done:
            raise CardsmsError("TaskStateConflict", f"task {task_id} is {task['state']}; only a task that is "
                               f"{' or '.join(allowed)} can be {verb}", field="task")
        await audit.record(conn, svc, account_id, f"task.{verb}", f"task {task_id} {task['name']}")
        await record_event(conn, svc, account_id, task_id, verb, f"by {audit.actor()}")


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
        async with svc.hold_writer() as conn:
            await record_event(conn, svc, account_id, task_id, "waiting", waiting_detail(window, now))
    svc.wake()


async def set_rate(svc: Services, account_id: int, task_id: int, rate: int | None, hourly_cap: int | None) -> None:
    """Change a task's send rate and hourly cap (None: none), also while it runs: the new rate applies to what is
    fed from now on, within PACE_AHEAD seconds."""
    check_rate(rate, hourly_cap)
    task = await get_task(svc, account_id, task_id)
    if task["state"] not in OPEN_STATES:
        raise CardsmsError("TaskStateConflict", f"task {task_id} is {task['state']}; the rate of a finished task "
                           "cannot change", field="task")
    async with svc.hold_writer() as conn:
        await conn.execute(update(tasks).where(tasks.c.id == task_id, tasks.c.account_id == account_id).values(
            rate=rate, hourly_cap=hourly_cap, paced_until=None))
        text_ = f"{_rate_text(task['rate'], task['hourly_cap'])} -> {_rate_text(rate, hourly_cap)}"
        await audit.record(conn, svc, account_id, "task.rate", f"task {task_id} {task['name']}", text_)
        await record_event(conn, svc, account_id, task_id, "rate", text_)
    svc.wake()


async def cancel_task(svc: Services, account_id: int, task_id: int) -> None:
    await _transition(svc, account_id, task_id, ("sending", "paused", "waiting"), "cancelled", "cancelled",
                      finished_at=svc.now())
    async with svc.hold_writer() as conn:
        await conn.execute(update(messages).where(
            messages.c.task_id == task_id, messages.c.state.in_(("queued", "paused"))
        ).values(state="skipped", error_code="CANCELLED", error_text="the mass task was cancelled",
                 done_at=svc.now()))


async def _hold(svc: Services, task_id: int, from_state: str, to_state: str) -> None:
    async with svc.hold_writer() as conn:
        await hold_in(conn, svc, task_id, from_state, to_state)


async def hold_in(conn: AsyncConnection, svc: Services, task_id: int, from_state: str, to_state: str) -> None:
    """Queued messages of a paused (or quiet) task wait as `paused`; the dispatcher only claims `queued`. Released,
    their validity starts again: they never left."""
    now = svc.now()
    values: dict[str, Any] = {"state": to_state, "due_at": now}
    if to_state == "queued":
        values["expires_at"] = now + timedelta(seconds=svc.settings.message_validity_seconds)
    await conn.execute(update(messages).where(messages.c.task_id == task_id, messages.c.state == from_state)
                       .values(**values))
