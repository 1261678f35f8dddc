"""Upgrades keep data: a database built with the schema of the first migration and filled with rows written
for that schema is brought to head by `cardsms migrate`, and everything reads back through the API (old and
new operations) and works (a send with the old signature and template). Both databases."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from cardsms.crypto import Crypto
from cardsms.db.migrate import current_revision, head_revision, upgrade
from cardsms.settings import Settings
from tests.conftest import BACKENDS, Tenant
from tests.harness import SECRET_KEY, cardsms_env, cli, running_server
from tests.integration.helpers import eventually

FIRST = "0001"  # the first migration, 0001_initial_schema.py
KEY_ID, KEY_SECRET = "LTAIupgradeKey0001", "upgrade-secret-of-the-first-release"


async def _first_release(url: str) -> None:
    """The schema of the first migration, and the rows its code wrote (columns of that time only)."""
    engine = create_async_engine(url)
    try:
        await upgrade(engine, FIRST)
        assert await current_revision(engine) == FIRST
        now = datetime.now(UTC)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, name, qps_limit, created_at) "
                                    "VALUES (1, 'legacy', NULL, :now)"), {"now": now})
            await conn.execute(text(
                "INSERT INTO access_keys (account_id, key_id, secret_enc, enabled, description, created_at) "
                "VALUES (1, :kid, :enc, :yes, 'from the first release', :now)"),
                {"kid": KEY_ID, "enc": Crypto(SECRET_KEY).encrypt(KEY_SECRET), "yes": True, "now": now})
            await conn.execute(text(
                "INSERT INTO signs (id, account_id, name, name_key, sign_type, sign_source, remark, files, status, "
                "reason, created_at, updated_at) VALUES (1, 1, '老签名', '老签名', 1, 0, 'first release', :files, 1, "
                "'', :now, :now)"), {"files": json.dumps([]), "now": now})
            await conn.execute(text(
                "INSERT INTO templates (id, account_id, code, kind, name, template_type, content, body, sign_name, "
                "remark, factorys, status, reason, created_at, updated_at) VALUES (1, 1, 'SMS_100000001', 'text', "
                "'old notice', 1, '您的订单${order}已发货。', NULL, '', 'first release', '', 1, '', :now, :now)"),
                {"now": now})
            for kind, subject in (("sign", 1), ("template", 1)):
                await conn.execute(text(
                    "INSERT INTO reviews (account_id, subject_kind, subject_id, vendor, state, reason, submitted_at, "
                    "due_at, decided_at) VALUES (1, :kind, :subject, '', 1, '', :now, :now, :now)"),
                    {"kind": kind, "subject": subject, "now": now})
        if url.startswith("postgresql"):  # ids given explicitly: move the sequences past them, as the code would
            async with engine.begin() as conn:
                for table in ("accounts", "signs", "templates"):
                    await conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))
    finally:
        await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_first_release_database_upgrades_and_keeps_its_data(backend: str, request: pytest.FixtureRequest,
                                                               tmp_path: Path) -> None:
    url = request.getfixturevalue("pg").create_database(f"upgrade_{tmp_path.name[-20:]}") \
        if backend == "postgresql" else ""
    env = cardsms_env(tmp_path / "data", url, CARDSMS_SIM_REVIEW_SECONDS="0")
    (tmp_path / "data").mkdir(parents=True, exist_ok=True)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", database_url=url)  # type: ignore[call-arg]
    asyncio.run(_first_release(settings.sqlalchemy_url))
    migrated = cli(env, "migrate").stdout
    assert f"migrated database from {FIRST} to {head_revision()}" in migrated, migrated
    with running_server(env, backend) as server:
        legacy = Tenant("legacy", KEY_ID, KEY_SECRET, server)
        c = legacy.client()
        assert c.query_sms_sign(m.QuerySmsSignRequest(sign_name="老签名")).body.sign_status == 1
        sign = c.get_sms_sign(m.GetSmsSignRequest(sign_name="老签名")).body
        assert sign.code == "OK" and sign.sign_status == 1 and sign.qualification_id is None
        old = c.query_sms_template(m.QuerySmsTemplateRequest(template_code="SMS_100000001")).body
        assert old.template_status == 1 and old.template_content == "您的订单${order}已发货。"
        new_view = c.get_sms_template(m.GetSmsTemplateRequest(template_code="SMS_100000001")).body
        assert new_view.template_status == "1" and new_view.variable_attribute == "{}"
        sent = c.send_sms(m.SendSmsRequest(phone_numbers="13900055555", sign_name="老签名",
                                           template_code="SMS_100000001", template_param='{"order": "A-9"}')).body
        assert sent.code == "OK", sent.to_map()
        today = datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")

        def delivered() -> object:
            rows = c.query_send_details(m.QuerySendDetailsRequest(
                phone_number="13900055555", send_date=today, page_size=10, current_page=1, biz_id=sent.biz_id)).body
            dtos = rows.sms_send_detail_dtos.sms_send_detail_dto or []
            return dtos if dtos and dtos[0].send_status == 3 else None

        row = eventually(delivered)[0]
        assert row.content == "【老签名】您的订单A-9已发货。"
        # what the later migrations added works on the old rows too
        tagged = c.tag_resources(m.TagResourcesRequest(resource_type="TEMPLATE", resource_id=["SMS_100000001"],
                                                       region_id="cn-hangzhou", prod_code="dysms",
                                                       tag=[m.TagResourcesRequestTag(key="era", value="first")]))
        assert tagged.body.code == "OK"
        assert cli(env, "account", "list").stdout.count("legacy") == 1
