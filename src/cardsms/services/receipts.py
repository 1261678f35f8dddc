"""Recording what happens to messages after they are queued: submit outcomes, delivery receipts
(including ones that overtake their submit response), render and open events, replies and opt-out.

Every transition is conditional on the current state, so applying the same fact twice changes
nothing (a duplicate receipt, a replayed submit outcome after a crash).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import fetch_all, insert_rows, update_rows
from cardsms.db.schema import early_receipts, message_events, messages, replies, smsc_ids, suppressions
from cardsms.domain.numbers import InvalidNumber, normalise_number
from cardsms.domain.sms import FINAL_STATS, is_opt_out
from cardsms.services import webhooks
from cardsms.services.core import Services, china_time

FINAL_STATES = ("delivered", "failed", "expired", "skipped")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Receipt:
    connector: str
    smsc_id: str
    stat: str  # DELIVRD, UNDELIV, EXPIRED, ...
    err: str
    at: datetime


@dataclass
class Outcome:
    """What one submit attempt of one claimed message came to."""

    message_id: int
    account_id: int
    kind: str  # ok | retry | throttled | fail
    connector: str = ""
    smsc_ids: list[str] = field(default_factory=list)
    code: str = ""
    text: str = ""
    delay: float = 0.0
    maybe_sent: bool = False  # the submit_sm may have reached the SMSC (connection lost before the answer)
    one_receipt: bool = False  # the link's receipt policy settles this long message with one part's receipt


def _chunks(items: list[T], size: int = 500) -> Iterable[list[T]]:
    return (items[i:i + size] for i in range(0, len(items), size))


OPEN_STATES = ("queued", "submitting", "submitted")
_OPEN_STATE_SQL = f"+messages.state IN {OPEN_STATES!r}"  # for db.bulk.update_rows on SQLite: look rows up by id


def _open_state() -> Any:
    """state is not final (spelled out: executemany cannot expand an IN list)."""
    return or_(*(messages.c.state == s for s in OPEN_STATES))


def _event(account_id: int, message_id: int, kind: str, at: datetime, detail: str = "") -> dict[str, Any]:
    return {"account_id": account_id, "message_id": message_id, "kind": kind, "at": at, "detail": detail}


def sms_report(row: Any, success: bool, code: str, text: str, at: datetime) -> tuple[int, str, dict[str, Any]]:
    return (row["account_id"], "SmsReport", {
        "phone_number": row["phone"], "send_time": china_time(row["created_at"]), "report_time": china_time(at),
        "success": success, "err_code": "DELIVERED" if success else code,
        "err_msg": "用户接收成功" if success else text,
        "sms_size": str(row["segments"]), "biz_id": row["biz_id"], "out_id": row["out_id"],
        "channel": row["channel"],
    })


async def record_outcomes(conn: AsyncConnection, svc: Services, outcomes: list[Outcome]) -> None:
    now = svc.now()
    ok = [o for o in outcomes if o.kind == "ok"]
    again = [o for o in outcomes if o.kind in ("retry", "throttled")]
    failed = [o for o in outcomes if o.kind == "fail"]
    events = [*await _submitted(conn, ok, now), *await _again(conn, again, now), *await _failed(conn, svc, failed, now)]
    if events:
        await insert_rows(conn, message_events, events)
    if ok:
        await _reconcile_early(conn, svc, ok)


async def _submitted(conn: AsyncConnection, ok: list[Outcome], now: datetime) -> list[dict[str, Any]]:
    """Messages the SMSC took: submitted, with the ids it gave them (the key of their receipts)."""
    if not ok:
        return []
    by_connector: dict[tuple[str, bool], list[int]] = {}
    for o in ok:
        by_connector.setdefault((o.connector, o.one_receipt), []).append(o.message_id)
    for (connector, one), ids in by_connector.items():  # one statement per connector, not one per message
        # one receipt settles: the other parts count as done (receipts=first|last|any on the link's URL)
        settled = {"parts_done": messages.c.segments - 1} if one else {}
        for chunk in _chunks(ids):
            await conn.execute(update(messages).where(messages.c.id.in_(chunk), messages.c.state == "submitting")
                               .values(state="submitted", connector=connector, submitted_at=now, **settled))
    id_rows = [{"connector": o.connector, "smsc_id": sid, "account_id": o.account_id, "message_id": o.message_id}
               for o in ok for sid in dict.fromkeys(o.smsc_ids)]
    if id_rows:
        try:
            async with conn.begin_nested():
                await insert_rows(conn, smsc_ids, id_rows)
        except IntegrityError:  # an SMSC reused an id (after its own restart): keep the newest mapping
            for r in id_rows:
                await conn.execute(delete(smsc_ids).where(smsc_ids.c.connector == r["connector"],
                                                          smsc_ids.c.smsc_id == r["smsc_id"]))
            await conn.execute(insert(smsc_ids), id_rows)
    return [_event(o.account_id, o.message_id, "submitted", now, f"{o.connector} id {','.join(o.smsc_ids)}")
            for o in ok]


async def _again(conn: AsyncConnection, again: list[Outcome], now: datetime) -> list[dict[str, Any]]:
    """Messages to try again later (a throttled try is not counted as an attempt)."""
    if not again:
        return []
    await conn.execute(
        update(messages).where(messages.c.id == bindparam("mid"), messages.c.state == "submitting")
        .values(state="queued", due_at=bindparam("due"), error_code=bindparam("code"),
                error_text=bindparam("text"), attempts=messages.c.attempts - bindparam("undo"),
                possible_duplicate=messages.c.possible_duplicate | bindparam("dup")),
        [{"mid": o.message_id, "due": now + timedelta(seconds=o.delay), "code": o.code, "text": o.text,
          "undo": 1 if o.kind == "throttled" else 0, "dup": o.maybe_sent} for o in again],
    )
    return [_event(o.account_id, o.message_id, "retry", now, f"{o.code}: {o.text}; next try in {o.delay:.1f}s")
            for o in again]


async def _failed(conn: AsyncConnection, svc: Services, failed: list[Outcome], now: datetime
                  ) -> list[dict[str, Any]]:
    """Messages that failed for good, reported to the accounts' SmsReport webhooks."""
    if not failed:
        return []
    await conn.execute(
        update(messages).where(messages.c.id == bindparam("mid"), messages.c.state == "submitting")
        .values(state="failed", error_code=bindparam("code"), error_text=bindparam("text"), done_at=now),
        [{"mid": o.message_id, "code": o.code, "text": o.text} for o in failed],
    )
    rows = await fetch_all(conn, select(messages).where(messages.c.id.in_([o.message_id for o in failed])))
    by_id = {o.message_id: o for o in failed}
    await webhooks.enqueue(conn, svc, [sms_report(r, False, by_id[r["id"]].code, by_id[r["id"]].text, now)
                                       for r in rows])
    return [_event(o.account_id, o.message_id, "failed", now, f"{o.code}: {o.text}") for o in failed]


async def _reconcile_early(conn: AsyncConnection, svc: Services, ok: list[Outcome]) -> None:
    by_connector: dict[str, list[str]] = {}
    for o in ok:
        by_connector.setdefault(o.connector, []).extend(o.smsc_ids)
    conds = [and_(early_receipts.c.connector == c, early_receipts.c.smsc_id.in_(ids))
             for c, ids in by_connector.items()]
    ids = [r[0] for r in await conn.execute(select(early_receipts.c.id).where(or_(*conds)))]
    await _apply_kept(conn, svc, ids)


async def _apply_kept(conn: AsyncConnection, svc: Services, ids: list[int]) -> int:
    """Take kept receipts out (DELETE ... RETURNING, so two concurrent passes never apply one twice)."""
    if not ids:
        return 0
    taken = (await conn.execute(delete(early_receipts).where(early_receipts.c.id.in_(ids)).returning(
        early_receipts.c.id, early_receipts.c.connector, early_receipts.c.smsc_id, early_receipts.c.stat,
        early_receipts.c.err, early_receipts.c.received_at))).mappings().all()
    taken = sorted(taken, key=lambda r: r["id"])
    await apply_receipts(conn, svc, [Receipt(r["connector"], r["smsc_id"], r["stat"], r["err"], r["received_at"])
                                     for r in taken], keep_unknown=False)
    return len(taken)


async def sweep_early(conn: AsyncConnection, svc: Services) -> int:
    """Apply kept receipts whose SMSC id is known by now.

    With concurrent transactions (PostgreSQL) a receipt can be kept as unknown while the submit
    outcome that names its id is committing; this sweep, run periodically, closes that gap."""
    stmt = (select(early_receipts.c.id).join(smsc_ids, (smsc_ids.c.connector == early_receipts.c.connector)
                                             & (smsc_ids.c.smsc_id == early_receipts.c.smsc_id))
            .order_by(early_receipts.c.id).limit(5000))
    return await _apply_kept(conn, svc, [r[0] for r in await conn.execute(stmt)])


# what applying a receipt reads of a message (its state, and what an SmsReport carries)
_RECEIPT_COLUMNS = [messages.c[n] for n in ("id", "account_id", "state", "parts_done", "segments", "done_at",
                                            "error_code", "phone",
                                            "created_at", "biz_id", "out_id", "channel")]


async def _receipt_rows(conn: AsyncConnection, receipts: list[Receipt]
                        ) -> tuple[dict[tuple[str, str], int], dict[int, dict[str, Any]]]:
    """The message id of each receipt's (connector, SMSC id), and those messages' rows."""
    by_connector: dict[str, list[str]] = {}
    for r in receipts:
        by_connector.setdefault(r.connector, []).append(r.smsc_id)
    mapping: dict[tuple[str, str], int] = {}
    for connector, ids in by_connector.items():
        for chunk in _chunks(ids):
            for hit in await fetch_all(conn, select(smsc_ids.c.smsc_id, smsc_ids.c.message_id).where(
                    smsc_ids.c.connector == connector, smsc_ids.c.smsc_id.in_(chunk))):
                mapping[(connector, hit["smsc_id"])] = hit["message_id"]
    rows: dict[int, dict[str, Any]] = {}
    for id_chunk in _chunks(sorted(set(mapping.values()))):
        for found in await fetch_all(conn, select(*_RECEIPT_COLUMNS).where(messages.c.id.in_(id_chunk))):
            rows[found["id"]] = found
    return mapping, rows


@dataclass
class _Applied:
    """What applying a batch of receipts changes: message rows, their events, and the reports to send."""

    changed: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    reports: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)

    def receipt(self, r: Receipt, mid: int, row: dict[str, Any], now: datetime, reporting: set[int]) -> None:
        if row["state"] in FINAL_STATES:
            return  # a duplicate or late receipt: the first final state stands
        outcome = FINAL_STATS.get(r.stat, "")
        if not outcome:
            self.events.append(_event(row["account_id"], mid, "receipt", now, f"intermediate state {r.stat}"))
            return
        if outcome == "delivered":
            row["parts_done"] += 1
            if row["parts_done"] < row["segments"]:
                self.changed[mid] = row
                return
        row["state"] = outcome
        row["done_at"] = r.at
        row["error_code"] = "" if outcome == "delivered" else f"{r.stat}:{r.err}" if r.err else r.stat
        self.changed[mid] = row
        self.events.append(_event(row["account_id"], mid, outcome, now, f"receipt {r.stat} err {r.err or '-'}"))
        if row["account_id"] in reporting:
            self.reports.append(sms_report(row, outcome == "delivered", row["error_code"], r.stat, r.at))


async def apply_receipts(conn: AsyncConnection, svc: Services, receipts: list[Receipt], keep_unknown: bool = True
                         ) -> int:
    """Apply delivery receipts; unknown SMSC ids are kept in early_receipts. Returns how many matched."""
    if not receipts:
        return 0
    mapping, rows = await _receipt_rows(conn, receipts)
    now = svc.now()
    reporting = await webhooks.subscribed(conn, "SmsReport", {r["account_id"] for r in rows.values()})
    unknown: list[Receipt] = []
    applied = _Applied()
    for r in receipts:
        mid = mapping.get((r.connector, r.smsc_id))
        if mid is None:
            unknown.append(r)
        else:
            applied.receipt(r, mid, rows[mid], now, reporting)
    if applied.changed:
        await update_rows(conn, messages, [
            {"id": m, "state": row["state"], "parts_done": row["parts_done"], "done_at": row["done_at"],
             "error_code": row["error_code"]} for m, row in applied.changed.items()],
            where=_open_state(), sqlite_where=_OPEN_STATE_SQL)
    if applied.events:
        await insert_rows(conn, message_events, applied.events)
    await webhooks.enqueue(conn, svc, applied.reports)
    if unknown and keep_unknown:
        await conn.execute(insert(early_receipts), [
            {"connector": r.connector, "smsc_id": r.smsc_id, "stat": r.stat, "err": r.err, "received_at": r.at}
            for r in unknown])
    return len(receipts) - len(unknown)


async def mark_rendered(conn: AsyncConnection, svc: Services, message_ids: Iterable[int]) -> None:
    """The vendor parser fetched these messages' cards: the render receipt (once per message)."""
    ids = sorted(set(message_ids))
    if not ids:
        return
    now = svc.now()
    rows = (await conn.execute(update(messages).where(messages.c.id.in_(ids), messages.c.render_status != 1)
                               .values(render_status=1, rendered_at=now)
                               .returning(messages.c.id, messages.c.account_id, messages.c.phone,
                                          messages.c.out_id, messages.c.biz_id,
                                          messages.c.card_template_code))).mappings().all()
    if not rows:
        return
    await insert_rows(conn, message_events, [
        _event(r["account_id"], r["id"], "rendered", now, "the vendor parser fetched the card") for r in rows])
    await webhooks.enqueue(conn, svc, [(r["account_id"], "MnsCardVender", {
        "mobile": r["phone"], "outId": r["out_id"], "render_status": 0, "desc": "rendered",
        "biz_card_id": r["biz_id"], "template_code": r["card_template_code"], "render_time": china_time(now),
    }) for r in rows])


async def mark_opened(conn: AsyncConnection, svc: Services, opens: Iterable[tuple[int, int, str]]) -> None:
    """(account id, message id, client) for each open of a message's link in a browser."""
    items = list(opens)
    if not items:
        return
    now = svc.now()
    per_message = Counter(m for _, m, _ in items)
    await conn.execute(update(messages).where(messages.c.id == bindparam("mid"))
                       .values(opens=messages.c.opens + bindparam("n")),
                       [{"mid": m, "n": n} for m, n in per_message.items()])
    await insert_rows(conn, message_events, [
        _event(a, m, "link_opened", now, f"opened in a {client}") for a, m, client in items])


async def record_reply(svc: Services, source_addr: str, dest_addr: str, content: str, base: str = "") -> bool:
    """An MO message: attach it to the latest message sent to that number; R/T/TD/退订/STOP opt out. What follows
    `base` (the connector's source address; the server's by default) in dest_addr is the extension code."""
    try:
        number = normalise_number(source_addr if source_addr.startswith("+") else "+" + source_addr)
    except InvalidNumber:
        try:
            number = normalise_number(source_addr)
        except InvalidNumber:
            return False
    now = svc.now()
    base = base or svc.settings.smsc_source_addr
    dest_code = dest_addr[len(base):] if dest_addr.startswith(base) else dest_addr

    async def reply(conn: AsyncConnection) -> bool:
        target = (await conn.execute(select(messages).where(messages.c.e164 == number.e164)
                                     .order_by(messages.c.id.desc()).limit(1))).mappings().first()
        if target is None:
            return False
        account_id = target["account_id"]
        opt_out = is_opt_out(content)
        await conn.execute(insert(replies).values(
            account_id=account_id, message_id=target["id"], phone=number.national, content=content[:1000],
            dest_code=dest_code[:21], sign_name=target["sign_name"], opt_out=opt_out, received_at=now))
        await conn.execute(insert(message_events).values(**_event(account_id, target["id"], "replied", now,
                                                                 content[:200])))
        if opt_out:
            exists = await conn.scalar(select(suppressions.c.id).where(
                suppressions.c.account_id == account_id, suppressions.c.phone == number.national))
            if exists is None:
                await conn.execute(insert(suppressions).values(
                    account_id=account_id, phone=number.national, source="reply", created_at=now,
                    detail=f"replied {content.strip()[:20]!r}"))
        await webhooks.enqueue(conn, svc, [(account_id, "SmsUp", {
            "phone_number": number.national, "send_time": china_time(now), "content": content,
            "sign_name": target["sign_name"], "dest_code": dest_code, "sequence_id": int(now.timestamp() * 1000),
        })])
        return True

    return await svc.execute_write(reply)
