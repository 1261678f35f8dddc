from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi.utils_models import Config

from cardsms.compose import build_services
from cardsms.db.migrate import upgrade
from cardsms.services import accounts, audit
from cardsms.services.core import Services
from cardsms.settings import Settings
from tests.harness import PostgresServer, Server, cardsms_env, running_server

T = TypeVar("T")

BACKENDS = ["sqlite", "postgresql"]
_counter = itertools.count(1)
# services built in this process send mass tasks at any hour too (see tests/harness.py cardsms_env); the
# quiet-hours tests give their own window
os.environ["CARDSMS_SEND_WINDOW"] = "00:00-24:00"


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def with_services(backend: str, request: pytest.FixtureRequest, data_dir: Path,
                  body: Callable[[Services], Awaitable[None]], **settings: Any) -> None:
    """Run `body` with in-process services on a migrated database of the backend, in an event loop of
    its own (the pg fixture runs its own loop, so such tests are synchronous); `settings` override."""
    url = ""
    if backend == "postgresql":
        url = request.getfixturevalue("pg").migrated_database(f"unit_{next(_counter)}_{os.getpid()}")

    async def run() -> None:
        svc = build_services(Settings(data_dir=data_dir, secret_key="x" * 40, database_url=url,
                                      **settings))
        await upgrade(svc.engine)
        try:
            await body(svc)
        finally:
            await svc.close()

    asyncio.run(run())


def run_with_services(env: dict[str, str], body: Callable[[Services], Awaitable[T]]) -> T:
    """`body(svc)` on the database of a server's environment (stopped or running), in-process."""
    settings = Settings(data_dir=Path(env["CARDSMS_DATA_DIR"]), secret_key=env["CARDSMS_SECRET_KEY"],
                        database_url=env["CARDSMS_DATABASE_URL"])

    async def run() -> T:
        svc = build_services(settings)
        try:
            return await body(svc)
        finally:
            await svc.close()

    return asyncio.run(run())


def env_for(backend: str, request: pytest.FixtureRequest, **extra: str) -> dict[str, str]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"cardsms-{backend}-"))
    url = ""
    if backend == "postgresql":  # migrated: `cardsms migrate` ran on the template it is copied from
        pg: PostgresServer = request.getfixturevalue("pg")
        url = pg.migrated_database(f"cardsms_{next(_counter)}_{os.getpid()}")
    return cardsms_env(data_dir, url, **extra)


@pytest.fixture(scope="session", params=BACKENDS)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server that approves at once (CARDSMS_SIM_REVIEW_SECONDS=0), on each backend."""
    env = env_for(request.param, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    with running_server(env, request.param) as s:
        yield s


@pytest.fixture(scope="session", params=BACKENDS)
def slow_review_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """A server whose simulated review takes 2 seconds, on each backend."""
    env = env_for(request.param, request, CARDSMS_SIM_REVIEW_SECONDS="2", CARDSMS_REVIEW_POLL_SECONDS="0.2")
    with running_server(env, request.param) as s:
        yield s


@pytest.fixture(scope="session", params=BACKENDS)
def lively_server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """Every simulated phone opens its links and replies R; webhooks retry after 0.2 s; volume alerts are checked
    every 0.5 s; on each backend."""
    env = env_for(request.param, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_OPEN_SHARE="100",
                  CARDSMS_SIM_REPLY_SHARE="100", CARDSMS_WEBHOOK_RETRY_BASE_SECONDS="0.2",
                  CARDSMS_ALERT_CHECK_SECONDS="0.5")
    with running_server(env, request.param) as s:
        yield s


@dataclass
class Tenant:
    name: str
    key_id: str
    secret: str
    server: Server

    def client(self, algorithm: str | None = None, secret: str | None = None, key_id: str | None = None) -> Client:
        config = Config(access_key_id=key_id or self.key_id, access_key_secret=secret or self.secret,
                        endpoint=self.server.endpoint, protocol="http", read_timeout=30000, connect_timeout=5000)
        if algorithm:
            config.signature_algorithm = algorithm
        return Client(config)


def new_tenant(server: Server, qps: int | None = None) -> Tenant:
    """An account with an AccessKey on the server's database, made by the services `cardsms account create`
    and `cardsms accesskey create` call, in this process (those commands have tests of their own; a
    process per tenant cost two CLI start-ups, most of the suite's time)."""
    name = f"acct{next(_counter)}x{os.getpid()}"

    async def provision(svc: Services) -> tuple[str, str]:
        audit.set_actor("cli")
        await accounts.create_account(svc, name, qps)
        return await accounts.create_access_key(svc, name)

    key_id, secret = run_with_services(server.env, provision)
    return Tenant(name, key_id, secret, server)


@pytest.fixture
def tenant(server: Server) -> Tenant:
    return new_tenant(server)


@pytest.fixture
def make_tenant(server: Server) -> Callable[..., Tenant]:
    return lambda **kw: new_tenant(server, **kw)
