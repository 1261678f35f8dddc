"""Frequency control as Alibaba applies it: what one number may get from one account under one signature.

Through the official SDK against the real server: the 2nd verification code within a minute is refused
with Alibaba's code; a 1,000-number SendSms with 3 numbers over their limit sends 997 and names the 3; an
exempt number is never refused; a mass task leaves the over-limit numbers out and its page and CSV say so.
In-process with the clock moved (services' clock): the 6th code within an hour and the 11th within a day are
refused, and each is allowed again when its window has passed; the duplicate-content guard; several
messages to one number in one SendBatchSms. Two `cardsms api` processes on PostgreSQL: concurrent sends to
one number never get more than the limit through."""

from __future__ import annotations

import csv
import io
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select

from cardsms.db.schema import messages
from cardsms.domain.errors import CardsmsError
from cardsms.openapi.ops_send import text_answer
from cardsms.services import accounts, frequency, sending
from cardsms.services.core import Services
from cardsms.services.outbox import SendResult
from tests.conftest import BACKENDS, Tenant, env_for, new_tenant, run_with_services
from tests.harness import Server, cli, free_port, running_server, stop_process
from tests.integration.helpers import approved_sign, console_client, eventually, text_template

CODE = "您的验证码为${code}，5分钟内有效。"


def send_code(client: object, phone: str, sign: str, code: str) -> object:
    return client.send_sms(m.SendSmsRequest(  # type: ignore[attr-defined]
        phone_numbers=phone, sign_name=sign, template_code=code, template_param='{"code":"1234"}')).body


async def _states(svc: Services, biz_id: str) -> dict[tuple[str, str], int]:
    async with svc.read() as conn:
        return {(state, code): n for state, code, n in await conn.execute(
            select(messages.c.state, messages.c.error_code, func.count()).where(messages.c.biz_id == biz_id)
            .group_by(messages.c.state, messages.c.error_code))}


@pytest.mark.parametrize("backend", BACKENDS)
def test_frequency_control_through_the_sdk_calls_tasks_and_the_allowlist(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "频控")
        code = text_template(c, CODE, template_type=0, name="code")

        # the 2nd verification code to one number within a minute: Alibaba's code, the number, the rule, when
        assert send_code(c, "13811110001", sign, code).code == "OK"
        second = send_code(c, "13811110001", sign, code)
        assert second.code == "isv.BUSINESS_LIMIT_CONTROL", second.to_map()  # type: ignore[attr-defined]
        assert "13811110001" in second.message and "at most 1 per minute" in second.message  # type: ignore[attr-defined]
        assert re.search(r"may be sent again after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", second.message)  # type: ignore[attr-defined]
        # nothing of the refused call was written: the number has one message
        assert cli(env, "frequency", "show", tenant.name).stdout.count("verification") == 3

        # an exempt number is never refused
        cli(env, "frequency", "exempt", tenant.name, "13811110002", "+86 138 1111 0003")
        for _ in range(4):
            assert send_code(c, "13811110002", sign, code).code == "OK"
        assert "13811110002, 13811110003" in cli(env, "frequency", "show", tenant.name).stdout
        bad = cli(env, "frequency", "exempt", tenant.name, "12345", check=False)
        assert bad.returncode != 0 and "exempt numbers[1]" in bad.stderr + bad.stdout

        # a 1,000-number SendSms with 3 numbers over their (tightened) limit: 997 sent, the 3 named
        cli(env, "frequency", "set", tenant.name, "notification", "day", "1")
        notice = text_template(c, "您的订单已发货。", name="notice")
        over = ["13822220007", "13822220500", "13822220999"]
        for phone in over:
            assert c.send_sms(m.SendSmsRequest(phone_numbers=phone, sign_name=sign, template_code=notice)
                              ).body.code == "OK"
        phones = [f"13822220{i:03d}" for i in range(1000)]
        big = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign, template_code=notice)).body
        assert big.code == "OK", big.to_map()
        assert "3 number(s) left out by frequency control" in big.message
        assert all(p in big.message for p in over) and "at most 1 per day" in big.message
        states = run_with_services(env, lambda svc: _states(svc, str(big.biz_id)))
        assert states.pop(("skipped", "isv.DAY_LIMIT_CONTROL")) == 3, states
        assert sum(states.values()) == 997 and not any(s == "skipped" for s, _ in states), states
        bad_limit = cli(env, "frequency", "set", tenant.name, "notification", "week", "1", check=False)
        assert bad_limit.returncode != 0 and "window must be one of" in bad_limit.stderr + bad_limit.stdout

        # a mass task leaves the numbers over their limit out and reports them
        cli(env, "frequency", "set", tenant.name, "card", "day", "1")
        task_phones = [f"1383333{i:04d}" for i in range(20)]
        card = c.send_card_sms(m.SendCardSmsRequest(
            card_objects=[m.SendCardSmsRequestCardObjects(mobile=p) for p in task_phones[:5]],
            card_template_code="PUB_SERVICE_NOTICE", sign_name=sign, fallback_type="NONE")).body
        assert card.code == "OK", card.to_map()
        carded = sorted(str(card.data.media_mobiles).split(","))  # the phones that show cards got one today
        assert carded, card.to_map()
        numbers = tmp_path / "numbers.txt"
        numbers.write_text("\n".join(task_phones) + "\n")
        done = cli(env, "task", "create", "--account", tenant.name, "--name", "频控任务", "--sign", sign,
                   "--template", "PUB_SERVICE_NOTICE", "--file", str(numbers), "--wait")
        assert "completed" in done.stdout, done.stdout
        web = console_client(server, env, tenant.name)
        task_id = re.search(r'href="/console/tasks/(\d+)"', web.get("/console/tasks").text).group(1)  # type: ignore[union-attr]
        page = web.get(f"/console/tasks/{task_id}").text
        assert re.search(rf'data-stat="limited">{len(carded)}<', page), page[-3000:]
        export = list(csv.DictReader(io.StringIO(web.get(f"/console/tasks/{task_id}/export.csv").text)))
        limited = {r["phone"]: r for r in export if r["error_code"] == "isv.DAY_LIMIT_CONTROL"}
        assert sorted(limited) == carded
        assert all("card messages" in r["error_text"] and r["state"] == "skipped" for r in limited.values())
        assert not set(carded) & {r["phone"] for r in export if r["state"] != "skipped"}

        # the console's Settings: a bad field is named and nothing changes; a good form saves every field
        page = web.get("/console/settings").text
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        form = {"csrf": token, "limit_verification_minute": "", "limit_verification_hour": "3",
                "limit_promotion_day": "many", "exempt": "13811110002\n13811110003", "duplicate_seconds": "30"}
        bad = web.post("/console/settings/frequency", data=form)
        assert bad.status_code == 400 and "limit_promotion_day" in bad.text
        assert "verification  hour    3" not in cli(env, "frequency", "show", tenant.name).stdout
        good = web.post("/console/settings/frequency", data={**form, "limit_promotion_day": "20",
                                                              "limit_card_day": "1", "limit_notification_day": "1"})
        assert good.status_code == 303, good.text[-2000:]
        shown = cli(env, "frequency", "show", tenant.name).stdout
        assert "verification  hour    3 (own)" in shown and "promotion     day     20 (own)" in shown, shown
        assert "at most once per 30 s" in shown and "13811110003" in shown

        # the changes are audited
        audit = web.get("/console/audit").text
        assert "frequency.limit" in audit and "frequency.exempt" in audit and "frequency.duplicates" in audit


@pytest.mark.parametrize("backend", BACKENDS)
def test_windows_pass_with_the_clock_and_the_duplicate_guard(backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign, other_sign = approved_sign(c, "时钟"), approved_sign(c, "另一签名")
        code = text_template(c, CODE, template_type=0, name="code")
        notice = text_template(c, "您好，${name}，您的包裹已到。", name="notice")
    start = datetime(2026, 12, 10, 2, 0, tzinfo=UTC)  # 10:00 in mainland China

    async def body(svc: Services) -> list[str]:
        account = await accounts.account_id(svc, tenant.name)
        now = {"t": start}
        svc.clock = lambda: now["t"]
        outcomes: list[str] = []

        async def send(at: float, phone: str = "13900000001", sign_name: str = sign, template: str = code,
                       param: dict[str, str] | None = None) -> str:
            now["t"] = start + timedelta(seconds=at)
            try:
                await sending.send_sms(svc, account, phones=[phone], sign_name=sign_name, template_code=template,
                                       template_param=param or {"code": "1234"}, out_id="", up_extend_code="")
            except CardsmsError as exc:
                outcomes.append(f"{at}: {exc.code} {exc.message}")
                return exc.code
            outcomes.append(f"{at}: OK")
            return "OK"

        assert await send(0) == "OK"
        assert await send(30) == "isv.BUSINESS_LIMIT_CONTROL"
        assert "2026-12-10 10:01:00" in outcomes[-1]
        assert await send(30, sign_name=other_sign) == "OK"  # counted per signature
        for at in (61, 122, 183, 244):  # 5 within the hour
            assert await send(at) == "OK", outcomes
        assert await send(305) == "isv.BUSINESS_LIMIT_CONTROL"  # the 6th within an hour
        assert "per hour" in outcomes[-1] and "2026-12-10 11:00:00" in outcomes[-1]
        for at in (3601, 3662, 3723, 3784, 3845):  # the hour has passed: the 6th to the 10th of the day
            assert await send(at) == "OK", outcomes
        assert await send(7300) == "isv.DAY_LIMIT_CONTROL"  # the 11th within the day
        assert "per day" in outcomes[-1] and "2026-12-11 00:00:00" in outcomes[-1]
        assert await send(14 * 3600 + 1) == "OK"  # 00:00:01 the next day in mainland time

        # the duplicate-content guard: the same rendered text to one number within 30 s
        await frequency.set_duplicate_seconds(svc, account, 30)
        base = 20 * 3600
        assert await send(base, "13900000002", template=notice, param={"name": "王"}) == "OK"
        assert await send(base + 10, "13900000002", template=notice, param={"name": "王"}) == \
            "isv.BUSINESS_LIMIT_CONTROL"
        assert "the same text" in outcomes[-1]
        assert await send(base + 10, "13900000002", template=notice, param={"name": "李"}) == "OK"
        assert await send(base + 41, "13900000002", template=notice, param={"name": "王"}) == "OK"
        await frequency.set_duplicate_seconds(svc, account, 0)

        # one number 51 times in one SendBatchSms: 50 notifications go, the 51st is left out and named
        now["t"] = start + timedelta(seconds=base + 100)
        sent = await sending.send_batch_sms(
            svc, account, phones=["13900000003"] * 51, sign_names=[sign] * 51, template_code=notice,
            params=[{"name": "张"}] * 51, extend_codes=None, out_id="")
        assert isinstance(sent, SendResult)
        answer = text_answer(sent)
        assert "1 number(s) left out by frequency control" in answer["Message"], answer
        states = await _states(svc, answer["BizId"])
        assert states[("skipped", "isv.DAY_LIMIT_CONTROL")] == 1 and sum(states.values()) == 51
        # the limits can be loosened: 0 is no limit
        await frequency.set_limit(svc, account, "notification", "day", 0)
        assert await send(base + 200, "13900000003", template=notice, param={"name": "张"}) == "OK"
        return outcomes

    run_with_services(env, body)


def test_two_api_processes_never_let_more_than_the_limit_through(request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    """100 concurrent SendSms calls to one number, half through each of two `cardsms api` processes on one
    PostgreSQL database, with the account's daily notification limit at 5: exactly 5 are accepted."""
    env = env_for("postgresql", request, CARDSMS_SIM_REVIEW_SECONDS="0")
    with running_server(env, "postgresql") as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "并发")
        notice = text_template(c, "您的订单已发货。", name="notice")
    cli(env, "frequency", "set", tenant.name, "notification", "day", "5")
    ports = [free_port(), free_port()]
    procs = [subprocess.Popen([sys.executable, "-m", "cardsms", "api", "--port", str(p)], env=env,
                              stdout=(tmp_path / f"api{p}.log").open("wb"), stderr=subprocess.STDOUT)
             for p in ports]
    try:
        clients = []
        for port, proc in zip(ports, procs, strict=True):
            api = Server(port, env, proc, "postgresql")
            eventually(lambda api=api: _healthy(api.port), timeout=60)
            clients.append(Tenant(tenant.name, tenant.key_id, tenant.secret, api).client())

        def one(i: int) -> str:
            body = clients[i % 2].send_sms(m.SendSmsRequest(phone_numbers="13700007777", sign_name=sign,
                                                            template_code=notice)).body
            return str(body.code)

        with ThreadPoolExecutor(32) as pool:
            codes = list(pool.map(one, range(100)))
    finally:
        for proc in procs:
            stop_process(proc)
    assert codes.count("OK") == 5, codes
    assert codes.count("isv.DAY_LIMIT_CONTROL") == 95, codes

    async def sent(svc: Services) -> int:
        async with svc.read() as conn:
            return int(await conn.scalar(select(func.count()).select_from(messages).where(
                messages.c.phone == "13700007777")) or 0)

    assert run_with_services(env, sent) == 5


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False

