"""Jasmin 0.11 as the bench's second peer gateway (docs/performance.md, section `jasmin`).

Jasmin (PyPI `jasmin`, installed by `make bench` into .venv-jasmin: it pins its own Twisted) needs RabbitMQ and
Redis; everything here runs in a temporary directory on loopback ports and is stopped at the end:
`epmd` (Erlang's port mapper, on a port of its own so a RabbitMQ of the machine is not touched),
`rabbitmq-server` and `redis-server` (Debian's), then `jasmind.py` with its DLR lookup and DLR thrower in-process.
Its SMPP client connector is configured over jCli (telnet) against `cardsms simulator smsc` in its own process,
exactly as Kannel's bearerbox is; messages go in through Jasmin's HTTP API (`/send`, one number per request, as
that API takes them) and come back as DLR callbacks (`dlr-level=2`, the SMSC's final receipt) that
`count_receipts` answers with Jasmin's `ACK/Jasmin`.

Two settings differ from Jasmin's defaults, both documented knobs: the DLR lookup retries after 1 s instead of 10
(the simulated SMSC answers a receipt 10 ms after the submit, sooner than Jasmin stores its message-id map, and a
10 s retry would measure that wait rather than the gateway), and the jCli console needs no login.

jasmin 0.11.1 (PyPI's newest) cannot be used: its submit_sm_resp handler reads `.response` off the request PDU and
fails for every message, so no DLR is ever mapped (jookies/jasmin#1218, #1236); 0.11.0 is the release before it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import free_port, port_open, stop_process

ROOT = Path(__file__).resolve().parents[1]
JASMIN_VERSION = "0.11.0"
PROMPT = re.compile(rb"(jcli : |> )$")
RABBITMQ = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")  # Debian's, without the wrapper that switches user

CONFIG = """
[smpp-server]
bind = 127.0.0.1
port = {smpps}
log_level = WARNING
[smpp-server-pb]
bind = 127.0.0.1
port = {smpps_pb}
[client-management]
bind = 127.0.0.1
port = {cm}
[router]
bind = 127.0.0.1
port = {router}
[jcli]
bind = 127.0.0.1
port = {jcli}
authentication = False
[http-api]
bind = 127.0.0.1
port = {http}
log_level = WARNING
[amqp-broker]
host = 127.0.0.1
port = {amqp}
[redis-client]
host = 127.0.0.1
port = {redis}
[sm-listener]
log_level = WARNING
[dlr]
dlr_lookup_retry_delay = 1
dlr_lookup_max_retries = 20
log_level = WARNING
[dlr-thrower]
log_level = WARNING
"""


# With `nodelay`, jasmind starts with this on its path: every TCP socket Twisted opens or accepts gets TCP_NODELAY
# (Twisted leaves Nagle's algorithm on; cardsms's asyncio and uvloop sockets have it off).
NODELAY = """
import socket
from twisted.internet import tcp

def _nodelay(sock):
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return sock

_create = tcp.BaseClient.createInternetSocket
tcp.BaseClient.createInternetSocket = lambda self: _nodelay(_create(self))
_server_init = tcp.Server.__init__

def _server(self, sock, *args, **kwargs):
    _server_init(self, _nodelay(sock), *args, **kwargs)

tcp.Server.__init__ = _server
"""


def jasmin_python() -> Path:
    return Path(os.environ.get("BENCH_JASMIN_PYTHON", ROOT / ".venv-jasmin" / "bin" / "python"))


@dataclass
class Jasmin:
    """A running Jasmin with its brokers: its HTTP API port, jCli port and the pids whose peak RSS counts."""

    http: int
    jcli: int
    pids: dict[str, int] = field(default_factory=dict)

    def console(self, lines: list[str]) -> str:
        """Run jCli commands; the console's answers, joined."""
        out = []
        with socket.create_connection(("127.0.0.1", self.jcli), timeout=30) as s:
            def read(done: Callable[[bytes], Any]) -> str:
                buf = b""
                while not done(buf):
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError(f"jCli closed: {buf.decode(errors='replace')}")
                    buf += chunk
                return buf.decode(errors="replace").replace("\r", "")

            read(lambda b: b"Session ref" in b and b.endswith(b"\n"))
            for line in lines:
                s.sendall(line.encode() + b"\r\n")
                out.append(read(PROMPT.search))
        return "".join(out)

    def connect(self, smsc_port: int, system_id: str = "jasmin", password: str = "pw") -> None:
        """An SMPP client connector to the simulated SMSC (transceiver, no throughput cap), a user `bench` and a
        default route to it; returns once the connector is bound."""
        answer = self.console([
            "smppccm -a", "cid sim", "host 127.0.0.1", f"port {smsc_port}", f"username {system_id}",
            f"password {password}", "submit_throughput 0", "ok", "smppccm -1 sim",
            "group -a", "gid bench", "ok",
            "user -a", "username bench", "password bench", "gid bench", "uid bench", "ok",
            "mtrouter -a", "type DefaultRoute", "connector smppc(sim)", "rate 0.00", "ok"])
        for needle in ("Successfully added connector", "Successfully started connector", "Successfully added User",
                       "Successfully added MTRoute"):
            if needle not in answer:
                raise RuntimeError(f"jCli did not answer {needle!r}: {answer[-2000:]}")
        deadline = time.monotonic() + 60
        while "BOUND_TRX" not in self.console(["smppccm -l"]):
            if time.monotonic() > deadline:
                raise TimeoutError("Jasmin's connector did not bind to the simulated SMSC")
            time.sleep(0.5)


def _wait_port(port: int, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not open port {port}")
        time.sleep(0.25)


def _amqp_spec(python: Path) -> Path:
    found = subprocess.run([str(python), "-c", "import txamqp, os; print(os.path.dirname(txamqp.__file__))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    return Path(found) / "specs" / "standard" / "amqp0-9-1.stripped.xml"


def _prepare(tmp: Path, ports: dict[str, int], python: Path) -> Path:
    """Jasmin's configuration, store, logs and AMQP spec under tmp/root (its ROOT_PATH); RabbitMQ's directories."""
    etc = tmp / "root" / "etc" / "jasmin"
    for d in (etc / "store", etc / "resource", tmp / "root" / "var" / "log" / "jasmin", tmp / "home",
              tmp / "mnesia", tmp / "rabbit-log"):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy(_amqp_spec(python), etc / "resource" / "amqp0-9-1.xml")
    (etc / "jasmin.cfg").write_text(CONFIG.format(**ports))
    (tmp / "enabled_plugins").write_text("[].\n")
    return etc


def _rabbit_env(tmp: Path, ports: dict[str, int]) -> dict[str, str]:
    return {"RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"), "RABBITMQ_LOG_BASE": str(tmp / "rabbit-log"),
            "RABBITMQ_NODE_PORT": str(ports["amqp"]), "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": f"bench{ports['amqp']}@localhost", "RABBITMQ_DIST_PORT": str(ports["dist"]),
            "RABBITMQ_PID_FILE": str(tmp / "rabbitmq.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq")}


def _check_installed(python: Path) -> None:
    if not python.exists():
        raise RuntimeError(f"{python} is missing: `make bench` installs jasmin=={JASMIN_VERSION} into .venv-jasmin")
    for tool in ("epmd", "redis-server"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: `make bench` installs rabbitmq-server and redis-server")
    if not RABBITMQ.exists():
        raise RuntimeError(f"{RABBITMQ} is missing: `make bench` installs rabbitmq-server")


@contextmanager
def running_jasmin(tmp: Path, nodelay: bool = False) -> Iterator[Jasmin]:
    """epmd, RabbitMQ, Redis and jasmind in `tmp`, on free loopback ports; all stopped on exit. `nodelay`: Jasmin's
    sockets without Nagle's algorithm (NODELAY above)."""
    python = jasmin_python()
    _check_installed(python)
    ports = {k: free_port() for k in ("epmd", "amqp", "dist", "redis", "smpps", "smpps_pb", "cm", "router",
                                      "jcli", "http")}
    etc = _prepare(tmp, ports, python)
    env = {**os.environ, "ERL_EPMD_PORT": str(ports["epmd"]), "ERL_EPMD_ADDRESS": "127.0.0.1",
           "HOME": str(tmp / "home")}
    with ExitStack() as stack:
        def start(args: list[str], name: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
            log = stack.enter_context((tmp / f"{name}.out").open("ab"))
            proc = subprocess.Popen(args, env={**env, **(extra or {})}, stdout=log, stderr=subprocess.STDOUT)
            stack.callback(stop_process, proc)
            return proc

        start(["epmd", "-port", str(ports["epmd"]), "-address", "127.0.0.1"], "epmd")
        _wait_port(ports["epmd"], "epmd")
        redis = start(["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(tmp)], "redis")
        rabbit = start([str(RABBITMQ)], "rabbitmq", _rabbit_env(tmp, ports))
        _wait_port(ports["redis"], "redis-server")
        _wait_port(ports["amqp"], "rabbitmq-server", timeout=120)
        paths = {"ROOT_PATH": str(tmp / "root"), "CONFIG_PATH": f"{etc}/", "RESOURCE_PATH": f"{etc}/resource/"}
        if nodelay:
            (tmp / "nodelay").mkdir(exist_ok=True)
            (tmp / "nodelay" / "sitecustomize.py").write_text(NODELAY)
            paths["PYTHONPATH"] = str(tmp / "nodelay")
        jasmind = start([str(python), str(python.parent / "jasmind.py"), "-c", str(etc / "jasmin.cfg"),
                         "--enable-dlr-lookup", "--enable-dlr-thrower"], "jasmind", paths)
        _wait_port(ports["jcli"], "jasmind's jCli")
        _wait_port(ports["http"], "jasmind's HTTP API")
        beam = _child_named(rabbit.pid, "beam.smp")
        yield Jasmin(ports["http"], ports["jcli"], {"jasmind": jasmind.pid, "rabbitmq": beam or rabbit.pid,
                                                    "redis": redis.pid})


def _child_named(pid: int, name: str) -> int | None:
    """The pid of `name` among pid's descendants (rabbitmq-server's script starts the Erlang VM)."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for child in map(int, found):
        if name in Path(f"/proc/{child}/comm").read_text():
            return child
        deeper = _child_named(child, name)
        if deeper:
            return deeper
    return None


async def send_and_count(jasmin: Jasmin, numbers: list[str], text: str, dlr_port: int, concurrency: int = 8,
                         timeout: float = 3600) -> tuple[float, float, int]:
    """POST every number to Jasmin's /send (UCS-2, final receipt requested to a callback here); (seconds until
    every request was accepted, seconds until every receipt came back, receipts not DELIVRD)."""
    from aiohttp import ClientSession, web

    got = {"receipts": 0, "not_delivered": 0}
    done = asyncio.Event()

    async def receipt(request: web.Request) -> web.Response:
        form = await request.post()
        got["receipts"] += 1
        if form.get("message_status") != "DELIVRD":
            got["not_delivered"] += 1
        if got["receipts"] >= len(numbers):
            done.set()
        return web.Response(text="ACK/Jasmin")

    app = web.Application()
    app.router.add_post("/dlr", receipt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", dlr_port).start()
    content = text.encode("utf-16-be").hex()
    url = f"http://127.0.0.1:{jasmin.http}/send"
    t0 = time.monotonic()
    try:
        async with ClientSession() as session:
            async def sender(mine: list[str]) -> None:
                for number in mine:
                    form = {"username": "bench", "password": "bench", "to": number, "from": "10690000",
                            "hex-content": content, "coding": "8", "dlr": "yes", "dlr-level": "2",
                            "dlr-url": f"http://127.0.0.1:{dlr_port}/dlr", "dlr-method": "POST"}
                    async with session.post(url, data=form) as resp:
                        body = await resp.text()
                        if resp.status != 200 or not body.startswith("Success"):
                            raise RuntimeError(f"Jasmin refused a send: {resp.status} {body[:200]}")

            await asyncio.gather(*(sender(numbers[i::concurrency]) for i in range(concurrency)))
            accepted = time.monotonic() - t0
            async with asyncio.timeout(timeout):
                await done.wait()
            return accepted, time.monotonic() - t0, got["not_delivered"]
    finally:
        await runner.cleanup()
