"""`cardsms serve --http-processes N`: HTTP answered by N processes, each with its own event loop and GIL.

The main process binds the listening socket once (a port in use is one clear error) and starts N-1 children
that inherit it (`cardsms http-process --fd F`); the kernel hands each new connection to whichever process
accepts first, so a busy process takes fewer. The main process alone dispatches, runs tasks and reviews, and
holds the API's nonces and flow control (services/hub.py); every process writes the database through its own
writer thread, taking turns under the writer's file lock on SQLite (db/writer.py). A child that dies is
started again; five deaths within a minute take the whole service down rather than leave it half up. A child
asks the kernel for SIGTERM when the main process dies (PR_SET_PDEATHSIG), so a `kill -9` of the main process
leaves no orphan answering requests. On SIGTERM the main process stops its children with itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Annotated

import structlog
import typer

from cardsms.cli.common import app, load_settings, open_services, run_server
from cardsms.settings import Settings

log = structlog.get_logger("cardsms.serve")

RESTARTS_PER_MINUTE = 5
PARENT_ENV = "CARDSMS_PARENT_PID"


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class HttpChildren:
    """The main process's HTTP children: started, kept running, stopped with the main process."""

    def __init__(self, settings: Settings, sock: socket.socket, count: int) -> None:
        self.settings, self.sock, self.count = settings, sock, count
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.deaths: deque[float] = deque()
        self.stopping = False
        self.give_up: Callable[[], None] = lambda: None
        self._keepers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._keepers = [asyncio.create_task(self._keep(i), name=f"http-process-{i}") for i in range(self.count)]

    def _environment(self) -> dict[str, str]:
        s = self.settings
        return {**os.environ, PARENT_ENV: str(os.getpid()), "CARDSMS_DATA_DIR": str(s.data_dir.resolve()),
                "CARDSMS_HOST": s.host, "CARDSMS_PORT": str(s.port), "CARDSMS_DIGITAL": json.dumps(s.digital),
                "CARDSMS_DATABASE_URL": s.database_url}

    async def _keep(self, index: int) -> None:
        fd = self.sock.fileno()
        while not self.stopping:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cardsms", "http-process", "--fd", str(fd), pass_fds=(fd,),
                env=self._environment())
            self.procs[index] = proc
            code = await proc.wait()
            if self.stopping:
                return
            now = time.monotonic()
            self.deaths.append(now)
            while self.deaths and self.deaths[0] < now - 60:
                self.deaths.popleft()
            if len(self.deaths) >= RESTARTS_PER_MINUTE:
                log.error("serve.http_process_gave_up", index=index, code=code, deaths=len(self.deaths))
                self.give_up()
                return
            log.warning("serve.http_process_restarted", index=index, code=code)
            await asyncio.sleep(0.5)

    def terminate(self) -> None:
        """SIGTERM to every child (they stop as the main process does, in parallel)."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)

    async def wait(self, deadline: float) -> None:
        """Until every child has ended; past `deadline` seconds the rest are killed."""
        self.terminate()
        waits = [asyncio.create_task(p.wait()) for p in self.procs.values()]
        if waits:
            _, late = await asyncio.wait(waits, timeout=deadline)
            for proc in self.procs.values():
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*late, return_exceptions=True)
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)


def _die_with_parent() -> None:
    """SIGTERM when the main process dies, even by kill -9 (Linux); gone already: exit now."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.environ.get(PARENT_ENV) and os.getppid() != int(os.environ[PARENT_ENV]):
        raise typer.Exit(1)


@app.command("http-process", hidden=True)
def http_process(fd: Annotated[int, typer.Option(help="the inherited listening socket")]) -> None:
    """One HTTP process of `cardsms serve --http-processes N` (started by serve, not by hand)."""
    from cardsms.cli.processes import http_server
    from cardsms.delivery.runtime import inbound_links
    from cardsms.logs import configure_logging
    from cardsms.services.hub import HubClient, hub_path
    from cardsms.web.app import create_app

    _die_with_parent()
    settings = load_settings()
    configure_logging(settings)

    async def _main() -> None:
        svc = await open_services(settings)
        svc.hub = HubClient(hub_path(settings.data_dir))
        sock = socket.socket(fileno=fd)
        app_ = create_app(svc, None, run_reviewer=False, inbound=inbound_links(svc))
        await http_server(app_, settings).serve(sockets=[sock])

    run_server(_main, settings)
