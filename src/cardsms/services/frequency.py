"""Frequency control on every send path (domain/frequency.py has the rules and the arithmetic).

`enforce` runs inside the transaction that writes a send's message rows (services.outbox.write_outboxes,
which every API send, test send and mass-task chunk goes through): it reads what each number got from the
account since the longest window began, decides message by message, and turns the rows over a limit into
`skipped` rows with Alibaba's code and a reason naming the number, the rule and when it may be sent again.
What it allows is counted by the rows the same transaction writes, so a crash leaves no count behind.

Exact across processes: on SQLite one writer serializes every send. On PostgreSQL two `cardsms api`
processes may write sends to one number at once; each transaction first upserts the number's row in
`frequency_guard` (in sorted order, so two sends never wait for each other in a cycle), which holds the
second until the first commits; the history it then reads (READ COMMITTED: a fresh snapshot per
statement) includes the first's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import accounts, frequency_exempt, frequency_guard, frequency_rules, messages
from cardsms.domain import frequency as rules
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_number
from cardsms.services import audit
from cardsms.services.core import CHINA, Services, as_utc

if TYPE_CHECKING:
    from cardsms.services.outbox import Outbox

CHUNK = 500


async def enforce(conn: AsyncConnection, boxes: Sequence[Outbox]) -> list[list[rules.Refusal]]:
    """Apply frequency control to the queued rows of these sends (see the module's text); the refusals of
    each send, in its order."""
    out: list[list[rules.Refusal]] = [[] for _ in boxes]
    by_account: dict[int, list[tuple[int, int]]] = {}  # account: (send, row index)
    for i, box in enumerate(boxes):
        for index in box.limited:  # refused by an earlier try of this transaction, rolled back: decide again
            box.rows[index].update(state="queued", error_code="", error_text="", done_at=None)
        box.limited.clear()
        for index, row in enumerate(box.rows):
            if row["state"] == "queued":
                by_account.setdefault(box.account_id, []).append((i, index))
    for account_id, items in by_account.items():
        phones = sorted({boxes[i].rows[index]["phone"] for i, index in items})
        oldest = min(boxes[i].rows[index]["created_at"] for i, index in items)
        counter = await _counter(conn, account_id, phones, oldest)
        for i, index in items:
            row = boxes[i].rows[index]
            refused = counter.take(row["phone"], row["sign_name"], rules.kind_of(row["channel"], row["template_type"]),
                                   row["content"], row["created_at"])
            if refused is not None:
                row.update(state="skipped", error_code=refused.code, error_text=refused.text,
                           done_at=row["created_at"])
                boxes[i].limited.append(index)
                out[i].append(refused)
    return out


async def _counter(conn: AsyncConnection, account_id: int, phones: list[str], now: Any) -> rules.Counter:
    own, duplicate_seconds = await _settings(conn, account_id)
    exempt: set[str] = set()
    for chunk in _chunks(phones):
        exempt.update(r[0] for r in await conn.execute(select(frequency_exempt.c.phone).where(
            frequency_exempt.c.account_id == account_id, frequency_exempt.c.phone.in_(chunk))))
    counted = [p for p in phones if p not in exempt]
    if conn.dialect.name == "postgresql":
        for chunk in _chunks(counted):  # sorted: two sends lock their common numbers in one order
            stmt = pg_insert(frequency_guard).values([{"account_id": account_id, "phone": p, "at": now}
                                                      for p in chunk])
            await conn.execute(stmt.on_conflict_do_update(index_elements=["account_id", "phone"],
                                                          set_={"at": stmt.excluded.at}))
    since = rules.history_since(now)
    days = sorted({since.astimezone(CHINA).strftime("%Y%m%d"), now.astimezone(CHINA).strftime("%Y%m%d")})
    history: dict[str, rules.History] = {}
    columns = [messages.c.phone, messages.c.sign_name, messages.c.channel, messages.c.template_type,
               messages.c.created_at] + ([messages.c.content] if duplicate_seconds else [])
    for chunk in _chunks(counted):
        found = await conn.execute(select(*columns).where(
            messages.c.account_id == account_id, messages.c.phone.in_(chunk), messages.c.send_day.in_(days),
            messages.c.state != "skipped", messages.c.created_at >= since).order_by(messages.c.created_at))
        for r in found:
            at = as_utc(r.created_at)
            past = history.setdefault(r.phone, rules.History())
            past.sends.setdefault((r.sign_name, rules.kind_of(r.channel, r.template_type)), []).append(at)
            if duplicate_seconds and r.content:
                past.texts[r.content] = at
    return rules.Counter(rules.effective_limits(own), exempt, duplicate_seconds, history)


async def _settings(conn: AsyncConnection, account_id: int) -> tuple[dict[tuple[str, str], int], int]:
    own = {(r.kind, r.period): r.max_count for r in await conn.execute(
        select(frequency_rules.c.kind, frequency_rules.c.period, frequency_rules.c.max_count).where(
            frequency_rules.c.account_id == account_id))}
    duplicate = await conn.scalar(select(accounts.c.duplicate_seconds).where(accounts.c.id == account_id))
    return own, int(duplicate or 0)


def _chunks(values: list[str]) -> list[list[str]]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


# --- an account's settings (console Settings, CLI) -----------------------------------------------------------

async def describe(svc: Services, account_id: int) -> dict[str, Any]:
    """The account's limits (each kind and window: its own or the default, 0 = no limit), its exempt
    numbers and the duplicate-content guard."""
    async with svc.read() as conn:
        own, duplicate_seconds = await _settings(conn, account_id)
        exempt = [r[0] for r in await conn.execute(select(frequency_exempt.c.phone).where(
            frequency_exempt.c.account_id == account_id).order_by(frequency_exempt.c.phone))]
    table = []
    for kind in rules.KINDS:
        for period in rules.PERIODS:
            key = (kind, period)
            table.append({"kind": kind, "period": period, "limit": own.get(key, rules.DEFAULTS.get(key, 0)),
                          "default": rules.DEFAULTS.get(key, 0), "own": key in own})
    return {"limits": table, "exempt": exempt, "duplicate_seconds": duplicate_seconds}


async def set_limit(svc: Services, account_id: int, kind: str, period: str, value: int | None) -> None:
    """An account's own limit for a kind and window (0: no limit); None goes back to the default."""
    try:
        rules.check_limit(kind, period, value or 0)
    except ValueError as exc:
        raise CardsmsError("isv.INVALID_PARAMETERS", str(exc)) from None
    async with svc.hold_writer() as conn:
        await conn.execute(delete(frequency_rules).where(frequency_rules.c.account_id == account_id,
                                                         frequency_rules.c.kind == kind,
                                                         frequency_rules.c.period == period))
        if value is not None:
            await conn.execute(insert(frequency_rules).values(account_id=account_id, kind=kind, period=period,
                                                              max_count=value))
        await audit.record(conn, svc, account_id, "frequency.limit", f"{kind} {period}",
                           "default" if value is None else str(value))


async def set_duplicate_seconds(svc: Services, account_id: int, seconds: int) -> None:
    if not 0 <= seconds <= rules.MAX_DUPLICATE_SECONDS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"duplicate seconds must be 0 (off) to "
                           f"{rules.MAX_DUPLICATE_SECONDS}, got {seconds}")
    async with svc.hold_writer() as conn:
        await conn.execute(update(accounts).where(accounts.c.id == account_id).values(
            duplicate_seconds=seconds or None))
        await audit.record(conn, svc, account_id, "frequency.duplicates", "duplicate-content guard",
                           f"the same text to a number at most once per {seconds} s" if seconds else "off")


async def set_exempt(svc: Services, account_id: int, numbers: list[str]) -> list[str]:
    """Replace the account's exempt numbers (at most 300, mainland or international); returns them stored."""
    phones: list[str] = []
    for i, raw in enumerate(numbers, 1):
        try:
            phones.append(normalise_number(raw).national)
        except InvalidNumber as exc:
            raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"exempt numbers[{i}] {raw[:40]!r}: {exc}") from None
    phones = sorted(set(phones))
    if len(phones) > rules.MAX_EXEMPT:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"exempt numbers: at most {rules.MAX_EXEMPT}, got {len(phones)}")
    now = svc.now()
    async with svc.hold_writer() as conn:
        await conn.execute(delete(frequency_exempt).where(frequency_exempt.c.account_id == account_id))
        if phones:
            await conn.execute(insert(frequency_exempt), [{"account_id": account_id, "phone": p, "created_at": now}
                                                          for p in phones])
        await audit.record(conn, svc, account_id, "frequency.exempt", f"{len(phones)} exempt number(s)",
                           ", ".join(phones))
    return phones

