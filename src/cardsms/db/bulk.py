"""Bulk inserts for the hot write paths (task feeds, sends).

SQLAlchemy's generic executemany costs tens of microseconds per row in Python (parameter
processing per column, multi-row VALUES for RETURNING). On SQLite this inserts with the driver's
own executemany instead, converting values with the same type processors SQLAlchemy would use,
so what is stored is identical. The new ids come from the rowid allocation SQLite guarantees for
a table with an INTEGER PRIMARY KEY inside one write transaction: each row gets max(rowid) + 1, so
a batch's ids are the range after the maximum before it — checked against the maximum after it.
Other databases use SQLAlchemy's path (on PostgreSQL it is already fast).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection


class IdAllocationError(RuntimeError):
    """SQLite did not hand out the consecutive ids expected (the transaction is rolled back)."""


def _memo(processor: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A bind processor that converts each distinct value once (rows of a batch share their timestamps)."""
    done: dict[Any, Any] = {}

    def run(value: Any) -> Any:
        key = (type(value), value, getattr(value, "tzinfo", None))  # equal datetimes of other zones differ
        try:
            return done[key]
        except KeyError:
            done[key] = out = processor(value)
            return out
        except TypeError:  # unhashable (a JSON document)
            return processor(value)

    return run


def _plan(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
          ) -> tuple[str, list[tuple[Any, ...]]] | None:
    names = list(rows[0])
    keys = set(names)
    if any(len(r) != len(names) or r.keys() != keys for r in rows):
        return None
    constants: dict[str, Any] = {}
    for column in table.columns:
        if column.name in keys or column.primary_key:
            continue
        default = column.default
        if default is not None:
            if not getattr(default, "is_scalar", False):
                return None  # a callable default: leave it to SQLAlchemy
            constants[column.name] = default.arg  # type: ignore[attr-defined]
    dialect = conn.dialect

    def process(name: str) -> Any:
        return table.c[name].type._cached_bind_processor(dialect)

    def bind(name: str, value: Any) -> Any:
        processor = process(name)
        return processor(value) if processor else value

    converted = [(i, _memo(p)) for i, p in enumerate(map(process, names)) if p]
    fixed = tuple(bind(n, v) for n, v in constants.items())  # the same for every row
    columns = ", ".join(f'"{c}"' for c in [*names, *constants])
    sql = f'INSERT INTO "{table.name}" ({columns}) VALUES ({", ".join("?" * (len(names) + len(constants)))})'
    values = operator.itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
    params = []
    for r in rows:
        row = [*values(r), *fixed]
        for i, p in converted:
            row[i] = p(row[i])
        params.append(tuple(row))
    return sql, params


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    planned = _plan(conn, table, rows) if conn.dialect.name == "sqlite" else None
    if planned is None:
        await conn.execute(insert(table), list(rows))
        return
    await conn.exec_driver_sql(*planned)


async def insert_returning_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert the rows; their new ids, in the order of `rows`."""
    if not rows:
        return []
    planned = _plan(conn, table, rows) if conn.dialect.name == "sqlite" else None
    if planned is None:
        result = await conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows))
        return [r[0] for r in result]
    before = int(await conn.scalar(select(func.max(table.c.id))) or 0)
    await conn.exec_driver_sql(*planned)
    after = int(await conn.scalar(select(func.max(table.c.id))) or 0)
    if after - before != len(rows):
        raise IdAllocationError(f"{table.name}: expected ids {before + 1}..{before + len(rows)}, "
                                f"the maximum is {after}")
    return list(range(before + 1, after + 1))
