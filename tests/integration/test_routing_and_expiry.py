"""Routing by number prefix and failover between connectors, across protocols (CMPP and SMPP);
validity and expiry; custom send content; the customUrl redirect when a card can no longer be rendered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m

from tests.conftest import BACKENDS, Tenant, env_for, new_tenant
from tests.harness import free_port, running_server
from tests.integration.helpers import approved_card, approved_sign, eventually, legacy, text_template
from tests.integration.test_sending import details, numbers


def start_smsc(env: dict[str, str], name: str, kind: str = "smsc") -> tuple[subprocess.Popen[bytes], int, Path]:
    """`cardsms simulator smsc` (or `ismg`) in its own process; its log names every accepted number as "dest"."""
    port = free_port()
    data = Path(env["CARDSMS_DATA_DIR"])
    log, out = data / f"{name}.jsonl", data / f"{name}.out"
    proc = subprocess.Popen([sys.executable, "-m", "cardsms", "simulator", kind, "--port", str(port),
                             "--latency-ms", "10", "--log", str(log)], env=env, stdout=out.open("w"),
                            stderr=subprocess.STDOUT)
    eventually(lambda: "listening" in out.read_text(), timeout=30)
    return proc, port, log


def dests(log: Path) -> set[str]:
    return {json.loads(line)["dest"] for line in log.read_text().splitlines()} if log.exists() else set()


@pytest.mark.parametrize("backend", BACKENDS)
def test_prefix_routing_and_failover(backend: str, request: pytest.FixtureRequest) -> None:
    env = env_for(backend, request, CARDSMS_SIM_REVIEW_SECONDS="0")
    main, main_port, main_log = start_smsc(env, "main", "ismg")
    backup, backup_port, backup_log = start_smsc(env, "backup")
    config = Path(env["CARDSMS_DATA_DIR"]) / "cardsms.toml"
    config.write_text(f'''[[smsc]]
name = "mainland"
url = "cmpp://901234:pw@127.0.0.1:{main_port}?version=3.0&src_id=1069"
prefixes = ["+86"]
window = 20
tps = 500

[[smsc]]
name = "backup"
url = "smpp://cardsms:pw@127.0.0.1:{backup_port}"
''')
    try:
        with running_server({**env, "CARDSMS_CONFIG": str(config)}, backend) as server:
            tenant = new_tenant(server)
            c = tenant.client()
            sign = approved_sign(c, "路由测试")
            domestic = text_template(c, "Your parcel ${no} is here.")
            abroad = text_template(c, "Your parcel ${no} is here.", template_type=3, name="intl")
            cn, uk = numbers(5), [f"+4479{i:08d}" for i in range(11_000_000, 11_000_005)]
            for phones, code in ((cn, domestic), (uk, abroad)):
                body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign,
                                                   template_code=code, template_param='{"no": "7"}')).body
                assert body.code == "OK", body.to_map()
            eventually(lambda: dests(main_log) >= {"86" + p for p in cn} and dests(backup_log) >= {u[1:] for u in uk})
            assert dests(main_log) == {"86" + p for p in cn}  # mainland numbers took the +86 connector (CMPP)
            assert dests(backup_log) == {u[1:] for u in uk}   # the rest took the catch-all one

            main.kill()
            main.wait()
            later = numbers(5, prefix="138")
            body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(later), sign_name=sign,
                                               template_code=domestic, template_param='{"no": "8"}')).body
            assert body.code == "OK"
            eventually(lambda: dests(backup_log) >= {"86" + p for p in later}, timeout=60)  # failover to SMPP
            eventually(lambda: all(d and d[0].send_status == 3 for d in (details(c, p) for p in later)))
            status = httpx.get(f"{server.url}/healthz").json()["delivery"]["connectors"]
            assert [s["name"] for s in status] == ["mainland", "backup"] and not status[0]["bound"]
    finally:
        for proc in (main, backup):
            proc.kill()
            proc.wait()


def test_messages_that_cannot_leave_expire_after_their_validity(request: pytest.FixtureRequest) -> None:
    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_MESSAGE_VALIDITY_SECONDS="2")
    with running_server(env, "sqlite", ("--smsc", f"smpp://cardsms:pw@127.0.0.1:{free_port()}")) as server:
        tenant = new_tenant(server)
        c = tenant.client()
        sign = approved_sign(c, "过期测试")
        code = text_template(c, "Notice ${no}.")
        phone = numbers(1)[0]
        assert c.send_sms(m.SendSmsRequest(phone_numbers=phone, sign_name=sign, template_code=code,
                                           template_param='{"no":"1"}')).body.code == "OK"
        row = eventually(lambda: [d for d in details(c, phone) if d.send_status == 2], timeout=30)[0]
        assert row.err_code == "EXPIRED"


def test_custom_send_content_and_the_custom_url_redirect(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "自定义")
    card = approved_card(c)
    custom = text_template(c, "${name}，您有一张新卡片。", name="custom")
    phones = numbers(20)
    support = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=card, mobiles=[{"mobile": p} for p in phones])).body
    phone = next(r.mobile for r in support.data.query_result if r.support)
    sent = c.send_card_sms(m.SendCardSmsRequest(
        card_template_code=card, sign_name=sign, template_code=custom, template_param=json.dumps({"name": "李雷"}),
        card_objects=[m.SendCardSmsRequestCardObjects(mobile=phone, custom_url="https://shop.example/fallback")])).body
    assert sent.success and sent.data.media_mobiles == phone, sent.to_map()
    row = eventually(lambda: [d for d in details(c, phone) if d.send_status == 3])[0]
    assert row.content.startswith("【自定义】李雷，您有一张新卡片。 http") and row.content.endswith("拒收请回复R")
    link = next(w for w in row.content.split() if "/s/" in w)
    assert httpx.get(link).status_code == 200
    assert legacy(tenant, "DeleteSmsTemplate", TemplateCode=card)["Code"] == "OK"
    gone = httpx.get(link, follow_redirects=False)
    assert gone.status_code == 302 and gone.headers["location"] == "https://shop.example/fallback"
    parser = httpx.get(link, headers={"X-Card-Parser": "HuaWei"})
    assert parser.status_code == 404 and parser.json()["code"] == "CARD_NOT_AVAILABLE"
