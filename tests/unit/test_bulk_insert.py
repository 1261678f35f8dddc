"""db.bulk: the driver-level bulk insert stores exactly what SQLAlchemy's insert stores, and hands back
the new ids in the order of the rows (also after rows at the top of the table were deleted)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from cardsms.db.bulk import fetch_all, insert_returning_ids, insert_rows, update_rows
from cardsms.db.schema import message_events, short_links
from cardsms.services.core import Services
from tests.conftest import BACKENDS, with_services


def _link(i: int, **over: Any) -> dict[str, Any]:
    row = {"account_id": 7, "code": f"code{i:04d}", "kind": "personal", "card_template_code": "CARD_1",
           "message_id": 1000 + i, "phone": f"1380000{i:04d}", "params": {"name": "李雷", "n": i, "q": 'a"b\\c'},
           "source_url": "", "name": "", "deleted": i % 2 == 0, "page_views": 0, "unique_visitors": 0,
           "created_at": datetime(2026, 11, 26, 12, 0, i % 60, 123456, tzinfo=UTC),
           "expires_at": datetime(2026, 12, 26, 12, 0, 0, tzinfo=UTC)}
    row.update(over)
    return row


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulk_insert_stores_what_sqlalchemy_stores(tmp_path: Path, backend: str,
                                                   request: pytest.FixtureRequest) -> None:
    with_services(backend, request, tmp_path, _compare)


async def _compare(svc: Services) -> None:
    async with svc.hold_writer() as conn:
        await conn.execute(insert(short_links), [_link(i) for i in range(5)])
        ids = await insert_returning_ids(conn, short_links, [_link(i, code=f"bulk{i:04d}") for i in range(5)])
    async with svc.read() as conn:
        rows = (await conn.execute(select(short_links).order_by(short_links.c.id))).mappings().all()
    classic, bulk = rows[:5], rows[5:]
    assert ids == [r["id"] for r in bulk] and ids == sorted(ids) and len(set(ids)) == 5
    for a, b in zip(classic, bulk, strict=True):
        assert {k: v for k, v in a.items() if k not in ("id", "code")} == \
               {k: v for k, v in b.items() if k not in ("id", "code")}
    assert [r["code"] for r in bulk] == [f"bulk{i:04d}" for i in range(5)]
    # the newest rows deleted: the next ids are still the ones handed back
    async with svc.hold_writer() as conn:
        await conn.execute(delete(short_links).where(short_links.c.id.in_(ids[-2:])))
        again = await insert_returning_ids(conn, short_links, [_link(i, code=f"more{i:04d}") for i in range(3)])
    async with svc.read() as conn:
        stored = dict((await conn.execute(select(short_links.c.code, short_links.c.id).where(
            short_links.c.code.like("more%")))).all())
    assert [stored[f"more{i:04d}"] for i in range(3)] == again
    # a column left out gets its default
    async with svc.hold_writer() as conn:
        await insert_rows(conn, message_events, [
            {"account_id": 7, "message_id": i, "kind": "queued", "at": datetime.now(UTC)} for i in (1, 2)])
    async with svc.read() as conn:
        details = (await conn.execute(select(message_events.c.detail))).scalars().all()
    assert details == ["", ""]


@pytest.mark.parametrize("backend", BACKENDS)
def test_bulk_fetch_and_update_match_sqlalchemy(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> None:
    """fetch_all gives the rows SQLAlchemy gives (types included: datetimes, booleans, JSON, NULL, text
    with quotes and CJK); update_rows changes only the rows whose condition holds; inserts of more rows
    than one statement takes keep their order and ids."""
    with_services(backend, request, tmp_path, _fetch_and_update)


async def _fetch_and_update(svc: Services) -> None:
    rows = [_link(i, code=f"f{i:05d}", name='引号"\'' if i % 3 == 0 else "", message_id=None if i % 5 == 0 else i)
            for i in range(1203)]  # more than bulk.ROWS_PER_STATEMENT: several statements

    async def insert_many(conn: Any) -> list[int]:
        return await insert_returning_ids(conn, short_links, rows)

    ids = await svc.execute_write(insert_many)
    query = select(short_links).where(short_links.c.id.in_(ids[::7])).order_by(short_links.c.id)
    async with svc.read() as conn:
        expected = [dict(r) for r in (await conn.execute(query)).mappings()]
        assert [r["code"] for r in expected] == [rows[i]["code"] for i in range(0, 1203, 7)]
        assert await fetch_all(conn, query) == expected
        assert await fetch_all(conn, query.where(short_links.c.id < 0)) == []

    async def update_some(conn: Any) -> None:
        await update_rows(conn, short_links, [{"id": i, "page_views": n, "name": f"n{n}"} for n, i in enumerate(ids)],
                          where=short_links.c.deleted.is_(False), sqlite_where="+short_links.deleted = 0")

    await svc.execute_write(update_some)
    async with svc.read() as conn:
        after = {r.id: (r.page_views, r.name, r.deleted) for r in await conn.execute(select(short_links))}
    for n, i in enumerate(ids):
        views, name, deleted = after[i]
        assert (views, name) == ((0, rows[n]["name"]) if deleted else (n, f"n{n}"))
