"""Card capability (CheckMobilesCardSupport, QueryMobilesCardSupport): which numbers' phones show a card,
as the simulated population and the vendors' approvals say."""

from __future__ import annotations

import hashlib

import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from cardsms.domain.vendors import Vendor
from cardsms.simulator.handsets import simulated_handset
from tests.conftest import Tenant
from tests.integration.helpers import (
    approved_card,
    card_template,
    create_card,
    image_resource,
)

MOBILES = [f"1380013{i:04d}" for i in range(40)]


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
