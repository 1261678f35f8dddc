"""When the database cannot store (disk full, PostgreSQL stopped) the API answers a retryable
ServiceUnavailable (HTTP 503) and acknowledges nothing it did not store; the dispatcher waits and goes on by
itself once the database is back. Past the queue limit sends answer Throttling.Queue instead of queueing
without bound."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ClientException, ServerException

from tests.conftest import BACKENDS, Tenant, env_for, new_tenant
from tests.harness import PostgresServer, cardsms_env, running_server
from tests.integration.helpers import approved_sign, eventually, text_template


def _today() -> str:
    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")


def _stored(client: Any, phone: str, biz_id: str = "") -> list[Any]:
    body = client.query_send_details(m.QuerySendDetailsRequest(
        phone_number=phone, send_date=_today(), page_size=50, current_page=1, biz_id=biz_id or None)).body
    assert body.code == "OK", body.to_map()
    return body.sms_send_detail_dtos.sms_send_detail_dto or []


def test_a_full_disk_answers_503_stores_nothing_and_sending_resumes(request: pytest.FixtureRequest) -> None:
    """SQLite capped at 3 MB (CARDSMS_SQLITE_MAX_MB: SQLITE_FULL, exactly as a full disk)."""
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SQLITE_MAX_MB="3")
    accepted: list[tuple[list[str], str]] = []
    refused: list[list[str]] = []
    with running_server(env, "sqlite") as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "磁盘")
        code = text_template(c, "您的订单已发货，这是一条较长的通知，用来更快地填满数据库文件。" * 4)
        for i in range(400):  # until the file is full
            phones = [f"138{i:04d}{j:04d}" for j in range(100)]
            try:
                body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign,
                                                   template_code=code)).body
            except ServerException as exc:
                assert exc.status_code == 503 and exc.code == "ServiceUnavailable", exc
                refused.append(phones)
                if len(refused) >= 3:
                    break
                continue
            assert body.code == "OK", body.to_map()
            accepted.append((phones, body.biz_id))
        assert accepted and len(refused) >= 3, "the database never filled up"
        for phones, biz_id in accepted[-3:]:  # what was acknowledged is stored
            assert len(_stored(c, phones[0], biz_id)) == 1
        for phones in refused:  # what was refused is not, not even in part
            assert _stored(c, phones[0]) == [] and _stored(c, phones[-1]) == []
        assert server.proc.poll() is None  # the server lives on
    env["CARDSMS_SQLITE_MAX_MB"] = "0"  # room again: the same data, no cap
    with running_server(env, "sqlite") as server:
        tenant.server = server
        c = tenant.client()
        ok = c.send_sms(m.SendSmsRequest(phone_numbers="13900066666", sign_name=sign, template_code=code)).body
        assert ok.code == "OK", ok.to_map()
        last_phones, last_biz = accepted[-1]
        eventually(lambda: [r for r in _stored(c, last_phones[0], last_biz) if r.send_status == 3], timeout=120)


@pytest.fixture
def own_pg() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own: it is stopped and started again mid-send."""
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def test_postgresql_stopped_mid_send_answers_503_and_the_dispatcher_resumes(own_pg: PostgresServer,
                                                                            tmp_path: Any) -> None:
    (tmp_path / "data").mkdir()
    env = cardsms_env(tmp_path / "data", own_pg.create_database("outage"), CARDSMS_SIM_REVIEW_SECONDS="0",
                      CARDSMS_SIM_SMSC_LATENCY_MS="100")
    from tests.harness import cli

    cli(env, "migrate")
    with running_server(env, "postgresql") as server:
        tenant: Tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "停库")
        code = text_template(c, "您的订单已发货。")
        before = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(f"1370000{i:04d}" for i in range(50)),
                                             sign_name=sign, template_code=code)).body
        assert before.code == "OK"
        own_pg.pause()
        unavailable = 0
        for i in range(5):
            try:
                c.send_sms(m.SendSmsRequest(phone_numbers=f"1371111{i:04d}", sign_name=sign, template_code=code))
            except ServerException as exc:
                assert exc.status_code == 503 and exc.code == "ServiceUnavailable", exc
                unavailable += 1
            except ClientException as exc:  # an account or key lookup may fail first: named, never a 500
                assert exc.status_code in (400, 403, 404) or "ServiceUnavailable" in str(exc), exc
        assert unavailable >= 1
        time.sleep(2)  # the dispatcher meets the outage too
        own_pg.start()
        after = eventually(lambda: c.send_sms(m.SendSmsRequest(
            phone_numbers="13722220000", sign_name=sign, template_code=code)).body, timeout=60)
        assert after.code == "OK"
        # everything acknowledged before the outage is delivered, by a dispatcher nobody restarted
        eventually(lambda: all(r.send_status == 3 for r in _stored(c, "13700000049", before.biz_id))
                   and _stored(c, "13700000049", before.biz_id), timeout=120)
        eventually(lambda: [r for r in _stored(c, "13722220000", after.biz_id) if r.send_status == 3], timeout=120)
        for i in range(5):
            assert _stored(c, f"1371111{i:04d}") == []  # the refused sends stored nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_past_the_queue_limit_sends_are_throttled_not_queued(backend: str, request: pytest.FixtureRequest) -> None:
    # an SMSC nobody listens on: everything accepted stays queued
    # every send counts the queue afresh (CARDSMS_QUEUE_COUNT_SECONDS=0): the limit is met exactly
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_QUEUE_LIMIT="30",
                  CARDSMS_QUEUE_COUNT_SECONDS="0")
    with running_server(env, backend, ("--smsc", "smpp://cardsms:secret@127.0.0.1:9")) as server:
        c = new_tenant(server).client()
        sign = approved_sign(c, "排队")
        code = text_template(c, "您的订单已发货。")
        first = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(f"1360000{i:04d}" for i in range(25)),
                                            sign_name=sign, template_code=code)).body
        assert first.code == "OK"
        up_to = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(f"1360001{i:04d}" for i in range(5)),
                                            sign_name=sign, template_code=code)).body
        assert up_to.code == "OK"  # 25 + 5: at the limit, not over it
        with pytest.raises(AlibabaCloudException) as err:  # the SDK raises ThrottlingException for Throttling.*
            c.send_sms(m.SendSmsRequest(phone_numbers="13611110000", sign_name=sign, template_code=code))
        assert err.value.code == "Throttling.Queue" and "CARDSMS_QUEUE_LIMIT" in err.value.message, err.value
        assert _stored(c, "13611110000") == []


def test_a_full_postgresql_disk_answers_503_and_sending_resumes(own_pg: PostgresServer, tmp_path: Any) -> None:
    """The messages table on a tablespace of its own on a small tmpfs the test mounts: PostgreSQL answers
    'could not extend file: No space left on device' (SQLSTATE 53100), the API 503; more room, and on it goes."""
    import os
    import shutil
    import subprocess

    from tests.harness import cli

    assert os.geteuid() == 0, "this test mounts a small tmpfs: run the suite as root (as `make test` does)"
    space = own_pg.dir / "small"  # inside the server's own directory, which the postgres user can reach
    space.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(space)], check=True)
    try:
        shutil.chown(space, "postgres", "postgres")
        (tmp_path / "data").mkdir()
        url = own_pg.create_database("diskfull")
        env = cardsms_env(tmp_path / "data", url, CARDSMS_SIM_REVIEW_SECONDS="0")
        cli(env, "migrate")
        import asyncio

        import asyncpg

        async def move() -> None:
            conn = await asyncpg.connect(url)
            try:
                await conn.execute(f"CREATE TABLESPACE small LOCATION '{space}'")
                await conn.execute("ALTER TABLE messages SET TABLESPACE small")
            finally:
                await conn.close()

        asyncio.run(move())
        accepted: list[tuple[str, str]] = []
        refused: list[str] = []
        with running_server(env, "postgresql") as server:
            c = new_tenant(server).client()
            sign = approved_sign(c, "满盘")
            code = text_template(c, "您的订单已发货，这是一条较长的通知，用来更快地填满表空间。" * 4)
            for i in range(300):
                phones = [f"139{i:04d}{j:04d}" for j in range(100)]
                try:
                    body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign,
                                                       template_code=code)).body
                except ServerException as exc:
                    assert exc.status_code == 503 and exc.code == "ServiceUnavailable", exc
                    refused.append(phones[0])
                    if len(refused) >= 2:
                        break
                    continue
                assert body.code == "OK", body.to_map()
                accepted.append((phones[0], body.biz_id))
            assert accepted and len(refused) >= 2, "the tablespace never filled up"
            for phone in refused:
                assert _stored(c, phone) == []
            subprocess.run(["mount", "-o", "remount,size=200m", str(space)], check=True)  # room again
            ok = c.send_sms(m.SendSmsRequest(phone_numbers="13900077777", sign_name=sign, template_code=code)).body
            assert ok.code == "OK", ok.to_map()
            phone, biz = accepted[-1]
            try:
                eventually(lambda: [r for r in _stored(c, phone, biz) if r.send_status == 3], timeout=120)
            except AssertionError:
                rows = _stored(c, phone, biz)
                log = sorted((tmp_path / "data").glob("serve-*.log"))[-1].read_text()[-3000:]
                raise AssertionError(f"not delivered: {[r.to_map() for r in rows]}\n{log}") from None
    finally:
        own_pg.pause()
        subprocess.run(["umount", "-l", str(space)], check=False)
