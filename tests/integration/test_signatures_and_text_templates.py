"""Signatures and text templates through the official SDK, with review by the simulator."""

from __future__ import annotations

import time

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Tenant, new_tenant
from tests.harness import Server
from tests.integration.helpers import b64, jpeg, png


def test_a_signature_with_proof_files_is_added_reviewed_listed_modified_and_deleted(tenant: Tenant) -> None:
    c = tenant.client()
    added = c.add_sms_sign(m.AddSmsSignRequest(
        sign_name="Example", sign_source=0, sign_type=1, remark="order notices for our shop",
        sign_file_list=[m.AddSmsSignRequestSignFileList(file_contents=b64(jpeg(50, 50)), file_suffix="jpg"),
                        m.AddSmsSignRequestSignFileList(file_contents=b64(png(40, 40)), file_suffix="png")],
    )).body
    assert (added.code, added.sign_name) == ("OK", "Example")
    assert set(added.to_map()) == {"Code", "Message", "RequestId", "SignName"}
    assert added.request_id == added.request_id.upper() and len(added.request_id) == 36

    q = c.query_sms_sign(m.QuerySmsSignRequest(sign_name="example")).body  # names are case-insensitive
    assert (q.code, q.sign_name, q.sign_status, q.reason) == ("OK", "Example", 1, "")
    assert len(q.create_date) == 19

    listed = c.query_sms_sign_list(m.QuerySmsSignListRequest(page_index=1, page_size=10)).body
    assert listed.total_count == 1 and listed.current_page == 1 and listed.page_size == 10
    item = listed.sms_sign_list[0]
    assert (item.sign_name, item.audit_status, item.business_type) == ("Example", "AUDIT_STATE_PASS", "General-purpose")

    modified = c.modify_sms_sign(m.ModifySmsSignRequest(
        sign_name="Example", sign_source=2, sign_type=0, remark="now an app signature", sign_file_list=[])).body
    assert modified.code == "OK"
    assert c.query_sms_sign(m.QuerySmsSignRequest(sign_name="Example")).body.sign_status == 1

    deleted = c.delete_sms_sign(m.DeleteSmsSignRequest(sign_name="Example")).body
    assert (deleted.code, deleted.sign_name) == ("OK", "Example")
    gone = c.query_sms_sign(m.QuerySmsSignRequest(sign_name="Example")).body
    assert gone.code == "isv.SMS_SIGNATURE_ILLEGAL" and "does not exist" in gone.message


def test_signature_failures_name_the_problem(tenant: Tenant) -> None:
    c = tenant.client()
    ok = c.add_sms_sign(m.AddSmsSignRequest(sign_name="Dup", sign_source=0, remark="r", sign_file_list=[])).body
    assert ok.code == "OK"
    dup = c.add_sms_sign(m.AddSmsSignRequest(sign_name="DUP", sign_source=0, remark="r", sign_file_list=[])).body
    assert dup.code == "isv.SMS_SIGN_NAME_EXIST"
    bad_source = c.add_sms_sign(m.AddSmsSignRequest(sign_name="Shop", sign_source=9, remark="r",
                                                    sign_file_list=[])).body
    assert bad_source.code == "isv.INVALID_PARAMETERS" and "SignSource" in bad_source.message
    fake_png = c.add_sms_sign(m.AddSmsSignRequest(
        sign_name="Shop", sign_source=0, remark="r",
        sign_file_list=[m.AddSmsSignRequestSignFileList(file_contents=b64(b"MZ\x90\x00 not an image"),
                                                        file_suffix="png")])).body
    assert fake_png.code == "isv.FILE_ILLEGAL" and "SignFileList.1" in fake_png.message
    with pytest.raises(ClientException) as exc:
        c.add_sms_sign(m.AddSmsSignRequest(sign_name="Shop", sign_source=0, sign_file_list=[]))
    assert exc.value.code == "MissingParameter" and "Remark" in exc.value.message
    # nothing of the failed calls was written
    assert c.query_sms_sign_list(m.QuerySmsSignListRequest()).body.total_count == 1


def test_text_templates_of_every_type_are_added_queried_listed_modified_deleted(tenant: Tenant) -> None:
    c = tenant.client()
    codes = {}
    for ttype, content in [(0, "Your code is ${code}, valid 5 minutes"), (1, "Order ${order} shipped"),
                           (2, "Spring sale: 20% off everything"), (3, "Your code is ${code}")]:
        body = c.add_sms_template(m.AddSmsTemplateRequest(
            template_type=ttype, template_name=f"type {ttype}", template_content=content, remark="for tests")).body
        assert body.code == "OK" and body.template_code.startswith("SMS_")
        assert set(body.to_map()) == {"Code", "Message", "RequestId", "TemplateCode"}
        codes[ttype] = body.template_code
    q = c.query_sms_template(m.QuerySmsTemplateRequest(template_code=codes[1])).body
    assert (q.template_status, q.template_type, q.template_content, q.template_name) == (
        1, 1, "Order ${order} shipped", "type 1")
    listed = c.query_sms_template_list(m.QuerySmsTemplateListRequest(page_index=1, page_size=2)).body
    assert listed.total_count == 4 and len(listed.sms_template_list) == 2
    assert listed.sms_template_list[0].audit_status == "AUDIT_STATE_PASS"
    mod = c.modify_sms_template(m.ModifySmsTemplateRequest(
        template_code=codes[1], template_type=1, template_name="renamed", template_content="Order ${order} is out",
        remark="changed")).body
    assert mod.code == "OK" and mod.template_code == codes[1]
    assert c.query_sms_template(m.QuerySmsTemplateRequest(template_code=codes[1])).body.template_name == "renamed"
    d = c.delete_sms_template(m.DeleteSmsTemplateRequest(template_code=codes[1])).body
    assert (d.code, d.template_code) == ("OK", codes[1])
    assert c.query_sms_template(m.QuerySmsTemplateRequest(template_code=codes[1])).body.code == \
        "isv.SMS_TEMPLATE_ILLEGAL"


def test_text_template_rules(tenant: Tenant) -> None:
    c = tenant.client()

    def add(ttype: int, content: str, name: str = "t") -> m.AddSmsTemplateResponseBody:
        return c.add_sms_template(m.AddSmsTemplateRequest(template_type=ttype, template_name=name,
                                                          template_content=content, remark="r")).body
    two_vars = add(0, "Code ${a} and ${b}")
    assert two_vars.code == "isv.INVALID_PARAMETERS" and "exactly one variable" in two_vars.message
    assert "TemplateType" in add(5, "hello").message
    assert "【】" in add(1, "【Shop】hello").message
    assert "TemplateName" in add(1, "hello", name="x" * 31).message
    assert "${1x}" in add(1, "bad ${1x} name").message


def test_deny_listed_content_is_rejected_with_a_reason(tenant: Tenant) -> None:
    c = tenant.client()
    code = c.add_sms_template(m.AddSmsTemplateRequest(
        template_type=2, template_name="promo", template_content="Fast loan approval today", remark="r")).body
    q = c.query_sms_template(m.QuerySmsTemplateRequest(template_code=code.template_code)).body
    assert q.template_status == 2 and "loan" in q.reason
    sign = c.add_sms_sign(m.AddSmsSignRequest(sign_name="赌博之家", sign_source=0, remark="r", sign_file_list=[])).body
    assert sign.code == "OK"
    s = c.query_sms_sign(m.QuerySmsSignRequest(sign_name="赌博之家")).body
    assert s.sign_status == 2 and "赌博" in s.reason


def test_review_takes_the_configured_delay_and_blocks_modification_meanwhile(slow_review_server: Server) -> None:
    tenant = new_tenant(slow_review_server)
    c = tenant.client()
    code = c.add_sms_template(m.AddSmsTemplateRequest(
        template_type=1, template_name="n", template_content="Order ${o} shipped", remark="r")).body.template_code
    assert c.query_sms_template(m.QuerySmsTemplateRequest(template_code=code)).body.template_status == 0
    busy = c.modify_sms_template(m.ModifySmsTemplateRequest(
        template_code=code, template_type=1, template_name="n", template_content="x", remark="r")).body
    assert busy.code == "isv.REVIEW_IN_PROGRESS"
    deadline = time.monotonic() + 30
    while c.query_sms_template(m.QuerySmsTemplateRequest(template_code=code)).body.template_status == 0:
        assert time.monotonic() < deadline, "review never finished"
        time.sleep(0.2)
    assert c.query_sms_template(m.QuerySmsTemplateRequest(template_code=code)).body.template_status == 1


def test_digital_template_is_created_and_its_review_state_queried(tenant: Tenant) -> None:
    c = tenant.client()
    assert c.add_sms_sign(m.AddSmsSignRequest(sign_name="Example", sign_source=0, remark="r",
                                              sign_file_list=[])).body.code == "OK"
    body = c.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
        template_name="Autumn catalogue", sign_name="Example", remark="fallback for cards",
        template_contents=[
            m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64("秋季新品上市".encode()),
                                                              file_name="text", file_size=18, file_suffix="txt"),
            m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(png(64, 64)), file_name="pic",
                                                              file_size=1, file_suffix="png"),
        ])).body
    assert body.code == "OK" and body.template_code.startswith("SMS_")
    q = c.query_sms_template(m.QuerySmsTemplateRequest(template_code=body.template_code)).body
    assert (q.template_type, q.template_status, q.template_content) == (7, 1, "秋季新品上市")
    # the cardsms-specific status query, through the SDK's generic call
    from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params
    from darabonba.runtime import RuntimeOptions

    params = Params(action="QueryDigitalSmsTemplate", version="2017-05-25", protocol="HTTP", pathname="/",
                    method="POST", auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    raw = c.call_api(params, OpenApiRequest(query={"TemplateCode": body.template_code}), RuntimeOptions())["body"]
    assert raw["TemplateStatus"] == 1 and raw["SignName"] == "Example"
    assert [p["FileSuffix"] for p in raw["TemplateContents"]] == ["txt", "png"]

    two_videos = c.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
        template_name="v", remark="r", template_contents=[
            m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(b"\0\0\0\x18ftypmp42" + b"\0" * 20),
                                                              file_name="v", file_size=1, file_suffix="mp4")] * 2,
    )).body
    assert two_videos.code == "isv.INVALID_PARAMETERS" and "one video" in two_videos.message
    unknown_sign = c.create_digital_sms_template(m.CreateDigitalSmsTemplateRequest(
        template_name="v", remark="r", sign_name="Nobody", template_contents=[
            m.CreateDigitalSmsTemplateRequestTemplateContents(file_contents=b64(b"hi"), file_name="t", file_size=2,
                                                              file_suffix="txt")])).body
    assert unknown_sign.code == "isv.SMS_SIGNATURE_ILLEGAL"
