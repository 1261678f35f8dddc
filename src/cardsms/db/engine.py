"""Engine creation. SQLite runs in WAL mode with every writing transaction taking the write lock at
BEGIN (BEGIN IMMEDIATE): a deferred transaction that reads then writes can fail at once with
SQLITE_BUSY when another writer got in between, which busy_timeout does not cover. Connections
marked read-only (execution option READ_ONLY, see `Services.read`) begin deferred: they read a
snapshot and never take the write lock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from cardsms.db.writer import SqliteWriter
from cardsms.settings import Settings

READ_ONLY = "cardsms_read_only"
MMAP_BYTES = 1 << 30  # address space, not memory: pages are the OS's page cache
CACHE_KIB = 64 * 1024  # per connection
WORK_CHANNEL = "cardsms_work"  # PostgreSQL: a send NOTIFYs it at commit; idle workers LISTEN on it


def _sqlite_setup(engine: Engine, busy_ms: int = 30_000, max_mb: int = 0) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (the WAL fsynced) before anyone is told OK, as PostgreSQL's default;
        # group commit in db.writer makes one fsync cover many writes
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        # a 500,000-message task touches ~200 MB of rows and indexes: SQLite's default 2 MB page cache
        # turns every update into a read() of a page the OS has cached anyway; map the file instead
        cursor.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        if max_mb:  # a cap on the file: past it a write fails with SQLITE_FULL, exactly as on a full disk
            cursor.execute(f"PRAGMA max_page_count={max_mb * 1024 * 1024 // 4096}")  # SQLite's default page size
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:  # the sync Connection under the engine
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")


def make_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)
        _sqlite_setup(engine.sync_engine, max_mb=settings.sqlite_max_mb)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, **kwargs)


def make_point_reader(settings: Settings) -> Engine | None:
    """On SQLite, a synchronous engine with one connection for small indexed reads run on the event
    loop's own thread (`Services.point_read`): such a read takes tens of microseconds in SQLite, far less than
    handing it to a driver thread and back. None on PostgreSQL, whose driver does not use threads."""
    url = settings.sqlalchemy_url
    if not url.startswith("sqlite"):
        return None
    engine = create_engine(url.replace("+aiosqlite", "", 1), poolclass=StaticPool,
                           connect_args={"timeout": 1, "check_same_thread": False},
                           execution_options={READ_ONLY: True})
    _sqlite_setup(engine, busy_ms=1000)  # a WAL reader waits only in rare cases (recovery); never block the loop long
    return engine


def make_writer(settings: Settings) -> SqliteWriter | None:
    """On SQLite, the writer thread that runs every write transaction (db.writer); None on PostgreSQL."""
    url = settings.sqlalchemy_url
    if not url.startswith("sqlite"):
        return None
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # one connection, made and used by the writer thread; a hold lends it to the loop's thread while the
    # writer waits (never both at once), hence check_same_thread off
    engine = create_engine(url.replace("+aiosqlite", "", 1), poolclass=StaticPool,
                           connect_args={"timeout": 30, "check_same_thread": False})
    _sqlite_setup(engine, max_mb=settings.sqlite_max_mb)
    database = engine.url.database or ""
    lock = Path(database + ".writelock") if database and database != ":memory:" else None
    return SqliteWriter(engine, lock_path=lock)
