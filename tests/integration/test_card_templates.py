"""Card templates through the official SDK: created, reviewed per vendor, returned in wire form; the rules
named; the per-vendor report."""

from __future__ import annotations

import json
import time

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from cardsms.domain.vendors import CARD_TYPE_SUPPORT, Vendor
from tests.conftest import Tenant, new_tenant
from tests.harness import Server
from tests.integration.helpers import (
    approved_card,
    card_template,
    create_card,
    image_resource,
)


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

