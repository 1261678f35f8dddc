"""The database from the terminal: `cardsms migrate`, `cardsms backup` and `cardsms restore`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from cardsms.cli.common import DataDir, T, app, err, fail, load_settings, out
from cardsms.compose import build_services
from cardsms.db.migrate import upgrade
from cardsms.settings import Settings


@app.command()
def migrate(data_dir: DataDir = None) -> None:
    """Apply pending database migrations."""
    settings = load_settings(data_dir=data_dir)

    async def _main() -> None:
        svc = build_services(settings)
        try:
            before, after = await upgrade(svc.engine)
        finally:
            await svc.close()
        if before == after:
            out.print(f"database is up to date (revision {after})")
        else:
            out.print(f"migrated database from {before or 'empty'} to {after}")

    asyncio.run(_main())


def _progress_bar() -> Any:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<9}"), BarColumn(), DownloadColumn(), TimeElapsedColumn(),
                    console=err, transient=False)


def _with_progress(step: Callable[[Settings, Path, Callable[[str, int, int], None]], T], settings: Settings,
                   path: Path) -> T:
    """Run a backup or restore with a progress bar on stderr; its refusal is an error with exit code 1."""
    from cardsms.backup import BackupError

    try:
        with _progress_bar() as bar:
            return step(settings, path, _progress_callback(bar))
    except BackupError as exc:
        raise fail(str(exc), 1) from None


def _progress_callback(bar: Any) -> Callable[[str, int, int], None]:
    tasks: dict[str, Any] = {}

    def update(step: str, done: int, total: int) -> None:
        if step not in tasks:
            tasks[step] = bar.add_task(step, total=total)
        bar.update(tasks[step], completed=done, total=total)

    return update


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="the archive to write (a new file; .tar.gz)")],
    data_dir: DataDir = None,
) -> None:
    """Back up a server (running or not): database snapshot, media, task imports, pending receipts, key."""
    from cardsms.backup import backup as run_backup

    settings = load_settings(data_dir=data_dir)
    manifest = _with_progress(run_backup, settings, to)
    out.print(f"backed up {manifest.database} (revision {manifest.revision}) and {manifest.files} files, "
              f"{manifest.size:,} bytes, to {to}", highlight=False)


@app.command()
def restore(
    from_: Annotated[Path, typer.Option("--from", help="an archive written by `cardsms backup`", exists=True,
                                        dir_okay=False)],
    data_dir: DataDir = None,
) -> None:
    """Restore a backup into an empty data directory (and, on PostgreSQL, an empty database), then migrate."""
    from cardsms.backup import restore as run_restore

    settings = load_settings(data_dir=data_dir)
    manifest = _with_progress(run_restore, settings, from_)

    async def _migrate() -> tuple[str | None, str | None]:
        svc = build_services(settings)
        try:
            return await upgrade(svc.engine)
        finally:
            await svc.close()

    before, after = asyncio.run(_migrate())
    moved = f"; migrated from {before} to {after}" if before != after else ""
    out.print(f"restored {manifest.database} from {from_} (taken {manifest.created_at}, cardsms "
              f"{manifest.version}){moved}", highlight=False)


