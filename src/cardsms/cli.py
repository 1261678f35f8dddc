"""The `cardsms` command line. Bad arguments exit with code 2 and say which one and why."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from cardsms import __version__
from cardsms.compose import build_delivery, build_services, standalone_centre
from cardsms.db.migrate import PendingMigrations, check_current, upgrade
from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import CHINA
from cardsms.services import accounts
from cardsms.services.core import Services, as_utc
from cardsms.settings import Settings

app = typer.Typer(help="cardsms: self-hosted card message platform.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
account_app = typer.Typer(help="Accounts (tenants).", no_args_is_help=True)
key_app = typer.Typer(help="API AccessKeys.", no_args_is_help=True)
user_app = typer.Typer(help="Console users.", no_args_is_help=True)
app.add_typer(account_app, name="account")
app.add_typer(key_app, name="accesskey")
app.add_typer(user_app, name="user")
webhook_app = typer.Typer(help="Per-account webhooks (delivery reports, replies, card renders).", no_args_is_help=True)
sim_app = typer.Typer(help="The simulator's parts, standalone.", no_args_is_help=True)
app.add_typer(webhook_app, name="webhook")
app.add_typer(sim_app, name="simulator")
task_app = typer.Typer(help="Mass tasks (the Mass Operations Assistant from the terminal).", no_args_is_help=True)
app.add_typer(task_app, name="task")

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


def profiled(run: Callable[[], None]) -> None:
    """Run `run`, under cProfile when CARDSMS_PROFILE names a file (the event loop's thread only; the
    statistics are written when the process stops). A development aid: docs/performance.md."""
    target = os.environ.get("CARDSMS_PROFILE", "")
    if not target:
        run()
        return
    import cProfile
    import signal

    profile = cProfile.Profile()

    def dump(*_: Any) -> None:
        profile.disable()
        profile.dump_stats(target)
        if _:  # uvicorn re-raises the SIGTERM it handled once it has shut down
            os._exit(0)

    signal.signal(signal.SIGTERM, dump)
    profile.enable()
    try:
        run()
    finally:
        dump()


DigitalOption = Annotated[list[str] | None, typer.Option(
    "--digital", help="a digital (multimedia) message link to a carrier's MMSC as mm7://VASPID:SECRET@HOST:PORT/PATH?"
                      "vasid=...&service_code=... or mm7s://... (repeatable; replaces the simulated channel; its "
                      "reports come to /mm7/<name> on this server; options in docs/sending.md)")]


def stop_deadline(settings: Settings) -> float:
    """When a stopping process is ended regardless: its HTTP connections' share (a third of
    CARDSMS_STOP_SECONDS), the delivery's stop (CARDSMS_STOP_SECONDS), the rest bounded at a few seconds."""
    return settings.stop_seconds * 1.5 + 4


def http_server(app: Any, settings: Settings) -> Any:
    """uvicorn for our app: a SIGTERM is a request to stop, so once stopped the process exits 0 (uvicorn
    would raise the signal again and die of it), and open HTTP connections get a few seconds, not forever."""
    import uvicorn

    from cardsms.stopping import StopWatchdog
    from cardsms.web.http import with_header_timeout

    watchdog = StopWatchdog(stop_deadline(settings))

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

        def handle_exit(self, sig: int, frame: Any) -> None:
            watchdog.arm()  # the stop must end: a wait that never returns is named in the log, then cut short
            super().handle_exit(sig, frame)

        async def serve(self, sockets: Any = None) -> None:
            await super().serve(sockets)
            watchdog.finished = True

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            http=with_header_timeout(settings.http_header_seconds), server_header=False,
                            limit_concurrency=settings.http_max_connections or None,
                            timeout_graceful_shutdown=max(1, int(settings.stop_seconds / 3)))
    return Server(config)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port", min=1, max=65535)] = None,
    data_dir: DataDir = None,
    smsc: Annotated[list[str] | None, typer.Option(
        "--smsc", help="an SMSC or ISMG as smpp://SYSTEM_ID:PASSWORD@HOST:PORT, smpps://... (TLS) or "
                       "cmpp://SPID:SECRET@HOST:PORT?version=3.0 (repeatable; replaces the simulator; options in "
                       "docs/sending.md)",
    )] = None,
    digital: DigitalOption = None,
) -> None:
    """Run the embedded default: API, dispatcher, simulated SMSC, handsets and review in one process."""

    from cardsms.bootstrap import ensure_demo
    from cardsms.logs import configure_logging
    from cardsms.web.app import create_app

    settings = load_settings(host=host, port=port, data_dir=data_dir, smsc=smsc or None, digital=digital or None)
    configure_logging(settings)

    async def _main() -> None:
        svc = await open_services(settings)
        welcome = await ensure_demo(svc)
        base = settings.base_url
        out.print(f"cardsms {__version__} listening on {base}", highlight=False)
        out.print(f"  console:   {base}/console/", highlight=False)
        if welcome.admin_password:  # the first start only: later starts say where the secrets are
            out.print(f"  admin:     {welcome.admin_user} / {welcome.admin_password}", highlight=False)
        else:
            where = (f"first-start password in {welcome.password_file}" if welcome.password_file.exists()
                     else "see `cardsms user --help` to set a password")
            out.print(f"  admin:     {welcome.admin_user} ({where})", highlight=False)
        if welcome.key_id and welcome.key_secret:
            out.print(f"  AccessKey: {welcome.key_id} / {welcome.key_secret}", highlight=False)
        elif welcome.key_id:
            where = (f"secret in {welcome.key_file}" if welcome.key_file.exists()
                     else "create one with `cardsms accesskey create --account demo`")
            out.print(f"  AccessKey: {welcome.key_id} ({where})", highlight=False)
        out.print(f"  data dir:  {settings.data_dir.resolve()}", highlight=False)
        await http_server(create_app(svc, build_delivery(svc)), settings).serve()

    profiled(lambda: run_server(_main, settings))


@app.command()
def api(
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    port: Annotated[int | None, typer.Option(help="listen port", min=1, max=65535)] = None,
    data_dir: DataDir = None,
    digital: DigitalOption = None,
) -> None:
    """Scale-out: serve the API, the console and the short links only (workers send); PostgreSQL. With
    --digital (the workers' MM7 links) it takes the MMSCs' reports and replies on /mm7/<link name>."""

    from cardsms.delivery.runtime import inbound_links
    from cardsms.logs import configure_logging
    from cardsms.web.app import create_app

    settings = load_settings(host=host, port=port, data_dir=data_dir, digital=digital or None)
    if settings.is_sqlite:
        raise fail("cardsms api needs PostgreSQL (CARDSMS_DATABASE_URL); on SQLite run `cardsms serve`")
    configure_logging(settings)

    async def _main() -> None:
        svc = await open_services(settings)
        out.print(f"cardsms {__version__} api listening on {settings.base_url}", highlight=False)
        await http_server(create_app(svc, None, inbound=inbound_links(svc)), settings).serve()

    run_server(_main, settings)


@app.command()
def worker(
    data_dir: DataDir = None,
    smsc: Annotated[list[str] | None, typer.Option(
        "--smsc", help="an SMSC or ISMG as smpp://, smpps:// or cmpp:// URL, e.g. "
                       "smpp://SYSTEM_ID:PASSWORD@HOST:PORT?binds=N (repeatable; docs/sending.md)")] = None,
    digital: DigitalOption = None,
) -> None:
    """Scale-out: dispatch messages, hold SMPP binds, run mass tasks; PostgreSQL. Start several. MM7 links
    (--digital) submit here; their reports and replies go to `cardsms api` started with the same links."""
    import signal

    from cardsms.logs import configure_logging
    from cardsms.services import tasks
    from cardsms.stopping import StopWatchdog, stop_services

    settings = load_settings(data_dir=data_dir, smsc=smsc or None, digital=digital or None)
    if settings.is_sqlite:
        raise fail("cardsms worker needs PostgreSQL (CARDSMS_DATABASE_URL); on SQLite run `cardsms serve`")
    if not settings.smsc:
        raise fail("--smsc: a worker needs at least one SMSC (the simulated one runs only inside `serve`)")
    configure_logging(settings)

    async def _main() -> None:
        svc = await open_services(settings)
        delivery = build_delivery(svc)
        await delivery.start()
        assert delivery.lease is not None
        out.print(f"cardsms {__version__} worker {delivery.lease.worker_id} running", highlight=False)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        runner = asyncio.create_task(tasks.run_forever(svc), name="task-runner")
        watchdog = StopWatchdog(stop_deadline(settings))
        try:
            await stop.wait()
            watchdog.arm()
        finally:
            await stop_services(svc, delivery, [runner])
            watchdog.finished = True

    run_server(_main, settings)


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


@account_app.command("create")
def account_create(
    name: str,
    qps: Annotated[int | None, typer.Option(help="API requests per second for this account", min=1)] = None,
    data_dir: DataDir = None,
) -> None:
    """Create an account. An existing name is an error and changes nothing."""
    account_id = run(load_settings(data_dir=data_dir), lambda svc: accounts.create_account(svc, name, qps))
    out.print(f"created account {name} (id {account_id})", highlight=False)


@account_app.command("list")
def account_list(data_dir: DataDir = None) -> None:
    """List accounts."""
    rows = run(load_settings(data_dir=data_dir), accounts.list_accounts)
    table = Table("id", "name", "qps limit", "created")
    for r in rows:
        table.add_row(str(r["id"]), str(r["name"]), str(r["qps_limit"] or "default"), str(r["created_at"]))
    out.print(table)


@account_app.command("set-qps")
def account_set_qps(
    name: str,
    qps: Annotated[int, typer.Argument(help="requests per second; 0 = the server default", min=0)],
    data_dir: DataDir = None,
) -> None:
    """Set an account's API QPS limit."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_qps_limit(svc, name, qps or None))
    out.print(f"account {name}: qps limit {qps or 'default'}", highlight=False)


@account_app.command("set-window")
def account_set_window(
    name: str,
    window: Annotated[str, typer.Argument(help="HH:MM-HH:MM (Asia/Shanghai), 00:00-24:00 for always, or 'default' "
                                               "for the server's CARDSMS_SEND_WINDOW")],
    hold_api_sends: Annotated[bool | None, typer.Option(
        "--hold-api-sends/--no-hold-api-sends",
        help="also hold the account's API sends (not verification codes) until the window opens")] = None,
    data_dir: DataDir = None,
) -> None:
    """Set the hours in which an account's mass tasks send (quiet hours outside them)."""
    async def work(svc: Services) -> None:
        try:
            await accounts.set_send_window(svc, name, window, hold_api_sends)
        except CardsmsError as exc:  # the window's rule
            raise fail(f"WINDOW: {exc.message}") from None

    run(load_settings(data_dir=data_dir), work)
    held = "" if hold_api_sends is None else f"; API sends {'held' if hold_api_sends else 'not held'}"
    out.print(f"account {name}: send window {window}{held}", highlight=False)


@key_app.command("create")
def key_create(
    account: Annotated[str, typer.Option("--account", help="account name")],
    as_json: Annotated[bool, typer.Option("--json", help="print {AccessKeyId, AccessKeySecret} as JSON")] = False,
    description: Annotated[str, typer.Option(help="what the key is for")] = "",
    data_dir: DataDir = None,
) -> None:
    """Create an AccessKey. The secret is shown once here and stored encrypted."""
    key_id, secret = run(load_settings(data_dir=data_dir),
                         lambda svc: accounts.create_access_key(svc, account, description))
    if as_json:
        sys.stdout.write(json.dumps({"AccessKeyId": key_id, "AccessKeySecret": secret}) + "\n")
    else:
        out.print(f"AccessKeyId:     {key_id}\nAccessKeySecret: {secret}", highlight=False)


@key_app.command("list")
def key_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """List an account's AccessKeys (secrets are not shown)."""
    keys = run(load_settings(data_dir=data_dir), lambda svc: accounts.list_access_keys(svc, account))
    table = Table("AccessKeyId", "status", "created")
    for k in keys:
        table.add_row(k.key_id, "enabled" if k.enabled else "disabled", k.created_at.isoformat(timespec="seconds"))
    out.print(table)


@key_app.command("disable")
def key_disable(key_id: str, data_dir: DataDir = None) -> None:
    """Disable an AccessKey (requests signed with it are refused)."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_access_key_enabled(svc, key_id, False))
    out.print(f"disabled {key_id}", highlight=False)


@key_app.command("enable")
def key_enable(key_id: str, data_dir: DataDir = None) -> None:
    """Enable a disabled AccessKey."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.set_access_key_enabled(svc, key_id, True))
    out.print(f"enabled {key_id}", highlight=False)


@key_app.command("delete")
def key_delete(key_id: str, data_dir: DataDir = None) -> None:
    """Delete an AccessKey for good."""
    run(load_settings(data_dir=data_dir), lambda svc: accounts.delete_access_key(svc, key_id))
    out.print(f"deleted {key_id}", highlight=False)


@user_app.command("create")
def user_create(
    username: str,
    account: Annotated[str, typer.Option("--account", help="account name")],
    role: Annotated[str, typer.Option(help="admin, operator or viewer")] = "operator",
    password: Annotated[str | None, typer.Option(help="password (asked for when omitted; at least 8 chars)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a console user."""
    if role not in accounts.ROLES:
        raise fail(f"--role must be one of {', '.join(accounts.ROLES)}, got {role!r}")
    if password is None:
        password = getpass.getpass("password: ")
    run(load_settings(data_dir=data_dir), lambda svc: accounts.create_user(svc, account, username, password, role))
    out.print(f"created {role} {username} in account {account}", highlight=False)


@app.command("parser-key")
def parser_key_command(
    vendor: Annotated[str, typer.Option("--vendor", help="the handset vendor, e.g. HuaWei")],
    data_dir: DataDir = None,
) -> None:
    """Print the key a vendor's card parser signs its fetches with (X-Card-Parser-Signature, docs/api.md): give
    it to that vendor; only signed fetches count as render receipts."""
    from cardsms.domain.vendors import Vendor
    from cardsms.links.parsers import parser_key

    names = [v.value for v in Vendor]
    if vendor not in names:
        raise fail(f"--vendor must be one of {', '.join(names)}, got {vendor!r}")
    sys.stdout.write(parser_key(load_settings(data_dir=data_dir).resolved_parser_secret(), vendor) + "\n")


@webhook_app.command("set")
def webhook_set(
    account: Annotated[str, typer.Option("--account", help="account name")],
    kind: Annotated[str, typer.Option("--type", help="SmsReport, SmsUp or MnsCardVender")],
    url: Annotated[str, typer.Option("--url", help="the receiver's http(s) URL")],
    data_dir: DataDir = None,
) -> None:
    """Create or replace a webhook; prints the secret that signs its x-cardsms-signature header."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> str:
        return await webhooks.set_webhook(svc, await accounts.account_id(svc, account), kind, url)

    secret = run(load_settings(data_dir=data_dir), work)
    sys.stdout.write(json.dumps({"type": kind, "url": url, "secret": secret}) + "\n")


@webhook_app.command("list")
def webhook_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None,
                 as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List webhooks with their outbox counts (pending, delivered, failed) and last error."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> list[dict[str, Any]]:
        return await webhooks.list_webhooks(svc, await accounts.account_id(svc, account))

    rows = run(load_settings(data_dir=data_dir), work)
    if as_json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")
        return
    table = Table("type", "url", "pending", "delivered", "failed", "last error")
    for r in rows:
        table.add_row(r["type"], r["url"], str(r["pending"]), str(r["delivered"]), str(r["failed"]), r["last_error"])
    out.print(table)


@webhook_app.command("remove")
def webhook_remove(account: Annotated[str, typer.Option("--account")],
                   kind: Annotated[str, typer.Option("--type")], data_dir: DataDir = None) -> None:
    """Remove a webhook (its pending reports are then given up)."""
    from cardsms.services import webhooks

    async def work(svc: Services) -> bool:
        return await webhooks.remove_webhook(svc, await accounts.account_id(svc, account), kind)

    if not run(load_settings(data_dir=data_dir), work):
        raise fail(f"account {account} has no {kind} webhook", 1)
    out.print(f"removed the {kind} webhook of {account}", highlight=False)


ACTIVE_TASK_STATES = ("importing", "scheduled", "waiting", "sending", "paused")
RateOption = Annotated[int | None, typer.Option("--rate", help="at most this many messages per second (0: no limit)",
                                                min=0)]
CapOption = Annotated[int | None, typer.Option("--hourly-cap", help="at most this many messages in any hour "
                                                                    "(0: no cap)", min=0)]


@task_app.command("create")
def task_create(
    account: Annotated[str, typer.Option("--account", help="account name")],
    name: Annotated[str, typer.Option(help="task name (at most 30 characters)")],
    sign: Annotated[str, typer.Option("--sign", help="approved signature")],
    template: Annotated[str, typer.Option("--template", help="approved card template or public template code")],
    file: Annotated[Path | None, typer.Option("--file", help="numbers: TXT/CSV/XLSX, optionally zip/gzip")] = None,
    audience: Annotated[int | None, typer.Option("--audience", help="saved audience id instead of a file")] = None,
    fallback: Annotated[str, typer.Option(help="NONE, SMS or DIGITALSMS")] = "NONE",
    fallback_template: Annotated[str, typer.Option(help="text or digital template of the fallback")] = "",
    custom_template: Annotated[str, typer.Option(help="text template for custom send content")] = "",
    at: Annotated[str | None, typer.Option("--at", help="scheduled start, 'YYYY-MM-DD HH:MM' Asia/Shanghai")] = None,
    rate: RateOption = None,
    hourly_cap: CapOption = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress until the task ends")] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a mass task; a running `cardsms serve` (or worker) imports and sends it. Outside the account's send
    window (08:00-22:00 Asia/Shanghai by default) it waits for the window to open."""
    from cardsms.domain.schedule import parse_local_start
    from cardsms.services import tasks

    if (file is None) == (audience is None):
        raise fail("give --file or --audience (one of the two)")
    data = None
    if file is not None:
        if not file.is_file():
            raise fail(f"--file {file}: no such file")
        data = file.read_bytes()
    try:
        scheduled = parse_local_start(at) if at else None
    except ValueError:
        raise fail(f"--at {at!r}: use 'YYYY-MM-DD HH:MM' (Asia/Shanghai)") from None
    form = tasks.TaskForm(name=name, sign_name=sign, card_template_code=template, fallback_type=fallback.upper(),
                          sms_template_code=fallback_template if fallback.upper() == "SMS" else "",
                          digital_template_code=fallback_template if fallback.upper() == "DIGITALSMS" else "",
                          template_code=custom_template, audience_id=audience, scheduled_at=scheduled,
                          rate=rate or None, hourly_cap=hourly_cap or None)
    settings = load_settings(data_dir=data_dir)

    async def work(svc: Services) -> tuple[int, str]:
        try:
            account_id = await accounts.account_id(svc, account)
            task_id = await tasks.create_task(svc, account_id, form, data=data, file_name=file.name if file else "",
                                              created_by="cli")
        except CardsmsError as exc:
            option = {"name": "--name", "sign_name": "--sign", "card_template_code": "--template",
                      "sms_template_code": "--fallback-template", "digital_template_code": "--fallback-template",
                      "template_code": "--custom-template", "scheduled_at": "--at", "file": "--file",
                      "audience_id": "--audience", "fallback_type": "--fallback", "rate": "--rate",
                      "hourly_cap": "--hourly-cap"}.get(exc.field, "")
            raise fail(f"{option}: {exc.message}" if option else exc.message) from None
        window = await accounts.send_window(svc, account_id)
        if scheduled is None and not window.contains(svc.now()):  # said before the import even ends
            start = window.next_start(svc.now()).astimezone(CHINA)
            return task_id, (f"now is outside the send window {window} Asia/Shanghai: the task waits for "
                             f"{start:%Y-%m-%d %H:%M}")
        return task_id, ""

    task_id, note = run(settings, work)
    out.print(f"created task {task_id}", highlight=False)
    if note:
        out.print(note, highlight=False)
    if wait:
        _wait_for_task(settings, account, task_id)


def _wait_for_task(settings: Settings, account: str, task_id: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from sqlalchemy.exc import OperationalError

    from cardsms.services import imports, tasks

    async def _main() -> str:
        svc = await open_services(settings)
        try:
            account_id = await accounts.account_id(svc, account)
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as bar:
                shown = bar.add_task("importing", total=None)
                while True:
                    try:
                        t = await tasks.get_task(svc, account_id, task_id)
                        if t["state"] == "importing":
                            aud = await imports.get_audience(svc, account_id, t["audience_id"])
                            bar.update(shown, description="importing", completed=aud["lines_done"],
                                       total=aud["total"])
                        else:
                            stats = await tasks.task_stats(svc, task_id)
                            bar.update(shown, description=t["state"], total=t["total"],
                                       completed=stats["submitted"] + stats["skipped"])
                    except OperationalError:  # SQLite busy under a heavy send: look again shortly
                        await asyncio.sleep(1)
                        continue
                    if t["state"] not in ACTIVE_TASK_STATES:
                        return str(t["state"])
                    await asyncio.sleep(0.5)
        finally:
            await svc.close()

    state = asyncio.run(_main())
    out.print(f"task {task_id}: {state}", highlight=False)
    if state in ("failed", "cancelled"):
        raise typer.Exit(1)


@task_app.command("list")
def task_list(account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """List an account's mass tasks, newest first."""
    from cardsms.services import tasks

    async def work(svc: Services) -> list[Any]:
        return await tasks.list_tasks(svc, await accounts.account_id(svc, account))

    table = Table("id", "name", "state", "recipients", "template", "scheduled")
    for t in run(load_settings(data_dir=data_dir), work):
        table.add_row(str(t["id"]), t["name"], t["state"], str(t["total"]), t["card_template_code"],
                      str(t["scheduled_at"] or ""))
    out.print(table)


@task_app.command("show")
def task_show(task_id: int, account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """A task's settings, import report and statistics."""
    from cardsms.services import imports, tasks

    async def work(svc: Services) -> tuple[Any, Any, dict[str, int], dict[str, Any], list[Any]]:
        account_id = await accounts.account_id(svc, account)
        t = await tasks.get_task(svc, account_id, task_id)
        stats = await tasks.task_stats(svc, task_id)
        return (t, await imports.get_audience(svc, account_id, t["audience_id"]), stats,
                await tasks.progress(svc, t, stats), await tasks.events(svc, account_id, task_id))

    t, aud, stats, live, timeline = run(load_settings(data_dir=data_dir), work)
    table = Table("field", "value", show_header=False)
    for key in ("id", "name", "state", "sign_name", "card_template_code", "fallback_type", "total", "scheduled_at",
                "next_start_at", "started_at", "finished_at", "rate", "hourly_cap", "error"):
        table.add_row(key, str(t[key] if t[key] is not None else ""))
    for key in ("window", "current_rate", "remaining", "finish"):
        value = live[key]
        shown = f"{as_utc(value).astimezone(CHINA):%Y-%m-%d %H:%M:%S}" if isinstance(value, datetime) else value
        table.add_row(f"live.{key}", str(shown if shown is not None else ""))
    for key in ("state", "lines_done", "total", "invalid", "duplicates", "suppressed"):
        table.add_row(f"import.{key}", str(aud[key]))
    for key, value in stats.items():
        table.add_row(f"stats.{key}", str(value))
    for e in timeline:
        table.add_row(f"event.{e['kind']}", f"{as_utc(e['at']).astimezone(CHINA):%Y-%m-%d %H:%M:%S} {e['detail']}")
    out.print(table)


@task_app.command("set-rate")
def task_set_rate(task_id: int, account: Annotated[str, typer.Option("--account")], rate: RateOption = None,
                  hourly_cap: CapOption = None, data_dir: DataDir = None) -> None:
    """Change a task's send rate and hourly cap, also while it runs (0 removes a limit; an option not given keeps
    its value)."""
    from cardsms.services import tasks

    async def work(svc: Services) -> str:
        account_id = await accounts.account_id(svc, account)
        t = await tasks.get_task(svc, account_id, task_id)
        new_rate = t["rate"] if rate is None else rate or None
        new_cap = t["hourly_cap"] if hourly_cap is None else hourly_cap or None
        try:
            await tasks.set_rate(svc, account_id, task_id, new_rate, new_cap)
        except CardsmsError as exc:
            option = {"rate": "--rate", "hourly_cap": "--hourly-cap"}.get(exc.field, "")
            raise fail(f"{option}: {exc.message}" if option else exc.message) from None
        return f"task {task_id}: rate {new_rate or 'unlimited'}/s, hourly cap {new_cap or 'none'}"

    out.print(run(load_settings(data_dir=data_dir), work), highlight=False)


@task_app.command("revoke")
def task_revoke(task_id: int, account: Annotated[str, typer.Option("--account")], data_dir: DataDir = None) -> None:
    """Revoke a scheduled task (until 5 minutes before its start)."""
    from cardsms.services import tasks

    async def work(svc: Services) -> None:
        await tasks.revoke_task(svc, await accounts.account_id(svc, account), task_id)

    run(load_settings(data_dir=data_dir), work)
    out.print(f"revoked task {task_id}", highlight=False)


Port = Annotated[int, typer.Option(help="listen port", min=1, max=65535)]
Host = Annotated[str, typer.Option(help="listen address")]
LatencyMs = Annotated[int, typer.Option(help="delivery receipt latency", min=0)]
FailShare = Annotated[int, typer.Option(help="percent of numbers that fail (UNDELIV)", min=0, max=100)]
DisconnectEvery = Annotated[int, typer.Option(help="drop connections after every N submits (0 = never)", min=0)]
SimLog = Annotated[Path | None, typer.Option("--log", help="append every accepted submit as JSON")]
Phones = Annotated[str, typer.Option(
    help="simulate the handsets too: card phones fetch their cards from links under this base URL (the "
         "server's short-link base, e.g. http://127.0.0.1:8080/s), some open them or reply R "
         "(CARDSMS_SIM_CARD_SHARE, CARDSMS_SIM_OPEN_SHARE, CARDSMS_SIM_REPLY_SHARE)")]
TlsCert = Annotated[Path | None, typer.Option(help="serve TLS with this certificate chain (PEM)")]
TlsKey = Annotated[Path | None, typer.Option(help="the private key of --tls-cert (PEM)")]
TlsClientCa = Annotated[Path | None, typer.Option(help="require client certificates signed by this CA (PEM)")]


def _check_tls_flags(tls_cert: Path | None, tls_key: Path | None, tls_client_ca: Path | None) -> None:
    """A simulator's TLS options: the certificate and key together, readable files."""
    if (tls_cert is None) != (tls_key is None):
        raise fail("--tls-cert and --tls-key: give both or neither")
    if tls_client_ca is not None and tls_cert is None:
        raise fail("--tls-client-ca: needs --tls-cert and --tls-key")
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--tls-client-ca", tls_client_ca)):
        if path is not None and not path.is_file():
            raise fail(f"{flag}: {path} is not a readable file")


def _run_centre(protocol: str, what: str, phones: str, tls_cert: Path | None, tls_key: Path | None,
                tls_client_ca: Path | None, **options: Any) -> None:
    from cardsms.logs import configure_logging

    settings = load_settings()
    configure_logging(settings)
    if phones and not phones.startswith(("http://", "https://")):
        raise fail(f"--phones: must be the http(s) base URL of the server's short links, got {phones!r}")
    _check_tls_flags(tls_cert, tls_key, tls_client_ca)
    if options.get("receipt_parts", "all") not in ("all", "first", "last"):
        raise fail(f"--receipts: all, first or last, got {options['receipt_parts']!r}")

    async def _main() -> None:
        try:
            centre, handset_phones = standalone_centre(settings, protocol, phones, tls_cert=tls_cert, tls_key=tls_key,
                                                       tls_client_ca=tls_client_ca, **options)
            await centre.start()
        except (OSError, ValueError) as exc:  # a bad certificate or key, a port in use
            raise fail(f"cannot start the simulated {what}: {exc}") from None
        tls = " (TLS)" if tls_cert is not None else ""
        out.print(f"simulated {what} listening on {options['host']}:{centre.port}{tls}", highlight=False)
        try:
            await asyncio.Event().wait()
        finally:
            await centre.stop()
            if handset_phones is not None:
                await handset_phones.close()

    with contextlib.suppress(KeyboardInterrupt):
        run_server(_main, settings)


ReceiptParts = Annotated[str, typer.Option("--receipts", help="long messages: a receipt for every part (all), or "
                                                             "for the first or the last part only, as many SMSCs do")]


@sim_app.command("smsc")
def simulator_smsc(
    port: Port = 2775,
    host: Host = "127.0.0.1",
    latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0,
    throttle_share: Annotated[int, typer.Option(help="percent of submit_sm answered ESME_RTHROTTLED",
                                                min=0, max=100)] = 0,
    disconnect_every: DisconnectEvery = 0,
    log_file: SimLog = None,
    bind_tps: Annotated[int, typer.Option(help="submit_sm per second each bind may send; more are answered "
                                               "ESME_RTHROTTLED (0 = no limit)", min=0)] = 0,
    phones: Phones = "",
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    receipts: ReceiptParts = "all",
) -> None:
    """Run the simulated SMSC (SMPP 3.4) alone: any ESME may bind; receipts follow every accepted message."""
    _run_centre("smpp", "SMSC", phones, tls_cert, tls_key, tls_client_ca, host=host, port=port,
                latency_ms=latency_ms, fail_share=fail_share, throttle_share=throttle_share,
                disconnect_every=disconnect_every, log_path=log_file, bind_tps=bind_tps, receipt_parts=receipts)


@sim_app.command("ismg")
def simulator_ismg(
    port: Port = 7890,
    host: Host = "127.0.0.1",
    sp_id: Annotated[str, typer.Option(help="accept only this SP id (any when not given)")] = "",
    secret: Annotated[str, typer.Option(help="check CMPP_CONNECT's authenticator with this shared secret and "
                                             "prove it back (any secret accepted when not given)")] = "",
    latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0,
    throttle_share: Annotated[int, typer.Option(help="percent of CMPP_SUBMIT answered with result 8 (too fast)",
                                                min=0, max=100)] = 0,
    disconnect_every: DisconnectEvery = 0,
    log_file: SimLog = None,
    bind_tps: Annotated[int, typer.Option(help="CMPP_SUBMIT per second each connection may send; more are "
                                               "answered with result 8 (0 = no limit)", min=0)] = 0,
    phones: Phones = "",
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    receipts: ReceiptParts = "all",
) -> None:
    """Run the simulated ISMG (CMPP 2.0 and 3.0) alone: status reports follow every accepted message."""
    if sp_id and not (len(sp_id) <= 6 and sp_id.isascii()):
        raise fail("--sp-id: the CMPP SP id (Source_Addr) is 1-6 ASCII characters")
    _run_centre("cmpp", "ISMG", phones, tls_cert, tls_key, tls_client_ca, host=host, port=port, sp_id=sp_id,
                secret=secret, latency_ms=latency_ms, fail_share=fail_share, throttle_share=throttle_share,
                disconnect_every=disconnect_every, log_path=log_file, bind_tps=bind_tps, receipt_parts=receipts)


@sim_app.command("mmsc")
def simulator_mmsc(
    port: Port = 8099,
    host: Host = "127.0.0.1",
    report_url: Annotated[str, typer.Option(help="where delivery reports and replies go: the VASP's MM7 inbound "
                                                 "URL, e.g. http://127.0.0.1:8080/mm7/mm7-1")] = "",
    report_user: Annotated[str, typer.Option(help="Basic user (the VASPID) for --report-url")] = "",
    report_secret: Annotated[str, typer.Option(help="Basic password for --report-url")] = "",
    vasp_id: Annotated[str, typer.Option(help="accept only this VASPID (any when not given)")] = "",
    secret: Annotated[str, typer.Option(help="the secret --vasp-id must authenticate with")] = "",
    latency_ms: LatencyMs = 50,
    fail_share: FailShare = 0,
    expire_share: Annotated[int, typer.Option(help="percent of numbers whose message expires", min=0, max=100)] = 0,
    no_mms_share: Annotated[int, typer.Option(help="percent of numbers whose handsets take no MMS (Rejected)",
                                              min=0, max=100)] = 0,
    throttle_share: Annotated[int, typer.Option(help="percent of SubmitReq answered 4006 (service unavailable)",
                                                min=0, max=100)] = 0,
    reply_text: Annotated[str, typer.Option(help="recipients reply this text (a DeliverReq) after retrieving")] = "",
    reply_share: Annotated[int, typer.Option(help="percent of recipients who reply", min=0, max=100)] = 100,
    log_file: SimLog = None,
    report_log: Annotated[Path | None, typer.Option(help="append every report the VASP acknowledged as JSON")
                          ] = None,
    report_first: Annotated[bool, typer.Option(help="post each report (and wait for its first answer) before "
                                                    "the SubmitRsp goes out: a report that overtakes its answer")
                            ] = False,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
) -> None:
    """Run the simulated MMSC (MM7, REL-5 and REL-6 schemas) alone: delivery reports follow every submit."""
    import uvicorn

    from cardsms.logs import configure_logging
    from cardsms.simulator.mmsc import MmscOptions, SimulatedMmsc

    if report_url and not report_url.startswith(("http://", "https://")):
        raise fail(f"--report-url: must be an http(s) URL, got {report_url!r}")
    if bool(vasp_id) != bool(secret):
        raise fail("--vasp-id and --secret: give both or neither")
    _check_tls_flags(tls_cert, tls_key, tls_client_ca)
    settings = load_settings()
    configure_logging(settings)
    mmsc = SimulatedMmsc(MmscOptions(
        host=host, port=port, vasp_id=vasp_id, secret=secret, report_url=report_url, report_user=report_user,
        report_secret=report_secret, latency_ms=latency_ms, fail_share=fail_share, expire_share=expire_share,
        no_mms_share=no_mms_share, throttle_share=throttle_share, reply_text=reply_text, reply_share=reply_share,
        log_path=log_file, report_log_path=report_log, report_first=report_first))

    async def _main() -> None:
        import ssl

        tls: dict[str, Any] = {}
        if tls_cert is not None:
            tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
            if tls_client_ca is not None:
                tls.update(ssl_ca_certs=str(tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
        server = uvicorn.Server(uvicorn.Config(mmsc.app(), host=host, port=port, log_config=None, access_log=False,
                                               **tls))
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if serving.done():
            raise fail(f"cannot start the simulated MMSC on {host}:{port} (is the port in use?)")
        out.print(f"simulated MMSC listening on {host}:{port}{' (TLS)' if tls else ''}", highlight=False)
        try:
            await serving
        finally:
            await mmsc.close()

    with contextlib.suppress(KeyboardInterrupt):
        run_server(_main, settings)


def main() -> None:
    import cardsms.cli_protect  # noqa: F401  (registers `cardsms frequency` and `cardsms domain`)

    app()
