"""The write path every send shares: an `Outbox` holds a send's rows, `write_outboxes` writes many sends with
one statement per table (after frequency control), `commit_send` group-commits one send with its idempotency
record, and the queue check refuses sends past CARDSMS_QUEUE_LIMIT. Also the identifiers sends hand out
(BizId, link codes)."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import insert_returning_ids, insert_rows
from cardsms.db.engine import WORK_CHANNEL
from cardsms.db.schema import idempotency_keys, message_events, messages, short_links
from cardsms.domain import sms
from cardsms.domain.errors import CardsmsError
from cardsms.domain.frequency import Refusal
from cardsms.domain.numbers import PhoneNumber
from cardsms.services import frequency
from cardsms.services.core import CHINA, Services, random_digits

_CODE_ALPHABET = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
IDEMPOTENCY_HOURS = 24
R = TypeVar("R", bound="Result")


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


class Result(Protocol):
    """A send's typed result (SendResult below, card_sending.CardSendResult): frequency control fills
    `limited` with the numbers it left out, inside the transaction that writes the rows."""

    limited: list[Refusal]


@dataclass
class SendResult:
    """What a text send did: its BizId, the numbers skipped because they opted out, and the numbers frequency
    control left out."""

    biz_id: str
    skipped: list[str] = field(default_factory=list)
    limited: list[Refusal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Idempotency:
    """A send's idempotency key: the answer `render` makes of the result is stored with the rows, and a second
    call with the key within 24 hours gets that answer back (`idempotent_answer`) and sends nothing."""

    key: str
    action: str
    render: Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Replay:
    """The stored answer of an earlier call with the same idempotency key (a concurrent twin won the race)."""

    answer: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Send:
    account_id: int
    box: Outbox
    result: Result
    idem: Idempotency | None


def _only_number_refused(box: Outbox, refused: list[Refusal]) -> bool:
    return bool(refused) and len({row["phone"] for row in box.rows}) == 1 and \
        not any(row["state"] == "queued" for row in box.rows)


async def _write_sends(conn: AsyncConnection, sends: Sequence[_Send], *, svc: Services
                       ) -> list[Result | CardsmsError]:
    now = svc.now()
    since = now - timedelta(hours=IDEMPOTENCY_HOURS)
    answers: list[Result | CardsmsError] = []
    kept: list[Outbox] = []
    boxes = [s.box for s in sends]
    limits = await frequency.enforce(conn, boxes) if svc.settings.frequency_control else [[] for _ in boxes]
    for s, refused in zip(sends, limits, strict=True):
        if _only_number_refused(s.box, refused):
            answers.append(CardsmsError(refused[0].code, refused[0].text))  # its only number: nothing is written
            continue
        s.result.limited = refused
        answers.append(s.result)
        kept.append(s.box)
        if s.idem:
            await conn.execute(idempotency_keys.delete().where(
                idempotency_keys.c.account_id == s.account_id, idempotency_keys.c.key == s.idem.key,
                idempotency_keys.c.created_at < since))
            await conn.execute(insert(idempotency_keys).values(
                account_id=s.account_id, key=s.idem.key, action=s.idem.action, response=s.idem.render(s.result),
                created_at=now))
    await _insert_outboxes(conn, svc, kept)
    return answers


async def waiting_messages(svc: Services) -> int:
    """How many messages wait to be submitted (state queued), counted at most once every
    CARDSMS_QUEUE_COUNT_SECONDS per process (the count lives on the services object, one per process and loop)."""
    if svc.waiting[0] > time.monotonic():
        return svc.waiting[1]
    async with svc.waiting_lock:  # concurrent sends share one count
        if svc.waiting[0] <= time.monotonic():
            async with svc.read() as conn:
                n = await conn.scalar(select(func.count()).select_from(messages).where(messages.c.state == "queued"))
            svc.waiting = (time.monotonic() + svc.settings.queue_count_seconds, int(n or 0))
    return svc.waiting[1]


async def check_queue(svc: Services, adding: int) -> None:
    """Past CARDSMS_QUEUE_LIMIT waiting messages a send is refused (retry later) instead of queued without
    bound: the links are behind, and a queue of days helps nobody."""
    limit = svc.settings.queue_limit
    if limit and await waiting_messages(svc) + adding > limit:
        raise CardsmsError("Throttling.Queue", f"the send queue holds more than {limit} messages waiting for the "
                           "SMSC links (CARDSMS_QUEUE_LIMIT); nothing was sent; retry later")


async def commit_send(svc: Services, account_id: int, box: Outbox, result: R, idem: Idempotency | None
                      ) -> R | Replay:
    """Write the rows and the idempotency record in one transaction, group-committed with the sends of
    other requests (services.batching); a concurrent twin (same idempotency key) returns the first answer."""
    await check_queue(svc, sum(1 for r in box.rows if r.get("state") == "queued"))
    try:
        writer = svc.group_commit("sends", _write_sends, max_batch=200, in_flight=2)
        written: Result | CardsmsError = await writer.submit(_Send(account_id, box, result, idem))
    except IntegrityError:
        if idem is None:
            raise
        earlier = await idempotent_answer(svc, account_id, idem.key, idem.action)
        if earlier is None:
            raise
        return Replay(earlier)
    if isinstance(written, CardsmsError):
        raise written
    return result
