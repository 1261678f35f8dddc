"""Webhooks (delivery, reply and render reports) survive a failing receiver and are signed;
replies of R opt numbers out, and later promotional and card sends skip them."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m

from tests.conftest import env_for, new_tenant
from tests.harness import Server, cli, running_server
from tests.integration.helpers import (
    approved_card,
    approved_sign,
    console_client,
    eventually,
    legacy,
    text_template,
)
from tests.integration.test_sending import TODAY, numbers


class Receiver:
    """An HTTP receiver that fails its first `failures` requests with HTTP 500."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                owner.calls += 1
                if owner.calls <= owner.failures:
                    self.send_response(500)
                    self.end_headers()
                    return
                owner.accepted.append(({k.lower(): v for k, v in self.headers.items()}, body))
                answer = b'{"code": 0, "msg": "ok"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/hook"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def reports(self, kind: str) -> list[dict[str, Any]]:
        return [r for h, body in self.accepted if h.get("x-cardsms-report-type") == kind for r in json.loads(body)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=3)
    yield r
    r.http.shutdown()


def test_reports_reach_a_failing_receiver_signed_and_replies_opt_out(lively_server: Server,
                                                                     receiver: Receiver) -> None:
    tenant = new_tenant(lively_server)
    secrets = {}
    for kind in ("SmsReport", "SmsUp", "MnsCardVender", "MnsCardTemplate", "TemplateSmsReport", "SignSmsReport"):
        out = cli(lively_server.env, "webhook", "set", "--account", tenant.name, "--type", kind, "--url", receiver.url)
        secrets[kind] = json.loads(out.stdout)["secret"]
    c = tenant.client()
    sign = approved_sign(c, "回执测试")
    card = approved_card(c)
    promo = text_template(c, "双十二大促，全场五折。", template_type=2, name="promo")
    phones = numbers(12)
    support = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=card, mobiles=[{"mobile": p} for p in phones])).body
    card_phones = {r.mobile for r in support.data.query_result if r.support}
    sent = c.send_card_sms(m.SendCardSmsRequest(
        card_template_code=card, sign_name=sign, fallback_type="SMS", sms_template_code=promo,
        card_objects=[m.SendCardSmsRequestCardObjects(mobile=p) for p in phones])).body
    assert sent.success, sent.to_map()

    # every number gets a delivery report, every card phone a render report, every number replied R
    eventually(lambda: {r["phone_number"] for r in receiver.reports("SmsReport")} == set(phones), timeout=60)
    eventually(lambda: {r["mobile"] for r in receiver.reports("MnsCardVender")} == card_phones, timeout=60)
    eventually(lambda: {r["phone_number"] for r in receiver.reports("SmsUp")} == set(phones), timeout=60)
    assert receiver.calls > len(receiver.accepted) >= 3  # the first attempts failed and were retried
    for headers, body in receiver.accepted:
        kind = headers["x-cardsms-report-type"]
        expected = hmac.new(secrets[kind].encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["x-cardsms-signature"], expected)
        assert headers["content-type"].startswith("application/json")
    report = next(r for r in receiver.reports("SmsReport") if r["phone_number"] in card_phones)
    assert report["success"] is True and report["err_code"] == "DELIVERED" and report["biz_id"] == sent.data.biz_card_id
    assert all(r["content"] == "R" and r["sign_name"] == sign for r in receiver.reports("SmsUp"))

    # the numbers opted out: promotional and card sends skip them, each with a reason
    again = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(phones), sign_name=sign, template_code=promo)).body
    assert again.code == "OK" and "opted out" in again.message and phones[0] in again.message
    rows = legacy(tenant, "QuerySendDetails", PhoneNumber=phones[0], SendDate=TODAY(), PageSize="10",
                  CurrentPage="1", BizId=again.biz_id)["SmsSendDetailDTOs"]["SmsSendDetailDTO"]
    assert rows[0]["SendStatus"] == 2 and rows[0]["ErrCode"] == "SUPPRESSED"
    card_again = legacy(tenant, "SendCardSms", CardTemplateCode=card, SignName=sign, FallbackType="NONE",
                        CardObjects=json.dumps([{"mobile": p} for p in phones]))
    assert card_again["Success"] is True and card_again["Data"]["MediaMobiles"] == ""
    assert set(card_again["Data"]["SuppressedMobiles"].split(",")) == set(phones)
    # a verification code still goes through
    code = text_template(c, "验证码${code}。", template_type=0, name="code")
    otp = c.send_sms(m.SendSmsRequest(phone_numbers=phones[0], sign_name=sign, template_code=code,
                                      template_param='{"code":"1234"}')).body
    assert otp.code == "OK" and otp.message == "OK"

    # review changes were reported too
    signs = eventually(lambda: [r for r in receiver.reports("SignSmsReport") if r["sign_name"] == sign])
    assert signs[-1]["sign_status"] == 1
    tpl = eventually(lambda: [r for r in receiver.reports("TemplateSmsReport") if r["template_code"] == promo])
    assert tpl[-1]["template_status"] == 1 and tpl[-1]["template_type"] == 2
    cards = eventually(lambda: [r for r in receiver.reports("MnsCardTemplate") if r["template_code"] == card])
    assert cards[-1]["approval_status"] == 1
    assert {op["vendorCode"] for op in cards[-1]["tmpOps"]} >= {"HuaWei", "XiaoMi"}

    listed = json.loads(cli(lively_server.env, "webhook", "list", "--account", tenant.name, "--json").stdout)
    by_type = {h["type"]: h for h in listed}
    assert by_type["SmsUp"]["delivered"] >= len(phones) and by_type["SmsUp"]["failed"] == 0


def test_webhooks_reach_only_public_addresses_unless_allowed(request: pytest.FixtureRequest,
                                                             receiver: Receiver) -> None:
    """Without CARDSMS_OUTBOUND_ALLOW_NETWORKS a server refuses internal targets: visibly internal ones when the
    webhook is set, names that resolve inside when a report is sent (the receiver here would answer)."""
    import socket

    env = env_for("sqlite", request, CARDSMS_SIM_REVIEW_SECONDS="0", CARDSMS_OUTBOUND_ALLOW_NETWORKS="[]",
                  CARDSMS_WEBHOOK_RETRY_BASE_SECONDS="0.2")
    with running_server(env, "sqlite") as server:
        tenant = new_tenant(server)
        for url, words in (("http://127.0.0.1:9/hook", "loopback"), ("http://localhost:9/", "server itself"),
                           ("http://169.254.169.254/latest/meta-data", "link-local"),
                           ("http://10.0.0.7/hook", "private"), ("http://[::1]:9/", "loopback")):
            refused = cli(env, "webhook", "set", "--account", tenant.name, "--type", "SmsReport", "--url", url,
                          check=False)
            assert refused.returncode == 2 and words in refused.stderr, (url, refused.stderr)
        port = receiver.url.split(":")[2].split("/")[0]
        inside = f"http://{socket.gethostname()}:{port}/hook"  # a name for this machine (loopback here)
        cli(env, "webhook", "set", "--account", tenant.name, "--type", "SmsReport", "--url", inside)
        c = tenant.client()
        sign = approved_sign(c, "出站测试")
        code = text_template(c, "您的订单已发货。")
        assert c.send_sms(m.SendSmsRequest(phone_numbers="13900007777", sign_name=sign,
                                           template_code=code)).body.code == "OK"

        def refused_at_delivery() -> Any:
            hooks = json.loads(cli(env, "webhook", "list", "--account", tenant.name, "--json").stdout)
            return hooks if hooks and hooks[0]["last_error"].startswith("refused:") else None

        hooks = eventually(refused_at_delivery, timeout=30)
        assert hooks[0]["delivered"] == 0 and receiver.calls == 0, hooks


def test_link_clicks_reach_a_subscribed_webhook_once_with_retries(lively_server: Server, receiver: Receiver) -> None:
    """LinkClick (a cardsms addition, like Twilio's link-clicked): every open of a card link in a browser is
    pushed once, signed, with the number, the BizId and the user agent's class; the receiver fails its first
    three requests and still gets each click exactly once. Render fetches (the vendor's parser) are not clicks."""
    tenant = new_tenant(lively_server)
    out = cli(lively_server.env, "webhook", "set", "--account", tenant.name, "--type", "LinkClick", "--url",
              receiver.url)
    secret = json.loads(out.stdout)["secret"]
    c = tenant.client()
    sign = approved_sign(c, "点击回执")
    card = approved_card(c)
    phones = numbers(8)
    sent = c.send_card_sms(m.SendCardSmsRequest(
        card_template_code=card, sign_name=sign, fallback_type="NONE", out_id="click-1",
        card_objects=[m.SendCardSmsRequestCardObjects(mobile=p) for p in phones])).body
    assert sent.code == "OK", sent.to_map()
    media = sorted(str(sent.data.media_mobiles).split(","))
    assert media, sent.to_map()
    # every simulated phone that shows the card opens its link in its browser (CARDSMS_SIM_OPEN_SHARE=100)
    clicks = eventually(lambda: (lambda r: r if len(r) >= len(media) else None)(receiver.reports("LinkClick")),
                        timeout=60)
    assert sorted(r["phone_number"] for r in clicks) == media  # once each
    assert receiver.calls > 3  # the first three deliveries failed and were retried
    for r in clicks:
        assert r["biz_id"] == sent.data.biz_card_id and r["out_id"] == "click-1" and r["template_code"] == card
        assert r["user_agent_class"] == "mobile" and r["client"] == "browser" and r["link_kind"] == "personal"
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r["click_time"])
        assert r["short_url"].endswith("/s/" + r["short_name"])
    for headers, body in receiver.accepted:
        if headers.get("x-cardsms-report-type") == "LinkClick":
            assert headers["x-cardsms-signature"] == hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    # a desktop browser's open is one more click; no report is pushed twice
    httpx.get(clicks[0]["short_url"], headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"})
    more = eventually(lambda: (lambda r: r if len(r) > len(media) else None)(receiver.reports("LinkClick")))
    assert len(more) == len(media) + 1 and more[-1]["user_agent_class"] == "desktop"
    time.sleep(1)  # nothing more arrives: each click once
    assert len(receiver.reports("LinkClick")) == len(media) + 1


def test_the_daily_volume_alert_is_raised_once_on_the_overview_and_by_webhook(lively_server: Server,
                                                                              receiver: Receiver) -> None:
    tenant = new_tenant(lively_server)
    env = lively_server.env
    cli(env, "webhook", "set", "--account", tenant.name, "--type", "VolumeAlert", "--url", receiver.url)
    bad = cli(env, "account", "set-alert", tenant.name, "lots", check=False)
    assert bad.returncode != 0 and "THRESHOLD" in bad.stderr + bad.stdout
    cli(env, "account", "set-alert", tenant.name, "5")
    c = tenant.client()
    sign = approved_sign(c, "总量预警")
    notice = text_template(c, "您的订单已发货。", name="notice")
    assert c.send_sms(m.SendSmsRequest(phone_numbers=",".join(numbers(4)), sign_name=sign,
                                       template_code=notice)).body.code == "OK"
    assert not receiver.reports("VolumeAlert")  # 4 of 5
    assert c.send_sms(m.SendSmsRequest(phone_numbers=",".join(numbers(3)), sign_name=sign,
                                       template_code=notice)).body.code == "OK"
    (alert,) = eventually(lambda: receiver.reports("VolumeAlert"), timeout=20)
    assert alert["threshold"] == 5 and alert["count"] == 7 and alert["day"] == TODAY()
    web = console_client(lively_server, env, tenant.name)
    page = web.get("/console/").text
    assert f'data-alert="volume-{TODAY()}"' in page and "发送总量预警" in page
    assert c.send_sms(m.SendSmsRequest(phone_numbers=",".join(numbers(2)), sign_name=sign,
                                       template_code=notice)).body.code == "OK"
    # nothing more can be seen to come: wait out three passes of the alert check (every 0.5 s here) that saw 9 of 5
    time.sleep(3 * float(env["CARDSMS_ALERT_CHECK_SECONDS"]) + 0.5)
    assert len(receiver.reports("VolumeAlert")) == 1  # once a day
    assert "alert.daily" in web.get("/console/audit").text
