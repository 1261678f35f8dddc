"""Digital message signatures through the official SDK: CreateDigitalSignOrder (create, update, delete) and
QueryDigitalSignByName, each carrier's review, bad orders refused naming the field, and the rule that an
account with digital signatures sends its digital legs under an approved one (both databases)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Tenant
from tests.integration.helpers import approved_sign, b64, legacy

CONTEXT = {"qualificationCompanyName": "杭州示例科技有限公司", "qualificationOrganizationCode": "91330106MA2A0XABCD",
           "qualificationAdminName": "张三", "qualificationAdminIDCard": "33010619900101123X",
           "qualificationLegalPersonName": "李四", "qualificationLegalPersonIDCard": "330106199001011234"}


def order(tenant: Tenant, order_type: str, name: str, context: dict[str, str] | None = None,
          **extra: object) -> m.CreateDigitalSignOrderResponseBody:
    return tenant.client().create_digital_sign_order(m.CreateDigitalSignOrderRequest(
        order_type=order_type, sign_name=name, order_context=context, **extra)).body


def query(tenant: Tenant, name: str) -> m.QueryDigitalSignByNameResponseBody:
    return tenant.client().query_digital_sign_by_name(m.QueryDigitalSignByNameRequest(sign_name=name)).body


def answer(call: Callable[[], Any]) -> tuple[str, str]:
    """(Code, Message) of a call, whether the SDK returns it (business errors) or raises it (HTTP 4xx)."""
    try:
        body = call()
    except ClientException as exc:
        return str(exc.code), str(exc.message)
    return str(body.code), str(body.to_map().get("Message", ""))


def test_digital_signatures_are_ordered_reviewed_by_each_carrier_and_queried(tenant: Tenant) -> None:
    made = order(tenant, "CREATE_DIGITALSMS_SIGN", "数字商城1", CONTEXT, sign_source=0, sign_industry=1)
    assert made.code == "OK" and made.success, made.to_map()
    assert made.data["signName"] == "数字商城1" and made.data["signCode"].startswith("DIGSIGN_")
    got = query(tenant, "数字商城1")
    assert got.code == "OK", got.to_map()
    data = got.data
    assert data["signId"] == made.data["signId"] and data["signIndustry"] == 1 and data["signVersion"] == 1
    for carrier in ("mobile", "unicom", "telecom"):  # reviewed at once here (CARDSMS_SIM_REVIEW_SECONDS=0)
        assert (data[f"{carrier}RegisterStatus"], data[f"{carrier}AvailableStatus"]) == (3, 1), data

    denied = order(tenant, "CREATE_DIGITALSMS_SIGN", "彩票中心", CONTEXT)  # a word the simulated review refuses
    assert denied.code == "OK"
    data = query(tenant, "彩票中心").data
    assert {data[f"{c}RegisterStatus"] for c in ("mobile", "unicom", "telecom")} == {0}
    assert {data[f"{c}AvailableStatus"] for c in ("mobile", "unicom", "telecom")} == {0}

    updated = order(tenant, "UPDATE_DIGITALSMS_SIGN", "数字商城1", sign_industry=0)
    assert updated.code == "OK", updated.to_map()
    assert query(tenant, "数字商城1").data["signVersion"] == 2
    assert order(tenant, "DELETE_DIGITALSMS_SIGN", "数字商城1").code == "OK"
    assert answer(lambda: query(tenant, "数字商城1"))[0] == "isv.SMS_SIGNATURE_ILLEGAL"


BAD_ORDERS = [  # (OrderType, SignName, OrderContext, the code, what the message names)
    ("CREATE_DIGITALSMS_SIGN", "数字商城2", None, "MissingParameter", "OrderContext"),
    ("CREATE_DIGITALSMS_SIGN", "数字商城2", {**CONTEXT, "qualificationAdminIDCard": "12"},
     "isv.INVALID_PARAMETERS", "qualificationAdminIDCard"),
    ("CREATE_DIGITALSMS_SIGN", "数字商城2", {**CONTEXT, "extra": "x"}, "isv.INVALID_PARAMETERS", "unknown"),
    ("CREATE_DIGITALSMS_SIGN", "abcdef", CONTEXT, "isv.INVALID_PARAMETERS", "SignName"),
    ("CREATE_DIGITALSMS_SIGN", "123456", CONTEXT, "isv.INVALID_PARAMETERS", "SignName"),
    ("CREATE_DIGITALSMS_SIGN", "数字 商城", CONTEXT, "isv.INVALID_PARAMETERS", "SignName"),
    ("CREATE_DIGITALSMS_SIGN", "数", CONTEXT, "isv.INVALID_PARAMETERS", "SignName"),
    ("RENAME_DIGITALSMS_SIGN", "数字商城2", CONTEXT, "isv.INVALID_PARAMETERS", "OrderType"),
    ("UPDATE_DIGITALSMS_SIGN", "无此签名", CONTEXT, "isv.SMS_SIGNATURE_ILLEGAL", "does not exist"),
]


def test_bad_orders_are_refused_naming_the_field_and_store_nothing(tenant: Tenant) -> None:
    for order_type, name, context, code, names in BAD_ORDERS:
        got, message = answer(lambda: order(tenant, order_type, name, context))  # noqa: B023 (called at once)
        assert got == code and names in message, (order_type, name, got, message)
    for name in ("数字商城2", "abcdef", "无此签名"):
        assert answer(lambda: query(tenant, name))[0] == "isv.SMS_SIGNATURE_ILLEGAL"  # noqa: B023 (nothing stored)


def test_a_second_create_of_one_name_is_refused(tenant: Tenant) -> None:
    assert order(tenant, "CREATE_DIGITALSMS_SIGN", "数字商城3", CONTEXT).code == "OK"
    code, message = answer(lambda: order(tenant, "CREATE_DIGITALSMS_SIGN", "数字商城3", CONTEXT))
    assert code == "isv.SMS_SIGNATURE_ILLEGAL" and "exists already" in message


def test_an_account_with_digital_signatures_sends_digital_legs_under_an_approved_one(tenant: Tenant) -> None:
    c = tenant.client()
    plain, digital = approved_sign(c, "普通签名甲"), approved_sign(c, "数字签名乙")
    code = c.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
        template_name="d", remark="r", template_contents=[m.CreateDigitalSmsTemplateRequestTemplateContents(
            file_contents=b64("您好".encode()), file_name="t", file_size=6, file_suffix="txt")])).body.template_code

    def send(sign: str) -> m.SendCardSmsResponseBody:
        return c.send_card_sms(m.SendCardSmsRequest(
            card_template_code="PUB_SERVICE_NOTICE", sign_name=sign, fallback_type="DIGITALSMS",
            digital_template_code=code, card_objects=[m.SendCardSmsRequestCardObjects(mobile="13812345678")])).body

    assert send(plain).code == "OK"  # no digital signatures yet: any approved signature
    assert order(tenant, "CREATE_DIGITALSMS_SIGN", digital, CONTEXT).code == "OK"
    assert answer(lambda: send(plain))[0] == "isv.SMS_SIGNATURE_ILLEGAL"
    raw = legacy(tenant, "SendCardSms", CardTemplateCode="PUB_SERVICE_NOTICE", SignName=plain,
                 FallbackType="DIGITALSMS", DigitalTemplateCode=code,
                 CardObjects=json.dumps([{"mobile": "13812345678"}]))
    assert raw["Code"] == "isv.SMS_SIGNATURE_ILLEGAL" and plain in raw["Message"], raw
    assert send(digital).code == "OK"
