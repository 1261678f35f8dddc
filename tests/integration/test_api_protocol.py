"""Signatures, replay, clock skew, throttling, error envelopes, XML, the legacy SDK."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from aliyunsdkcore.acs_exception.exceptions import ServerException

from cardsms.openapi.auth import ApiRequest, v2_string_to_sign
from tests.conftest import Tenant, new_tenant
from tests.harness import Server
from tests.integration.helpers import legacy


@pytest.mark.parametrize("algorithm", [None, "ACS3-HMAC-SM3", "v2"])
def test_every_signature_scheme_of_the_new_sdk_is_accepted(tenant: Tenant, algorithm: str | None) -> None:
    body = tenant.client(algorithm).query_sms_sign_list(m.QuerySmsSignListRequest()).body
    assert body.code == "OK"


def test_legacy_sdk_signature_v2_works_for_signatures_and_templates(tenant: Tenant) -> None:
    added = legacy(tenant, "AddSmsSign", SignName="Legacy", SignSource="0", Remark="old client")
    assert added["Code"] == "OK"
    assert legacy(tenant, "QuerySmsSign", SignName="Legacy")["SignStatus"] == 1
    tpl = legacy(tenant, "AddSmsTemplate", TemplateType="1", TemplateName="old",
                 TemplateContent="Hello ${name}, see you at 10:00 + bring ~*", Remark="r")
    assert tpl["Code"] == "OK"
    got = legacy(tenant, "QuerySmsTemplate", TemplateCode=tpl["TemplateCode"])
    assert got["TemplateContent"] == "Hello ${name}, see you at 10:00 + bring ~*"
    assert legacy(tenant, "DeleteSmsTemplate", TemplateCode=tpl["TemplateCode"])["Code"] == "OK"
    assert legacy(tenant, "DeleteSmsSign", SignName="Legacy")["Code"] == "OK"


def test_wrong_secret_is_signature_does_not_match_with_the_string_to_sign(tenant: Tenant) -> None:
    with pytest.raises(ClientException) as exc:
        tenant.client(secret="not-the-secret").query_sms_sign_list(m.QuerySmsSignListRequest())
    assert exc.value.status_code == 400 and exc.value.code == "SignatureDoesNotMatch"
    assert "server string to sign is:ACS3-HMAC-SHA256\n" in exc.value.message
    with pytest.raises(ServerException) as legacy_exc:
        legacy(Tenant(tenant.name, tenant.key_id, "wrong", tenant.server), "QuerySmsSignList")
    assert legacy_exc.value.get_error_code() == "SignatureDoesNotMatch"
    assert "GET&%2F&" in legacy_exc.value.get_error_msg() or "POST&%2F&" in legacy_exc.value.get_error_msg()


def test_unknown_key_is_404_and_disabled_or_deleted_keys_stop_working(tenant: Tenant) -> None:
    with pytest.raises(ClientException) as exc:
        tenant.client(key_id="LTAInope").query_sms_sign_list(m.QuerySmsSignListRequest())
    assert (exc.value.status_code, exc.value.code) == (404, "InvalidAccessKeyId.NotFound")
    from tests.harness import cli

    cli(tenant.server.env, "accesskey", "disable", tenant.key_id)
    with pytest.raises(ClientException) as exc:
        tenant.client().query_sms_sign_list(m.QuerySmsSignListRequest())
    assert (exc.value.status_code, exc.value.code) == (403, "InvalidAccessKeyId.Inactive")
    cli(tenant.server.env, "accesskey", "enable", tenant.key_id)
    assert tenant.client().query_sms_sign_list(m.QuerySmsSignListRequest()).body.code == "OK"
    cli(tenant.server.env, "accesskey", "delete", tenant.key_id)
    with pytest.raises(ClientException) as exc:
        tenant.client().query_sms_sign_list(m.QuerySmsSignListRequest())
    assert exc.value.code == "InvalidAccessKeyId.NotFound"


def _v2_request(tenant: Tenant, nonce: str, timestamp: datetime) -> httpx.Response:
    """A hand-signed v2 request, so that nonce and timestamp can be chosen."""
    import base64
    import hashlib
    import hmac

    params = {"Action": "QuerySmsSignList", "Version": "2017-05-25", "Format": "JSON",
              "AccessKeyId": tenant.key_id, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
              "SignatureNonce": nonce, "Timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")}
    to_sign = v2_string_to_sign(ApiRequest("GET", list(params.items()), [], {}, b""))
    params["Signature"] = base64.b64encode(
        hmac.new((tenant.secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return httpx.get(tenant.server.url + "/", params=params)


def test_replayed_nonce_and_stale_timestamp_are_rejected(tenant: Tenant) -> None:
    now = datetime.now(UTC)
    nonce = str(uuid.uuid4())
    assert _v2_request(tenant, nonce, now).json()["Code"] == "OK"
    replay = _v2_request(tenant, nonce, now)
    assert replay.status_code == 400 and replay.json()["Code"] == "SignatureNonceUsed"
    stale = _v2_request(tenant, str(uuid.uuid4()), now - timedelta(minutes=16))
    assert stale.status_code == 400 and stale.json()["Code"] == "InvalidTimeStamp.Expired"
    future = _v2_request(tenant, str(uuid.uuid4()), now + timedelta(minutes=16))
    assert future.json()["Code"] == "InvalidTimeStamp.Expired"
    assert _v2_request(tenant, str(uuid.uuid4()), now - timedelta(minutes=14)).json()["Code"] == "OK"


def test_over_the_qps_limit_is_throttling_user_with_retry_after(server: Server) -> None:
    tenant = new_tenant(server, qps=2)
    client = tenant.client()
    with pytest.raises(ThrottlingException) as exc:
        for _ in range(20):
            client.query_sms_sign_list(m.QuerySmsSignListRequest())
    assert exc.value.code == "Throttling.User" and exc.value.retry_after >= 1
    # another account is not affected
    assert new_tenant(server).client().query_sms_sign_list(m.QuerySmsSignListRequest()).body.code == "OK"


def test_protocol_errors_use_the_alibaba_envelope(tenant: Tenant) -> None:
    r = httpx.post(tenant.server.url + "/", headers={"x-acs-action": "NoSuchAction", "x-acs-version": "2017-05-25"})
    assert r.status_code == 404
    assert set(r.json()) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert r.json()["Code"] == "InvalidAction.NotFound"
    r = httpx.post(tenant.server.url + "/", headers={"x-acs-action": "QuerySmsSign", "x-acs-version": "2017-05-25"})
    assert (r.status_code, r.json()["Code"]) == (400, "MissingAccessKeyId")
    r = httpx.post(tenant.server.url + "/", headers={"x-acs-action": "QuerySmsSign", "x-acs-version": "2001-01-01"})
    assert r.json()["Code"] == "InvalidVersion"
    r = httpx.post(tenant.server.url + "/", headers={"authorization": "ACS3-HMAC-SHA256 garbage",
                                                     "x-acs-action": "QuerySmsSign", "x-acs-version": "2017-05-25"})
    assert (r.status_code, r.json()["Code"]) == (400, "IncompleteSignature")


def test_format_xml_answers_xml(tenant: Tenant) -> None:
    import base64
    import hashlib
    import hmac
    import xml.etree.ElementTree as ET

    params = {"Action": "QuerySmsSignList", "Version": "2017-05-25", "Format": "XML", "AccessKeyId": tenant.key_id,
              "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0", "SignatureNonce": str(uuid.uuid4()),
              "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    to_sign = v2_string_to_sign(ApiRequest("GET", list(params.items()), [], {}, b""))
    params["Signature"] = base64.b64encode(
        hmac.new((tenant.secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    r = httpx.get(tenant.server.url + "/", params=params)
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.text)
    assert root.tag == "QuerySmsSignListResponse" and root.findtext("Code") == "OK"


def test_health_metrics_and_start_page(server: Server) -> None:
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    metrics = httpx.get(server.url + "/metrics").text
    assert "cardsms_api_requests_total" in metrics
    start = httpx.get(server.url + "/", follow_redirects=True)  # a browser lands on the console's login
    assert start.status_code == 200 and start.url.path == "/console/login" and 'name="password"' in start.text
