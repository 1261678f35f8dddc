"""Sending use cases: SendSms, SendBatchSms, SendCardSms, SendBatchCardSms.

Every send is checked whole before anything is written (signature, templates, numbers,
parameters); then one transaction writes a message row per recipient and channel, its `queued`
event, its short link and the idempotency record, and only then is the caller told OK.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import insert_returning_ids, insert_rows
from cardsms.db.engine import WORK_CHANNEL
from cardsms.db.schema import idempotency_keys, message_events, messages, short_links, suppressions
from cardsms.domain import sms
from cardsms.domain.errors import MAX_JSON_DEPTH, CardsmsError, json_too_deep
from cardsms.domain.frequency import Refusal
from cardsms.domain.numbers import InvalidNumber, PhoneNumber, normalise_mainland_mobile, normalise_number
from cardsms.domain.variables import check_values
from cardsms.services import digital_signs, domains, frequency, review
from cardsms.services.core import CHINA, Services, random_digits
from cardsms.services.signs import _get as get_sign_row
from cardsms.services.templates import get_template
from cardsms.vendors.gateway import ReviewState

MAX_SEND_NUMBERS = 1000
MAX_BATCH_NUMBERS = 100
FALLBACK_TYPES = ("SMS", "DIGITALSMS", "NONE")
PRIORITY_BY_TYPE = {0: 0, 1: 1, 2: 2, 3: 1}  # verification first, promotional last
CARD_PRIORITY = 1
DIGITAL_PRIORITY = 2
_VAR = re.compile(r"\$\{([^}]*)\}")
_URL = re.compile(r"https?://[^\s]{1,1000}")
_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
IDEMPOTENCY_HOURS = 24


def new_biz_id() -> str:
    return random_digits(18)


_CODE_BYTES = 256 - 256 % len(_CODE_ALPHABET)  # random bytes at or above this are dropped: no modulo bias


class _RandomPool:
    """os.urandom bytes drawn 4 KiB at a time (one system call per ~500 link codes, not one per code); emptied
    in a forked child so two processes never hand out the same bytes."""

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._bytes = bytearray()

    def take(self, n: int) -> bytes:
        with self._lock:
            if len(self._bytes) < n:
                self._bytes = bytearray(secrets.token_bytes(4096))
            out = bytes(self._bytes[-n:])
            del self._bytes[-n:]
        return out


_RANDOM = _RandomPool()


def new_link_code(n: int = 8) -> str:
    out: list[str] = []
    while len(out) < n:
        out += [_CODE_ALPHABET[b % len(_CODE_ALPHABET)] for b in _RANDOM.take(2 * n) if b < _CODE_BYTES]
    return "".join(out[:n])


# --- checks --------------------------------------------------------------------------------

async def approved_sign(conn: AsyncConnection, account_id: int, name: str, field_name: str = "SignName") -> Any:
    if not name.strip():
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
    row = await get_sign_row(conn, account_id, name)
    if row["status"] != ReviewState.APPROVED:
        state = {0: "still under review", 2: "rejected", 10: "cancelled"}.get(row["status"], "not approved")
        raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"{field_name}: signature {name!r} is {state}; "
                           "only approved signatures can send")
    return row


async def approved_text_template(conn: AsyncConnection, account_id: int, code: str, field_name: str,
                                 kinds: tuple[str, ...] = ("text",)) -> Any:
    if not code.strip():
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
    row = await get_template(conn, account_id, code, kinds)
    if row["status"] != ReviewState.APPROVED:
        state = {0: "still under review", 2: "rejected"}.get(row["status"], "not approved")
        raise CardsmsError("isv.SMS_TEMPLATE_ILLEGAL", f"{field_name}: template {code!r} is {state}; "
                           "only approved templates can send")
    return row


def render_template(tpl: Any, params: Any, field_name: str) -> str:
    """A text template filled: its variables' values are also checked against the rules it declared
    (CreateSmsTemplate's TemplateRule; templates made with AddSmsTemplate declare none)."""
    rule = (tpl["details"] or {}).get("template_rule") if "details" in tpl else None
    return render(tpl["content"], params, field_name, rule)


def render(content: str, params: Any, field_name: str, rule: dict[str, str] | None = None) -> str:
    """Fill `${name}` variables; every variable needs a value (string or number, ≤ 500 characters)."""
    names = _VAR.findall(content)
    if not names:
        return content
    if params in (None, ""):
        params = {}
    if not isinstance(params, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object of template variables")
    missing_names = [n for n in dict.fromkeys(names) if params.get(n) in (None, "")]
    if missing_names:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}: no value for template variable(s) "
                           + ", ".join("${" + n + "}" for n in missing_names))
    for n in names:
        value = params[n]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{n} must be a string or a number")
        if len(str(value)) > 500:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{n} is longer than 500 characters")
    if rule:
        check_values(rule, params, field_name)
    return _VAR.sub(lambda m: str(params[m.group(1)]), content)


def parse_json_param(raw: Any, field_name: str) -> Any:
    """A parameter that may arrive as a JSON string or already decoded."""
    if isinstance(raw, str):
        if not raw.strip():
            return None
        if json_too_deep(raw):
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} is not valid JSON: {exc.msg} "
                               f"at character {exc.pos}") from None
    return raw


def numbers_or_error(raws: Sequence[Any], field_name: str, mainland_only: bool) -> list[PhoneNumber]:
    """Normalise every number; any invalid one fails the whole call, naming up to five of them."""
    out, bad = [], []
    for i, raw in enumerate(raws, 1):
        try:
            text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            out.append(normalise_mainland_mobile(text) if mainland_only else normalise_number(text))
        except InvalidNumber as exc:
            bad.append(f"[{i}] {exc}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}: {len(bad)} invalid number(s): "
                           + "; ".join(bad[:5]) + more + ". Nothing was sent.")
    return out


def check_count(n: int, limit: int, field_name: str) -> None:
    if n == 0:
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action (at least one number).")
    if n > limit:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}: at most {limit} numbers per call, got {n}. "
                           "Nothing was sent.")


def check_custom_url(value: Any, field_name: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not _URL.fullmatch(value.strip()):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} must be an http(s) URL of at most 1000 characters")
    return value.strip()


_SUPPRESSED_ONE = select(suppressions.c.phone).where(suppressions.c.account_id == bindparam("account_id"),
                                                     suppressions.c.phone == bindparam("phone"))


async def suppressed(conn: AsyncConnection, account_id: int, phones: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(phones), 500):
        chunk = phones[i : i + 500]
        rows = await conn.execute(
            select(suppressions.c.phone).where(suppressions.c.account_id == account_id, suppressions.c.phone.in_(chunk))
        )
        found.update(r[0] for r in rows)
    return found


# --- writing --------------------------------------------------------------------------------

@dataclass
class Outbox:
    """Rows of one send, written together."""

    svc: Services
    account_id: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    links: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (row index, link values)
    limited: list[int] = field(default_factory=list)  # rows frequency control made `skipped` (services.frequency)
    now: datetime = field(init=False)  # the rows of one send share one timestamp, and so its day
    send_day: str = field(init=False)

    def __post_init__(self) -> None:
        self.now = self.svc.now()
        self.send_day = self.now.astimezone(CHINA).strftime("%Y%m%d")

    def add(self, *, biz_id: str, channel: str, number: PhoneNumber, content: str, priority: int,
            out_id: str = "", sign_name: str = "", template_code: str = "", card_template_code: str = "",
            template_type: int = 1, state: str = "queued", error_code: str = "", error_text: str = "",
            link_code: str = "", custom_url: str = "", up_extend_code: str = "", task_id: int | None = None,
            vendor: str = "") -> int:
        validity = (self.svc.settings.verification_validity_seconds if priority == 0
                    else self.svc.settings.message_validity_seconds)
        now = self.now
        self.rows.append({
            "account_id": self.account_id, "biz_id": biz_id, "channel": channel, "phone": number.national,
            "e164": number.e164, "out_id": out_id, "sign_name": sign_name, "template_code": template_code,
            "card_template_code": card_template_code, "template_type": template_type, "content": content,
            "segments": sms.count_segments(content) if content else 1, "priority": priority, "state": state,
            "error_code": error_code, "error_text": error_text, "attempts": 0, "possible_duplicate": False,
            "connector": "", "parts_done": 0, "link_code": link_code, "custom_url": custom_url,
            "up_extend_code": up_extend_code, "render_status": 0, "opens": 0, "task_id": task_id, "vendor": vendor,
            "send_day": self.send_day, "created_at": now, "due_at": now,
            "expires_at": now + timedelta(seconds=validity), "done_at": now if state == "skipped" else None,
        })
        return len(self.rows) - 1

    def link(self, row_index: int, **values: Any) -> None:
        self.links.append((row_index, values))

    async def write(self, conn: AsyncConnection) -> None:
        await write_outboxes(conn, self.svc, [self])


async def write_outboxes(conn: AsyncConnection, svc: Services, boxes: Sequence[Outbox]) -> list[list[Refusal]]:
    """The rows of several sends, with one statement per table, after frequency control (services.frequency)
    has made the rows over a limit `skipped`; returns those refusals, send by send."""
    refused = await frequency.enforce(conn, boxes) if svc.settings.frequency_control else [[] for _ in boxes]
    await _insert_outboxes(conn, svc, boxes)
    return refused


async def _insert_outboxes(conn: AsyncConnection, svc: Services, boxes: Sequence[Outbox]) -> None:
    rows = [row for box in boxes for row in box.rows]
    if not rows:
        return
    ids = await insert_returning_ids(conn, messages, rows)
    now = svc.now()
    await insert_rows(conn, message_events, [
        {"account_id": row["account_id"], "message_id": mid, "at": now,
         "kind": "queued" if row["state"] == "queued" else "skipped",
         "detail": row["error_text"] or f"{row['channel']} to {row['phone']}"}
        for mid, row in zip(ids, rows, strict=True)
    ])
    links, first = [], 0
    expires = now + timedelta(days=svc.settings.link_ttl_days)
    for box in boxes:
        links += [{"account_id": box.account_id, "message_id": ids[first + i], "created_at": now, "expires_at": expires,
                   "deleted": False, "page_views": 0, "unique_visitors": 0, "name": "", **values}
                  for i, values in box.links]
        first += len(box.rows)
    await insert_rows(conn, short_links, links)
    if conn.dialect.name == "postgresql":  # wakes idle workers of other processes at commit
        await conn.execute(text(f"SELECT pg_notify('{WORK_CHANNEL}', '')"))
    svc.wake()


async def idempotent_answer(svc: Services, account_id: int, key: str | None, action: str) -> dict[str, Any] | None:
    """The stored answer of an earlier call with this idempotency key (within 24 hours)."""
    if not key:
        return None
    since = svc.now() - timedelta(hours=IDEMPOTENCY_HOURS)
    async with svc.point_read() as conn:
        row = (await conn.execute(
            select(idempotency_keys.c.response, idempotency_keys.c.action, idempotency_keys.c.created_at).where(
                idempotency_keys.c.account_id == account_id, idempotency_keys.c.key == key)
        )).first()
    if row is None:
        return None
    from cardsms.services.core import as_utc

    if as_utc(row.created_at) < since:
        return None
    if row.action != action:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"x-cardsms-idempotency-key {key!r} was used for {row.action} "
                           f"and cannot be reused for {action}")
    return dict(row.response)


@dataclass(frozen=True, slots=True)
class _Send:
    account_id: int
    box: Outbox
    answer: dict[str, Any]
    idem_key: str | None
    action: str


async def _write_sends(conn: AsyncConnection, sends: Sequence[_Send], *, svc: Services
                       ) -> list[dict[str, Any] | CardsmsError]:
    now = svc.now()
    since = now - timedelta(hours=IDEMPOTENCY_HOURS)
    answers: list[dict[str, Any] | CardsmsError] = []
    kept: list[Outbox] = []
    boxes = [s.box for s in sends]
    limits = await frequency.enforce(conn, boxes) if svc.settings.frequency_control else [[] for _ in boxes]
    for s, refused in zip(sends, limits, strict=True):
        if refused and len({row["phone"] for row in s.box.rows}) == 1 and \
                not any(row["state"] == "queued" for row in s.box.rows):
            answers.append(CardsmsError(refused[0].code, refused[0].text))  # its only number: nothing is written
            continue
        answers.append(_limit_note(s.answer, refused) if refused else s.answer)
        kept.append(s.box)
        if s.idem_key:
            await conn.execute(idempotency_keys.delete().where(
                idempotency_keys.c.account_id == s.account_id, idempotency_keys.c.key == s.idem_key,
                idempotency_keys.c.created_at < since))
            await conn.execute(insert(idempotency_keys).values(
                account_id=s.account_id, key=s.idem_key, action=s.action, response=answers[-1], created_at=now))
    await _insert_outboxes(conn, svc, kept)
    return answers


def _limit_note(answer: dict[str, Any], refused: list[Refusal]) -> dict[str, Any]:
    """A send's answer naming the numbers frequency control left out (Message; card sends' Data too)."""
    phones = list(dict.fromkeys(r.phone for r in refused))
    shown = "; ".join(r.text for r in refused[:10]) + ("; ..." if len(refused) > 10 else "")
    note = f"{len(phones)} number(s) left out by frequency control ({shown})"
    message = answer.get("Message", "OK")
    out = {**answer, "Message": f"{message}; {note}" if message != "OK" else f"OK; {note}"}
    if isinstance(answer.get("Data"), dict):
        out["Data"] = {**answer["Data"], "LimitedMobiles": ",".join(phones)}
    return out


BACKLOG_TTL = 1.0  # seconds a count of the waiting messages is used before it is counted again


async def waiting_messages(svc: Services) -> int:
    """How many messages wait to be submitted (state queued), counted at most once a second per process (the
    count lives on the services object, one per process and event loop)."""
    if svc.waiting[0] > time.monotonic():
        return svc.waiting[1]
    async with svc.waiting_lock:  # concurrent sends share one count
        if svc.waiting[0] <= time.monotonic():
            async with svc.read() as conn:
                n = await conn.scalar(select(func.count()).select_from(messages).where(messages.c.state == "queued"))
            svc.waiting = (time.monotonic() + BACKLOG_TTL, int(n or 0))
    return svc.waiting[1]


async def check_queue(svc: Services, adding: int) -> None:
    """Past CARDSMS_QUEUE_LIMIT waiting messages a send is refused (retry later) instead of queued without
    bound: the links are behind, and a queue of days helps nobody."""
    limit = svc.settings.queue_limit
    if limit and await waiting_messages(svc) + adding > limit:
        raise CardsmsError("Throttling.Queue", f"the send queue holds more than {limit} messages waiting for the "
                           "SMSC links (CARDSMS_QUEUE_LIMIT); nothing was sent; retry later")


async def commit_send(svc: Services, account_id: int, box: Outbox, answer: dict[str, Any],
                      idem_key: str | None, action: str) -> dict[str, Any]:
    """Write the rows and the idempotency record in one transaction, group-committed with the sends of
    other requests (services.batching); a concurrent twin (same idempotency key) returns the first answer."""
    await check_queue(svc, sum(1 for r in box.rows if r.get("state") == "queued"))
    try:
        writer = svc.group_commit("sends", _write_sends, max_batch=200, in_flight=2)
        written: dict[str, Any] | CardsmsError = await writer.submit(_Send(account_id, box, answer, idem_key, action))
    except IntegrityError:
        if not idem_key:
            raise
        earlier = await idempotent_answer(svc, account_id, idem_key, action)
        if earlier is None:
            raise
        return earlier
    if isinstance(written, CardsmsError):
        raise written
    return written


def _skip_note(skipped: list[str]) -> str:
    if not skipped:
        return "OK"
    shown = ",".join(skipped[:20]) + ("..." if len(skipped) > 20 else "")
    return f"OK; {len(skipped)} number(s) skipped because they opted out (replied R): {shown}"


# --- text SMS -------------------------------------------------------------------------------

def _text_numbers(raws: Sequence[Any], field_name: str, template_type: int) -> list[PhoneNumber]:
    numbers = numbers_or_error(raws, field_name, mainland_only=False)
    for i, n in enumerate(numbers, 1):
        if template_type == 3 and n.mainland_mobile:
            raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}[{i}] {n.national} is a mainland number; "
                               "international templates (type 3) send outside the Chinese mainland only")
        if template_type != 3 and not n.e164.startswith("+86"):
            raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}[{i}] {n.e164} is outside the Chinese "
                               "mainland; use an international template (type 3)")
    return numbers


async def send_sms(svc: Services, account_id: int, *, phone_numbers: str, sign_name: str, template_code: str,
                   template_param: Any, out_id: str, up_extend_code: str, idem_key: str | None) -> dict[str, Any]:
    raws = [p for p in (x.strip() for x in phone_numbers.split(",")) if p]
    check_count(len(raws), MAX_SEND_NUMBERS, "PhoneNumbers")
    async with svc.point_read() as conn:
        await approved_sign(conn, account_id, sign_name)
        tpl = await approved_text_template(conn, account_id, template_code, "TemplateCode")
        numbers = list({n.e164: n for n in _text_numbers(raws, "PhoneNumbers", tpl["template_type"])}.values())
        body = render_template(tpl, parse_json_param(template_param, "TemplateParam"), "TemplateParam")
        promo = tpl["template_type"] == 2
        blocked = await suppressed(conn, account_id, [n.national for n in numbers]) if promo else set()
    text = sms.compose(sign_name.strip(), body, opt_out=promo)
    box, biz_id, skipped = Outbox(svc, account_id), new_biz_id(), []
    for n in numbers:
        state, code, note = ("skipped", "SUPPRESSED", "the number opted out") if n.national in blocked else \
            ("queued", "", "")
        if state == "skipped":
            skipped.append(n.national)
        box.add(biz_id=biz_id, channel="sms", number=n, content=text, priority=PRIORITY_BY_TYPE[tpl["template_type"]],
                out_id=out_id, sign_name=sign_name.strip(), template_code=tpl["code"],
                template_type=tpl["template_type"], state=state, error_code=code, error_text=note,
                up_extend_code=up_extend_code)
    answer = {"BizId": biz_id, "Message": _skip_note(skipped)}
    return await commit_send(svc, account_id, box, answer, idem_key, "SendSms")


def _json_list(raw: Any, field_name: str, n: int | None, required: bool = True) -> list[Any] | None:
    value = parse_json_param(raw, field_name)
    if value is None:
        if required:
            raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
        return None
    if not isinstance(value, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON array")
    if n is not None and len(value) != n:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} holds {len(value)} entries; it must hold one "
                           f"per phone number ({n})")
    return value


async def send_batch_sms(svc: Services, account_id: int, *, phone_number_json: Any, sign_name_json: Any,
                         template_code: str, template_param_json: Any, up_extend_code_json: Any, out_id: str,
                         idem_key: str | None) -> dict[str, Any]:
    phones = _json_list(phone_number_json, "PhoneNumberJson", None) or []
    check_count(len(phones), MAX_BATCH_NUMBERS, "PhoneNumberJson")
    sign_names = _json_list(sign_name_json, "SignNameJson", len(phones)) or []
    params = _json_list(template_param_json, "TemplateParamJson", len(phones), required=False)
    ext = _json_list(up_extend_code_json, "SmsUpExtendCodeJson", len(phones), required=False)
    async with svc.point_read() as conn:
        tpl = await approved_text_template(conn, account_id, template_code, "TemplateCode")
        for i, name in enumerate(dict.fromkeys(map(str, sign_names)), 1):
            await approved_sign(conn, account_id, name, f"SignNameJson[{i}]")
        numbers = _text_numbers(phones, "PhoneNumberJson", tpl["template_type"])
        promo = tpl["template_type"] == 2
        blocked = await suppressed(conn, account_id, [n.national for n in numbers]) if promo else set()
    box, biz_id, skipped = Outbox(svc, account_id), new_biz_id(), []
    for i, n in enumerate(numbers):
        body = render_template(tpl, params[i] if params else None, f"TemplateParamJson[{i + 1}]")
        text = sms.compose(str(sign_names[i]).strip(), body, opt_out=promo)
        blocked_here = n.national in blocked
        if blocked_here:
            skipped.append(n.national)
        box.add(biz_id=biz_id, channel="sms", number=n, content=text, priority=PRIORITY_BY_TYPE[tpl["template_type"]],
                out_id=out_id, sign_name=str(sign_names[i]).strip(), template_code=tpl["code"],
                template_type=tpl["template_type"], state="skipped" if blocked_here else "queued",
                error_code="SUPPRESSED" if blocked_here else "",
                error_text="the number opted out" if blocked_here else "",
                up_extend_code=str(ext[i]) if ext else "")
    answer = {"BizId": biz_id, "Message": _skip_note(skipped)}
    return await commit_send(svc, account_id, box, answer, idem_key, "SendBatchSms")


# --- card SMS -------------------------------------------------------------------------------

@dataclass
class CardRecipient:
    number: PhoneNumber
    sign_name: str
    card_params: dict[str, Any]
    custom_url: str = ""
    sms_params: Any = None
    digital_params: Any = None
    custom_params: Any = None


@dataclass
class CardSend:
    card_template_code: str
    fallback_type: str
    sms_template_code: str = ""
    digital_template_code: str = ""
    template_code: str = ""  # custom send content
    out_id: str = ""
    up_extend_code: str = ""


def fill_card_text(text: str, params: dict[str, Any]) -> str:
    return _VAR.sub(lambda m: str(params.get(m.group(1), "")), text)


def card_title(body: dict[str, Any]) -> str:
    for page in (body.get("templateContent") or {}).get("pages", []):
        for el in page.get("tmpCards", []):
            if el.get("type") == "TEXT" and el.get("isTextTitle"):
                return str(el.get("content", ""))
    return ""


def _card_params(raw: Any, field_name: str) -> dict[str, Any]:
    value = parse_json_param(raw, field_name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object of card variables")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{k} must be a string or a number")
    return value


def check_fallback(spec: CardSend) -> None:
    if spec.fallback_type not in FALLBACK_TYPES:
        raise CardsmsError("InvalidParameter", f"FallbackType: must be one of {', '.join(FALLBACK_TYPES)}, "
                           f"got {spec.fallback_type!r}")
    if spec.fallback_type == "SMS" and not spec.sms_template_code.strip():
        raise CardsmsError("MissingParameter", "SmsTemplateCode is mandatory when FallbackType is SMS.")
    if spec.fallback_type == "DIGITALSMS" and not spec.digital_template_code.strip():
        raise CardsmsError("MissingParameter", "DigitalTemplateCode is mandatory when FallbackType is DIGITALSMS.")


@dataclass
class CardPlan:
    """The approved objects a card send uses, resolved once per call (or per mass-task chunk)."""

    card: Any
    approved: set[str]
    sms_tpl: Any | None
    digital_tpl: Any | None
    custom_tpl: Any | None
    link_base: str = ""  # where the account's card links go (services.domains); the server's when empty


async def plan_card(conn: AsyncConnection, account_id: int, spec: CardSend, sign_names: Sequence[str]) -> CardPlan:
    """Check that every object of the send exists and is approved; raise before anything is queued."""
    check_fallback(spec)
    card = await get_template(conn, account_id, spec.card_template_code, ("card",))
    vendor_rows = await review.vendor_reviews(conn, card["account_id"], "template", card["id"])
    approved = {r["vendor"] for r in vendor_rows if r["state"] == ReviewState.APPROVED}
    if not approved:
        state = "still under review" if card["status"] == 0 else "rejected by every vendor"
        raise CardsmsError("TEMPLATE_NOT_APPROVED", f"CardTemplateCode: card template "
                           f"{spec.card_template_code!r} is {state}; nothing was sent")
    for i, name in enumerate(dict.fromkeys(sign_names), 1):
        await approved_sign(conn, account_id, name, "SignName" if i == 1 else f"SignName[{i}]")
    sms_tpl = (await approved_text_template(conn, account_id, spec.sms_template_code, "SmsTemplateCode")
               if spec.fallback_type == "SMS" else None)
    digital_tpl = (await approved_text_template(conn, account_id, spec.digital_template_code,
                                                "DigitalTemplateCode", ("digital",))
                   if spec.fallback_type == "DIGITALSMS" else None)
    if digital_tpl is not None:
        await digital_signs.check_for_send(conn, account_id, list(sign_names))
    custom_tpl = (await approved_text_template(conn, account_id, spec.template_code, "TemplateCode")
                  if spec.template_code.strip() else None)
    return CardPlan(card, approved, sms_tpl, digital_tpl, custom_tpl)


@dataclass
class CardLegs:
    """Which recipients got which leg of a card send."""

    biz: dict[str, str] = field(default_factory=lambda: {k: new_biz_id() for k in ("card", "sms", "digital")})
    used: set[str] = field(default_factory=set)
    media: list[str] = field(default_factory=list)
    not_media: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def queue_card(svc: Services, plan: CardPlan, spec: CardSend, recipients: Sequence[CardRecipient],
               blocked: set[str], box: Outbox, legs: CardLegs, task_id: int | None = None) -> None:
    """Decide card or fallback per recipient (SPEC.md sending rule 3) and add the rows to the box."""
    card, body, biz = plan.card, plan.card["body"] or {}, legs.biz
    common = {"out_id": spec.out_id, "card_template_code": card["code"], "task_id": task_id}
    link_base = plan.link_base or svc.settings.link_base
    for i, r in enumerate(recipients, 1):
        handset = svc.handsets.lookup(r.number.sha1)
        capable = handset.card_capable and handset.vendor is not None and handset.vendor.value in plan.approved
        if r.number.national in blocked:
            legs.skipped.append(r.number.national)
            legs.not_media.append(r.number.national)
            box.add(biz_id=biz["card"], channel="card", number=r.number, content="", priority=CARD_PRIORITY,
                    sign_name=r.sign_name, template_code=card["code"], state="skipped", error_code="SUPPRESSED",
                    error_text="the number opted out (replied R); card sends skip it", **common)
            continue
        if capable:
            legs.media.append(r.number.national)
            code = new_link_code()
            link = f"{link_base}/{code}"
            if plan.custom_tpl is not None:
                text_body = render_template(plan.custom_tpl, r.custom_params, f"TemplateParam[{i}]")
            else:
                text_body = fill_card_text(card_title(body), r.card_params) or "您有一条新消息"
            content = sms.compose(r.sign_name, text_body, link=link, opt_out=True)
            idx = box.add(biz_id=biz["card"], channel="card", number=r.number, content=content,
                          priority=CARD_PRIORITY, sign_name=r.sign_name,
                          template_code=plan.custom_tpl["code"] if plan.custom_tpl is not None else card["code"],
                          link_code=code, custom_url=r.custom_url, up_extend_code=spec.up_extend_code,
                          vendor=handset.vendor.value if handset.vendor is not None else "", **common)
            box.link(idx, code=code, kind="personal", card_template_code=card["code"], phone=r.number.national,
                     params=r.card_params, source_url=r.custom_url)
            legs.used.add("card")
            continue
        legs.not_media.append(r.number.national)
        if plan.sms_tpl is not None:
            tpl = plan.sms_tpl
            text = sms.compose(r.sign_name, render_template(tpl, r.sms_params, f"SmsTemplateParam[{i}]"),
                               opt_out=tpl["template_type"] == 2)
            box.add(biz_id=biz["sms"], channel="sms", number=r.number, content=text,
                    priority=PRIORITY_BY_TYPE.get(tpl["template_type"], 1), sign_name=r.sign_name,
                    template_code=tpl["code"], template_type=tpl["template_type"],
                    up_extend_code=spec.up_extend_code, **common)
            legs.used.add("sms")
        elif plan.digital_tpl is not None:
            text = render(plan.digital_tpl["content"], r.digital_params, f"DigitalTemplateParam[{i}]")
            box.add(biz_id=biz["digital"], channel="digital", number=r.number, content=text,
                    priority=DIGITAL_PRIORITY, sign_name=r.sign_name, template_code=plan.digital_tpl["code"],
                    template_type=7, **common)
            legs.used.add("digital")
        else:
            box.add(biz_id=biz["card"], channel="card", number=r.number, content="", priority=CARD_PRIORITY,
                    sign_name=r.sign_name, template_code=card["code"], state="skipped", error_code="NO_CARD_SUPPORT",
                    error_text="the phone cannot show this card and FallbackType is NONE", **common)
            legs.used.add("card")


async def cached_plan(svc: Services, account_id: int, spec: CardSend, sign_names: Sequence[str]) -> CardPlan:
    """plan_card's answer, cached for a second (services.cache; this process's own changes to
    templates, their reviews or signatures clear it at once)."""
    signs = tuple(dict.fromkeys(sign_names))
    key = (account_id, spec.card_template_code, spec.fallback_type, spec.sms_template_code,
           spec.digital_template_code, spec.template_code, signs)

    async def load() -> CardPlan:
        async with svc.point_read() as conn:
            plan = await plan_card(conn, account_id, spec, signs)
        plan.link_base = await domains.link_base(svc, account_id)
        return plan

    return await svc.caches.memo("card-plans", {"templates", "reviews", "signs", *domains.TABLES}, key, load)


async def send_card(svc: Services, account_id: int, spec: CardSend, recipients: list[CardRecipient],
                    idem_key: str | None, action: str) -> dict[str, Any]:
    plan = await cached_plan(svc, account_id, spec, [r.sign_name for r in recipients])
    if len(recipients) == 1:  # the common API call: one number, one compiled-once lookup
        blocked = {r["phone"] for r in await svc.point_query(
            _SUPPRESSED_ONE, account_id=account_id, phone=recipients[0].number.national)}
    else:
        async with svc.point_read() as conn:
            blocked = await suppressed(conn, account_id, [r.number.national for r in recipients])
    box = Outbox(svc, account_id)
    legs = CardLegs()
    queue_card(svc, plan, spec, recipients, blocked, box, legs)
    biz, used, skipped = legs.biz, legs.used, legs.skipped
    data: dict[str, Any] = {
        "BizCardId": biz["card"] if "card" in used or skipped else "",
        "BizSmsId": biz["sms"] if "sms" in used else "",
        "BizDigitalId": biz["digital"] if "digital" in used else "",
        "CardTmpState": int(ReviewState.APPROVED),
        "MediaMobiles": ",".join(legs.media),
        "NotMediaMobiles": ",".join(legs.not_media),
    }
    if skipped:
        data["SuppressedMobiles"] = ",".join(skipped)
    answer: dict[str, Any] = {"Data": data}
    if skipped:
        answer["Message"] = _skip_note(skipped)
    return await commit_send(svc, account_id, box, answer, idem_key, action)


def card_objects(objects: list[Any]) -> list[tuple[Any, dict[str, Any], str]]:
    """(mobile, dyncParams, customUrl) of SendCardSms's CardObjects."""
    out = []
    for i, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"CardObjects[{i}] must be an object with a mobile")
        mobile = obj.get("mobile") or obj.get("Mobile")
        if mobile in (None, ""):
            raise CardsmsError("MissingParameter", f"CardObjects[{i}].mobile is mandatory for this action.")
        params = _card_params(obj.get("dyncParams") or obj.get("DyncParams"), f"CardObjects[{i}].dyncParams")
        url = check_custom_url(obj.get("customUrl") or obj.get("CustomUrl"), f"CardObjects[{i}].customUrl")
        out.append((mobile, params, url))
    return out


def card_recipients(mobiles: Sequence[Any], field_name: str, sign_names: Sequence[str],
                    card_params: Sequence[dict[str, Any]], custom_urls: Sequence[str],
                    sms_params: Sequence[Any], digital_params: Sequence[Any], custom_params: Sequence[Any]
                    ) -> list[CardRecipient]:
    numbers = numbers_or_error(mobiles, field_name, mainland_only=True)
    seen: dict[str, CardRecipient] = {}
    for i, n in enumerate(numbers):
        seen.setdefault(n.e164, CardRecipient(n, sign_names[i], card_params[i], custom_urls[i], sms_params[i],
                                              digital_params[i], custom_params[i]))
    return list(seen.values())


def per_number(raw: Any, field_name: str, n: int) -> list[Any]:
    value = _json_list(raw, field_name, n, required=False)
    return value if value is not None else [None] * n


def json_object(raw: Any, field_name: str) -> Any:
    value = parse_json_param(raw, field_name)
    if value is not None and not isinstance(value, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object")
    return value


card_params_list = _card_params
