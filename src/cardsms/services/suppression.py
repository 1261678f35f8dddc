"""The account's suppression list (opted-out numbers): view, add by hand, remove."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from cardsms.db.schema import suppressions
from cardsms.domain.errors import field_error
from cardsms.domain.numbers import InvalidNumber, normalise_number
from cardsms.services import audit
from cardsms.services.core import Services


def _phone(raw: str) -> str:
    try:
        return normalise_number(raw).national
    except InvalidNumber as exc:
        raise field_error("phone", f"phone: {exc}") from None


async def list_suppressed(svc: Services, account_id: int, search: str = "", limit: int = 200
                          ) -> tuple[int, list[Any]]:
    where = [suppressions.c.account_id == account_id]
    if search.strip():
        where.append(suppressions.c.phone.contains(search.strip()))
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(suppressions).where(*where))
        rows = (await conn.execute(select(suppressions).where(*where).order_by(suppressions.c.id.desc())
                                   .limit(limit))).mappings().all()
    return int(total or 0), list(rows)


async def add_suppressed(svc: Services, account_id: int, raw: str, detail: str = "") -> str:
    phone = _phone(raw)
    try:
        async with svc.hold_writer() as conn:
            await conn.execute(insert(suppressions).values(account_id=account_id, phone=phone, source="manual",
                                                           detail=detail[:200], created_at=svc.now()))
            await audit.record(conn, svc, account_id, "suppression.add", phone, detail)
    except IntegrityError:
        raise field_error("phone", f"phone: {phone} is already on the suppression list") from None
    return phone


async def remove_suppressed(svc: Services, account_id: int, raw: str) -> bool:
    phone = _phone(raw)
    async with svc.hold_writer() as conn:
        removed = bool((await conn.execute(delete(suppressions).where(
            suppressions.c.account_id == account_id, suppressions.c.phone == phone))).rowcount)
        if removed:
            await audit.record(conn, svc, account_id, "suppression.remove", phone)
        return removed
