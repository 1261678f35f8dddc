"""A second account cannot see, change or use the first account's objects: one case per operation."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from cardsms.openapi.dispatch import OPERATIONS
from tests.conftest import Tenant, new_tenant
from tests.harness import Server
from tests.integration.helpers import (
    USCC,
    b64,
    card_template,
    create_card,
    legacy,
    png,
    qualification,
    upload,
    upload_file,
)
from tests.integration.test_digital_signs import CONTEXT


@dataclass
class Owned:
    owner: Tenant
    other: Tenant
    sign: str
    text_code: str
    digital_code: str
    card_code: str
    resource_id: str
    oss_key: str
    oss_size: int
    phone: str = "13912345678"
    biz_id: str = ""
    short_url: str = ""
    source_url: str = "https://owner.example/page"
    qual_id: int = 0
    letter_id: int = 0
    trademark_id: int = 0
    icp_id: int = 0
    file_key: str = ""
    smart_url: str = ""
    current_sign: str = "Current"
    digital_sign: str = "数字所有者"
    current_code: str = ""


_cache: dict[int, Owned] = {}


@pytest.fixture
def owned(server: Server) -> Owned:
    if server.port not in _cache:
        a, b = new_tenant(server), new_tenant(server)
        c = a.client()
        assert c.add_sms_sign(m.AddSmsSignRequest(sign_name="Owner", sign_source=0, remark="r",
                                                  sign_file_list=[])).body.code == "OK"
        text = c.add_sms_template(m.AddSmsTemplateRequest(template_type=1, template_name="t",
                                                          template_content="Hi ${n}", remark="r")).body.template_code
        digital = c.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
            template_name="d", remark="r", template_contents=[m.CreateDigitalSmsTemplateRequestTemplateContents(
                file_contents=b64(b"hello"), file_name="t", file_size=5, file_suffix="txt")])).body.template_code
        data = png()
        _, key = upload(c, data)
        rid = c.get_media_resource_id(m.GetMediaResourceIdRequest(
            resource_type=2, oss_key=key, file_size=len(data), extend_info='{"img_rate":"sixteenToNine"}')
        ).body.data.resource_id
        card = create_card(c, card_template(rid)).data.template_code
        sent = c.send_sms(m.SendSmsRequest(phone_numbers="13912345678", sign_name="Owner", template_code=text,
                                           template_param='{"n": "x"}')).body
        assert sent.code == "OK", sent.to_map()
        short = c.add_short_url(m.AddShortUrlRequest(source_url="https://owner.example/page", short_url_name="o",
                                                     effective_days=7)).body.data.short_url
        o = Owned(a, b, "Owner", text, digital, card, rid, key, len(data), biz_id=sent.biz_id, short_url=short)
        o.qual_id = qualification(c)
        o.file_key = upload_file(c, png(100, 100), "owned.png")
        o.letter_id = int(c.create_sms_authorization_letter(m.CreateSmsAuthorizationLetterRequest(
            authorization="甲公司", proxy_authorization="乙公司", organization_code=USCC, authorization_letter_name="l",
            authorization_letter_exp_date="2026-01-01~2030-01-01", authorization_letter_pic=o.file_key,
            sign_list=["Owner"])).body.data)
        o.trademark_id = int(c.create_sms_trademark(m.CreateSmsTrademarkRequest(
            trademark_name="t", trademark_applicant_name="甲", trademark_registration_number="1",
            trademark_eff_exp_date="2020-01-01~2030-01-01", trademark_pic=o.file_key)).body.data)
        o.icp_id = int(c.create_sms_app_icp_record(m.CreateSmsAppIcpRecordRequest(
            app_service_name="a", app_principal_unit_name="甲", app_icp_license_number="浙ICP备1号",
            app_approval_date="2024-01-01", app_icp_record_pic=o.file_key)).body.data)
        assert c.create_sms_sign(m.CreateSmsSignRequest(sign_name=o.current_sign, sign_source=0,
                                                        qualification_id=o.qual_id)).body.code == "OK"
        o.current_code = c.create_sms_template(m.CreateSmsTemplateRequest(
            template_name="c", template_content="订单${order}已发货", template_type=1,
            related_sign_name=o.current_sign, template_rule='{"order": "other_number2"}')).body.template_code
        assert c.tag_resources(m.TagResourcesRequest(resource_type="TEMPLATE", resource_id=[o.current_code],
                                                     region_id="cn-hangzhou", prod_code="dysms",
                                                     tag=[m.TagResourcesRequestTag(key="team", value="a")])
                               ).body.code == "OK"
        o.smart_url = c.create_smart_short_url(m.CreateSmartShortUrlRequest(
            source_url=o.source_url, phone_numbers=o.phone)).body.model[0].short_url
        assert c.create_digital_sign_order(m.CreateDigitalSignOrderRequest(
            order_type="CREATE_DIGITALSMS_SIGN", sign_name=o.digital_sign, order_context=CONTEXT)).body.code == "OK"
        _cache[server.port] = o
    return _cache[server.port]


def _expect(code: str, needle: str = "") -> Callable[[Any], None]:
    def check(body: Any) -> None:
        assert body.code == code, body.to_map()
        assert needle in (body.to_map().get("Message") or "")
    return check


CASES: dict[str, Callable[[Owned], None]] = {
    "QueryDigitalSignByName": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().query_digital_sign_by_name(m.QueryDigitalSignByNameRequest(sign_name=o.digital_sign)).body),
    "CreateDigitalSignOrder": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL", "does not exist")(
        o.other.client().create_digital_sign_order(m.CreateDigitalSignOrderRequest(
            order_type="DELETE_DIGITALSMS_SIGN", sign_name=o.digital_sign)).body),
    "QuerySmsSign": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().query_sms_sign(m.QuerySmsSignRequest(sign_name=o.sign)).body),
    "ModifySmsSign": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(o.other.client().modify_sms_sign(
        m.ModifySmsSignRequest(sign_name=o.sign, sign_source=0, remark="r", sign_file_list=[])).body),
    "DeleteSmsSign": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().delete_sms_sign(m.DeleteSmsSignRequest(sign_name=o.sign)).body),
    "QuerySmsSignList": lambda o: _assert_no_signs(o),
    "AddSmsSign": lambda o: _assert_same_name_is_independent(o),
    "QuerySmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(
        o.other.client().query_sms_template(m.QuerySmsTemplateRequest(template_code=o.text_code)).body),
    "ModifySmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(o.other.client().modify_sms_template(
        m.ModifySmsTemplateRequest(template_code=o.text_code, template_type=1, template_name="x",
                                   template_content="x", remark="r")).body),
    "DeleteSmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(
        o.other.client().delete_sms_template(m.DeleteSmsTemplateRequest(template_code=o.card_code)).body),
    "QuerySmsTemplateList": lambda o: _assert_no_templates(o),
    "QueryDigitalSmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(
        o.other.client().query_sms_template(m.QuerySmsTemplateRequest(template_code=o.digital_code)).body),
    "CreateDigitalSmsTemplate": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
            template_name="d", remark="r", sign_name=o.sign, template_contents=[
                m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(b"x"), file_name="t",
                                                                  file_size=1, file_suffix="txt")])).body),
    "QueryCardSmsTemplate": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().query_card_sms_template(
        m.QueryCardSmsTemplateRequest(template_code=o.card_code)).body),
    "QueryCardSmsTemplateReport": lambda o: _expect("TEMPLATE_NOT_EXIST")(
        o.other.client().query_card_sms_template_report(m.QueryCardSmsTemplateReportRequest(
            template_codes=[o.card_code])).body),
    "CreateCardSmsTemplate": lambda o: _raises(lambda: create_card(o.other.client(), card_template(o.resource_id)),
                                               "resUrl not exist"),
    "GetMediaResourceId": lambda o: _raises(lambda: o.other.client().get_media_resource_id(
        m.GetMediaResourceIdRequest(resource_type=2, oss_key=o.oss_key, file_size=o.oss_size,
                                    extend_info='{"img_rate":"sixteenToNine"}')), "resUrl not exist"),
    "GetOSSInfoForCardTemplate": lambda o: _assert_upload_confined(o),
    "CheckMobilesCardSupport": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().check_mobiles_card_support(
        m.CheckMobilesCardSupportRequest(template_code=o.card_code, mobiles=[{"mobile": "13800138000"}])).body),
    "QueryMobilesCardSupport": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().query_mobiles_card_support(
        m.QueryMobilesCardSupportRequest(template_code=o.card_code, mobiles=[{"Mobile": "13800138000"}])).body),
    "AddSmsTemplate": lambda o: _assert_codes_are_per_account(o),
    "SendSms": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(o.other.client().send_sms(m.SendSmsRequest(
        phone_numbers=o.phone, sign_name=o.sign, template_code=o.text_code, template_param='{"n":"x"}')).body),
    "SendBatchSms": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(o.other.client().send_batch_sms(
        m.SendBatchSmsRequest(phone_number_json=json.dumps([o.phone]), sign_name_json=json.dumps([o.sign]),
                              template_code=o.text_code, template_param_json='[{"n":"x"}]')).body),
    "SendCardSms": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().send_card_sms(m.SendCardSmsRequest(
        card_template_code=o.card_code, sign_name=o.sign, fallback_type="NONE",
        card_objects=[m.SendCardSmsRequestCardObjects(mobile=o.phone)])).body),
    "SendBatchCardSms": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().send_batch_card_sms(
        m.SendBatchCardSmsRequest(card_template_code=o.card_code, sign_name_json=json.dumps([o.sign]),
                                  phone_number_json=json.dumps([o.phone]), fallback_type="NONE")).body),
    "GetCardSmsLink": lambda o: _expect("TEMPLATE_NOT_EXIST")(o.other.client().get_card_sms_link(
        m.GetCardSmsLinkRequest(card_template_code=o.card_code, phone_number_json=json.dumps([o.phone]),
                                sign_name_json=json.dumps([o.sign]), card_code_type=1)).body),
    "QuerySendDetails": lambda o: _assert_no_records(o),
    "GetCardSmsDetails": lambda o: _assert_no_card_records(o),
    "QuerySendStatistics": lambda o: _assert_no_statistics(o),
    "QuerySendTimeline": lambda o: _assert_no_timeline(o),
    "QueryShortUrl": lambda o: _expect("isv.INVALID_PARAMETERS", "does not exist")(
        o.other.client().query_short_url(m.QueryShortUrlRequest(short_url=o.short_url)).body),
    "DeleteShortUrl": lambda o: _assert_short_url_survives(o),
    "AddShortUrl": lambda o: _assert_short_urls_are_independent(o),
    # the current catalog operations and the records they rest on
    "GetSmsSign": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().get_sms_sign(m.GetSmsSignRequest(sign_name=o.current_sign)).body),
    "CreateSmsSign": lambda o: _expect("isv.QUALIFICATION_ILLEGAL", f"QualificationId {o.qual_id}")(
        o.other.client().create_sms_sign(m.CreateSmsSignRequest(sign_name="Stolen", sign_source=0,
                                                                qualification_id=o.qual_id)).body),
    "ChangeSignatureQualification": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(
        o.other.client().change_signature_qualification(m.ChangeSignatureQualificationRequest(
            signature_name=o.current_sign, qualification_id=o.qual_id)).body),
    "UpdateSmsSign": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(o.other.client().update_sms_sign(
        m.UpdateSmsSignRequest(sign_name=o.current_sign, sign_source=0, qualification_id=o.qual_id)).body),
    "GetSmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(
        o.other.client().get_sms_template(m.GetSmsTemplateRequest(template_code=o.current_code)).body),
    "UpdateSmsTemplate": lambda o: _expect("isv.SMS_TEMPLATE_ILLEGAL")(o.other.client().update_sms_template(
        m.UpdateSmsTemplateRequest(template_code=o.current_code, template_name="x", template_content="x",
                                   template_type=1, related_sign_name="x", template_rule="{}")).body),
    "CreateSmsTemplate": lambda o: _expect("isv.SMS_SIGNATURE_ILLEGAL")(o.other.client().create_sms_template(
        m.CreateSmsTemplateRequest(template_name="x", template_content="x", template_type=1,
                                   related_sign_name=o.current_sign, template_rule="{}")).body),
    "GetSmsTemplateList": lambda o: _assert_total(o.other.client().get_sms_template_list(
        m.GetSmsTemplateListRequest(page_index=1, page_size=10)).body.data.total),
    "SubmitSmsQualification": lambda o: _raises(lambda: qualification(
        o.other.client(), admin_idcard_pic=o.file_key), "uploaded"),
    "QuerySmsQualificationRecord": lambda o: _assert_total(o.other.client().query_sms_qualification_record(
        m.QuerySmsQualificationRecordRequest(page_no=1, page_size=10)).body.data.total),
    "QuerySingleSmsQualification": lambda o: _expect("isv.QUALIFICATION_ILLEGAL")(
        o.other.client().query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
            qualification_group_id=o.qual_id)).body),
    "UpdateSmsQualification": lambda o: _expect("isv.QUALIFICATION_ILLEGAL")(
        o.other.client().update_sms_qualification(m.UpdateSmsQualificationRequest(
            qualification_group_id=o.qual_id, company_name="x", legal_person_name="x", admin_name="x",
            admin_phone_no="13800138000", admin_idcard_no="x", admin_idcard_type="identityCard",
            legal_person_idcard_no="x", legal_person_idcard_type="identityCard")).body),
    "DeleteSmsQualification": lambda o: _assert_qualification_survives(o),
    "CreateSmsAuthorizationLetter": lambda o: _raises(lambda: o.other.client().create_sms_authorization_letter(
        m.CreateSmsAuthorizationLetterRequest(authorization="甲", proxy_authorization="乙", organization_code=USCC,
                                              authorization_letter_name="l", authorization_letter_pic=o.file_key,
                                              authorization_letter_exp_date="2026-01-01", sign_list=["x"])),
        "uploaded"),
    "QuerySmsAuthorizationLetter": lambda o: _assert_total(len(o.other.client().query_sms_authorization_letter(
        m.QuerySmsAuthorizationLetterRequest(authorization_letter_id_list=[o.letter_id])).body.data)),
    "CreateSmsTrademark": lambda o: _raises(lambda: o.other.client().create_sms_trademark(
        m.CreateSmsTrademarkRequest(trademark_name="t", trademark_applicant_name="甲",
                                    trademark_registration_number="1", trademark_eff_exp_date="2020-01-01",
                                    trademark_pic=o.file_key)), "uploaded"),
    "QuerySmsTrademark": lambda o: _assert_total(len(o.other.client().query_sms_trademark(
        m.QuerySmsTrademarkRequest(trademark_id_list=[o.trademark_id])).body.data)),
    "CreateSmsAppIcpRecord": lambda o: _raises(lambda: o.other.client().create_sms_app_icp_record(
        m.CreateSmsAppIcpRecordRequest(app_service_name="a", app_principal_unit_name="甲",
                                       app_icp_license_number="1", app_approval_date="2024-01-01",
                                       app_icp_record_pic=o.file_key)), "uploaded"),
    "QuerySmsAppIcpRecord": lambda o: _assert_total(len(o.other.client().query_sms_app_icp_record(
        m.QuerySmsAppIcpRecordRequest(app_icp_record_id_list=[o.icp_id])).body.data)),
    "GetOSSInfoForUploadFile": lambda o: _assert_file_upload_confined(o, "upload"),
    "GetQualificationOssInfo": lambda o: _assert_file_upload_confined(o, "qualification"),
    "CreateSmartShortUrl": lambda o: _assert_smart_links_are_independent(o),
    "QueryPageSmartShortUrlLog": lambda o: _assert_total(o.other.client().query_page_smart_short_url_log(
        m.QueryPageSmartShortUrlLogRequest(page_no=1, page_size=10, short_url=o.smart_url)).body.model.total_count),
    "TagResources": lambda o: _raises(lambda: o.other.client().tag_resources(m.TagResourcesRequest(
        resource_type="TEMPLATE", resource_id=[o.current_code], region_id="cn-hangzhou", prod_code="dysms",
        tag=[m.TagResourcesRequestTag(key="k", value="v")])), "does not exist"),
    "UntagResources": lambda o: _assert_tags_survive(o),
    "ListTagResources": lambda o: _assert_total(len(o.other.client().list_tag_resources(m.ListTagResourcesRequest(
        resource_type="TEMPLATE", resource_id=[o.current_code], region_id="cn-hangzhou", prod_code="dysms"
    )).body.tag_resources.tag_resource)),
}


def _assert_total(total: int, expected: int = 0) -> None:
    assert total == expected


def _assert_qualification_survives(o: Owned) -> None:
    gone = o.other.client().delete_sms_qualification(m.DeleteSmsQualificationRequest(
        qualification_group_id=o.qual_id)).body
    assert gone.success is False and gone.code == "isv.QUALIFICATION_ILLEGAL"
    mine = o.owner.client().query_single_sms_qualification(m.QuerySingleSmsQualificationRequest(
        qualification_group_id=o.qual_id)).body
    assert mine.success and mine.data.qualification_group_id == o.qual_id


def _assert_file_upload_confined(o: Owned, which: str) -> None:
    c = o.other.client()
    if which == "upload":
        info = c.get_ossinfo_for_upload_file(m.GetOSSInfoForUploadFileRequest(biz_type="x")).body.model
        policy, host, key_id, signature, start = info.policy, info.host, info.access_key_id, info.signature, \
            info.start_path
    else:
        data = c.get_qualification_oss_info(m.GetQualificationOssInfoRequest(biz_type="x")).body.data
        policy, host, key_id, signature, start = data.policy, data.host, data.access_key_id, data.signature, \
            data.start_path
    owner_path = o.file_key.rsplit("/", 1)[0] + "/"
    assert start != owner_path
    r = httpx.post(host, data={"key": owner_path + "evil.png", "policy": policy, "OSSAccessKeyId": key_id,
                               "signature": signature}, files={"file": ("evil.png", png(32, 18))})
    assert r.status_code == 403


def _assert_smart_links_are_independent(o: Owned) -> None:
    theirs = o.other.client().create_smart_short_url(m.CreateSmartShortUrlRequest(
        source_url=o.source_url, phone_numbers=o.phone)).body.model[0].short_url
    assert theirs != o.smart_url
    mine = o.owner.client().query_page_smart_short_url_log(m.QueryPageSmartShortUrlLogRequest(
        page_no=1, page_size=10, phone_number=o.phone)).body.model
    assert [r.short_url for r in mine.list] == [o.smart_url]


def _assert_tags_survive(o: Owned) -> None:
    o.other.client().untag_resources(m.UntagResourcesRequest(
        resource_type="TEMPLATE", resource_id=[o.current_code], region_id="cn-hangzhou", prod_code="dysms",
        all=True))
    mine = o.owner.client().list_tag_resources(m.ListTagResourcesRequest(
        resource_type="TEMPLATE", resource_id=[o.current_code], region_id="cn-hangzhou", prod_code="dysms")).body
    assert [(t.tag_key, t.tag_value) for t in mine.tag_resources.tag_resource] == [("team", "a")]


def _today() -> str:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")


def _assert_no_records(o: Owned) -> None:
    mine = o.owner.client().query_send_details(m.QuerySendDetailsRequest(
        phone_number=o.phone, send_date=_today(), page_size=10, current_page=1)).body
    assert mine.total_count == "1"
    theirs = o.other.client().query_send_details(m.QuerySendDetailsRequest(
        phone_number=o.phone, send_date=_today(), page_size=10, current_page=1, biz_id=o.biz_id)).body
    assert theirs.code == "OK" and theirs.total_count == "0"


def _assert_no_card_records(o: Owned) -> None:
    body = o.other.client().get_card_sms_details(m.GetCardSmsDetailsRequest(
        biz_sms_id=o.biz_id, send_date=_today(), page_size=10, current_page=1)).body
    assert body.code == "OK" and body.card_send_detail_dto.total_count == 0


def _assert_no_statistics(o: Owned) -> None:
    body = o.other.client().query_send_statistics(m.QuerySendStatisticsRequest(
        is_globe=1, start_date=_today(), end_date=_today(), page_index=1, page_size=10)).body
    assert body.code == "OK" and body.data.total_size == 0


def _assert_no_timeline(o: Owned) -> None:
    assert legacy(o.owner, "QuerySendTimeline", BizId=o.biz_id, PhoneNumber=o.phone)["Messages"]
    assert legacy(o.other, "QuerySendTimeline", BizId=o.biz_id, PhoneNumber=o.phone)["Messages"] == []


def _assert_short_url_survives(o: Owned) -> None:
    _expect("isv.INVALID_PARAMETERS", "no short link")(
        o.other.client().delete_short_url(m.DeleteShortUrlRequest(source_url=o.source_url)).body)
    info = o.owner.client().query_short_url(m.QueryShortUrlRequest(short_url=o.short_url)).body
    assert info.data.short_url_status == "effective"


def _assert_short_urls_are_independent(o: Owned) -> None:
    theirs = o.other.client().add_short_url(m.AddShortUrlRequest(source_url=o.source_url, short_url_name="t",
                                                                 effective_days=7)).body.data.short_url
    assert theirs != o.short_url
    assert o.other.client().delete_short_url(m.DeleteShortUrlRequest(source_url=o.source_url)).body.code == "OK"
    info = o.owner.client().query_short_url(m.QueryShortUrlRequest(short_url=o.short_url)).body
    assert info.data.short_url_status == "effective"


def _raises(call: Callable[[], Any], needle: str) -> None:
    with pytest.raises(ClientException) as exc:
        call()
    assert needle in exc.value.message


def _assert_no_signs(o: Owned) -> None:
    assert o.other.client().query_sms_sign_list(m.QuerySmsSignListRequest()).body.total_count == 0


def _assert_no_templates(o: Owned) -> None:
    assert o.other.client().query_sms_template_list(m.QuerySmsTemplateListRequest()).body.total_count == 0


def _assert_same_name_is_independent(o: Owned) -> None:
    other = new_tenant(o.other.server)
    assert other.client().add_sms_sign(m.AddSmsSignRequest(sign_name=o.sign, sign_source=1, remark="mine",
                                                           sign_file_list=[])).body.code == "OK"
    assert o.owner.client().query_sms_sign(m.QuerySmsSignRequest(sign_name=o.sign)).body.sign_status == 1


def _assert_codes_are_per_account(o: Owned) -> None:
    code = new_tenant(o.other.server).client().add_sms_template(m.AddSmsTemplateRequest(
        template_type=1, template_name="t", template_content="Hi", remark="r")).body.template_code
    assert o.owner.client().query_sms_template(m.QuerySmsTemplateRequest(template_code=code)).body.code == \
        "isv.SMS_TEMPLATE_ILLEGAL"


def _assert_upload_confined(o: Owned) -> None:
    info = o.other.client().get_ossinfo_for_card_template().body.data
    owner_path = o.oss_key.rsplit("/", 1)[0] + "/"
    assert info.start_path != owner_path
    r = httpx.post(info.host, data={"key": owner_path + "evil.png", "policy": info.policy,
                                    "OSSAccessKeyId": info.access_key_id, "signature": info.signature},
                   files={"file": ("evil.png", png(32, 18))})
    assert r.status_code == 403


def test_every_operation_is_covered_by_an_isolation_case() -> None:
    assert set(CASES) == set(OPERATIONS)


@pytest.mark.parametrize("action", sorted(CASES))
def test_second_account_cannot_see_change_or_use_the_first_accounts_objects(owned: Owned, action: str) -> None:
    CASES[action](owned)
