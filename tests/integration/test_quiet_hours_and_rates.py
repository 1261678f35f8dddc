"""Quiet hours and send rates of mass tasks, with the clock moved (the services take "now" from one place,
`svc.clock`), on SQLite and PostgreSQL: a task created at 06:48 waits for 08:00; a task running at 21:59 is
held at 22:00 with its cursor kept and resumes at 08:00 the next day, every recipient sent once; the hourly cap;
API sends held for an account that opts in. Messages really go out: the dispatcher, a connector and the
simulated SMSC run in the test's process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select

from cardsms.db.schema import messages
from cardsms.delivery.digital import NoDigitalChannel
from cardsms.delivery.dispatcher import Dispatcher
from cardsms.delivery.smpp import SmppConnector
from cardsms.domain.connectors import ConnectorConfig
from cardsms.domain.schedule import CHINA, SendWindow
from cardsms.services import accounts, sending, task_reports, task_runner, tasks, templates
from cardsms.services.core import Services
from cardsms.services.review import run_due_reviews
from cardsms.simulator.smsc import SimulatedSmsc, SmscOptions
from tests.conftest import BACKENDS, env_for, new_tenant
from tests.harness import cli, free_port, running_server
from tests.integration.helpers import approved_sign, eventually, text_template
from tests.integration.test_mass_tasks import form, numbers, run_on
from tests.integration.test_sending import numbers as fresh_numbers

DAY1 = datetime(2026, 11, 26, tzinfo=CHINA)


class Clock:
    """A clock set to a moment, running on from there in real time (rates and receipt latency need time to pass)."""

    def __init__(self, at: datetime) -> None:
        self.set(at)

    def set(self, at: datetime) -> None:
        self.base, self.t0 = at.astimezone(UTC), time.monotonic()

    def __call__(self) -> datetime:
        return self.base + timedelta(seconds=time.monotonic() - self.t0)


@asynccontextmanager
async def delivering(svc: Services, log: Path) -> AsyncIterator[SimulatedSmsc]:
    """The dispatcher with one connector to a simulated SMSC that logs every accepted submit."""
    sim = SimulatedSmsc(SmscOptions(latency_ms=0, log_path=log))
    await sim.start()
    dispatcher = Dispatcher(svc, [], NoDigitalChannel())
    connector = SmppConnector(ConnectorConfig(name="sim", host="127.0.0.1", port=sim.port, system_id="cardsms",
                                              password="pw", window=50), "1069", dispatcher.on_inbound)
    dispatcher.connectors.append(connector)
    running = [asyncio.create_task(c) for c in (connector.run(), dispatcher.run(), dispatcher.run_receipts())]
    for _ in range(500):
        if connector.up:
            break
        await asyncio.sleep(0.01)
    try:
        yield sim
    finally:
        await dispatcher.stop()
        await connector.stop()
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await sim.stop()


def sent_to(log: Path) -> Counter[str]:
    return Counter(json.loads(line)["dest"][2:] for line in log.read_text().splitlines()) if log.exists() \
        else Counter()


async def sendable(svc: Services, task_id: int, recipients: list[str]) -> Counter[str]:
    """The recipients the task sends to (a card or nothing: the others are skipped, with a reason), after checking
    that every recipient has exactly one message."""
    async with svc.engine.connect() as conn:
        rows = (await conn.execute(select(messages.c.phone, messages.c.state).where(messages.c.task_id == task_id))
                ).all()
    assert sorted(r.phone for r in rows) == sorted(recipients)
    return Counter(r.phone for r in rows if r.state != "skipped")


async def passes(svc: Services, seconds: float) -> None:
    """Run the task runner for a while, as its loop does."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        await task_runner.run_once(svc)
        await asyncio.sleep(0.05)


async def state(svc: Services, acc: int, task_id: int) -> str:
    return str((await tasks.get_task(svc, acc, task_id))["state"])


async def sent(log: Path, phone: str, seconds: float = 30) -> None:
    """Wait until the simulated SMSC's log shows a message to `phone`."""
    deadline = time.monotonic() + seconds
    while not sent_to(log)[phone]:
        assert time.monotonic() < deadline, f"nothing was sent to {phone} within {seconds} s"
        await asyncio.sleep(0.1)


async def until(svc: Services, acc: int, task_id: int, wanted: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while await state(svc, acc, task_id) != wanted:
        assert time.monotonic() < deadline, f"task {task_id} is {await state(svc, acc, task_id)}, not {wanted}"
        await task_runner.run_once(svc)
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("backend", BACKENDS)
def test_quiet_hours_hold_a_task_before_08_00_and_from_22_00_and_release_it(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    clock = Clock(DAY1.replace(hour=6, minute=48))

    async def work(svc: Services, acc: int) -> None:
        svc.clock = clock
        log = tmp_path / "smsc.jsonl"
        async with delivering(svc, log):
            # 06:48: "send now" is accepted and waits for 08:00
            early = numbers(300, start=13900000000)
            a = await tasks.create_task(svc, acc, form(name="early"), data="\n".join(early).encode(),
                                        file_name="a.txt")
            await passes(svc, 0.5)
            t = await tasks.get_task(svc, acc, a)
            assert t["state"] == "waiting" and t["next_start_at"] is not None
            assert t["next_start_at"].astimezone(CHINA).replace(tzinfo=None) == datetime(2026, 11, 26, 8, 0)
            clock.set(DAY1.replace(hour=7, minute=59, second=50))
            await passes(svc, 0.5)
            assert await state(svc, acc, a) == "waiting" and not sent_to(log)
            clock.set(DAY1.replace(hour=8))
            await until(svc, acc, a, "completed")
            assert sent_to(log) == await sendable(svc, a, early)  # each once, from 08:00

            # 21:59:57: a task at 100 msg/s is running when the window closes
            clock.set(DAY1.replace(hour=21, minute=59, second=57))
            late = numbers(3000, start=13800000000)
            b = await tasks.create_task(svc, acc, form(name="late", rate=100), data="\n".join(late).encode(),
                                        file_name="b.txt")
            await passes(svc, 2.0)
            assert await state(svc, acc, b) == "sending"
            clock.set(DAY1.replace(hour=22))
            await passes(svc, 0.3)
            t = await tasks.get_task(svc, acc, b)
            assert t["state"] == "waiting" and 0 < t["cursor"] < 3000  # held with its cursor kept
            await asyncio.sleep(0.5)  # what was claimed before 22:00 has gone out; nothing after
            held_at = sum(sent_to(log)[n] for n in late)
            async with svc.engine.connect() as conn:
                paused = await conn.scalar(select(func.count()).select_from(messages).where(
                    messages.c.task_id == b, messages.c.state == "paused"))
            assert 0 < held_at < 1500 and paused > 0
            clock.set(DAY1.replace(hour=23, minute=30))
            await passes(svc, 1.0)
            clock.set(DAY1.replace(hour=7, minute=59) + timedelta(days=1))
            await passes(svc, 1.0)
            assert sum(sent_to(log)[n] for n in late) == held_at and await state(svc, acc, b) == "waiting"

            # 08:00 the next day: it resumes by itself; the rate is lifted while it runs
            clock.set(DAY1.replace(hour=8) + timedelta(days=1))
            await passes(svc, 0.5)
            assert await state(svc, acc, b) == "sending"
            await tasks.set_rate(svc, acc, b, None, None)
            await until(svc, acc, b, "completed")
            got = sent_to(log)
            assert Counter({n: got[n] for n in late if got[n]}) == await sendable(svc, b, late)  # each once
            kinds = [e["kind"] for e in await tasks.events(svc, acc, b)]
            assert kinds == ["created", "started", "quiet", "resumed", "rate", "completed"], kinds
            first = [e["kind"] for e in await tasks.events(svc, acc, a)]
            assert first == ["created", "waiting", "started", "completed"], first

    run_on(backend, tmp_path, request, work)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_hourly_cap_is_a_sliding_hour_and_opted_in_api_sends_wait_for_the_window(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    clock = Clock(DAY1.replace(hour=10))

    async def work(svc: Services, acc: int) -> None:
        svc.clock = clock
        log = tmp_path / "smsc.jsonl"
        async with delivering(svc, log):
            capped = numbers(1200, start=13700000000)
            promo = await templates.add_text_template(svc, acc, 2, "promo", "Sale today, all at half price.", "r")
            await run_due_reviews(svc)  # simulated review, immediate
            c = await tasks.create_task(svc, acc, form(name="capped", hourly_cap=500, fallback_type="SMS",
                                                       sms_template_code=promo),  # everyone gets a message
                                        data="\n".join(capped).encode(), file_name="c.txt")
            await passes(svc, 2.0)
            assert sum(sent_to(log)[n] for n in capped) == 500 and await state(svc, acc, c) == "sending"
            clock.set(DAY1.replace(hour=10, minute=59))
            await passes(svc, 0.5)
            assert sum(sent_to(log)[n] for n in capped) == 500  # still inside the hour
            clock.set(DAY1.replace(hour=11, minute=1))
            await passes(svc, 2.0)
            assert sum(sent_to(log)[n] for n in capped) == 1000
            live = await task_reports.progress(svc, await tasks.get_task(svc, acc, c),
                                               await task_reports.task_stats(svc, c))
            assert live["window"] == "08:00-22:00" and live["remaining"] == 200

            # an account that holds its API sends to its window: a notice at 23:00 waits for 08:00, a verification
            # code does not
            await accounts.set_send_window(svc, "shop", "08:00-22:00", hold_api_sends=True)
            clock.set(DAY1.replace(hour=23))
            await asyncio.sleep(1.2)  # the dispatcher reads who holds once a second
            notice = await templates.add_text_template(svc, acc, 1, "notice", "Your order ${no} has shipped.", "r")
            code = await templates.add_text_template(svc, acc, 0, "code", "Your code is ${code}.", "r")
            await run_due_reviews(svc)  # simulated review, immediate
            for phone, tpl, param in (("13600000001", notice, {"no": "1"}), ("13600000002", code, {"code": "42"})):
                await sending.send_sms(svc, acc, phones=[phone], sign_name="Shop", template_code=tpl,
                                       template_param=param, out_id="", up_extend_code="")
            await sent(log, "13600000002")  # the verification code goes at once
            assert sent_to(log)["13600000001"] == 0  # the notice, sent in the same pass, waits for 08:00
            clock.set(DAY1.replace(hour=8) + timedelta(days=1))
            await sent(log, "13600000001")

    run_on(backend, tmp_path, request, work)


def test_send_windows() -> None:
    w = SendWindow.parse("08:00-22:00")
    at = lambda h, m=0: DAY1.replace(hour=h, minute=m)  # noqa: E731
    assert w.contains(at(8)) and w.contains(at(21, 59)) and not w.contains(at(22)) and not w.contains(at(7, 59))
    assert w.next_start(at(6, 48)) == at(8) and w.next_start(at(23)) == at(8) + timedelta(days=1)
    assert w.next_start(at(12)) == at(12) and w.closes(at(12)) == at(22) and w.closes(at(23)) is None
    whole = SendWindow.parse("00:00-24:00")
    assert whole.whole_day and whole.contains(at(23, 59)) and whole.closes(at(12)) is None and str(whole) == \
        "00:00-24:00"
    for bad, rule in (("8-22", "HH:MM-HH:MM"), ("22:00-08:00", "start must come before"), ("08:00-24:30", "24:00"),
                      ("25:00-26:00", "HH:MM-HH:MM")):
        with pytest.raises(ValueError, match=rule):
            SendWindow.parse(bad)


def submitted(log: Path, prefix: str) -> int:
    """How many messages to numbers starting with `prefix` the simulated SMSC has logged so far."""
    if not log.exists():
        return 0
    return sum(f'"86{prefix}' in line for line in log.read_text().splitlines())


def test_a_task_limited_to_200_per_second_keeps_to_it_while_another_task_and_api_sends_progress(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0")
    port = free_port()
    log = tmp_path / "smsc.jsonl"
    smsc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", "smsc", "--port", str(port),
                             "--latency-ms", "10", "--log", str(log)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert smsc.stdout is not None and "listening" in smsc.stdout.readline()
        with running_server(env, "sqlite", ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{port}")) as server:
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "限速测试")
            promo = text_template(c, "双十二大促，全场五折。", template_type=2, name="promo")
            code = text_template(c, "验证码${code}。", template_type=0, name="code")
            slow, fast, api = (fresh_numbers(4000, prefix="137"), fresh_numbers(1000, prefix="136"),
                               fresh_numbers(20, prefix="135"))
            files = {}
            for name, phones in (("slow", slow), ("fast", fast)):
                files[name] = tmp_path / f"{name}.txt"
                files[name].write_text("\n".join(phones) + "\n")
            base = ["task", "create", "--account", tenant.name, "--sign", sign, "--template", "PUB_SERVICE_NOTICE",
                    "--fallback", "SMS", "--fallback-template", promo]  # everyone gets a message
            made = cli(env, *base, "--name", "slow", "--file", str(files["slow"]), "--rate", "200").stdout
            slow_id = made.split("created task ")[1].split()[0]
            # the slow task is under way at its rate before the other task and the API sends come in
            eventually(lambda: submitted(log, "137") >= 200, timeout=60)
            cli(env, *base, "--name", "fast", "--file", str(files["fast"]))
            for phone in api:
                sent = c.send_sms(m.SendSmsRequest(phone_numbers=phone, sign_name=sign, template_code=code,
                                                   template_param='{"code":"1234"}')).body
                assert sent.code == "OK", sent.to_map()
            shown = cli(env, "task", "show", slow_id, "--account", tenant.name).stdout
            assert "live.current_rate" in shown and "live.finish" in shown
            eventually(lambda: "completed" in cli(env, "task", "show", slow_id, "--account", tenant.name).stdout,
                       timeout=60)
        at: dict[str, float] = {json.loads(line)["dest"][2:]: json.loads(line)["at"]
                                for line in log.read_text().splitlines()}
        slow_times = sorted(at[p] for p in slow)
        assert len(slow_times) == len(slow)
        inner = [t for t in slow_times if slow_times[0] + 1 <= t <= slow_times[-1] - 1]  # the ramp left out
        rate = (len(inner) - 1) / (inner[-1] - inner[0])
        assert 180 <= rate <= 220, f"{rate:.1f} msg/s"
        # neither the other task nor the API's sends were held behind it: when the last of them reached the
        # SMSC, the slow task still had a second's worth (200) or more of its messages to go
        for others in (fast, api):
            last = max(at[p] for p in others)
            assert sum(t > last for t in slow_times) >= 200, (last, slow_times[-1])
    finally:
        smsc.kill()
        smsc.wait()
