"""Steps an integrator takes with the official SDK, shared by the integration tests."""

from __future__ import annotations

import base64
import copy
import functools
import io
import json
import uuid
from typing import Any

import httpx
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_dysmsapi20170525.client import Client
from PIL import Image


def png(width: int = 1280, height: int = 720, color: str = "#3366cc") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(width: int = 800, height: int = 800) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "#cc6633").save(buf, "JPEG", quality=70)
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def upload(client: Client, data: bytes, name: str = "img.png") -> tuple[httpx.Response, str]:
    """Upload through the object-store POST policy, as Alibaba's console and SDK samples do."""
    info = client.get_ossinfo_for_card_template().body.data
    key = info.start_path + name
    response = httpx.post(
        info.host,
        data={"key": key, "policy": info.policy, "OSSAccessKeyId": info.access_key_id,
              "signature": info.signature, "success_action_status": "200"},
        files={"file": (name, data)},
        timeout=30,
    )
    return response, key


def image_resource(client: Client, data: bytes | None = None, ratio: str = "sixteenToNine") -> str:
    data = data or png()
    response, key = upload(client, data)
    assert response.status_code == 200, response.text
    body = client.get_media_resource_id(m.GetMediaResourceIdRequest(
        resource_type=2, oss_key=key, file_size=len(data), extend_info=json.dumps({"img_rate": ratio}), memo="t",
    )).body
    assert body.success and body.code == "OK", body.to_map()
    return str(body.data.resource_id)


SAMPLE_CARD: dict[str, Any] = {
    "extendInfo": {"scene": "order", "purpose": "1", "params": [{"name": "${name}", "type": 1, "example": "Li"}],
                   "userExt": {"outId": "A-1"}},
    "templateContent": {"pages": [{"tmpCards": [
        {"type": "IMAGE", "srcType": 1, "src": "<ResourceId>", "actionType": "OPEN_BROWSER",
         "action": {"target": "https://shop.example/o/1", "merchantName": "Example Shop"}, "positionNumber": 1},
        {"type": "TEXT", "isTextTitle": True, "content": "Your order has shipped", "positionNumber": 2},
        {"type": "TEXT", "isTextTitle": False, "content": "【Example】Hello ${name}, your parcel is on its way.",
         "positionNumber": 3},
        {"type": "BUTTON", "content": "Open app", "actionType": "OPEN_APP",
         "action": {"target": "shop://order/1", "packageName": ["com.example.shop"],
                    "floorUrl": "https://shop.example/o/1", "merchantName": "Example Shop"}, "positionNumber": 4}]}]},
    "cardSignName": "Example", "cardType": 5,
}


def card_template(resource_id: str) -> dict[str, Any]:
    t = copy.deepcopy(SAMPLE_CARD)
    t["templateContent"]["pages"][0]["tmpCards"][0]["src"] = resource_id
    return t


def create_card(client: Client, template: dict[str, Any], name: str = "Order shipped", factorys: str = "") -> Any:
    return client.create_card_sms_template(m.CreateCardSmsTemplateRequest(
        template_name=name, template=template, factorys=factorys or None, memo="test"
    )).body


def approved_card(client: Client) -> str:
    body = create_card(client, card_template(image_resource(client)))
    assert body.success, body.to_map()
    return str(body.data.template_code)


@functools.lru_cache(maxsize=64)
def _legacy_client(key_id: str, secret: str) -> Any:
    """One legacy client per AccessKey (building one reads the SDK's endpoint tables: ~5 ms)."""
    from aliyunsdkcore.client import AcsClient

    return AcsClient(key_id, secret, "cn-hangzhou")


def legacy(tenant: Any, action: str, **params: str) -> dict[str, Any]:
    """Call an operation with the legacy SDK (signature v2, CommonRequest) and return the raw JSON; the
    parameters go in the query string, as the SDK sends them."""
    return _legacy_call(tenant, action, params, in_form=False)


def legacy_form(tenant: Any, action: str, **params: str) -> dict[str, Any]:
    """`legacy`, with the parameters in the signed form body: the same decoding and signature on the server,
    without the SDK's client-side URL handling, whose cost grows with a value's escapes (a 20 KB value costs it
    ~50 ms per request)."""
    return _legacy_call(tenant, action, params, in_form=True)


def _legacy_call(tenant: Any, action: str, params: dict[str, str], in_form: bool) -> dict[str, Any]:
    from aliyunsdkcore.request import CommonRequest

    req = CommonRequest(domain=tenant.server.endpoint, version="2017-05-25", action_name=action)
    req.set_protocol_type("http")
    req.set_method("POST")
    for k, v in params.items():
        if in_form:
            req.add_body_params(k, v)
        else:
            req.add_query_param(k, v)
    result: dict[str, Any] = json.loads(_legacy_client(tenant.key_id, tenant.secret).do_action_with_exception(req))
    return result


def approved_sign(client: Client, name: str = "卡片商城") -> str:
    request = m.AddSmsSignRequest(sign_name=name, sign_source=0, remark="test", sign_file_list=[])
    body = client.add_sms_sign(request).body
    assert body.code == "OK", body.to_map()
    assert client.query_sms_sign(m.QuerySmsSignRequest(sign_name=name)).body.sign_status == 1
    return name


def text_template(client: Client, content: str, template_type: int = 1, name: str = "notice") -> str:
    body = client.add_sms_template(m.AddSmsTemplateRequest(
        template_type=template_type, template_name=name, template_content=content, remark="test")).body
    assert body.code == "OK", body.to_map()
    return str(body.template_code)


def eventually(check: Any, timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Call check() until it returns something truthy; fail with its last value after timeout seconds."""
    import time

    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")


def provision_user(env: dict[str, str], user: str, account: str, role: str, new_account: bool = False) -> None:
    """A console user (password web-pass-123), and its account when `new_account`, made in this process by the
    services `cardsms account create` and `cardsms user create` call (those commands are tested themselves)."""
    from cardsms.services import accounts, audit
    from tests.conftest import run_with_services

    async def provision(svc: Any) -> None:
        audit.set_actor("cli")
        if new_account:
            await accounts.create_account(svc, account)
        await accounts.create_user(svc, account, user, "web-pass-123", role)

    run_with_services(env, provision)


def console_session(base: str, env: dict[str, str], role: str = "admin") -> tuple[httpx.Client, str]:
    """A console login (a new account and user of `role`) through the login form: (client, CSRF token)."""
    import re

    account, user = f"web{uuid.uuid4().hex[:8]}", f"user{uuid.uuid4().hex[:6]}"
    provision_user(env, user, account, role, new_account=True)
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/console/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    done = client.post("/console/login", data={"username": user, "password": "web-pass-123", "csrf": token.group(1)})
    assert done.status_code == 303, done.text[:300]
    home = client.get("/console/password")
    csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
    assert csrf, home.text[:500]
    return client, csrf.group(1)


def console_client(server: object, env: dict[str, str], account: str) -> httpx.Client:
    """A console login for a new admin of `account`."""
    import re

    user = f"op{uuid.uuid4().hex[:10]}"
    provision_user(env, user, account, "admin")
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=60)  # type: ignore[attr-defined]
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/console/login").text)
    assert token
    done = client.post("/console/login", data={"username": user, "password": "web-pass-123", "csrf": token.group(1)})
    assert done.status_code == 303, done.text[:300]
    return client


# --- qualification records (the current signature operations rest on them) -------------------

USCC = "91330100799655058B"  # a unified social credit code with a valid check character
OTHER_USCC = "91110000802100433B"
ID_CARD = "11010519491231002X"


def upload_file(client: Client, data: bytes, name: str) -> str:
    """Upload through GetOSSInfoForUploadFile's POST policy; returns the object key."""
    info = client.get_ossinfo_for_upload_file(m.GetOSSInfoForUploadFileRequest(biz_type="fcMediaSms")).body
    assert info.success, info.to_map()
    key = info.model.start_path + name
    r = httpx.post(info.model.host, data={"key": key, "policy": info.model.policy, "OSSAccessKeyId":
                   info.model.access_key_id, "signature": info.model.signature, "success_action_status": "200"},
                   files={"file": (name, data)}, timeout=30)
    assert r.status_code == 200, r.text
    return key


def qualification(client: Client, *, use_by_self: bool = True, name: str = "", code: str = USCC,
                  **overrides: Any) -> int:
    pic = upload_file(client, png(400, 300), f"id-{uuid.uuid4().hex[:8]}.png")
    values: dict[str, Any] = dict(
        qualification_name=name or f"总部资质{uuid.uuid4().hex[:6]}", company_name="杭州卡片科技有限公司",
        company_type="COMPANY", organization_code=code, legal_person_name="张三", legal_person_idcard_no=ID_CARD,
        legal_person_idcard_type="identityCard", legal_person_id_card_eff_time="2020-01-01~2040-01-01",
        admin_name="李四", admin_phone_no="13800138000", admin_idcard_no=ID_CARD, admin_idcard_type="identityCard",
        admin_idcard_exp_date="2020-01-01~2040-01-01", admin_idcard_front_face=pic, admin_idcard_pic=pic,
        bussiness_license_exp_date="长期", certify_code="123456", use_by_self=use_by_self,
        business_license_pics=[m.SubmitSmsQualificationRequestBusinessLicensePics(license_pic=pic,
                                                                                 type="businessLicense")],
    )
    values.update(overrides)
    body = client.submit_sms_qualification(m.SubmitSmsQualificationRequest(**values)).body
    assert body.success, body.to_map()
    return int(body.data)


# --- the API's parameter names, read from the handlers themselves --------------------------------------------

def api_parameter_names() -> list[str]:
    """Every parameter name an operation handler in openapi/ reads (`p.str("Name")`, `p.int(...)`, ...; and
    the field tables such as SubmitSmsQualification's `("AdminName", 50, ...)`), with the indexed forms of the
    list parameters (`Name.1`, `Name.1.Field`): the one list the hostile-input tests draw from, so a parameter
    added to a handler is fed garbage without anyone listing it."""
    import ast
    from pathlib import Path

    import cardsms.openapi

    names: set[str] = set()
    lists: set[str] = set()
    for path in Path(cardsms.openapi.__file__).parent.glob("ops_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "p"
                    and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names.add(node.args[0].value)
                if node.func.attr in ("list", "objects", "strings"):
                    lists.add(node.args[0].value)
            elif (isinstance(node, ast.Tuple) and len(node.elts) >= 2  # a field table: ("Name", max_len, ...)
                  and isinstance(node.elts[0], ast.Constant) and isinstance(node.elts[0].value, str)
                  and isinstance(node.elts[1], ast.Constant) and type(node.elts[1].value) is int
                  and node.elts[0].value[:1].isupper()):
                names.add(node.elts[0].value)
    indexed = {f"{n}.1" for n in lists} | {"SignFileList.1.FileContents", "SignFileList.1.FileSuffix",
                                           "TemplateContents.1.FileContents", "TemplateContents.1.FileSuffix",
                                           "Mobiles.1.mobile", "CardObjects.1.mobile", "CardObjects.1.dyncParams"}
    return sorted(names | indexed)
