"""Today's signature and template operations, as a new user follows Alibaba's current documentation with
the official SDK: upload files, submit a qualification, create a signature on it (with an authorization
letter, a trademark or an app filing where its source needs one), create templates with variable rules,
send. The older operations see the same objects. Both databases."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_dysmsapi20170525.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Tenant
from tests.integration.helpers import OTHER_USCC, USCC, legacy, png, qualification, upload_file


def create_sign(client: Client, name: str, qual_id: int | None, **kw: Any) -> Any:
    return client.create_sms_sign(m.CreateSmsSignRequest(
        sign_name=name, sign_source=kw.pop("sign_source", 0), qualification_id=qual_id,
        remark="我司官网 https://example.com 的订单通知", **kw)).body


def test_qualification_signature_template_and_send_with_the_current_operations(tenant: Tenant) -> None:
    c = tenant.client()
    qual_id = qualification(c)
    records = c.query_sms_qualification_record(m.QuerySmsQualificationRecordRequest(page_no=1, page_size=10)).body
    assert records.success and records.data.total == 1, records.to_map()
    assert records.data.list[0].group_id == qual_id and records.data.list[0].state_name == "PASS"
    single = c.query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
        qualification_group_id=qual_id)).body.data
    assert single.organization_code == USCC and single.use_by_self is True and single.state == "PASS"
    assert single.admin_idcard_pic.startswith(tenant.server.url) and single.business_license_pics[0].pic_url

    proof = upload_file(c, b"%PDF-1.4 business proof\n", "proof.pdf")
    made = create_sign(c, "卡片科技", qual_id, more_data=[proof])
    assert made.code == "OK" and made.sign_name == "卡片科技" and made.order_id, made.to_map()
    sign = c.get_sms_sign(m.GetSmsSignRequest(sign_name="卡片科技")).body
    assert sign.code == "OK" and sign.sign_status == 1 and sign.qualification_id == qual_id, sign.to_map()
    assert sign.third_party is False and sign.order_id == made.order_id and len(sign.file_url_list) == 1
    assert httpx.get(sign.file_url_list[0]).content.startswith(b"%PDF")
    old_view = c.query_sms_sign(m.QuerySmsSignRequest(sign_name="卡片科技")).body
    assert old_view.sign_status == 1

    tpl = c.create_sms_template(m.CreateSmsTemplateRequest(
        template_name="登录验证码", template_content="您的验证码为${code}，5分钟内有效。", template_type=0,
        related_sign_name="卡片科技", template_rule=json.dumps({"code": "numberCaptcha"}),
        remark="用户登录时发送")).body
    assert tpl.code == "OK" and tpl.template_code.startswith("SMS_") and tpl.order_id, tpl.to_map()
    got = c.get_sms_template(m.GetSmsTemplateRequest(template_code=tpl.template_code)).body
    assert got.template_status == "1" and got.template_type == "0" and got.related_sign_name == "卡片科技"
    assert json.loads(got.variable_attribute) == {"code": "numberCaptcha"}
    listed = c.get_sms_template_list(m.GetSmsTemplateListRequest(page_index=1, page_size=10)).body
    assert listed.success and listed.data.total == 1 and listed.data.list[0].template_code == tpl.template_code
    assert listed.data.list[0].audit_status == "AUDIT_STATE_PASS"
    assert c.query_sms_template(m.QuerySmsTemplateRequest(template_code=tpl.template_code)).body.template_status == 1

    # values are checked against the declared rule
    bad = c.send_sms(m.SendSmsRequest(phone_numbers="13900001111", sign_name="卡片科技",
                                      template_code=tpl.template_code, template_param=json.dumps({"code": "12a4"})
                                      )).body
    assert bad.code == "isv.INVALID_PARAMETERS" and "${code}" in bad.message and "numberCaptcha" in bad.message
    ok = c.send_sms(m.SendSmsRequest(phone_numbers="13900001111", sign_name="卡片科技", template_code=tpl.template_code,
                                     template_param=json.dumps({"code": "4821"}))).body
    assert ok.code == "OK", ok.to_map()

    changed = c.update_sms_template(m.UpdateSmsTemplateRequest(
        template_code=tpl.template_code, template_name="登录验证码", template_type=0, related_sign_name="卡片科技",
        template_content="验证码${code}，请勿告诉他人。",
        template_rule=json.dumps({"code": "characterWithNumber2"}))).body
    assert changed.code == "OK" and changed.template_code == tpl.template_code
    again = c.get_sms_template(m.GetSmsTemplateRequest(template_code=tpl.template_code)).body
    assert again.template_content == "验证码${code}，请勿告诉他人。"
    assert json.loads(again.variable_attribute) == {"code": "characterWithNumber2"}


def _expect(body: Any, code: str, *words: str) -> None:
    assert body.code == code, body.to_map()
    assert all(w in body.message for w in words), body.message


def test_signatures_are_refused_without_the_records_their_source_needs(tenant: Tenant,
                                                                       make_tenant: Any) -> None:
    c = tenant.client()
    with pytest.raises(ClientException) as missing:
        create_sign(c, "无资质签名", None)
    assert "QualificationId" in str(missing.value)
    _expect(create_sign(c, "未知资质", 987654), "isv.QUALIFICATION_ILLEGAL", "QualificationId 987654")
    other = make_tenant().client()
    theirs = qualification(other)
    _expect(create_sign(c, "别人资质", theirs), "isv.QUALIFICATION_ILLEGAL", f"QualificationId {theirs}")

    mine = qualification(c)
    _expect(create_sign(c, "他用签名", mine, third_party=True), "isv.QUALIFICATION_ILLEGAL", "UseBySelf false")
    _expect(create_sign(c, "商标签名", mine, sign_source=5), "isv.QUALIFICATION_ILLEGAL", "TrademarkId")
    _expect(create_sign(c, "应用签名", mine, sign_source=2), "isv.QUALIFICATION_ILLEGAL", "AppIcpRecordId")
    _expect(create_sign(c, "旧来源", mine, sign_source=3), "isv.INVALID_PARAMETERS", "SignSource")

    rejected = qualification(c, name="赌博资质")  # the simulated reviewer rejects the deny-listed word
    record = c.query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
        qualification_group_id=rejected)).body.data
    assert record.state == "NOT_PASS"
    _expect(create_sign(c, "被拒资质", rejected), "isv.QUALIFICATION_ILLEGAL", "rejected")

    # bad qualification records are refused whole, naming the field and the rule
    for field, value, words in (("organization_code", "91330100799655058C", ("OrganizationCode", "GB 32100")),
                                ("admin_idcard_no", "110105194912310021", ("AdminIDCardNo", "GB 11643")),
                                ("admin_phone_no", "12345", ("AdminPhoneNo",)),
                                ("admin_idcard_pic", "file/1/nope.png", ("AdminIDCardPic",))):
        with pytest.raises(ClientException) as err:
            qualification(c, **{field: value})
        assert all(w in str(err.value) for w in words), str(err.value)
    with pytest.raises(ClientException) as err:
        qualification(c, use_by_self=False, business_license_pics=[])
    assert "BusinessLicensePics" in str(err.value)
    total = c.query_sms_qualification_record(m.QuerySmsQualificationRecordRequest(page_no=1, page_size=50)).body
    assert total.data.total == 2  # mine and the rejected one: nothing of the refused ones was written

    # a signature moves onto another qualification of the account (and is reviewed again)
    second = qualification(c)
    assert create_sign(c, "搬家签名", mine).code == "OK"
    moved = c.change_signature_qualification(m.ChangeSignatureQualificationRequest(
        signature_name="搬家签名", qualification_id=second)).body
    assert moved.success and moved.data.success, moved.to_map()
    assert c.get_sms_sign(m.GetSmsSignRequest(sign_name="搬家签名")).body.qualification_id == second
    refused = c.change_signature_qualification(m.ChangeSignatureQualificationRequest(
        signature_name="搬家签名", qualification_id=theirs)).body
    assert refused.success is False and f"QualificationId {theirs}" in refused.message
    assert c.get_sms_sign(m.GetSmsSignRequest(sign_name="搬家签名")).body.qualification_id == second
    c.delete_sms_sign(m.DeleteSmsSignRequest(sign_name="搬家签名"))
    assert c.delete_sms_qualification(m.DeleteSmsQualificationRequest(qualification_group_id=second)).body.success

    # a qualification in use cannot be deleted; an unused one can
    assert create_sign(c, "在用资质", mine).code == "OK"
    used = c.delete_sms_qualification(m.DeleteSmsQualificationRequest(qualification_group_id=mine)).body
    assert used.success is False and "在用资质" in used.message
    gone = c.delete_sms_qualification(m.DeleteSmsQualificationRequest(qualification_group_id=rejected)).body
    assert gone.success is True and gone.data is True


def test_third_party_trademark_and_app_signatures_rest_on_their_documents(tenant: Tenant) -> None:
    c = tenant.client()
    third = qualification(c, use_by_self=False, code=OTHER_USCC)
    pic = upload_file(c, png(300, 400), "letter.png")
    letter = c.create_sms_authorization_letter(m.CreateSmsAuthorizationLetterRequest(
        authorization="北京授权方有限公司", proxy_authorization="杭州卡片科技有限公司", organization_code=OTHER_USCC,
        authorization_letter_name="授权书一", authorization_letter_exp_date="2026-01-01~2030-01-01",
        authorization_letter_pic=pic, sign_list=["授权签名"])).body
    assert letter.success, letter.to_map()
    letters = c.query_sms_authorization_letter(m.QuerySmsAuthorizationLetterRequest(sign_name="授权签名")).body
    assert letters.success and letters.data[0].authorization_letter_id == int(letter.data)
    assert letters.data[0].state == "PASSED" and letters.data[0].sign_scope == "授权签名"

    _expect(create_sign(c, "授权签名", third, third_party=True), "isv.QUALIFICATION_ILLEGAL", "AuthorizationLetterId")
    _expect(create_sign(c, "未授权名", third, third_party=True, authorization_letter_id=int(letter.data)),
            "isv.QUALIFICATION_ILLEGAL", "SignList")
    made = create_sign(c, "授权签名", third, third_party=True, authorization_letter_id=int(letter.data))
    assert made.code == "OK", made.to_map()
    sign = c.get_sms_sign(m.GetSmsSignRequest(sign_name="授权签名")).body
    assert sign.third_party is True and sign.authorization_letter_id == int(letter.data)
    assert sign.authorization_letter_audit_pass is True

    own = qualification(c)
    mark = c.create_sms_trademark(m.CreateSmsTrademarkRequest(
        trademark_name="卡片", trademark_applicant_name="杭州卡片科技有限公司",
        trademark_registration_number="12345678",
        trademark_eff_exp_date="2020-01-01~2030-01-01", trademark_pic=upload_file(c, png(200, 200), "tm.png"))).body
    assert mark.success, mark.to_map()
    marks = c.query_sms_trademark(m.QuerySmsTrademarkRequest(trademark_id_list=[int(mark.data)])).body
    assert marks.data[0].trademark_name == "卡片" and marks.data[0].trademark_pic_url
    assert create_sign(c, "卡片商标", own, sign_source=5, trademark_id=int(mark.data)).code == "OK"

    icp = c.create_sms_app_icp_record(m.CreateSmsAppIcpRecordRequest(
        app_service_name="卡片App", app_principal_unit_name="杭州卡片科技有限公司",
        app_icp_license_number="浙ICP备12345678号-1A", app_approval_date="2024-05-01",
        app_icp_record_pic=upload_file(c, png(200, 300), "icp.png"))).body
    assert icp.success, icp.to_map()
    _expect(create_sign(c, "卡片应用", own, sign_source=2, app_icp_record_id=int(icp.data)),
            "isv.INVALID_PARAMETERS", "ApplySceneContent")
    assert create_sign(c, "卡片应用", own, sign_source=2, app_icp_record_id=int(icp.data),
                       apply_scene_content="https://apps.example.com/card").code == "OK"
    apps = c.query_sms_app_icp_record(m.QuerySmsAppIcpRecordRequest(app_icp_record_id_list=[int(icp.data)])).body
    assert apps.data[0].app_service_name == "卡片App"


def test_template_rules_are_checked_against_the_content(tenant: Tenant) -> None:
    c = tenant.client()
    qual_id = qualification(c)
    assert create_sign(c, "规则签名", qual_id).code == "OK"

    def create(content: str, rule: Any, template_type: int = 1, sign: str = "规则签名") -> Any:
        return c.create_sms_template(m.CreateSmsTemplateRequest(
            template_name="规则", template_content=content, template_type=template_type, related_sign_name=sign,
            template_rule=json.dumps(rule))).body

    _expect(create("订单${order}已发货", {"orderNo": "other_number2"}), "isv.INVALID_PARAMETERS", "${orderNo}")
    _expect(create("订单${order}已发货", {}), "isv.INVALID_PARAMETERS", "${order}", "does not declare")
    _expect(create("订单${order}已发货", {"order": "shoe_size"}), "isv.INVALID_PARAMETERS", "shoe_size")
    _expect(create("您的验证码为${code}", {"code": "money"}, 0), "isv.INVALID_PARAMETERS", "TemplateType 0")
    _expect(create("订单${order}已发货", {"order": "other_number2"}, sign="没有的签名"),
            "isv.SMS_SIGNATURE_ILLEGAL", "没有的签名")
    with pytest.raises(ClientException) as err:
        create("订单${order}已发货", {"order": "other_number2"}, sign="")
    assert "RelatedSignName" in str(err.value)

    good = create("${name}您好，订单${order}金额${amount}已于${time}发货。",
                  {"name": "name", "order": "other_number2", "amount": "money", "time": "time"})
    assert good.code == "OK", good.to_map()
    send = {"name": "王五", "order": "A-1001", "amount": "99.50", "time": "2026-11-29 10:30"}
    ok = c.send_sms(m.SendSmsRequest(phone_numbers="13900002222", sign_name="规则签名",
                                     template_code=good.template_code, template_param=json.dumps(send))).body
    assert ok.code == "OK", ok.to_map()
    wrong = c.send_sms(m.SendSmsRequest(phone_numbers="13900002222", sign_name="规则签名",
                                        template_code=good.template_code,
                                        template_param=json.dumps({**send, "amount": "ninety"}))).body
    _expect(wrong, "isv.INVALID_PARAMETERS", "${amount}", "money")
    # the legacy SDK sees the same template
    assert legacy(tenant, "QuerySmsTemplate", TemplateCode=good.template_code)["TemplateStatus"] == 1


def test_unknown_codes_names_and_ids_are_named_errors(tenant: Tenant) -> None:
    c = tenant.client()
    _expect(c.get_sms_template(m.GetSmsTemplateRequest(template_code="SMS_000000000")).body,
            "isv.SMS_TEMPLATE_ILLEGAL", "SMS_000000000")
    _expect(c.update_sms_template(m.UpdateSmsTemplateRequest(
        template_code="SMS_000000000", template_name="x", template_content="x", template_type=1,
        related_sign_name="x", template_rule="{}")).body, "isv.SMS_TEMPLATE_ILLEGAL", "SMS_000000000")
    _expect(c.get_sms_sign(m.GetSmsSignRequest(sign_name="没有这个")).body, "isv.SMS_SIGNATURE_ILLEGAL", "没有这个")
    _expect(c.query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
        qualification_group_id=999999)).body, "isv.QUALIFICATION_ILLEGAL", "999999")
    _expect(c.update_sms_qualification(m.UpdateSmsQualificationRequest(qualification_group_id=999999)).body,
            "isv.QUALIFICATION_ILLEGAL", "999999")
    qual_id = qualification(c)
    _expect(c.query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
        qualification_group_id=qual_id, order_id=qual_id + 1)).body, "isv.QUALIFICATION_ILLEGAL", "OrderId")
    assert create_sign(c, "商标缺失", qual_id, sign_source=5, trademark_id=424242).code == "isv.QUALIFICATION_ILLEGAL"
    letters = c.query_sms_authorization_letter(m.QuerySmsAuthorizationLetterRequest(
        authorization_letter_id_list=[424242])).body
    assert letters.success and letters.data == []
    bad_link = c.query_page_smart_short_url_log(m.QueryPageSmartShortUrlLogRequest(page_no=1, page_size=10,
                                                                                   short_url="not a link!")).body
    assert bad_link.success is False and "ShortUrl" in bad_link.message
