"""Bulk inserts for the hot write paths (task feeds, sends).

SQLAlchemy's generic executemany costs tens of microseconds per row in Python (parameter
processing per column, multi-row VALUES for RETURNING). On SQLite this inserts with the driver's
own executemany instead, converting values with the same type processors SQLAlchemy would use,
so what is stored is identical. The new ids come from the rowid allocation SQLite guarantees for
a table with an INTEGER PRIMARY KEY inside one write transaction: each row gets max(rowid) + 1, so
a batch's ids are the range after the maximum before it — checked against the maximum after it.
Other databases use SQLAlchemy's path (on PostgreSQL it is already fast).

Rows go in as multi-row `INSERT ... VALUES (...), (...), ...` statements of up to `ROWS_PER_STATEMENT`
rows, not one statement per row: the driver releases and takes back the GIL around every
statement step, and on the writer thread, beside a busy event loop, each take-back is a wait.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import CursorResult, Select, Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

ROWS_PER_STATEMENT = 500
MAX_VARIABLES = 32_766  # SQLite's limit on bound parameters in one statement (3.32 and newer)


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


def _constant_defaults(table: Table, given: set[str]) -> dict[str, Any] | None:
    """The scalar defaults of the columns the rows leave out; None when one is a callable (SQLAlchemy's job)."""
    constants: dict[str, Any] = {}
    for column in table.columns:
        if column.name in given or column.primary_key:
            continue
        default = column.default
        if default is not None:
            if not getattr(default, "is_scalar", False):
                return None  # a callable default: leave it to SQLAlchemy
            constants[column.name] = default.arg  # type: ignore[attr-defined]
    return constants


def _plan(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]
          ) -> list[tuple[str, tuple[Any, ...]]] | None:
    """The statements that insert `rows`: (SQL, flat parameters), a chunk of rows each."""
    names = list(rows[0])
    keys = set(names)
    if any(len(r) != len(names) or r.keys() != keys for r in rows):
        return None
    constants = _constant_defaults(table, keys)
    if constants is None:
        return None
    dialect = conn.dialect

    def process(name: str) -> Any:
        return table.c[name].type._cached_bind_processor(dialect)

    def bind(name: str, value: Any) -> Any:
        processor = process(name)
        return processor(value) if processor else value

    converted = [(i, _memo(p)) for i, p in enumerate(map(process, names)) if p]
    fixed = tuple(bind(n, v) for n, v in constants.items())  # the same for every row
    width = len(names) + len(constants)
    columns = ", ".join(f'"{c}"' for c in [*names, *constants])
    one = f'({", ".join("?" * width)})'
    values = operator.itemgetter(*names) if len(names) > 1 else (lambda r: (r[names[0]],))
    params: list[Any] = []
    for r in rows:
        row = [*values(r), *fixed]
        for i, p in converted:
            row[i] = p(row[i])
        params += row
    per = max(1, min(ROWS_PER_STATEMENT, MAX_VARIABLES // width))
    statements = []
    for first in range(0, len(rows), per):
        count = min(per, len(rows) - first)
        sql = f'INSERT INTO "{table.name}" ({columns}) VALUES {", ".join([one] * count)}'
        statements.append((sql, tuple(params[first * width:(first + count) * width])))
    return statements


def inserted_id(result: CursorResult[Any]) -> int:
    """The primary key of the one row an INSERT wrote."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:
        raise ValueError("the statement inserted no row with a primary key")
    return int(key[0])


async def insert_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    planned = _plan(conn, table, rows) if conn.dialect.name == "sqlite" else None
    if planned is None:
        await conn.execute(insert(table), list(rows))
        return
    for sql, params in planned:
        await conn.exec_driver_sql(sql, params)


async def insert_returning_ids(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert the rows; their new ids, in the order of `rows`."""
    if not rows:
        return []
    planned = _plan(conn, table, rows) if conn.dialect.name == "sqlite" else None
    if planned is None:
        result = await conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), list(rows))
        return [r[0] for r in result]
    before = int(await conn.scalar(select(func.max(table.c.id))) or 0)
    for sql, params in planned:
        await conn.exec_driver_sql(sql, params)
    after = int(await conn.scalar(select(func.max(table.c.id))) or 0)
    if after - before != len(rows):
        raise IdAllocationError(f"{table.name}: expected ids {before + 1}..{before + len(rows)}, "
                                f"the maximum is {after}")
    return list(range(before + 1, after + 1))


async def update_rows(conn: AsyncConnection, table: Table, rows: Sequence[dict[str, Any]], *, where: Any,
                      sqlite_where: str) -> None:
    """Give each row of `table` whose id is a row's "id" that row's other values, where `where` holds too.

    On SQLite one `UPDATE ... FROM (VALUES ...)` per chunk of rows (one statement step, see the module
    docstring); `sqlite_where` is `where` as SQL over the table's columns (no parameters). Elsewhere an
    executemany of SQLAlchemy's UPDATE."""
    if not rows:
        return
    names = [n for n in rows[0] if n != "id"]
    if conn.dialect.name != "sqlite":
        await conn.execute(update(table).where(table.c.id == bindparam("_id"), where)
                           .values({n: bindparam(f"_{n}") for n in names}),
                           [{f"_{k}": v for k, v in r.items()} for r in rows])
        return
    processors = [table.c[n].type._cached_bind_processor(conn.dialect) for n in names]
    params: list[Any] = []
    for r in rows:
        params.append(r["id"])
        params += [p(r[n]) if p else r[n] for n, p in zip(names, processors, strict=True)]
    width = len(names) + 1
    one = f'({", ".join("?" * width)})'
    sets = ", ".join(f'"{n}" = v.column{i + 2}' for i, n in enumerate(names))
    per = max(1, min(ROWS_PER_STATEMENT, MAX_VARIABLES // width))
    for first in range(0, len(rows), per):
        count = min(per, len(rows) - first)
        sql = (f'UPDATE "{table.name}" SET {sets} FROM (VALUES {", ".join([one] * count)}) AS v '
               f'WHERE "{table.name}".id = v.column1 AND ({sqlite_where})')
        await conn.exec_driver_sql(sql, tuple(params[first * width:(first + count) * width]))


async def fetch_all(conn: AsyncConnection, stmt: Select[Any]) -> list[dict[str, Any]]:
    """The rows of a SELECT as dicts, values as SQLAlchemy would give them.

    On SQLite the rows come back packed in one JSON array (`json_group_array`): one statement step
    for all of them, where the driver otherwise steps, and on the writer thread waits for the GIL,
    once per row."""
    if conn.dialect.name != "sqlite":
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]
    sub = stmt.subquery()
    packed = await conn.scalar(select(func.json_group_array(func.json_array(*sub.c))))
    names = [c.key for c in sub.c]
    processors = [(i, p) for i, p in enumerate(c.type._cached_result_processor(conn.dialect, None) for c in sub.c)
                  if p is not None]
    out = []
    for values in json.loads(packed or "[]"):
        for i, p in processors:
            values[i] = p(values[i])
        out.append(dict(zip(names, values, strict=True)))
    return out
