"""services.batching and services.cache on a real database: concurrent writes share transactions and
each caller gets its own result, a bad item fails alone; a cached value is dropped when this process
commits a write to one of its tables (not on a rollback, not for other tables)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import insert_rows
from cardsms.db.schema import message_events, signs
from cardsms.services.batching import GroupCommit
from cardsms.services.core import Services
from tests.conftest import BACKENDS, with_services


async def _write_events(conn: AsyncConnection, items: Sequence[int | None], *, svc: Services) -> list[int]:
    now = datetime.now(UTC)
    await insert_rows(conn, message_events, [
        {"account_id": 1, "message_id": i, "kind": "test", "at": now, "detail": ""} for i in items])
    return [-(i or 0) for i in items]


@pytest.mark.parametrize("backend", BACKENDS)
def test_group_commit_batches_and_isolates_a_bad_item(tmp_path: Path, backend: str,
                                                      request: pytest.FixtureRequest) -> None:
    with_services(backend, request, tmp_path, _group_commit)


async def _group_commit(svc: Services) -> None:
    writer: GroupCommit[int | None, int] = GroupCommit(svc.execute_write, partial(_write_events, svc=svc))
    results = await asyncio.gather(*(writer.submit(i) for i in range(1, 201)))
    assert results == [-i for i in range(1, 201)]  # every caller gets its own answer
    assert writer.items == 200 and writer.batches < 20  # they shared transactions
    # message_id is NOT NULL: the None fails alone, the items queued with it are still written
    outcome = await asyncio.gather(*(writer.submit(i) for i in (301, None, 302)), return_exceptions=True)
    assert outcome[0] == -301 and outcome[2] == -302 and isinstance(outcome[1], IntegrityError)
    async with svc.read() as conn:
        ids = sorted((await conn.execute(select(message_events.c.message_id))).scalars().all())
    assert ids == [*range(1, 201), 301, 302]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cache_is_cleared_by_this_processs_commits_to_its_tables(tmp_path: Path, backend: str,
                                                                   request: pytest.FixtureRequest) -> None:
    with_services(backend, request, tmp_path, _cache)


async def _cache(svc: Services) -> None:
    loads: list[Any] = []

    async def load() -> Any:
        async with svc.read() as conn:
            value = await conn.scalar(select(signs.c.status).where(signs.c.name_key == "shop"))
        loads.append(value)
        return value

    async def status() -> Any:
        return await svc.caches.memo("test-signs", {"signs"}, "shop", load)

    now = datetime.now(UTC)
    async with svc.hold_writer() as conn:
        await conn.execute(insert(signs).values(
            account_id=1, name="Shop", name_key="shop", sign_type=0, sign_source=0, status=0, files=[],
            created_at=now, updated_at=now))
    assert await status() == 0 and await status() == 0 and len(loads) == 1  # the second read is cached
    async with svc.hold_writer() as conn:  # another table: the cache stays
        await insert_rows(conn, message_events, [{"account_id": 1, "message_id": 1, "kind": "x", "at": now}])
    assert await status() == 0 and len(loads) == 1
    with pytest.raises(RuntimeError):
        async with svc.hold_writer() as conn:  # rolled back: nothing changed, the cache stays
            await conn.execute(update(signs).values(status=2))
            raise RuntimeError("roll back")
    assert await status() == 0 and len(loads) == 1
    async with svc.hold_writer() as conn:
        await conn.execute(update(signs).where(signs.c.name_key == "shop").values(status=1))
    assert await status() == 1 and len(loads) == 2  # committed: read again at once
