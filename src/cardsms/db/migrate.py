"""Schema migrations (Alembic, run programmatically on the async engine).

Alembic is imported only when there is something to migrate: a process on a database at head (every CLI
command and server start checks) reads the revision table with one query and compares it with the newest
file's revision (the chain is linear and in the files' name order: a unit test holds it), which
spares each start-up Alembic's import and script loading (~0.15 s of a CLI command's ~1.4 s of CPU here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x6361726473  # "cards": serialises concurrent `migrate` runs on PostgreSQL


class PendingMigrations(RuntimeError):
    """The database schema is behind the code."""


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


_REVISION = re.compile(r"""^revision\s*=\s*['"]([^'"]+)['"]""", re.MULTILINE)


def head_revision() -> str | None:
    """The newest migration's revision, read from the newest file (versions/NNNN_name.py) without importing it."""
    files = sorted((_MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
    found = _REVISION.search(files[-1].read_text()) if files else None
    return found.group(1) if found else None


def alembic_head_revision() -> str | None:
    """The head as Alembic computes it from the scripts (the unit test compares it with head_revision)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(sync_conn: Any) -> str | None:
        if not inspect(sync_conn).has_table("alembic_version"):
            return None
        rows = sync_conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        if len(rows) > 1:
            raise PendingMigrations(f"the database has several schema heads {sorted(rows)}; the chain is linear")
        return str(rows[0]) if rows else None

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Apply every pending migration (up to `target`: the upgrade test builds old schemas with it); returns
    (revision before, revision after)."""
    before = await current_revision(engine)
    if target == "head" and before is not None and before == head_revision():
        return before, before
    from alembic import command

    cfg = _config()

    def _upgrade(sync_conn: Any) -> None:
        if sync_conn.dialect.name == "postgresql":
            sync_conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, target)

    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    return before, await current_revision(engine)


async def check_current(engine: AsyncEngine) -> None:
    """Raise PendingMigrations, saying what to run, when the schema is not at head."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        raise PendingMigrations(
            f"the database schema is at revision {current or 'none (empty database)'}, the code needs {head}: "
            "run `cardsms migrate` (with the same CARDSMS_DATABASE_URL) and start again"
        )
