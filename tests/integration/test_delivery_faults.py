"""Fault tests (all on 127.0.0.1, bounded): a throttling SMSC, an SMSC that keeps dropping the
connection, and kill -9 of the server in the middle of a 20,000-message send."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import select

from cardsms.db.schema import messages
from cardsms.services.core import Services
from tests.conftest import BACKENDS, Tenant, env_for, new_tenant, run_with_services
from tests.harness import Server, cli, free_port, running_server
from tests.integration.helpers import approved_sign, eventually, legacy, text_template


def today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")


def daily(c) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """(messages counted today, delivered) from QuerySendStatistics (single-segment messages)."""
    body = c.query_send_statistics(m.QuerySendStatisticsRequest(
        is_globe=1, start_date=today(), end_date=today(), page_index=1, page_size=10)).body
    rows = body.data.target_list or []
    return (rows[0].total_count, rows[0].responded_success_count) if rows else (0, 0)


def send_many(tenant: Tenant, first: int, count: int) -> list[str]:
    c = tenant.client()
    sign = approved_sign(c, "故障测试")
    code = text_template(c, "Order ${no} has shipped.")
    phones = [str(first + i) for i in range(count)]
    for i in range(0, count, 1000):
        body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones[i:i + 1000]), sign_name=sign,
                                           template_code=code, template_param='{"no": "42"}')).body
        assert body.code == "OK", body.to_map()
    return phones


def simulator(server: Server) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{server.url}/healthz").json()["delivery"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_throttling_smsc_delays_messages_but_loses_none(backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_THROTTLE_SHARE="40")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        send_many(tenant, 13500000000, 300)
        eventually(lambda: daily(tenant.client()) == (300, 300), timeout=90)
        assert simulator(server)["simulator"]["throttled"] > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_smsc_that_keeps_dropping_the_connection_loses_none(backend: str,
                                                                request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_DISCONNECT_EVERY="40",
                  CARDSMS_RETRY_BASE_SECONDS="0.2")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        send_many(tenant, 13600000000, 400)
        eventually(lambda: daily(tenant.client()) == (400, 400), timeout=120)
        state = simulator(server)
        assert state["simulator"]["drops"] >= 5
        assert state["connectors"][0]["binds"] >= 5  # it reconnected after every drop


@contextmanager
def logging_smsc(env: dict[str, str]) -> Iterator[tuple[tuple[str, str], Path]]:
    """`cardsms simulator smsc` in its own process, logging every accepted submit_sm: (`serve`'s --smsc
    arguments for it, the log)."""
    port = free_port()
    log = Path(env["CARDSMS_DATA_DIR"]) / "smsc.jsonl"
    out = Path(env["CARDSMS_DATA_DIR"]) / "smsc.out"
    smsc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", "smsc", "--port", str(port),
                             "--latency-ms", "20", "--log", str(log)], env=env,
                            stdout=out.open("w"), stderr=subprocess.STDOUT)
    try:
        eventually(lambda: "listening" in out.read_text(), timeout=30)
        yield ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{port}"), log
    finally:
        smsc.kill()
        smsc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_a_20000_message_send_loses_none(backend: str, request: pytest.FixtureRequest) -> None:
    # the check of the duplicates asks about each one in turn: faster than the account's 200 requests a second
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_API_QPS="100000")
    total = 20_000
    with logging_smsc(env) as (args, log):
        with running_server(env, backend, args) as server:
            tenant = new_tenant(server)
            phones = send_many(tenant, 13300000000, total)
            eventually(lambda: log.exists() and sum(1 for _ in log.open()) >= total // 5, timeout=120,
                       interval=0.02)
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
        at_kill = sum(1 for _ in log.open())
        assert at_kill < total, "the send finished before the kill; the test proves nothing"
        with running_server(env, backend, args) as server:
            tenant = Tenant(tenant.name, tenant.key_id, tenant.secret, server)
            c = tenant.client()
            eventually(lambda: sum(1 for _ in log.open()) >= total and daily(c)[0] == total, timeout=240, interval=1)
            seen = Counter(json.loads(line)["dest"] for line in log.open())
            assert set(seen) == {"86" + p for p in phones}  # every message reached the SMSC
            twice = [dest for dest, n in seen.items() if n > 1]
            for dest in twice:  # a duplicate is only ever a message in flight at the kill, and says so
                found = legacy(tenant, "QuerySendDetails", PhoneNumber=dest[2:], SendDate=today(), PageSize="10",
                               CurrentPage="1")
                rows = found["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
                assert len(rows) == 1 and rows[0]["PossibleDuplicate"] is True, rows
            assert len(twice) <= 2 * 500  # at most CARDSMS_DISPATCH_IN_FLIGHT batches of CARDSMS_DISPATCH_BATCH
            # Every receipt arrives too: the connector acknowledges a deliver_sm only after journaling it, so
            # the SMSC sends again what the killed process had not taken, and the new process replays the
            # journal of what was taken but not yet in the database.
            eventually(lambda: daily(c) == (total, total), timeout=120, interval=1)
            print(f"kill -9: {at_kill} PDUs before the kill, {len(twice)} possible duplicates, every receipt stored")


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_during_a_burst_of_sends_keeps_every_answered_ok(backend: str, request: pytest.FixtureRequest) -> None:
    """SendCardSms answers OK only after its group commit: kill -9 in the middle of a burst from 16
    clients, and every request that was answered OK is in the database after the restart."""
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_API_QPS="100000")
    answered: list[tuple[str, set[str]]] = []  # (mobile, the BizIds the answer named)
    stop = threading.Event()
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "突发测试")
        fallback = text_template(c, "您有一条服务通知。")

        def client_loop(k: int) -> None:
            mine = tenant.client()
            for i in range(100_000):
                if stop.is_set():
                    return
                mobile = str(13400000000 + k * 100_000 + i)
                try:
                    body = mine.send_card_sms(m.SendCardSmsRequest(
                        card_template_code="PUB_SERVICE_NOTICE", sign_name=sign, fallback_type="SMS",
                        sms_template_code=fallback, card_objects=[m.SendCardSmsRequestCardObjects(mobile=mobile)]
                    )).body
                except Exception:  # the server is gone: this request's outcome is unknown, not answered
                    return
                assert body.code == "OK", body.to_map()
                answered.append((mobile, {body.data.biz_card_id, body.data.biz_sms_id} - {"", None}))

        clients = [threading.Thread(target=client_loop, args=(k,)) for k in range(16)]
        for t in clients:
            t.start()
        try:
            eventually(lambda: len(answered) >= 400, timeout=120, interval=0.01)
            os.kill(server.proc.pid, signal.SIGKILL)
            server.proc.wait()
        finally:
            stop.set()
            for t in clients:
                t.join(timeout=60)
    ok = list(answered)
    assert len(ok) >= 400

    async def stored(svc: Services) -> set[tuple[str, str]]:
        async with svc.read() as conn:
            return {(r.phone, r.biz_id) for r in await conn.execute(select(messages.c.phone, messages.c.biz_id))}

    with running_server(env, backend):  # the restart: recovery and migrations run as they would
        pass
    rows = run_with_services(env, stored)
    missing = [(mobile, ids) for mobile, ids in ok if not any((mobile, b) in rows for b in ids)]
    assert not missing, f"{len(missing)} of {len(ok)} sends answered OK are not stored: {missing[:5]}"
    print(f"kill -9 during a burst: {len(ok)} sends answered OK before the kill, all stored")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigterm_during_a_mass_task_stops_cleanly_and_sends_nothing_twice(backend: str,
                                                                          request: pytest.FixtureRequest) -> None:
    """A graceful stop (SIGTERM) in the middle of a mass task: batches on their way finish or are handed
    back, the process exits by itself within CARDSMS_STOP_SECONDS, and the restart sends every number
    exactly once (no possible duplicates: nothing was left in doubt)."""
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    total = 20_000
    numbers = Path(env["CARDSMS_DATA_DIR"]) / "numbers.txt"
    numbers.write_text("".join(f"{13200000000 + i}\n" for i in range(total)))
    with logging_smsc(env) as (args, log):
        with running_server(env, backend, args) as server:
            tenant = new_tenant(server)
            sign = approved_sign(tenant.client(), "停机测试")
            text = text_template(tenant.client(), "您的订单已发货。")
            cli(env, "task", "create", "--account", tenant.name, "--name", "stop", "--sign", sign,
                "--template", "PUB_SERVICE_NOTICE", "--fallback", "SMS", "--fallback-template", text,
                "--file", str(numbers))
            eventually(lambda: log.exists() and sum(1 for _ in log.open()) >= total // 5, timeout=120,
                       interval=0.02)
            started = time.monotonic()
            server.proc.terminate()
            try:  # stop_process would SIGKILL after 20 s: the process must end by itself before that
                code = server.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                logged = (Path(env["CARDSMS_DATA_DIR"]) / f"serve-{server.port}.log").read_text()[-4000:]
                pytest.fail(f"the server did not stop within 20 s of SIGTERM; its log ends:\n{logged}")
            took = time.monotonic() - started
        assert code == 0, f"exit code {code} after SIGTERM"
        at_stop = sum(1 for _ in log.open())
        assert at_stop < total, "the task finished before the stop; the test proves nothing"
        with running_server(env, backend, args):
            eventually(lambda: sum(1 for _ in log.open()) >= total, timeout=240, interval=0.5)
            time.sleep(1)  # anything sent twice would arrive right behind
        seen = Counter(json.loads(line)["dest"] for line in log.open())
        assert len(seen) == total and set(seen.values()) == {1}, \
            f"sent twice after a graceful stop: {[d for d, n in seen.items() if n > 1][:5]}"

        async def flagged(svc: Services) -> int:
            async with svc.read() as conn:
                return len((await conn.execute(select(messages.c.id).where(messages.c.possible_duplicate))).all())

        assert run_with_services(env, flagged) == 0
        print(f"SIGTERM mid-task: stopped in {took:.1f} s after {at_stop} submits; every number sent once")
