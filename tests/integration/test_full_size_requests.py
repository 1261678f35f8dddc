"""Requests of the full documented size through the official SDK, which puts every parameter in the query
string (also for POST): request lines of several hundred KB. Over our own limits the answer is the
Alibaba JSON envelope, never uvicorn's plain-text 400."""

from __future__ import annotations

import json
import socket
import uuid

import httpx
from alibabacloud_dysmsapi20170525 import models as m

from tests.conftest import Tenant
from tests.integration.helpers import approved_card, approved_sign, create_card, image_resource, png, text_template


def _numbers(n: int) -> list[str]:
    base = uuid.uuid4().int % 90_000_000
    return [f"137{(base + i) % 100_000_000:08d}" for i in range(n)]


def test_a_thousand_card_objects_and_ten_thousand_link_numbers_pass_through_the_sdk(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "大请求")
    card = approved_card(c)
    fallback = text_template(c, "您的订单已发货。")
    phones = _numbers(1000)
    objects = [m.SendCardSmsRequestCardObjects(mobile=p, dync_params=json.dumps({"name": f"客户{i}"}),
                                               custom_url=f"https://shop.example/orders/{i}")
               for i, p in enumerate(phones)]
    body = c.send_card_sms(m.SendCardSmsRequest(card_template_code=card, sign_name=sign, fallback_type="SMS",
                                                sms_template_code=fallback, card_objects=objects)).body
    assert body.code == "OK" and body.success, body.to_map()
    sent = body.data.media_mobiles.split(",") + body.data.not_media_mobiles.split(",")
    assert sorted(p for p in sent if p) == sorted(phones)

    many = _numbers(10_000)
    links = c.get_card_sms_link(m.GetCardSmsLinkRequest(
        card_template_code=card, phone_number_json=json.dumps(many), sign_name_json=json.dumps([sign]),
        card_code_type=2, card_link_type=1)).body
    assert links.success, links.to_map()
    supported = links.data.card_phone_numbers.split(",")
    assert supported and set(supported) <= set(many)
    assert len(links.data.card_sms_links.split(",")) == len(supported)

    texts = c.send_sms(m.SendSmsRequest(phone_numbers=",".join(_numbers(1000)), sign_name=sign,
                                        template_code=fallback)).body
    assert texts.code == "OK", texts.to_map()

    # a card template of 10 pages (horizontal-slide 1, the most a template holds)
    square = image_resource(c, png(600, 600), "oneToOne")
    pages = [{"tmpCards": [
        {"type": "IMAGE", "srcType": 1, "src": square, "positionNumber": 1, "actionType": "OPEN_BROWSER",
         "action": {"target": f"https://shop.example.com/item/{i}", "merchantName": "Shop"}},
        {"type": "TEXT", "isTextTitle": True, "content": f"第{i}款 新品上市", "positionNumber": 2},
        {"type": "TEXT", "isTextTitle": False, "content": "【大请求】限时八折，点击查看详情", "positionNumber": 3},
        {"type": "BUTTON", "content": "去看看", "actionType": "OPEN_BROWSER", "positionNumber": 4,
         "action": {"target": f"https://shop.example.com/item/{i}", "merchantName": "Shop"}}]} for i in range(10)]
    made = create_card(c, {"cardType": 1, "cardSignName": "大请求", "extendInfo": {"scene": "new", "purpose": "1"},
                           "templateContent": {"pages": pages}}, name="十页横滑")
    assert made.success, made.to_map()
    stored = c.query_card_sms_template(m.QueryCardSmsTemplateRequest(template_code=made.data.template_code)).body
    assert len(stored.data.templates[0]["template"]["templateContent"]["pages"]) == 10


def test_over_the_limits_the_answer_is_the_json_envelope(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "超限请求")
    card = approved_card(c)
    too_many = [m.SendCardSmsRequestCardObjects(mobile=p) for p in _numbers(1001)]
    body = c.send_card_sms(m.SendCardSmsRequest(card_template_code=card, sign_name=sign,
                                                card_objects=too_many)).body
    assert body.success is False and body.code == "isv.INVALID_PARAMETERS", body.to_map()

    # an unsigned request line of 17 MB: refused whole, in JSON, naming the rule; the server lives on
    status, err = _raw(tenant, b"POST /?Action=SendSms&Version=2017-05-25&Junk=" + b"x" * (17 * 1024 * 1024))
    assert status == 400 and err["Code"] == "InvalidParameter" and "request URL" in err["Message"], err
    assert err["RequestId"]
    # a path (not a query) longer than the URL parser takes
    status, err = _raw(tenant, b"GET /" + b"p" * 70_000)
    assert status == 400 and err["Code"] == "InvalidParameter", err
    assert httpx.get(tenant.server.url + "/healthz").status_code == 200


def _raw(tenant: Tenant, request_line: bytes) -> tuple[int, dict[str, object]]:
    """Send a request line no HTTP client library will build, read the whole answer."""
    with socket.create_connection(("127.0.0.1", tenant.server.port), timeout=60) as sock:
        sock.sendall(request_line + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        size, _, rest = body.partition(b"\r\n")
        body = rest[: int(size, 16)]
    return int(head.split()[1]), json.loads(body)
