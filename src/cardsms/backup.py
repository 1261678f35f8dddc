"""`cardsms backup` and `cardsms restore`: one archive file with everything a server needs to start again.

The archive is a gzipped tar:

- `manifest.json`: format, cardsms version, database kind, schema revision, when, what it holds;
- `database/cardsms.db` (SQLite: a consistent snapshot taken with SQLite's online backup API while the
  server keeps writing; WAL readers never block the writer) or `database/cardsms.pgdump` (PostgreSQL:
  `pg_dump --format=custom`, one consistent snapshot);
- `data/secret.key` when the key was generated into the data directory (AccessKey secrets are encrypted
  with it: a restore without the same key cannot read them);
- `data/media/...` (uploaded media and files), `data/imports/...` (the numbers of mass tasks still to
  send) and `data/journal/...` (receipts received and not yet applied: replaying them is idempotent).

The database is snapshotted first and the files copied after it, so every file the snapshot names is in
the archive (files are written before the rows that name them and never changed afterwards).

`restore` writes into an empty data directory (and, on PostgreSQL, an empty database), then brings the
schema up to date with the migrations, so an archive from an older version restores into a newer one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cardsms import __version__
from cardsms.settings import Settings

FORMAT = 1
FILE_DIRS = ("media", "imports", "journal")
Progress = Callable[[str, int, int], None]  # (step, done, total) in bytes


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    version: str
    database: str  # sqlite | postgresql
    revision: str
    created_at: str
    files: int
    size: int  # bytes in all

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), indent=2).encode()


def pg_tool(name: str) -> str:
    """pg_dump / pg_restore: on PATH, else the newest of Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if not candidates:
        raise BackupError(f"{name} not found: install PostgreSQL's client programs (Debian: postgresql-client)")
    return str(candidates[-1])


def _pg_url(settings: Settings) -> str:
    """The libpq URL pg_dump and asyncpg take."""
    return "postgresql://" + settings.sqlalchemy_url.split("://", 1)[1]


def _sqlite_path(settings: Settings) -> Path:
    return Path(settings.sqlalchemy_url.split(":///", 1)[1])


def _files(data_dir: Path) -> Iterator[tuple[Path, str]]:
    for folder in FILE_DIRS:
        root = data_dir / folder
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.is_file():
                yield path, f"data/{path.relative_to(data_dir).as_posix()}"


def _revision_sqlite(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        row = None
    finally:
        conn.close()
    return str(row[0]) if row else ""


async def _revision_pg(settings: Settings) -> str:
    import asyncpg

    conn = await asyncpg.connect(_pg_url(settings))
    try:
        exists = await conn.fetchval("SELECT to_regclass('alembic_version') IS NOT NULL")
        return str(await conn.fetchval("SELECT version_num FROM alembic_version")) if exists else ""
    finally:
        await conn.close()


def backup(settings: Settings, target: Path, progress: Progress) -> Manifest:
    """Write the archive to `target` (atomically: a temporary file renamed at the end)."""
    if target.exists():
        raise BackupError(f"--to: {target} exists; choose a new file (a backup never overwrites one)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".cardsms-backup-") as tmp:
        snapshot = Path(tmp) / ("cardsms.db" if settings.is_sqlite else "cardsms.pgdump")
        progress("database", 0, 1)
        revision = _snapshot(settings, snapshot)
        progress("database", 1, 1)
        files = list(_files(settings.data_dir))
        key = settings.data_dir / "secret.key"
        if key.exists() and not settings.secret_key.get_secret_value():
            files.append((key, "data/secret.key"))
        total = snapshot.stat().st_size + sum(p.stat().st_size for p, _ in files if p.exists())
        manifest = Manifest(FORMAT, __version__, "sqlite" if settings.is_sqlite else "postgresql", revision,
                            datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), len(files), total)
        partial = Path(tmp) / "archive.tar.gz"
        _write_archive(partial, manifest, snapshot, files, progress)
        os.replace(partial, target)
    return manifest


def _snapshot(settings: Settings, snapshot: Path) -> str:
    """A consistent copy of the database at `snapshot`, even while the server writes; its schema revision."""
    if not settings.is_sqlite:
        run = subprocess.run([pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={snapshot}",
                              _pg_url(settings)], capture_output=True, text=True)
        if run.returncode != 0:
            raise BackupError(f"pg_dump failed: {run.stderr.strip()[:500]}")
        return asyncio.run(_revision_pg(settings))
    source = _sqlite_path(settings)
    if not source.exists():
        raise BackupError(f"no database at {source}: is --data-dir the server's data directory?")
    src, dst = sqlite3.connect(source), sqlite3.connect(snapshot)
    try:  # one step: a consistent snapshot even while the server writes (a chunked one would restart)
        src.backup(dst, pages=-1)
    finally:
        src.close()
        dst.close()
    return _revision_sqlite(snapshot)


def _write_archive(path: Path, manifest: Manifest, snapshot: Path, files: list[tuple[Path, str]],
                   progress: Progress) -> None:
    done, total = 0, manifest.size
    with tarfile.open(path, "w:gz", compresslevel=3) as tar:
        info = tarfile.TarInfo("manifest.json")
        data = manifest.to_json()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.add(snapshot, f"database/{snapshot.name}")
        done += snapshot.stat().st_size
        progress("archive", done, total)
        for file, name in files:
            try:
                tar.add(file, name)
            except FileNotFoundError:  # a file deleted meanwhile (a purged import): nothing names it any more
                continue
            done += file.stat().st_size if file.exists() else 0
            progress("archive", done, total)


def read_manifest(archive: Path) -> Manifest:
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = tar.extractfile("manifest.json")
            assert member is not None
            raw: dict[str, Any] = json.loads(member.read())
        manifest = Manifest(**raw)
    except (OSError, KeyError, tarfile.TarError, json.JSONDecodeError, TypeError, AssertionError) as exc:
        raise BackupError(f"--from: {archive} is not a cardsms backup ({exc})") from None
    if manifest.format != FORMAT:
        raise BackupError(f"--from: backup format {manifest.format}; this cardsms reads format {FORMAT}")
    return manifest


def _check_empty(settings: Settings) -> None:
    data_dir = settings.data_dir
    if settings.is_sqlite and _sqlite_path(settings).exists():
        raise BackupError(f"--data-dir: {_sqlite_path(settings)} exists; restore into an empty data directory "
                          "(move the old one away first)")
    for folder in FILE_DIRS:
        if (data_dir / folder).is_dir() and any((data_dir / folder).iterdir()):
            raise BackupError(f"--data-dir: {data_dir / folder} is not empty; restore into an empty data directory")
    if not settings.is_sqlite and asyncio.run(_revision_pg(settings)):
        raise BackupError("CARDSMS_DATABASE_URL: the database already holds a cardsms schema; restore into an "
                          "empty database (createdb a new one)")


def restore(settings: Settings, archive: Path, progress: Progress) -> Manifest:
    manifest = read_manifest(archive)
    kind = "sqlite" if settings.is_sqlite else "postgresql"
    if manifest.database != kind:
        raise BackupError(f"--from: the backup holds a {manifest.database} database; this server is configured "
                          f"for {kind} (CARDSMS_DATABASE_URL)")
    _check_empty(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.data_dir).free
    if manifest.size > free:
        raise BackupError(f"--from: the backup expands to {manifest.size:,} bytes; {settings.data_dir} has "
                          f"{free:,} free")
    with tarfile.open(archive, "r:gz") as tar, tempfile.TemporaryDirectory(dir=settings.data_dir,
                                                                          prefix=".restore-") as tmp:
        _extract(tar, settings, Path(tmp), manifest, free, progress)
        progress("database", 0, 1)
        if kind == "sqlite":
            _sqlite_path(settings).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(Path(tmp) / "cardsms.db"), _sqlite_path(settings))
        else:
            run = subprocess.run([pg_tool("pg_restore"), "--no-owner", "--exit-on-error",
                                  f"--dbname={_pg_url(settings)}", str(Path(tmp) / "cardsms.pgdump")],
                                 capture_output=True, text=True)
            if run.returncode != 0:
                raise BackupError(f"pg_restore failed: {run.stderr.strip()[:500]}")
        progress("database", 1, 1)
    return manifest


def _extract(tar: tarfile.TarFile, settings: Settings, tmp: Path, manifest: Manifest, free: int,
             progress: Progress) -> None:
    """The archive's files into the data directory, its database into `tmp`. Extraction is capped: files may
    grow while a live backup runs, so the manifest's total is a floor, not exact; an archive expanding far past
    it (a tar bomb) or past the free disk stops the restore."""
    cap = min(free, 2 * manifest.size + 256 * 1024 * 1024)
    done = 0
    for member in tar:
        if member.name == "manifest.json":
            continue
        if not member.isfile() or not (member.name.startswith(("data/", "database/")))\
                or ".." in Path(member.name).parts or member.name.startswith("/"):
            raise BackupError(f"--from: unexpected entry {member.name!r} in the archive; not restoring")
        if done + member.size > cap:
            raise BackupError(f"--from: the archive expands past {cap:,} bytes (its manifest declares "
                              f"{manifest.size:,}; the data directory has {free:,} free); not restoring")
        if member.name.startswith("database/"):
            dest = tmp / Path(member.name).name
        else:
            dest = settings.data_dir / member.name.removeprefix("data/")
            if dest.name == "secret.key" and dest.exists():
                raise BackupError(f"--data-dir: {dest} exists; restore into an empty data directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        assert source is not None
        with open(dest, "wb") as out:
            shutil.copyfileobj(source, out)
        if dest.name == "secret.key":
            dest.chmod(0o600)
        done += member.size
        progress("files", done, manifest.size)
