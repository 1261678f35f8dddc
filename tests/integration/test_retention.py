"""Statistics outlive record retention: purging records past CARDSMS_RETENTION_DAYS keeps their daily counts,
and QuerySendStatistics, the console's overview counts and task reports read the same figures afterwards. The
purge runs in small batches while the server keeps answering sends. Both databases."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alibabacloud_dysmsapi20170525 import models as m

from cardsms.services import records, retention, task_reports
from cardsms.services.core import Services
from tests.conftest import BACKENDS, env_for, new_tenant, run_with_services
from tests.harness import cli, running_server
from tests.integration.helpers import approved_sign, eventually, text_template


def _today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")


def _statistics(client: Any) -> list[dict[str, Any]]:
    body = client.query_send_statistics(m.QuerySendStatisticsRequest(
        is_globe=1, start_date=_today(), end_date=_today(), page_index=1, page_size=10)).body
    assert body.code == "OK", body.to_map()
    return [r.to_map() for r in body.data.target_list]


@pytest.mark.parametrize("backend", BACKENDS)
def test_purged_records_keep_their_statistics_and_sends_go_on_during_the_purge(
        backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_FAIL_SHARE="10")
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("".join(f"{13700000000 + i}\n" for i in range(3_000)))
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "留存")
        code = text_template(c, "您的订单已发货。")
        for i in range(20):
            assert c.send_sms(m.SendSmsRequest(phone_numbers=f"1390001{i:04d}", sign_name=sign,
                                               template_code=code)).body.code == "OK"
        made = cli(env, "task", "create", "--account", tenant.name, "--sign", sign, "--template",
                   "PUB_SERVICE_NOTICE", "--name", "retention", "--file", str(numbers), "--wait")
        task_id = int(made.stdout.split("created task ")[1].split()[0])

        def settled() -> Any:  # every message has its final state: the figures stop moving
            rows = _statistics(c)
            return rows if rows and rows[0]["NoRespondedCount"] == 0 else None

        before = eventually(settled, timeout=120)
        assert before[0]["TotalCount"] >= 1_020 and before[0]["RespondedFailCount"] > 0  # card phones + texts

        async def report(svc: Services) -> tuple[dict[str, list[int]], dict[str, int]]:
            account = await _account(svc, tenant.name)
            return await records.daily_counts(svc, account, [_today()]), await task_reports.task_stats(svc, task_id)

        counts_before, task_before = run_with_services(env, report)
        while True:  # the simulated phones fetch (render) their cards a little after delivery: wait until done
            time.sleep(1.5)
            counts_now, task_now = run_with_services(env, report)
            if (counts_now, task_now) == (counts_before, task_before):
                break
            counts_before, task_before = counts_now, task_now

        # 40 days later (the clock of the purging process): every record is past the 30 days of retention.
        # After each of its first batches the purge waits until the server has answered a send: it does, so
        # nothing holds the database between batches.
        batch_done, answered = threading.Event(), threading.Event()
        sent_during: list[str] = []

        async def between(done: int) -> None:
            if done <= 3:
                answered.clear()
                batch_done.set()
                assert await asyncio.to_thread(answered.wait, 60), "no send was answered between purge batches"

        async def purge_later(svc: Services) -> retention.Purged:
            later = svc.now() + timedelta(days=40)
            svc.clock = lambda: later
            return await retention.purge(svc, batch=250, between=between)

        result: dict[str, retention.Purged] = {}
        worker = threading.Thread(target=lambda: result.update(p=run_with_services(env, purge_later)))
        worker.start()
        for _ in range(3):
            assert batch_done.wait(60), "the purge did not get through a batch"
            batch_done.clear()
            body = c.send_sms(m.SendSmsRequest(phone_numbers="13900099999", sign_name=sign, template_code=code)).body
            assert body.code == "OK", body.to_map()
            sent_during.append(body.biz_id)
            answered.set()
        worker.join(timeout=120)
        purged = result["p"]
        assert purged.messages >= 3_020 and purged.batches >= 12  # batches of 250 (skipped numbers too)

        # the records are gone, the figures are not
        gone = c.query_send_details(m.QuerySendDetailsRequest(phone_number="13900010000", send_date=_today(),
                                                              page_size=10, current_page=1)).body
        assert gone.code == "OK" and gone.total_count == "0"
        after = _statistics(c)
        extra = len(sent_during) + 1  # the sends made during the purge are still records (new, not purged)

        def matches() -> bool:
            now = _statistics(c)
            return now[0]["TotalCount"] >= before[0]["TotalCount"] + len(sent_during)

        eventually(matches, timeout=60)
        after = _statistics(c)[0]
        assert after["RespondedSuccessCount"] >= before[0]["RespondedSuccessCount"]
        assert after["RespondedFailCount"] == before[0]["RespondedFailCount"]
        assert before[0]["TotalCount"] <= after["TotalCount"] <= before[0]["TotalCount"] + extra
        counts_after, task_after = run_with_services(env, report)
        assert task_after == task_before  # the task's report, from its daily counts now
        assert counts_after[_today()][2:] == counts_before[_today()][2:]  # rendered, card: unchanged
        # statistics take any past day, also beyond the retention of the records
        old = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=60)).strftime("%Y%m%d")
        wide = c.query_send_statistics(m.QuerySendStatisticsRequest(
            is_globe=1, start_date=old, end_date=_today(), page_index=1, page_size=10)).body
        assert wide.code == "OK" and wide.data.target_list[0].send_date == _today()
        shown = cli(env, "task", "show", str(task_id), "--account", tenant.name).stdout
        assert f"│stats.submitted│{task_before['submitted']}│" in shown.replace(" ", "")


async def _account(svc: Services, name: str) -> int:
    from cardsms.services import accounts

    return await accounts.account_id(svc, name)



@pytest.mark.parametrize("backend", BACKENDS)
def test_the_purge_drops_frequency_guard_rows_no_window_needs(backend: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    """frequency_guard holds a lock row per number sent to (PostgreSQL's exact frequency control); a number
    not sent to for longer than the longest window (a day) needs none, so the purge deletes it."""
    from sqlalchemy import insert, select

    from cardsms.db.schema import frequency_guard
    from tests.conftest import with_services

    async def body(svc: Services) -> None:
        now = svc.now()
        old = now - timedelta(days=retention.GUARD_DAYS, minutes=1)
        fresh = now - timedelta(days=retention.GUARD_DAYS) + timedelta(minutes=5)
        rows = [("13800000001", old), ("13800000002", fresh), ("13800000003", now)]

        async def seed(conn: Any) -> None:
            await conn.execute(insert(frequency_guard), [{"account_id": 1, "phone": p, "at": at} for p, at in rows])

        await svc.execute_write(seed)
        await retention.purge(svc)
        async with svc.read() as conn:
            left = sorted(r[0] for r in await conn.execute(select(frequency_guard.c.phone)))
        assert left == ["13800000002", "13800000003"]

    with_services(backend, request, tmp_path, body)
