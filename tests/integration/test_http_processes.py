"""`cardsms serve --http-processes N`: several processes answer HTTP on one port with one state (nonces,
flow control, the dispatcher's work); a killed HTTP process is replaced and costs no answered OK; a killed main
process takes its HTTP processes with it (never half up); SIGTERM stops them all. Both databases."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select

from cardsms.db.schema import messages
from cardsms.openapi import auth
from cardsms.services.core import Services
from tests.conftest import BACKENDS, Tenant, env_for, new_tenant, run_with_services
from tests.harness import Server, running_server
from tests.integration.helpers import approved_sign, eventually, text_template
from tests.integration.test_delivery_faults import logging_smsc

PROCESSES = ("--http-processes", "3")


def _children(pid: int) -> set[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return {int(x) for x in found}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # it may end between the two looks
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def _answering_pids(server: Server, want: int) -> set[int]:
    """The processes that answer /healthz on fresh connections, until `want` different ones answered."""
    pids: set[int] = set()
    for _ in range(400):
        pids.add(httpx.get(f"{server.url}/healthz", timeout=5).json()["process"]["pid"])
        if len(pids) >= want:
            break
    return pids


def _signed_get(tenant: Tenant, nonce: str) -> str:
    params = {"AccessKeyId": tenant.key_id, "Action": "QuerySmsSignList", "Format": "JSON",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce, "SignatureVersion": "1.0",
              "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "Version": "2017-05-25"}
    to_sign = auth.v2_string_to_sign(auth.ApiRequest("GET", sorted(params.items()), [], {}, b""))
    params["Signature"] = base64.b64encode(hmac.new((tenant.secret + "&").encode(), to_sign.encode(),
                                                    hashlib.sha1).digest()).decode()
    return f"{tenant.server.url}/?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


def _count(env: dict[str, str], account_like: str, state: str | None = None) -> int:
    from cardsms.db.schema import accounts

    async def count(svc: Services) -> int:
        where = [accounts.c.name == account_like]
        if state:
            where.append(messages.c.state == state)
        async with svc.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(
                messages.join(accounts, accounts.c.id == messages.c.account_id)).where(*where)) or 0)

    return run_with_services(env, count)


@pytest.mark.parametrize("backend", BACKENDS)
def test_processes_share_the_port_the_nonces_the_flow_control_and_the_work(
        backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_LATENCY_MS="5")
    with running_server(env, backend, PROCESSES) as server:
        children = _children(server.proc.pid)
        assert len(children) == 2, children
        assert _answering_pids(server, 3) == {server.proc.pid, *children}

        # a request replayed on other connections (other processes) is refused: the nonces are one set
        tenant = new_tenant(server)
        url = _signed_get(tenant, uuid.uuid4().hex)
        assert httpx.get(url).json()["Code"] == "OK"
        replays = [httpx.get(url) for _ in range(12)]
        assert {(r.status_code, r.json()["Code"]) for r in replays} == {(400, "SignatureNonceUsed")}

        # an account limited to 5 requests a second gets 5 a second across all processes, not 5 in each
        slow = new_tenant(server, qps=5)
        started = time.monotonic()
        codes = [httpx.get(_signed_get(slow, uuid.uuid4().hex)).json()["Code"] for _ in range(30)]
        elapsed = time.monotonic() - started
        admitted = codes.count("OK")
        assert set(codes) <= {"OK", "Throttling.User"}, codes
        assert 5 <= admitted <= 5 + 5 * elapsed + 1, (admitted, elapsed)

        # sends answered by any process are dispatched by the main one and delivered
        c = tenant.client()
        sign = approved_sign(c, "多进程")
        code = text_template(c, "Order ${no} has shipped.")

        def send(k: int) -> None:
            mine = tenant.client()
            for i in range(25):
                body = mine.send_sms(m.SendSmsRequest(phone_numbers=str(13500000000 + k * 1000 + i), sign_name=sign,
                                                      template_code=code, template_param='{"no": "1"}')).body
                assert body.code == "OK", body.to_map()

        threads = [threading.Thread(target=send, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert _count(server.env, tenant.name) == 200
        eventually(lambda: _count(server.env, tenant.name, "delivered") == 200, timeout=60)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_http_process_is_replaced_and_a_killed_main_process_takes_them_all(
        backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_LATENCY_MS="5",
                  CARDSMS_API_QPS="100000")
    answered: list[str] = []
    stop = threading.Event()
    with logging_smsc(env) as (smsc, _), running_server(env, backend, (*PROCESSES, *smsc)) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "多进程")
        code = text_template(c, "Order ${no} has shipped.")

        def send(k: int) -> None:
            for i in range(100_000):
                if stop.is_set():
                    return
                phone = str(13600000000 + k * 100_000 + i)
                try:  # a new client: new connections, so every process gets its share
                    body = tenant.client().send_sms(m.SendSmsRequest(
                        phone_numbers=phone, sign_name=sign, template_code=code, template_param='{"no": "1"}')).body
                except Exception:  # the connection's process died: this request's outcome is unknown
                    continue
                if body.code == "OK":
                    answered.append(phone)
                else:  # while a process restarts: 503, retryable, nothing stored
                    assert body.code == "ServiceUnavailable", body.to_map()

        threads = [threading.Thread(target=send, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            eventually(lambda: len(answered) >= 100, timeout=60, interval=0.05)
            victim = min(_children(server.proc.pid))
            os.kill(victim, signal.SIGKILL)
            # replaced: two HTTP children again, the victim not among them, and sends go on
            eventually(lambda: len(_children(server.proc.pid) - {victim}) == 2, timeout=30)
            at_replacement = len(answered)
            eventually(lambda: len(answered) >= at_replacement + 100, timeout=60, interval=0.05)
            children = _children(server.proc.pid)
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
            # never half up: the HTTP children end with the main process
            eventually(lambda: not any(_alive(p) for p in children), timeout=20)
        finally:
            stop.set()
            for t in threads:
                t.join()
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{server.url}/healthz", timeout=2)
        # every answered OK was stored, and is delivered after the restart (the SMSC outlived the kill)
        with running_server(env, backend, (*PROCESSES, *smsc)) as again:
            assert answered
            stored = set(_phones(again.env, tenant.name))
            assert set(answered) <= stored, len(set(answered) - stored)
            eventually(lambda: _count(again.env, tenant.name, "delivered") == len(stored), timeout=120, interval=0.5)


def _phones(env: dict[str, str], account: str) -> list[str]:
    from cardsms.db.schema import accounts

    async def read(svc: Services) -> list[str]:
        async with svc.read() as conn:
            return [r[0] for r in await conn.execute(select(messages.c.phone).select_from(
                messages.join(accounts, accounts.c.id == messages.c.account_id)).where(accounts.c.name == account))]

    return run_with_services(env, read)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_stops_every_process(backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    with running_server(env, backend, PROCESSES) as server:
        children = _children(server.proc.pid)
        assert len(children) == 2
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0
        eventually(lambda: not any(_alive(p) for p in children), timeout=10)
