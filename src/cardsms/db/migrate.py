"""Schema migrations (Alembic, run programmatically on the async engine)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x6361726473  # "cards": serialises concurrent `migrate` runs on PostgreSQL


class PendingMigrations(RuntimeError):
    """The database schema is behind the code."""


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_config()).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(sync_conn: Any) -> str | None:
        return MigrationContext.configure(sync_conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Apply every pending migration (up to `target`: the upgrade test builds old schemas with it); returns
    (revision before, revision after)."""
    before = await current_revision(engine)
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
