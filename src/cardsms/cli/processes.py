"""Process start-up: `cardsms serve` (everything in one process), `cardsms api` and `cardsms worker` (the
scaled-out parts), each on uvloop under a stop deadline."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import typer

from cardsms import __version__
from cardsms.cli.common import DataDir, app, fail, load_settings, open_services, out, run_server
from cardsms.compose import build_delivery
from cardsms.settings import Settings


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


def http_server(app: Any, settings: Settings, on_exit: Callable[[], None] = lambda: None) -> Any:
    """uvicorn for our app: a SIGTERM is a request to stop, so once stopped the process exits 0 (uvicorn
    would raise the signal again and die of it), and open HTTP connections get a few seconds, not forever.
    `on_exit` runs when the stop begins (serve's HTTP children are told then)."""
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
            on_exit()
            super().handle_exit(sig, frame)

        async def serve(self, sockets: Any = None) -> None:
            await super().serve(sockets)
            watchdog.finished = True

    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None, access_log=False,
                            http=with_header_timeout(settings.http_header_seconds), server_header=False,
                            limit_concurrency=settings.http_max_connections or None,
                            timeout_keep_alive=settings.http_keepalive_seconds,
                            timeout_graceful_shutdown=max(1, int(settings.stop_seconds / 3)))
    return Server(config)


HostOption = Annotated[str | None, typer.Option(help="listen address")]
PortOption = Annotated[int | None, typer.Option(help="listen port", min=1, max=65535)]
SmscOption = Annotated[list[str] | None, typer.Option(
    "--smsc", help="an SMSC or ISMG as smpp://SYSTEM_ID:PASSWORD@HOST:PORT, smpps://... (TLS) or "
                   "cmpp://SPID:SECRET@HOST:PORT?version=3.0 (repeatable; replaces the simulator in `serve`, "
                   "required by `worker`; options in docs/sending.md)")]


HttpProcessesOption = Annotated[int | None, typer.Option(
    "--http-processes", help="processes answering HTTP on the port (default $CARDSMS_HTTP_PROCESSES or 1); the "
                             "main process also dispatches", min=1, max=64)]


@app.command()
def serve(host: HostOption = None, port: PortOption = None, data_dir: DataDir = None, smsc: SmscOption = None,
          digital: DigitalOption = None, http_processes: HttpProcessesOption = None) -> None:
    """Run the embedded default: API, dispatcher, simulated SMSC, handsets and review in one process (with
    --http-processes N, N-1 more processes answer HTTP beside it)."""

    from cardsms.logs import configure_logging

    settings = load_settings(host=host, port=port, data_dir=data_dir, smsc=smsc or None, digital=digital or None,
                             http_processes=http_processes)
    configure_logging(settings)
    profiled(lambda: run_server(lambda: _serve(settings), settings))


async def _serve(settings: Settings) -> None:
    from cardsms.bootstrap import ensure_demo
    from cardsms.cli.http_processes import HttpChildren, listening_socket
    from cardsms.services.hub import hub_path
    from cardsms.web.app import create_app

    sockets, children = None, None
    if settings.http_processes > 1:
        try:
            sockets = [listening_socket(settings.host, settings.port)]
        except OSError as exc:
            raise fail(f"--port: cannot listen on {settings.host}:{settings.port}: {exc.strerror}", 1) from None
        children = HttpChildren(settings, sockets[0], settings.http_processes - 1)
    svc = await open_services(settings)
    _welcome(settings, await ensure_demo(svc))
    hub = hub_path(settings.data_dir) if children is not None else None
    server = http_server(create_app(svc, build_delivery(svc), hub=hub), settings,
                         on_exit=children.terminate if children is not None else lambda: None)
    if children is not None:
        children.give_up = lambda: server.handle_exit(signal.SIGTERM, None)
        children.start()
    try:
        await server.serve(sockets)
    finally:
        if children is not None:
            await children.wait(stop_deadline(settings))


def _welcome(settings: Settings, welcome: Any) -> None:
    """What `serve` prints at start: where the console is, the admin login and the demo AccessKey."""
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


@app.command()
def api(host: HostOption = None, port: PortOption = None, data_dir: DataDir = None,
        digital: DigitalOption = None) -> None:
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
def worker(data_dir: DataDir = None, smsc: SmscOption = None, digital: DigitalOption = None) -> None:
    """Scale-out: dispatch messages, hold SMPP binds, run mass tasks; PostgreSQL. Start several. MM7 links
    (--digital) submit here; their reports and replies go to `cardsms api` started with the same links."""
    from cardsms.logs import configure_logging

    settings = load_settings(data_dir=data_dir, smsc=smsc or None, digital=digital or None)
    if settings.is_sqlite:
        raise fail("cardsms worker needs PostgreSQL (CARDSMS_DATABASE_URL); on SQLite run `cardsms serve`")
    if not settings.smsc:
        raise fail("--smsc: a worker needs at least one SMSC (the simulated one runs only inside `serve`)")
    configure_logging(settings)
    run_server(lambda: _work(settings), settings)


async def _work(settings: Settings) -> None:
    """A worker's life: deliver and run tasks until SIGTERM or SIGINT, then stop within the deadline."""
    import signal

    from cardsms.services import task_runner
    from cardsms.stopping import StopWatchdog, stop_services

    svc = await open_services(settings)
    delivery = build_delivery(svc)
    await delivery.start()
    assert delivery.lease is not None
    out.print(f"cardsms {__version__} worker {delivery.lease.worker_id} running", highlight=False)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(task_runner.run_forever(svc), name="task-runner")
    watchdog = StopWatchdog(stop_deadline(settings))
    try:
        await stop.wait()
        watchdog.arm()
    finally:
        await stop_services(svc, delivery, [runner])
        watchdog.finished = True
