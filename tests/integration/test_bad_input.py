"""Property-based hostile input (hypothesis) on every API operation through a real signed client: random and
adversarial values (empty, huge, wrong types, broken or deeply nested JSON, control characters, another
account's codes) in the operation's parameters. Whatever comes: no 5xx, the JSON envelope with a code and a
message, no row written for a refused request, and the server healthy afterwards. Both databases. Then fixed
garbage on every operation, JSON nested past the parser's depth, and malformed template JSON, each named.
The parameter names come from the handlers themselves (helpers.api_parameter_names)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from cardsms.db import schema
from cardsms.openapi.dispatch import OPERATIONS
from cardsms.settings import Settings
from tests.conftest import Tenant, new_tenant
from tests.integration.helpers import (
    api_parameter_names,
    approved_card,
    approved_sign,
    console_session,
    legacy,
    legacy_form,
    text_template,
)

# tables only requests write (the background writes events, receipts, reviews and outboxes)
WATCHED = ("accounts", "access_keys", "users", "signs", "templates", "qualifications", "sign_documents",
           "resource_tags", "short_links", "messages", "tasks", "media", "suppressions", "webhooks", "audit_log")
PARAMS = tuple(api_parameter_names())


def _values(foreign: list[str]) -> st.SearchStrategy[str]:
    nested = st.integers(min_value=30, max_value=3000).map(lambda n: "[" * n + "]" * n)
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                            max_size=4),
                               max_leaves=12).map(lambda v: json.dumps(v, ensure_ascii=False))
    return st.one_of(
        st.just(""), st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=300),
        st.integers(min_value=-2**70, max_value=2**70).map(str), st.sampled_from(["1e309", "NaN", "-0", "true"]),
        json_values, nested, st.just("x" * 20_000), st.sampled_from(foreign),
        st.text(alphabet="\x00\x01\x1f\x7f\u202e\ufeff{}[]\"\\$", min_size=1, max_size=30),
    )


class RowCounts:
    """Rows of the watched tables that belong to the named accounts, in one query on one connection pool kept
    for the whole test (its own event loop): other tests' earlier sends on this server still get replies
    meanwhile, and a simulated phone's reply R (to any earlier send) writes a suppression, so only requests'
    rows of these accounts are counted."""

    def __init__(self, url: str, names: tuple[str, ...]) -> None:
        self.runner = asyncio.Runner()  # the pool's connections belong to this one loop
        self.engine = create_async_engine(url)
        self.names = names

    def __call__(self) -> dict[str, int]:
        return self.runner.run(self._count())

    async def _count(self) -> dict[str, int]:
        ids = select(schema.accounts.c.id).where(schema.accounts.c.name.in_(self.names))
        counts = []
        for t in WATCHED:
            table = schema.metadata.tables[t]
            query = select(func.count()).select_from(table)
            if "account_id" in table.c:
                query = query.where(table.c.account_id.in_(ids))
            if t == "suppressions":  # an opt-out by reply comes from a phone, not from a request
                query = query.where(table.c.source != "reply")
            counts.append(query.scalar_subquery().label(t))
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(*counts))).one()
        return {t: int(row[i] or 0) for i, t in enumerate(WATCHED)}

    def close(self) -> None:
        self.runner.run(self.engine.dispose())
        self.runner.close()


def test_hostile_values_on_every_operation_never_5xx_and_write_nothing_when_refused(tenant: Tenant) -> None:
    owner = new_tenant(tenant.server)  # another account's objects are among the values
    oc = owner.client()
    foreign = [approved_sign(oc, "别人的"), text_template(oc, "别人的模板。"), approved_card(oc), "PUB_SERVICE_NOTICE"]
    env = tenant.server.env
    url = Settings(_env_file=None, data_dir=env["CARDSMS_DATA_DIR"],  # type: ignore[call-arg]
                   database_url=env["CARDSMS_DATABASE_URL"]).sqlalchemy_url
    actions = sorted(OPERATIONS)
    calls = {"n": 0, "refused": 0}

    counts = RowCounts(url, (tenant.name, owner.name))

    @settings(max_examples=300, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.sampled_from(actions), st.dictionaries(st.sampled_from(PARAMS), _values(foreign), min_size=1,
                                                      max_size=8))
    def one(action: str, params: dict[str, str]) -> None:
        before = counts()
        calls["n"] += 1
        try:
            body: dict[str, Any] | None = legacy_form(tenant, action, **params)
        except ServerException as exc:
            assert exc.get_http_status() < 500, (action, params, exc.get_error_msg())
            assert exc.get_error_code() and exc.get_error_msg(), (action, params)
            body = None
        if body is not None:
            assert body.get("RequestId") and body.get("Code"), body
            if body["Code"] == "OK":
                return
            assert body.get("Message"), body
        calls["refused"] += 1
        after = counts()
        assert after == before, f"{action} was refused but wrote rows: " \
            f"{ {t: after[t] - before[t] for t in WATCHED if after[t] != before[t]} }"

    try:
        one()
    finally:
        counts.close()
    assert calls["n"] >= 300 and calls["refused"] > 200
    assert httpx.get(tenant.server.url + "/healthz").status_code == 200


CONSOLE_FORMS = {  # path -> the fields the form has (file fields get random bytes)
    "/console/signs": ("name", "source", "type", "remark"),
    "/console/templates": ("kind", "type", "name", "content", "remark", "sign", "#media"),
    "/console/qualifications": ("name", "company_name", "company_type", "organization_code", "legal_person_name",
                                "legal_id", "admin_name", "admin_phone", "admin_id", "use_by_self", "remark",
                                "#license", "#id_front"),
    "/console/tasks/new": ("name", "sign", "template", "fallback", "fallback_template", "schedule", "start_at",
                           "audience", "#file"),
    "/console/audiences": ("name", "#file"),
    "/console/cards/new": ("name", "card_type", "sign", "scene", "purpose", "factorys", "pages", "p0_n",
                           "p0_e0_type", "p0_e0_content", "p0_e0_src", "p0_e0_action", "p0_e0_target", "op",
                           "#p0_e0_file"),
    "/console/cards/preview": ("name", "card_type", "pages", "p0_n", "p0_e0_type", "p0_e0_content"),
    "/console/settings/keys": ("description",),
    "/console/settings/keys-toggle": ("key_id", "enable"),
    "/console/settings/webhook": ("kind", "url"),
    "/console/settings/suppress": ("phone", "detail"),
    "/console/users": ("username", "role", "password"),
    "/console/users/1/role": ("role",),
    "/console/password": ("current", "new", "again"),
    "/console/public/PUB_SERVICE_NOTICE": ("sign", "phones"),
}


def test_hostile_console_forms_and_uploads_never_5xx(tenant: Tenant) -> None:
    client, csrf = console_session(tenant.server.url, tenant.server.env)
    texts = _values(["PUB_SERVICE_NOTICE", "SMS_000000001"])
    blobs = st.one_of(st.binary(max_size=2000), st.just(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40),
                      st.just(b"%PDF-1.4\n" + b"x" * 100), st.just(b"PK\x03\x04" + b"\x00" * 60),
                      st.just(b"\x1f\x8b\x08\x00" + b"\xff" * 40), st.just(b"phone\n" + b"1" * 5000))
    counted = {"n": 0}

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.sampled_from(sorted(CONSOLE_FORMS)), st.data())
    def one(path: str, data: st.DataObject) -> None:
        fields = CONSOLE_FORMS[path]
        chosen = data.draw(st.lists(st.sampled_from(fields), unique=True, min_size=1, max_size=len(fields)))
        form = {f: data.draw(texts) for f in chosen if not f.startswith("#")}
        files = {f[1:]: ("upload.bin", data.draw(blobs)) for f in chosen if f.startswith("#")}
        answer = client.post(path, data={**form, "csrf": csrf}, files=files or None)
        counted["n"] += 1
        assert answer.status_code < 500, (path, form.keys(), answer.status_code, answer.text[:300])

    one()
    # the object-store upload endpoint: broken multipart, wrong policies, random files
    for body in (b"", b"--x\r\n", b"garbage" * 100):
        r = httpx.post(tenant.server.url + "/oss/cardsms-media", content=body,
                       headers={"content-type": "multipart/form-data; boundary=x"})
        assert 400 <= r.status_code < 500 and "<Error>" in r.text
    r = httpx.post(tenant.server.url + "/oss/cardsms-media", data={"key": "card/1/x.png", "policy": "e30=",
                                                                   "signature": "x"}, files={"file": ("x", b"1")})
    assert r.status_code in (400, 403) and "<Code>" in r.text
    assert counted["n"] >= 120 and client.get("/healthz").status_code == 200


GARBAGE: list[str] = [
    "", " ", "null", "{", "[]", '{"a":', "0", "-1", "99999999999999999999999", "1e309", "NaN", "true",
    "\u0000", "😀" * 50, "x" * 5000, "${}", "'; DROP TABLE signs; --", '{"pages":[{"tmpCards":[{}]}]}',
    '"{\\"cardType\\":5}"', "[{\"mobile\": null}]", '[{"Mobile": []}]', "<xml/>", "%00", "card/../../etc",
    "[" * 2000 + "]" * 2000, '{"a":' * 1500 + "1" + "}" * 1500,
]


def test_every_operation_fed_garbage_answers_a_named_error_never_5xx(tenant: Tenant) -> None:
    rng = random.Random(20261125)
    names = api_parameter_names()
    calls = 0
    for action in sorted(OPERATIONS):
        for _ in range(12):
            params = {n: rng.choice(GARBAGE) for n in rng.sample(names, rng.randint(1, len(names)))}
            try:
                body = legacy_form(tenant, action, **params)
            except ServerException as exc:
                assert exc.get_http_status() < 500, (action, params, exc.get_error_msg())
                assert exc.get_error_msg(), (action, params)
                continue
            finally:
                calls += 1
            if body["Code"] != "OK":
                assert body["Message"], (action, params)
    assert calls == 12 * len(OPERATIONS)


@pytest.mark.parametrize(("action", "param"), [
    ("CheckMobilesCardSupport", "Mobiles"), ("QueryCardSmsTemplateReport", "TemplateCodes"),
    ("QueryMobilesCardSupport", "Mobiles"), ("CreateCardSmsTemplate", "Template"), ("SendSms", "TemplateParam"),
    ("CreateSmsTemplate", "TemplateRule"), ("TagResources", "Tag"), ("GetMediaResourceId", "ExtendInfo"),
])
def test_json_nested_2000_levels_deep_is_a_named_error(tenant: Tenant, action: str, param: str) -> None:
    """The five HTTP 500s of the hostile-input run: the JSON parser's recursion limit, now a named rule."""
    for deep in ("[" * 2000 + "]" * 2000, '{"a":' * 2000 + "1" + "}" * 2000):
        params = {param: deep, "TemplateCode": "CARD_SMS_1", "TemplateName": "x", "SignName": "x",
                  "PhoneNumbers": "13800138000", "OssKey": "x", "FileSize": "1",
                  "ResourceType": "TEMPLATE" if action == "TagResources" else "2",
                  "TemplateContent": "x", "TemplateType": "1", "RelatedSignName": "x", "ResourceId": '["x"]'}
        try:
            body = legacy(tenant, action, **params)
        except ServerException as exc:
            assert exc.get_http_status() == 400 and param in exc.get_error_msg(), exc.get_error_msg()
            continue
        assert body["Code"] != "OK" and body["Message"], body


def test_malformed_json_in_template_parameters_is_named(tenant: Tenant) -> None:
    for bad in ("{", "[1,2", '{"cardType": }'):
        with pytest.raises(ServerException) as exc:
            legacy(tenant, "CreateCardSmsTemplate", TemplateName="x", Template=bad)
        assert "Template is not valid JSON" in exc.value.get_error_msg()
    body = legacy(tenant, "CheckMobilesCardSupport", TemplateCode="CARD_SMS_1", Mobiles="[{")
    assert body["Code"] == "isv.INVALID_JSON_PARAM" and "Mobiles" in body["Message"]
    assert json.loads(json.dumps(body))["Success"] is False


@pytest.mark.parametrize("action", ["QuerySmsAppIcpRecord", "QuerySmsTrademark", "QuerySmsAuthorizationLetter"])
def test_an_id_list_with_an_id_out_of_range_is_named(tenant: Tenant, action: str) -> None:
    """The fuzz run's HTTP 500: an id past the database's integer went to the query."""
    name = {"QuerySmsAppIcpRecord": "AppIcpRecordIdList", "QuerySmsTrademark": "TrademarkIdList",
            "QuerySmsAuthorizationLetter": "AuthorizationLetterIdList"}[action]
    for bad in ("99999999999999999999999", "-1", "x", "²"):
        with pytest.raises(ServerException) as exc:
            legacy(tenant, action, **{f"{name}.1": "1", f"{name}.2": bad})
        assert exc.value.get_http_status() == 400 and f"{name}.2" in exc.value.get_error_msg(), exc.value
    assert legacy(tenant, action, **{f"{name}.1": "1"})["Code"] == "OK"
