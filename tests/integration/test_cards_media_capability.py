"""Card templates, media upload and card capability through the official SDK."""

from __future__ import annotations

import hashlib
import json
import time

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from cardsms.domain.vendors import CARD_TYPE_SUPPORT, Vendor
from cardsms.simulator.handsets import simulated_handset
from tests.conftest import Tenant, new_tenant
from tests.harness import Server
from tests.integration.helpers import (
    approved_card,
    card_template,
    create_card,
    image_resource,
    jpeg,
    png,
    upload,
)

MOBILES = [f"1380013{i:04d}" for i in range(40)]


def test_upload_register_and_download_an_image(tenant: Tenant) -> None:
    c = tenant.client()
    info = c.get_ossinfo_for_card_template().body
    assert info.success and info.code == "OK"
    assert {"AccessKeyId", "AliUid", "Bucket", "ExpireTime", "Host", "Policy", "Signature", "StartPath"} <= set(
        info.data.to_map())
    data = png()
    response, key = upload(c, data)
    assert response.status_code == 200 and response.json()["size"] == len(data)
    body = c.get_media_resource_id(m.GetMediaResourceIdRequest(
        resource_type=2, oss_key=key, file_size=len(data), extend_info='{"img_rate":"sixteenToNine"}')).body
    assert body.success and body.data.resource_id.isdigit()
    assert httpx.get(body.data.res_url_download).content == data
    assert httpx.get(body.data.res_url_download.split("?")[0]).status_code == 403


@pytest.mark.parametrize(
    ("mutate", "status", "needle"),
    [
        (lambda f: f.update(signature="AAAA"), 403, "signature"),
        (lambda f: f.update(key="card/999999/elsewhere.png"), 403, "StartPath"),
        (lambda f: f.update(key=f["key"].rsplit("/", 1)[0] + "/../../etc/passwd"), 400, "key"),
        (lambda f: f.pop("policy"), 400, "policy"),
    ],
)
def test_uploads_outside_the_policy_are_refused(tenant: Tenant, mutate, status: int, needle: str) -> None:
    info = tenant.client().get_ossinfo_for_card_template().body.data
    fields = {"key": info.start_path + "a.png", "policy": info.policy, "OSSAccessKeyId": info.access_key_id,
              "signature": info.signature}
    mutate(fields)
    r = httpx.post(info.host, data=fields, files={"file": ("a.png", png(32, 18))})
    assert r.status_code == status and needle in r.text


def test_oversize_and_wrong_type_media_are_refused_with_a_reason(tenant: Tenant) -> None:
    c = tenant.client()
    r, _ = upload(c, b"%PDF-1.4 not media at all", "doc.png")
    assert r.status_code == 400 and "JPG/PNG images and MP4" in r.text
    r, _ = upload(c, b"\x89PNG\r\n\x1a\n" + b"\0" * (2 * 1024 * 1024 + 10), "big.png")
    assert r.status_code == 400 and "EntityTooLarge" in r.text
    # a square image registered as 16:9 is refused, and so is a size that does not match
    square = jpeg(400, 400)
    r, key = upload(c, square, "sq.jpg")
    assert r.status_code == 200
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=2, oss_key=key, file_size=len(square), extend_info='{"img_rate":"sixteenToNine"}'))
    assert "400x400" in exc.value.message and "not sixteenToNine" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=2, oss_key=key, file_size=1, extend_info='{"img_rate":"oneToOne"}'))
    assert "FileSize" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=4, oss_key=key, file_size=len(square)))
    assert "does not match the file" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.get_media_resource_id(m.GetMediaResourceIdRequest(resource_type=2, oss_key="card/nope.png", file_size=1,
                                                            extend_info='{"img_rate":"oneToOne"}'))
    assert "resUrl not exist" in exc.value.message


def test_card_template_is_created_reviewed_per_vendor_and_returned_in_wire_form(tenant: Tenant) -> None:
    c = tenant.client()
    resource = image_resource(c)
    template = card_template(resource)
    body = create_card(c, template)
    assert body.success and body.code == "OK" and body.data.template_code.startswith("CARD_SMS_")
    assert set(body.to_map()) >= {"Code", "Data", "RequestId", "Success"}
    q = c.query_card_sms_template(m.QueryCardSmsTemplateRequest(template_code=body.data.template_code)).body
    assert q.success
    entry = q.data.templates[0]
    assert entry["templateCode"] == body.data.template_code and entry["cardTmpState"] == 1
    ops = {op["vendorCode"]: op for op in entry["tmpOps"]}
    assert set(ops) == {v.value for v in Vendor}
    assert all(op["state"] == 1 for op in ops.values())  # image-text with OPEN_BROWSER/OPEN_APP: everyone
    assert entry["template"] == template


def test_vendors_that_cannot_render_a_type_are_not_submitted(tenant: Tenant) -> None:
    c = tenant.client()
    resource = image_resource(c)
    t = card_template(resource)
    t["cardType"] = 3  # general notification: HuaWei, HONOR, XiaoMi, VIVO only
    t["templateContent"]["pages"][0]["tmpCards"][3]["content"] = "View"
    body = create_card(c, t, factorys="HuaWei,OPPO,XiaoMi")
    assert body.success, body.to_map()
    entry = c.query_card_sms_template(
        m.QueryCardSmsTemplateRequest(template_code=body.data.template_code)).body.data.templates[0]
    ops = {op["vendorCode"]: op for op in entry["tmpOps"]}
    assert set(ops) == {"HuaWei", "OPPO", "XiaoMi"}
    assert ops["HuaWei"]["state"] == 1 and ops["XiaoMi"]["state"] == 1
    assert ops["OPPO"]["state"] == 2 and ops["OPPO"]["submitted"] is False
    assert "does not support card type 3" in ops["OPPO"]["remark"]
    assert set(CARD_TYPE_SUPPORT[3]) >= {Vendor.HUAWEI, Vendor.XIAOMI}


def test_card_review_progress_is_visible_per_vendor(slow_review_server: Server) -> None:
    c = new_tenant(slow_review_server).client()
    code = create_card(c, card_template(image_resource(c))).data.template_code
    entry = c.query_card_sms_template(m.QueryCardSmsTemplateRequest(template_code=code)).body.data.templates[0]
    assert entry["cardTmpState"] == 0 and {op["state"] for op in entry["tmpOps"]} == {0}
    deadline = time.monotonic() + 30
    while entry["cardTmpState"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
        entry = c.query_card_sms_template(m.QueryCardSmsTemplateRequest(template_code=code)).body.data.templates[0]
    assert entry["cardTmpState"] == 1 and {op["state"] for op in entry["tmpOps"]} == {1}


def test_deny_listed_card_is_rejected_by_every_vendor(tenant: Tenant) -> None:
    c = tenant.client()
    t = card_template(image_resource(c))
    t["templateContent"]["pages"][0]["tmpCards"][2]["content"] = "【Example】Casino night: win big, ${name}!"
    code = create_card(c, t).data.template_code
    entry = c.query_card_sms_template(m.QueryCardSmsTemplateRequest(template_code=code)).body.data.templates[0]
    assert entry["cardTmpState"] == 2 and all("casino" in op["remark"] for op in entry["tmpOps"])


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.update(cardType=8), "needs a fortyEightToSixtyFive image"),
        (lambda t: t.update(cardType=99), "cardType invalid"),
        (lambda t: t["extendInfo"].update(scene="a-very-long-scene"), "scene must < 10"),
        (lambda t: t["templateContent"]["pages"][0]["tmpCards"][0].update(src="123456789"), "resUrl not exist"),
        (lambda t: t["templateContent"]["pages"][0]["tmpCards"][2].update(content="a\nb"), "line breaks"),
        (lambda t: t["templateContent"]["pages"][0]["tmpCards"][2].update(content="Hi ${who}"), "${who}"),
        (lambda t: t["templateContent"]["pages"][0]["tmpCards"][3]["action"].pop("floorUrl"), "floorUrl"),
        (lambda t: t["templateContent"]["pages"][0]["tmpCards"][0]["action"].update(target="http://x.cn"), "https"),
        (lambda t: t["extendInfo"]["params"].append({"name": "${bad_name}", "type": 1, "example": "x"}),
         "no underscore"),
        (lambda t: t["extendInfo"].update(purpose="2"), "测试"),
        (lambda t: t["templateContent"].update(pages=[]), "1-1 pages"),
    ],
)
def test_card_template_rules_name_page_element_and_rule(tenant: Tenant, edit, needle: str) -> None:
    c = tenant.client()
    t = card_template(image_resource(c))
    edit(t)
    with pytest.raises(ClientException) as exc:
        create_card(c, t)
    assert exc.value.code in ("InvalidParameter", "MissingParameter")
    assert needle in exc.value.message


def test_template_name_length_and_double_encoded_template(tenant: Tenant) -> None:
    c = tenant.client()
    t = card_template(image_resource(c))
    with pytest.raises(ClientException) as exc:
        create_card(c, t, name="n" * 20)
    assert "templateName length must < 20" in exc.value.message
    # a client that JSON-encodes the template twice: accepted, and the answer says so
    from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params
    from darabonba.runtime import RuntimeOptions

    params = Params(action="CreateCardSmsTemplate", version="2017-05-25", protocol="HTTP", pathname="/",
                    method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    query = {"TemplateName": "twice", "Template": json.dumps(json.dumps(t))}
    body = c.call_api(params, OpenApiRequest(query=query), RuntimeOptions())["body"]
    assert body["Success"] is True and "JSON-encoded twice" in body["Message"]


def test_card_support_follows_the_simulated_population(tenant: Tenant) -> None:
    c = tenant.client()
    code = approved_card(c)
    result = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=code, mobiles=[{"mobile": n} for n in MOBILES])).body
    assert result.success
    got = {r.mobile: r.support for r in result.data.query_result}
    expected = {}
    for n in MOBILES:
        h = simulated_handset(hashlib.sha1(n.encode()).hexdigest(), 80)
        expected[n] = h.card_capable
    assert got == expected and any(got.values()) and not all(got.values())
    # QueryMobilesCardSupport answers the same, in plain and SHA1 form, with its own key casing
    plain = c.query_mobiles_card_support(m.QueryMobilesCardSupportRequest(
        template_code=code, encrypt_type="NORMAL", mobiles=[{"Mobile": n} for n in MOBILES])).body
    assert {r.mobile: r.support for r in plain.data.query_result} == expected
    hashed = c.query_mobiles_card_support(m.QueryMobilesCardSupportRequest(
        template_code=code, encrypt_type="SHA1",
        mobiles=[{"Mobile": hashlib.sha1(n.encode()).hexdigest()} for n in MOBILES])).body
    assert [r.support for r in hashed.data.query_result] == [expected[n] for n in MOBILES]


def test_card_support_is_false_for_vendors_that_did_not_approve(tenant: Tenant) -> None:
    c = tenant.client()
    t = card_template(image_resource(c))
    code = create_card(c, t, factorys="XiaoMi").data.template_code
    result = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code=code, mobiles=[{"mobile": n} for n in MOBILES])).body.data.query_result
    for r in result:
        h = simulated_handset(hashlib.sha1(r.mobile.encode()).hexdigest(), 80)
        assert r.support == (h.card_capable and h.vendor == Vendor.XIAOMI)


def test_card_support_failures(tenant: Tenant) -> None:
    c = tenant.client()
    code = approved_card(c)
    with pytest.raises(ClientException) as exc:
        c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
            template_code=code, mobiles=[{"mobile": "13800138000"}, {"mobile": "12345"}]))
    assert "Mobiles[2]" in exc.value.message
    with pytest.raises(ClientException) as exc:
        c.query_mobiles_card_support(m.QueryMobilesCardSupportRequest(
            template_code=code, encrypt_type="MD5", mobiles=[{"Mobile": "13800138000"}]))
    assert "EncryptType" in exc.value.message
    unknown = c.check_mobiles_card_support(m.CheckMobilesCardSupportRequest(
        template_code="CARD_SMS_0", mobiles=[{"mobile": "13800138000"}])).body
    assert (unknown.success, unknown.code) == (False, "TEMPLATE_NOT_EXIST")


def test_card_template_report(tenant: Tenant) -> None:
    c = tenant.client()
    code = approved_card(c)
    body = c.query_card_sms_template_report(m.QueryCardSmsTemplateReportRequest(
        template_codes=[code], start_date="2026-01-01 00:00:00", end_date="2026-12-31 23:59:59")).body
    assert body.success and body.data.model[0]["tmpCode"] == code
    assert body.data.model[0]["exposeUv"] == 0  # nothing sent yet
    with pytest.raises(ClientException) as exc:
        c.query_card_sms_template_report(m.QueryCardSmsTemplateReportRequest(
            template_codes=[code], start_date="2026-12-31 00:00:00", end_date="2026-01-01 00:00:00"))
    assert "StartDate" in exc.value.message
