"""Test harness: a real PostgreSQL server in a temp directory, real `cardsms serve` processes,
official SDK clients. Nothing here is mocked."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

SECRET_KEY = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    """Whether something listens on the loopback port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def find_pg_bin() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """initdb + postgres on a free loopback port, as the postgres user when we are root."""

    def __init__(self) -> None:
        bindir = find_pg_bin()
        if bindir is None:
            raise RuntimeError("PostgreSQL server binaries (initdb) not found: run `make test`, which installs them")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="cardsms-pg-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._template: str | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")

    def start(self) -> None:
        data = self.dir / "data"
        if not data.exists():
            subprocess.run([*self._as_user, str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres",
                            "-A", "trust", "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
        self.proc = subprocess.Popen(
            [*self._as_user, str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-h", "127.0.0.1", "-k", str(self.dir), "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=open(self.dir / "postgres.log", "wb"),  # noqa: SIM115
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                asyncio.run(self._execute("SELECT 1"))
                return
            except Exception:
                time.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: {(self.dir / 'postgres.log').read_text()[-2000:]}")

    async def _execute(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres", database="postgres")
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    def create_database(self, name: str, template: str = "") -> str:
        asyncio.run(self._execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def migrated_database(self, name: str) -> str:
        """A database at the schema's head: a copy of one that `cardsms migrate` migrated once for this server
        (CREATE DATABASE ... TEMPLATE copies its files: ~0.1 s, where a migrate process takes 2-3 s)."""
        if self._template is None:
            self._template = f"cardsms_template_{os.getpid()}"
            url = self.create_database(self._template)
            cli(cardsms_env(Path(tempfile.mkdtemp(prefix="cardsms-template-")), url), "migrate")
        return self.create_database(name, template=self._template)

    def pause(self) -> None:
        """Stop the server, keep its data: `start()` brings it back on the same port (an outage)."""
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None

    def stop(self) -> None:
        self.pause()
        shutil.rmtree(self.dir, ignore_errors=True)


def cardsms_env(data_dir: Path, database_url: str = "", **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARDSMS_")}
    # the test receivers (webhooks) listen on loopback, which a server refuses unless allowed; mass tasks may send
    # at any hour, so that no test depends on the time of day it runs at (the quiet-hours tests set a window of
    # their own, per account, and move the clock)
    env.update(CARDSMS_DATA_DIR=str(data_dir), CARDSMS_SECRET_KEY=SECRET_KEY, CARDSMS_DATABASE_URL=database_url,
               CARDSMS_LOG_LEVEL="warning", CARDSMS_OUTBOUND_ALLOW_NETWORKS='["127.0.0.0/8", "::1/128"]',
               CARDSMS_SEND_WINDOW="00:00-24:00")
    env.update(extra)
    return env


class _Zygote:
    """tests/cli_zygote.py in a process of its own: one per pytest process, started at its first command."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.proc: subprocess.Popen[str] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="cardsms-cli-"))
        self.count = 0

    def run(self, args: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("cli_zygote.py"))],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                atexit.register(self.proc.kill)
            self.count += 1
            out, err = self.dir / f"{self.count}.out", self.dir / f"{self.count}.err"
            request = {"args": args, "env": env, "cwd": os.getcwd(), "out": str(out), "err": str(err),
                       "timeout": timeout}
            assert self.proc.stdin is not None and self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError("the CLI zygote ended (tests/cli_zygote.py)")
        rc = json.loads(answer)["rc"]
        stdout, stderr = out.read_text(), err.read_text()
        out.unlink()
        err.unlink()
        if rc is None:
            raise subprocess.TimeoutExpired(["cardsms", *args], timeout, stdout, stderr)
        return subprocess.CompletedProcess(["cardsms", *args], rc, stdout, stderr)


_zygote = _Zygote()


def cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`cardsms ARGS` in a process of its own with `env`: a fork of tests/cli_zygote.py (which has the CLI imported
    already), or `python -m cardsms` when CARDSMS_TEST_CLI_FORK=0."""
    if os.environ.get("CARDSMS_TEST_CLI_FORK", "1") == "0":
        result = subprocess.run([sys.executable, "-m", "cardsms", *args], env=env, capture_output=True, text=True,
                                timeout=120)
    else:
        result = _zygote.run(list(args), env, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"cardsms {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


@dataclass
class Server:
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    backend: str

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _answered_by(port: int, proc: subprocess.Popen[bytes], token: str) -> bool:
    """Whether /healthz on the port is answered, ready, by `proc` or one of its HTTP children (`--http-processes`):
    between free_port() and its bind, another pytest worker's server may take the same port, and its answer must
    not pass for this server's."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1,  # the token shows the details, pid included
                           headers={"authorization": f"Bearer {token}"} if token else {})
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    pid = int(answer.json()["process"]["pid"])
    if pid == proc.pid:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        return f"\nPPid:\t{proc.pid}\n" in status
    return False


@contextmanager
def running_server(env: dict[str, str], backend: str, args: tuple[str, ...] = (),
                   port: int | None = None) -> Iterator[Server]:
    chosen = port is None
    for attempt in range(3):  # a port chosen here and taken by another worker's server first: choose again
        port = free_port() if chosen else port
        assert port is not None
        data_dir = Path(env["CARDSMS_DATA_DIR"])
        log = open(data_dir / f"serve-{port}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "cardsms", "serve", "--port", str(port), *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not _answered_by(port, proc, env.get("CARDSMS_METRICS_TOKEN", "")):
                if proc.poll() is not None:
                    logged = (data_dir / f"serve-{port}.log").read_text()[-3000:]
                    if chosen and attempt < 2 and "in use" in logged:
                        break
                    raise RuntimeError(f"server exited: {logged}")
                if time.monotonic() > deadline:
                    raise RuntimeError("server did not become healthy in 60 s")
                time.sleep(0.1)
            else:
                yield Server(port, env, proc, backend)
                return
        finally:
            stop_process(proc)
            log.close()
    raise RuntimeError("no free port for the server after 3 tries")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM, and SIGKILL when the process has not ended within `timeout` seconds."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
