"""Sending end to end on the embedded simulator, through the official SDK: text and card sends,
fallback, receipts, render receipts, links and their pages, records and statistics, idempotency,
bad input."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException
from darabonba.runtime import ExtendsParameters, RuntimeOptions

from tests.conftest import Tenant
from tests.integration.helpers import (
    approved_card,
    approved_sign,
    console_client,
    eventually,
    legacy,
    text_template,
)

TODAY = lambda: datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")  # noqa: E731


def numbers(n: int, start: int = 0, prefix: str = "139") -> list[str]:
    base = int(uuid.uuid4().int % 10_000_000)
    return [f"{prefix}{(base + start + i) % 100_000_000:08d}" for i in range(n)]


def details(client, phone: str, biz_id: str = "") -> list:  # type: ignore[no-untyped-def]
    body = client.query_send_details(m.QuerySendDetailsRequest(
        phone_number=phone, send_date=TODAY(), page_size=10, current_page=1, biz_id=biz_id or None)).body
    assert body.code == "OK", body.to_map()
    return body.sms_send_detail_dtos.sms_send_detail_dto or []


def card_records(client, **kw) -> list:  # type: ignore[no-untyped-def]
    body = client.get_card_sms_details(m.GetCardSmsDetailsRequest(send_date=TODAY(), page_size=100, current_page=1,
                                                                  **kw)).body
    assert body.code == "OK", body.to_map()
    return body.card_send_detail_dto.records or []


def test_send_sms_is_delivered_and_traceable(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "快递通知")
    code = text_template(c, "您的包裹${no}已到达${place}，请凭取件码取件。")
    phones = numbers(3)
    body = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(["+86 " + phones[0], *phones[1:]]), sign_name=sign,
                                       template_code=code, template_param=json.dumps({"no": "A1", "place": "东门"}),
                                       out_id="order-7")).body
    assert body.code == "OK", body.to_map()
    assert body.biz_id

    def delivered() -> list:  # type: ignore[type-arg]
        rows = [details(c, p, body.biz_id) for p in phones]
        return rows if all(r and r[0].send_status == 3 for r in rows) else []

    rows = eventually(delivered)
    first = rows[0][0]
    assert first.err_code == "DELIVERED"
    timeline = legacy(tenant, "QuerySendTimeline", BizId=body.biz_id, PhoneNumber=phones[0])["Messages"]
    assert len(timeline) == 1 and timeline[0]["State"] == "delivered"
    assert [e["Event"] for e in timeline[0]["Events"]] == ["queued", "submitted", "delivered"]
    assert first.content == "【快递通知】您的包裹A1已到达东门，请凭取件码取件。"
    assert first.out_id == "order-7" and first.template_code == code and first.receive_date

    stats = c.query_send_statistics(m.QuerySendStatisticsRequest(
        is_globe=1, start_date=TODAY(), end_date=TODAY(), page_index=1, page_size=10)).body
    assert stats.code == "OK", stats.to_map()
    day = stats.data.target_list[0]
    assert day.send_date == TODAY() and day.total_count == 3 and day.responded_success_count == 3


def test_send_batch_sms_uses_per_number_signature_and_params(tenant: Tenant) -> None:
    c = tenant.client()
    a, b = approved_sign(c, "甲店"), approved_sign(c, "乙店")
    code = text_template(c, "Hi ${name}, your code is ready.")
    phones = numbers(2)
    body = c.send_batch_sms(m.SendBatchSmsRequest(
        phone_number_json=json.dumps(phones), sign_name_json=json.dumps([a, b]), template_code=code,
        template_param_json=json.dumps([{"name": "Li"}, {"name": "Wang"}]))).body
    assert body.code == "OK", body.to_map()
    rows = eventually(lambda: [d for p in phones for d in details(c, p) if d.send_status == 3] or None)
    by_phone = {r.phone_num: r.content for r in eventually(
        lambda: (lambda rs: rs if len(rs) == 2 else None)([d for p in phones for d in details(c, p)
                                                           if d.send_status == 3]))}
    assert rows
    assert by_phone == {phones[0]: "【甲店】Hi Li, your code is ready.",
                        phones[1]: "【乙店】Hi Wang, your code is ready."}


def test_card_send_splits_as_capability_check_and_falls_back(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "卡片商城")
    card = approved_card(c)
    fallback = text_template(c, "您的订单已发货，详情见App。")
    phones = numbers(40)
    support = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=card, mobiles=[{"mobile": p} for p in phones])).body
    supported = {r.mobile for r in support.data.query_result if r.support}
    assert supported and supported != set(phones)  # the population has both kinds

    body = c.send_card_sms(m.SendCardSmsRequest(
        card_template_code=card, sign_name=sign, fallback_type="SMS", sms_template_code=fallback,
        card_objects=[m.SendCardSmsRequestCardObjects(mobile=p, dync_params=json.dumps({"name": "Li"}),
                                                      custom_url="https://shop.example/o/1") for p in phones],
        out_id="card-1")).body
    assert body.code == "OK" and body.success, body.to_map()
    media = set(body.data.media_mobiles.split(","))
    not_media = set(body.data.not_media_mobiles.split(","))
    assert media == supported
    assert not_media == set(phones) - supported
    assert body.data.biz_card_id and body.data.biz_sms_id and body.data.card_tmp_state == 1

    # card phones: delivered, and the simulated phone's parser fetch is the render receipt
    def rendered() -> list:  # type: ignore[type-arg]
        rs = card_records(c, biz_card_id=body.data.biz_card_id)
        return rs if len(rs) == len(media) and all(r.render_status == 1 and r.send_status == 3 for r in rs) else []

    recs = eventually(rendered)
    assert {r.phone_number for r in recs} == media
    assert all(r.receive_type == "CARD_SMS" and r.render_date for r in recs)
    report = legacy(tenant, "QueryCardSmsTemplateReport", TemplateCodes=json.dumps([card]))["Data"]["model"][0]
    assert report["sent"] == len(media) and report["rendered"] == len(media) and report["exposeUv"] == len(media)
    # per vendor (facPvUvList): each card phone counted under its handset's vendor, the parts add up
    by_vendor = {f["factory"]: f for f in report["facPvUvList"]}
    assert sum(f["sent"] for f in by_vendor.values()) == len(media)
    assert sum(f["rptSuccessCount"] for f in by_vendor.values()) == report["rptSuccessCount"] == len(media)
    assert set(by_vendor) <= {"HuaWei", "HONOR", "XiaoMi", "OPPO", "VIVO", "MEIZU"} and "unknown" not in by_vendor
    assert report["clickPv"] == sum(f["clickPv"] for f in by_vendor.values())
    # the console's card template page shows the same breakdown
    page = console_client(tenant.server, tenant.server.env, tenant.name).get(f"/console/cards/{card}").text
    for name, f in by_vendor.items():
        assert re.search(rf'data-vendor="{name}"><td>{name}</td><td class="num">{f["sent"]}</td>', page), page[-3000:]

    # fallback phones: the text template, delivered
    def fell_back() -> list:  # type: ignore[type-arg]
        rs = card_records(c, biz_sms_id=body.data.biz_sms_id)
        return rs if len(rs) == len(not_media) and all(r.send_status == 3 for r in rs) else []

    recs = eventually(fell_back)
    assert all(r.sms_content == "【卡片商城】您的订单已发货，详情见App。" for r in recs)
    assert {r.render_status for r in recs} == {0}

    # the card message text carries the link and the opt-out line; QuerySendDetails shows it delivered
    phone = sorted(media)[0]
    row = eventually(lambda: [d for d in details(c, phone) if d.send_status == 3])[0]
    assert row.content.startswith("【卡片商城】Your order has shipped ")
    assert row.content.endswith("To unsubscribe, reply R.")
    link = next(w for w in row.content.split() if "/s/" in w)
    page = httpx.get(link, headers={"User-Agent": "Mozilla/5.0 (iPhone) Mobile"})
    assert page.status_code == 200 and "Your order has shipped" in page.text and "Hello Li" in page.text


def test_card_links_open_as_pages_json_and_are_counted(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "链接测试")
    card = approved_card(c)
    phones = numbers(30)
    support = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=card, mobiles=[{"mobile": p} for p in phones])).body
    supported = [r.mobile for r in support.data.query_result if r.support]

    personal = c.get_card_sms_link(m.GetCardSmsLinkRequest(
        card_template_code=card, phone_number_json=json.dumps(phones), sign_name_json=json.dumps([sign]),
        card_code_type=2, card_link_type=1,
        card_template_param_json=json.dumps([{"name": f"N{i}"} for i in range(len(phones))]))).body
    assert personal.success, personal.to_map()
    assert personal.data.card_phone_numbers.split(",") == supported
    links = personal.data.card_sms_links.split(",")
    assert len(links) == len(supported) and len(set(links)) == len(links)

    page = httpx.get(links[0], headers={"User-Agent": "Mozilla/5.0 Mobile"})
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]  # a card page is never framed
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "Your order has shipped" in page.text and "Hello N" in page.text
    parser = httpx.get(links[0], headers={"X-Card-Parser": "HuaWei", "Accept": "application/json"})
    assert parser.status_code == 200 and parser.json()["card"]["cardType"] == 5
    httpx.get(links[0], headers={"User-Agent": "another browser"})
    # a card's answers are rendered once per parameters: every link still shows its own, as a page and as JSON
    for j in (1, 2, 1):
        name = f"N{phones.index(supported[j])}"
        html = httpx.get(links[j], headers={"User-Agent": "Mozilla/5.0 Mobile"}).text
        assert re.findall(r"Hello (N\d+)", html) == [name], (j, name)
        vendor = httpx.get(links[j], headers={"X-Card-Parser": "HuaWei", "Accept": "application/json"}).text
        assert re.findall(r"Hello (N\d+)", vendor) == [name], (j, name)
    # opens are answered at once and written within CARDSMS_OPEN_FLUSH_MS
    def three_views() -> Any:
        body = c.query_short_url(m.QueryShortUrlRequest(short_url=links[0])).body
        assert body.code == "OK", body.to_map()
        return body if body.data.page_view_count == "3" else None

    counted = eventually(three_views)
    assert counted.data.page_view_count == "3" and counted.data.unique_visitor_count == "3"

    group = c.get_card_sms_link(m.GetCardSmsLinkRequest(
        card_template_code=card, phone_number_json=json.dumps(phones), sign_name_json=json.dumps([sign]),
        card_code_type=1, card_link_type=2, custom_short_code_json=json.dumps(["Ab12Cd"]))).body
    assert group.success, group.to_map()
    assert group.data.card_sms_links.endswith("/s/Ab12Cd")
    again = dict(CardTemplateCode=card, PhoneNumberJson=json.dumps(phones), SignNameJson=json.dumps([sign]),
                 CardCodeType="1", CardLinkType="2", CustomShortCodeJson=json.dumps(["Ab12Cd"]))
    taken = legacy(tenant, "GetCardSmsLink", **again)
    assert taken["Success"] is False and "already taken" in taken["Message"]
    bad = legacy(tenant, "GetCardSmsLink", **{**again, "CustomShortCodeJson": json.dumps(["a-b"])})
    assert bad["Success"] is False and "4-8 letters or digits" in bad["Message"]

    missing = httpx.get(links[0].rsplit("/", 1)[0] + "/Zz99Zz99")
    assert missing.status_code == 404 and "Link not found" not in missing.text  # Chinese by default
    english = httpx.get(links[0].rsplit("/", 1)[0] + "/Zz99Zz99", headers={"Accept-Language": "en-US"})
    assert english.status_code == 404 and "Link not found" in english.text


def test_short_urls_are_added_redirect_counted_and_deleted(tenant: Tenant) -> None:
    c = tenant.client()
    added = c.add_short_url(m.AddShortUrlRequest(source_url="https://shop.example/sale?x=1", short_url_name="sale",
                                                 effective_days=30)).body
    assert added.code == "OK", added.to_map()
    short = added.data.short_url
    hop = httpx.get(short, follow_redirects=False)
    assert hop.status_code == 302 and hop.headers["location"] == "https://shop.example/sale?x=1"
    info = eventually(lambda: (d := c.query_short_url(m.QueryShortUrlRequest(short_url=short)).body.data)
                      .page_view_count == "1" and d)  # opens are written within CARDSMS_OPEN_FLUSH_MS
    assert info.short_url_status == "effective" and info.short_url_name == "sale"
    assert c.delete_short_url(m.DeleteShortUrlRequest(source_url="https://shop.example/sale?x=1")).body.code == "OK"
    gone = httpx.get(short, follow_redirects=False)
    assert gone.status_code == 410
    assert c.query_short_url(m.QueryShortUrlRequest(short_url=short)).body.data.short_url_status == "deleted"
    bad = c.add_short_url(m.AddShortUrlRequest(source_url="javascript:alert(1)", short_url_name="x",
                                               effective_days=30)).body
    assert bad.code == "isv.INVALID_PARAMETERS" and "SourceUrl" in bad.message


def test_idempotency_key_returns_the_first_answer_and_sends_nothing_new(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "幂等测试")
    code = text_template(c, "Your parcel ${code} has shipped.")  # two to one number: not codes (1 a minute)
    phone = numbers(1)[0]
    key = str(uuid.uuid4())
    req = m.SendSmsRequest(phone_numbers=phone, sign_name=sign, template_code=code,
                           template_param=json.dumps({"code": "1234"}))
    first = c.send_sms_with_options(req, with_key(key)).body
    again = c.send_sms_with_options(req, with_key(key)).body
    assert first.code == "OK" and again.biz_id == first.biz_id
    other = c.send_sms_with_options(req, with_key(str(uuid.uuid4()))).body
    assert other.biz_id != first.biz_id
    rows = eventually(lambda: (lambda rs: rs if len(rs) == 2 and all(r.send_status == 3 for r in rs) else None)(
        details(c, phone)))
    assert len(rows) == 2  # two sends, not three: rows are written before the answer, so a third would show
    assert len(details(c, phone, first.biz_id)) == 1 and len(details(c, phone, other.biz_id)) == 1
    with pytest.raises(ClientException) as err:
        c.send_sms_with_options(req, with_key("has space"))
    assert "x-cardsms-idempotency-key" in str(err.value)


def with_key(key: str) -> RuntimeOptions:
    """Runtime options that add the idempotency header to one call."""
    return RuntimeOptions(extends_parameters=ExtendsParameters(headers={"x-cardsms-idempotency-key": key}))


def test_bad_sends_fail_whole_with_clear_codes_and_send_nothing(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "坏输入")
    code = text_template(c, "Hello ${name}.")
    card = approved_card(c)
    phone = numbers(1)[0]

    def send(**kw: str) -> dict:  # type: ignore[type-arg]
        return legacy(tenant, "SendSms", **{"PhoneNumbers": phone, "SignName": sign, "TemplateCode": code,
                                            "TemplateParam": '{"name":"Li"}', **kw})

    bad_number = send(PhoneNumbers=f"{phone},12345,+86 138-0013-800x")
    assert bad_number["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    message = bad_number["Message"]
    assert "[2]" in message and "[3]" in message and "Nothing was sent" in message
    too_many = send(PhoneNumbers=",".join(numbers(1001)))
    assert too_many["Code"] == "isv.INVALID_PARAMETERS" and "at most 1000" in too_many["Message"]
    bad_json = send(TemplateParam='{"name":')
    assert bad_json["Code"] == "isv.INVALID_JSON_PARAM" and "TemplateParam" in bad_json["Message"]
    no_value = send(TemplateParam='{"other":"x"}')
    assert no_value["Code"] == "isv.INVALID_PARAMETERS" and "${name}" in no_value["Message"]
    rejected_sign = c.add_sms_sign(m.AddSmsSignRequest(sign_name="赌博之家", sign_source=0, remark="r",
                                                       sign_file_list=[])).body
    assert rejected_sign.code == "OK"
    unapproved_sign = send(SignName="赌博之家")
    assert unapproved_sign["Code"] == "isv.SMS_SIGNATURE_ILLEGAL" and "rejected" in unapproved_sign["Message"]
    rejected_tpl = text_template(c, "赌博 ${name}", name="bad")
    unapproved_tpl = send(TemplateCode=rejected_tpl)
    assert unapproved_tpl["Code"] == "isv.SMS_TEMPLATE_ILLEGAL" and "rejected" in unapproved_tpl["Message"]
    unknown_tpl = send(TemplateCode="SMS_000000000")
    assert unknown_tpl["Code"] == "isv.SMS_TEMPLATE_ILLEGAL"
    batch = legacy(tenant, "SendBatchSms", PhoneNumberJson=json.dumps([phone, numbers(1)[0]]),
                   SignNameJson=json.dumps([sign]), TemplateCode=code)
    assert batch["Code"] == "isv.INVALID_PARAMETERS" and "SignNameJson" in batch["Message"]

    with pytest.raises(ClientException) as missing_fallback:
        c.send_card_sms(m.SendCardSmsRequest(card_template_code=card, sign_name=sign, fallback_type="SMS",
                                             card_objects=[m.SendCardSmsRequestCardObjects(mobile=phone)]))
    assert "SmsTemplateCode" in str(missing_fallback.value)
    with pytest.raises(ClientException) as bad_fallback:
        c.send_card_sms(m.SendCardSmsRequest(card_template_code=card, sign_name=sign, fallback_type="MMS",
                                             card_objects=[m.SendCardSmsRequestCardObjects(mobile=phone)]))
    assert "FallbackType" in str(bad_fallback.value)
    card_bad_number = legacy(tenant, "SendCardSms", CardTemplateCode=card, SignName=sign,
                             CardObjects=json.dumps([{"mobile": phone}, {"mobile": "+14155550100"}]))
    assert card_bad_number["Code"] == "isv.MOBILE_NUMBER_ILLEGAL" and card_bad_number["Success"] is False
    assert "mainland" in card_bad_number["Message"]
    card_bad_params = legacy(tenant, "SendCardSms", CardTemplateCode=card, SignName=sign,
                             CardObjects=json.dumps([{"mobile": phone, "dyncParams": "{not json"}]))
    assert card_bad_params["Code"] == "isv.INVALID_JSON_PARAM" and "dyncParams" in card_bad_params["Message"]
    unknown_card = legacy(tenant, "SendCardSms", CardTemplateCode="CARD_SMS_00000000", SignName=sign,
                          CardObjects=json.dumps([{"mobile": phone}]))
    assert unknown_card["Code"] == "TEMPLATE_NOT_EXIST"

    # none of these calls sent anything
    assert details(c, phone) == []
    assert card_records(c, phone_number=phone) == []
