"""Scale-out on a real PostgreSQL: one `cardsms api` and two `cardsms worker` processes share the
work of 20,000 messages through a standalone simulated SMSC; one worker is killed with `kill -9`
mid-way and the other takes its bind slot's place and its in-flight messages over."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from cardsms.db.schema import bind_leases, messages
from cardsms.settings import Settings
from tests.conftest import env_for, new_tenant
from tests.harness import Server, free_port, stop_process
from tests.integration.helpers import approved_sign, text_template

TOTAL = 20_000


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "cardsms", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        stop_process(proc)


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


async def _db(url: str) -> dict[str, object]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            states = dict((await conn.execute(select(messages.c.state, func.count()).group_by(messages.c.state))).all())
            flagged = {r[0] for r in await conn.execute(select(messages.c.phone).where(
                messages.c.possible_duplicate.is_(True)))}
            owners = {r[0] for r in await conn.execute(select(bind_leases.c.owner))}
            return {"states": states, "flagged": flagged, "owners": owners}
    finally:
        await engine.dispose()


def test_two_workers_share_the_work_and_survive_a_kill(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for("postgresql", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_WORKER_LEASE_SECONDS="3",
                  CARDSMS_DISPATCH_BATCH="200")
    url = Settings(_env_file=None, data_dir=tmp_path, database_url=env["CARDSMS_DATABASE_URL"]).sqlalchemy_url
    smsc_port, api_port = free_port(), free_port()
    smsc_log = tmp_path / "submits.jsonl"
    smsc_url = f"smpp://cardsms:pw@127.0.0.1:{smsc_port}?binds=2"

    def worker_env(n: int) -> dict[str, str]:
        (tmp_path / f"w{n}").mkdir(exist_ok=True)
        return {**env, "CARDSMS_DATA_DIR": str(tmp_path / f"w{n}")}

    def submitted() -> list[str]:
        if not smsc_log.exists():
            return []
        return [json.loads(line)["dest"].removeprefix("86") for line in smsc_log.read_text().splitlines()
                if line.strip()]

    with process(["simulator", "smsc", "--port", str(smsc_port), "--latency-ms", "20", "--log", str(smsc_log)],
                 env, tmp_path / "smsc.log"), \
            process(["api", "--port", str(api_port)], env, tmp_path / "api.log") as api, \
            process(["worker", "--smsc", smsc_url], worker_env(1), tmp_path / "w1.log") as w1, \
            process(["worker", "--smsc", smsc_url], worker_env(2), tmp_path / "w2.log") as w2:
        wait_for(lambda: _healthy(api_port), 60, "the api")
        wait_for(lambda: len(asyncio.run(_db(url))["owners"]) == 2, 60, "both workers to lease a bind slot")
        server = Server(api_port, env, api, "postgresql")
        tenant = new_tenant(server)
        client = tenant.client()
        sign = approved_sign(client, "扩展")
        code = text_template(client, "Your order has shipped")
        for start in range(0, TOTAL, 1000):
            phones = ",".join(str(13900000000 + i) for i in range(start, start + 1000))
            body = client.send_sms(m.SendSmsRequest(phone_numbers=phones, sign_name=sign, template_code=code)).body
            assert body.code == "OK", body.to_map()
        wait_for(lambda: len(submitted()) >= TOTAL // 4, 120, "a quarter of the messages to be submitted")
        os.kill(w1.pid, signal.SIGKILL)
        w1.wait()
        killed_at = len(submitted())
        wait_for(lambda: len(set(submitted())) >= TOTAL, 240, "every message to reach the SMSC")
        wait_for(lambda: not {"queued", "submitting"} & set(asyncio.run(_db(url))["states"]), 60,
                 "no message left queued or submitting")
        assert w2.poll() is None
    seen = Counter(submitted())
    state = asyncio.run(_db(url))
    twice = {phone for phone, n in seen.items() if n > 1}
    print(f"\nkilled a worker after {killed_at:,} submits; {len(seen):,} distinct numbers reached the SMSC, "
          f"{len(twice)} twice, {len(state['flagged'])} flagged possible duplicates")  # type: ignore[arg-type]
    assert len(seen) == TOTAL
    assert twice <= state["flagged"]  # type: ignore[operator]


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_api_and_worker_stop_gracefully_under_load_and_restart(request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    """SIGTERM to a worker in the middle of sending and to the api in the middle of a stream of sends: each
    exits by itself with code 0 within 10 s (CARDSMS_STOP_SECONDS is 8); every send the api answered OK is
    stored; after the restart every number reaches the SMSC once (or is flagged a possible duplicate)."""
    import threading

    env = env_for("postgresql", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_WORKER_LEASE_SECONDS="3",
                  CARDSMS_DISPATCH_BATCH="200")
    url = Settings(_env_file=None, data_dir=tmp_path, database_url=env["CARDSMS_DATABASE_URL"]).sqlalchemy_url
    smsc_port, api_port = free_port(), free_port()
    smsc_log = tmp_path / "submits.jsonl"
    smsc_url = f"smpp://cardsms:pw@127.0.0.1:{smsc_port}?binds=2"
    total = 10_000
    (tmp_path / "w1").mkdir()
    w_env = {**env, "CARDSMS_DATA_DIR": str(tmp_path / "w1")}

    def submitted() -> list[str]:
        if not smsc_log.exists():
            return []
        return [json.loads(line)["dest"].removeprefix("86") for line in smsc_log.read_text().splitlines()
                if line.strip()]

    def stops_within_10_s(proc: subprocess.Popen[bytes], what: str) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the {what} did not stop within 10 s of SIGTERM")
        assert code == 0, f"the {what} exited with {code} after SIGTERM"

    answered: list[tuple[str, str]] = []
    with process(["simulator", "smsc", "--port", str(smsc_port), "--latency-ms", "20", "--log", str(smsc_log)],
                 env, tmp_path / "smsc.log"):
        with process(["api", "--port", str(api_port)], env, tmp_path / "api.log") as api, \
                process(["worker", "--smsc", smsc_url], w_env, tmp_path / "w1.log") as worker:
            wait_for(lambda: _healthy(api_port), 60, "the api")
            server = Server(api_port, env, api, "postgresql")
            tenant = new_tenant(server)
            client = tenant.client()
            sign = approved_sign(client, "优雅停机")
            code = text_template(client, "Your order has shipped")
            for start in range(0, total, 1000):
                phones = ",".join(str(13800000000 + i) for i in range(start, start + 1000))
                assert client.send_sms(m.SendSmsRequest(phone_numbers=phones, sign_name=sign,
                                                        template_code=code)).body.code == "OK"
            wait_for(lambda: len(submitted()) >= total // 5, 120, "a fifth of the messages to be submitted")
            stops_within_10_s(worker, "worker")
            at_stop = len(submitted())
            assert at_stop < total, "everything was sent before the stop; the test proves nothing"

            stop = threading.Event()

            def load() -> None:  # single sends, one after another, until the api is gone
                i = 0
                while not stop.is_set():
                    phone = str(13700000000 + i)
                    i += 1
                    try:
                        body = client.send_sms(m.SendSmsRequest(phone_numbers=phone, sign_name=sign,
                                                                template_code=code)).body
                    except Exception:  # refused connection or an answer cut by the stop: not acknowledged
                        continue
                    if body.code == "OK":
                        answered.append((phone, body.biz_id))

            loader = threading.Thread(target=load)
            loader.start()
            wait_for(lambda: len(answered) >= 20, 60, "sends to be answered")
            stops_within_10_s(api, "api")
            stop.set()
            loader.join(timeout=30)
        assert answered
        state = asyncio.run(_acknowledged(url, [b for _, b in answered]))
        assert state == len(answered), "an acknowledged send is missing after the api stopped"
        # restart: the messages left by the stopped worker go out, each once
        with process(["worker", "--smsc", smsc_url], w_env, tmp_path / "w1b.log"):
            everything = total + len(answered)
            wait_for(lambda: len(set(submitted())) >= everything, 240, "every message to reach the SMSC")
    seen = Counter(submitted())
    flagged = asyncio.run(_db(url))["flagged"]
    twice = {phone for phone, n in seen.items() if n > 1}
    assert twice <= flagged  # type: ignore[operator]
    print(f"\nworker stopped after {at_stop:,} submits; api stopped after {len(answered)} answered sends; "
          f"{len(twice)} numbers sent twice, all flagged")


async def _acknowledged(url: str, biz_ids: list[str]) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return len({r[0] for r in await conn.execute(select(messages.c.biz_id).where(
                messages.c.biz_id.in_(biz_ids)))})
    finally:
        await engine.dispose()
