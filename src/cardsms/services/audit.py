"""The audit log: who changed what and when, written in the transaction of the change.

The entry points say who acts (`acting_as`): the console as `user:NAME`, the API as `api:KEYID`, the CLI as
`cli`; services record their changes with `record(conn, svc, account_id, action, subject, detail)` without
passing the actor through every call. Admins read it on the console's audit page and export it as CSV.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import audit_log
from cardsms.services.core import Services

_actor: contextvars.ContextVar[str] = contextvars.ContextVar("cardsms_actor", default="system")


@contextlib.contextmanager
def acting_as(actor: str) -> Iterator[None]:
    token = _actor.set(actor[:96])
    try:
        yield
    finally:
        _actor.reset(token)


def actor() -> str:
    """Who is acting now: `console:<user>`, `key:<id>`, `cli`, or `system`."""
    return _actor.get()


def set_actor(actor: str) -> None:
    """For a whole task (a request handler's, the CLI's process): who acts from here on."""
    _actor.set(actor[:96])


async def record(conn: AsyncConnection, svc: Services, account_id: int, action: str, subject: str,
                 detail: str = "") -> None:
    await conn.execute(insert(audit_log).values(account_id=account_id, actor=_actor.get(), action=action[:48],
                                                subject=str(subject)[:128], detail=detail[:2000], at=svc.now()))


async def entries(svc: Services, account_id: int, limit: int = 200, before_id: int | None = None) -> list[Any]:
    where = [audit_log.c.account_id == account_id]
    if before_id is not None:
        where.append(audit_log.c.id < before_id)
    async with svc.read() as conn:
        return list((await conn.execute(select(audit_log).where(*where).order_by(audit_log.c.id.desc())
                                        .limit(limit))).mappings().all())
