"""What every `cardsms` command shares: the app, output, settings, and running services once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console

from cardsms import __version__
from cardsms.compose import build_services
from cardsms.db.migrate import PendingMigrations, check_current, upgrade
from cardsms.domain.errors import CardsmsError
from cardsms.services import accounts
from cardsms.services.core import Services
from cardsms.settings import Settings

app = typer.Typer(help="cardsms: self-hosted card message platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


out = Console()
err = Console(stderr=True)
T = TypeVar("T")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="data directory (default: $CARDSMS_DATA_DIR or ./var)")
]


def run_server(main: Callable[[], Coroutine[Any, Any, None]], settings: Settings) -> None:
    """Run a long-lived process (serve, api, worker, simulator) on uvloop, whose transports and callbacks
    cost less than asyncio's on the HTTP and SMPP paths (docs/performance.md), unless
    CARDSMS_EVENT_LOOP=asyncio."""
    if settings.event_loop == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"CARDSMS_{'_'.join(str(p) for p in e['loc']).upper() or 'SETTINGS'}: {e['msg']}"
                             for e in exc.errors())
        raise fail(f"bad settings: {problems}") from None


async def open_services(settings: Settings) -> Services:
    """Services on a migrated database: SQLite migrates itself, PostgreSQL must be migrated explicitly."""
    svc = build_services(settings)
    if settings.is_sqlite:
        await upgrade(svc.engine)
    else:
        try:
            await check_current(svc.engine)
        except PendingMigrations as exc:
            await svc.close()
            raise fail(str(exc), 1) from None
    return svc


def run(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    async def _main() -> T:
        from cardsms.services import audit

        audit.set_actor("cli")  # what the CLI changes is logged as the operator at the terminal
        svc = await open_services(settings)
        try:
            return await work(svc)
        except accounts.AccountError as exc:
            raise fail(str(exc), 1) from None
        except CardsmsError as exc:
            raise fail(exc.message) from None
        finally:
            await svc.close()

    return asyncio.run(_main())


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="print the version")] = False) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit(0)


