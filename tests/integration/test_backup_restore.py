"""`cardsms backup` of a running server in the middle of a 20,000-message task, `cardsms restore` into a new
data directory (and, on PostgreSQL, a new database), and the restored server answers for every message
that was accepted before the backup. Both databases."""

from __future__ import annotations

import asyncio
import json
import tarfile
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from cardsms.db.schema import messages, tasks
from cardsms.settings import Settings
from tests.conftest import BACKENDS, env_for, new_tenant
from tests.harness import cardsms_env, cli, running_server
from tests.integration.helpers import approved_sign, text_template


def _url(env: dict[str, str]) -> str:
    return Settings(_env_file=None, **{"data_dir": env["CARDSMS_DATA_DIR"],  # type: ignore[call-arg]
                                       "database_url": env.get("CARDSMS_DATABASE_URL", "")}).sqlalchemy_url


async def _task_progress(url: str) -> tuple[str, int, int]:
    """The task's state, its messages and the distinct numbers among them."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            state = await conn.scalar(select(tasks.c.state).limit(1))
            row = (await conn.execute(select(func.count(), func.count(messages.c.phone.distinct()))
                                      .where(messages.c.task_id.is_not(None)))).one()
            return str(state or ""), int(row[0]), int(row[1])
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_backup_mid_task_restores_every_accepted_message(backend: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    # receipts take 200 ms and the simulated SMSC is throttled, so the task is still sending at the backup
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_SIM_SMSC_LATENCY_MS="200",
                  CARDSMS_SMSC_TPS="2000")
    numbers = tmp_path / "numbers.txt"
    numbers.write_text("".join(f"{13600000000 + i}\n" for i in range(20_000)))
    archive = tmp_path / "backup" / "cardsms.tar.gz"
    with running_server(env, backend) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "备份")
        code = text_template(c, "您的订单已发货。")
        accepted = []
        for i in range(30):
            body = c.send_sms(m.SendSmsRequest(phone_numbers=f"1390000{i:04d}", sign_name=sign,
                                               template_code=code)).body
            assert body.code == "OK", body.to_map()
            accepted.append((f"1390000{i:04d}", body.biz_id))
        cli(env, "task", "create", "--account", tenant.name, "--sign", sign, "--template", "PUB_SERVICE_NOTICE",
            "--name", "backup", "--file", str(numbers))
        deadline = time.monotonic() + 120
        while True:  # the task is sending: some of its messages are in, not all
            state, count, _ = asyncio.run(_task_progress(_url(env)))
            if state == "sending" and count >= 1000:
                break
            assert time.monotonic() < deadline, (state, count)
            time.sleep(0.2)
        taken = cli(env, "backup", "--to", str(archive))
        assert "backed up" in taken.stdout, taken.stdout + taken.stderr
        again = cli(env, "backup", "--to", str(archive), check=False)
        assert again.returncode == 1 and "exists" in again.stderr
        assert asyncio.run(_task_progress(_url(env)))[1] < 20_000  # still sending after the backup
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest["database"] == backend and manifest["revision"] and manifest["format"] == 1
    assert f"database/cardsms.{'db' if backend == 'sqlite' else 'pgdump'}" in names

    restored_url = ""
    if backend == "postgresql":
        restored_url = request.getfixturevalue("pg").create_database(f"restored_{tmp_path.name[-20:]}")
    restored = cardsms_env(tmp_path / "restored", restored_url, CARDSMS_SIM_REVIEW_SECONDS="0")
    done = cli(restored, "restore", "--from", str(archive))
    assert "restored" in done.stdout, done.stdout + done.stderr
    twice = cli(restored, "restore", "--from", str(archive), check=False)
    assert twice.returncode == 1 and ("empty" in twice.stderr or "exists" in twice.stderr), twice.stderr
    with running_server(restored, backend) as server:
        tenant.server = server  # the same AccessKey: its secret was encrypted with the same key
        c = tenant.client()
        today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
        for phone, biz_id in accepted:
            rows = c.query_send_details(m.QuerySendDetailsRequest(
                phone_number=phone, send_date=today, page_size=10, current_page=1, biz_id=biz_id)).body
            assert rows.code == "OK" and rows.total_count == "1", (phone, rows.to_map())
        # the restored server takes the task up at its cursor: every number once, none twice
        deadline = time.monotonic() + 180
        while (progress := asyncio.run(_task_progress(_url(restored))))[0] != "completed":
            assert time.monotonic() < deadline, progress
            time.sleep(0.5)
        assert progress == ("completed", 20_000, 20_000)
    bad = cli(cardsms_env(tmp_path / "other"), "restore", "--from", str(numbers), check=False)
    assert bad.returncode == 1 and "not a cardsms backup" in " ".join(bad.stderr.split())
