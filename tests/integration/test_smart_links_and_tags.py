"""Smart short links (one personal link per number, who clicked and when) and tags on templates and
signatures, through the official SDK. Both databases."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from alibabacloud_dysmsapi20170525 import models as m
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.conftest import Tenant
from tests.integration.helpers import approved_sign, eventually, text_template


def test_smart_short_links_tell_who_clicked_and_when(tenant: Tenant, make_tenant: object) -> None:
    c = tenant.client()
    base = uuid.uuid4().int % 10_000_000
    phones = [f"133{base + i:08d}" for i in range(3)]
    made = c.create_smart_short_url(m.CreateSmartShortUrlRequest(
        source_url="https://shop.example.com/promo?id=7", phone_numbers=",".join(phones), out_id="promo-7")).body
    assert made.code == "OK", made.to_map()
    assert [x.phone_number for x in made.model] == phones and len({x.short_url for x in made.model}) == 3
    assert all(x.short_url.endswith("/" + x.short_name) and x.expiration > time.time() * 1000 for x in made.model)

    opened = httpx.get(made.model[1].short_url, follow_redirects=False)
    assert opened.status_code == 302 and opened.headers["location"] == "https://shop.example.com/promo?id=7"

    def log(**kw: object) -> m.QueryPageSmartShortUrlLogResponseBodyModel:
        body = c.query_page_smart_short_url_log(m.QueryPageSmartShortUrlLogRequest(page_no=1, page_size=10, **kw)).body
        assert body.success, body.to_map()
        return body.model

    clicked = eventually(lambda: [r for r in log(phone_number=phones[1]).list if r.click_state == 1])
    assert clicked[0].short_url == made.model[1].short_url and clicked[0].click_time >= clicked[0].create_time
    everyone = log(create_date_start=int((time.time() - 60) * 1000), create_date_end=int((time.time() + 60) * 1000))
    assert everyone.total_count == 3 and everyone.total_page == 1
    assert {r.phone_number: r.click_state for r in everyone.list} == {phones[0]: 0, phones[1]: 1, phones[2]: 0}
    by_link = log(short_url=made.model[0].short_url)
    assert by_link.total_count == 1 and by_link.list[0].click_state == 0

    bad = c.create_smart_short_url(m.CreateSmartShortUrlRequest(source_url="ftp://x", phone_numbers=phones[0])).body
    assert bad.code == "isv.INVALID_PARAMETERS" and "SourceUrl" in bad.message
    bad = c.create_smart_short_url(m.CreateSmartShortUrlRequest(source_url="https://x.example",
                                                                phone_numbers="123")).body
    assert bad.code == "isv.MOBILE_NUMBER_ILLEGAL" and "123" in bad.message
    with pytest.raises(ClientException) as err:
        c.query_page_smart_short_url_log(m.QueryPageSmartShortUrlLogRequest(page_no=1, page_size=10))
    assert "PhoneNumber" in str(err.value)
    # another account sees none of them
    other = make_tenant().client()  # type: ignore[operator]
    theirs = other.query_page_smart_short_url_log(m.QueryPageSmartShortUrlLogRequest(
        page_no=1, page_size=10, phone_number=phones[1])).body
    assert theirs.model.total_count == 0


def test_tags_on_templates_and_signatures(tenant: Tenant) -> None:
    c = tenant.client()
    sign = approved_sign(c, "标签签名")
    first = text_template(c, "您的订单已发货。", name="a")
    second = text_template(c, "您的订单已签收。", name="b")

    def tag(ids: list[str], tags: dict[str, str], resource_type: str = "TEMPLATE") -> object:
        return c.tag_resources(m.TagResourcesRequest(
            resource_type=resource_type, resource_id=ids, region_id="cn-hangzhou", prod_code="dysms",
            tag=[m.TagResourcesRequestTag(key=k, value=v) for k, v in tags.items()])).body

    assert tag([first, second], {"team": "logistics", "env": "prod"}).code == "OK"
    assert tag([first], {"env": "test"}).code == "OK"  # a key again replaces its value
    assert tag([sign], {"team": "logistics"}, "SIGN").code == "OK"

    def listed(**kw: object) -> set[tuple[str, str, str]]:
        body = c.list_tag_resources(m.ListTagResourcesRequest(region_id="cn-hangzhou", prod_code="dysms", **kw)).body
        return {(r.resource_id, r.tag_key, r.tag_value) for r in body.tag_resources.tag_resource}

    assert listed(resource_type="TEMPLATE", resource_id=[first]) == {(first, "team", "logistics"),
                                                                      (first, "env", "test")}
    by_tag = listed(resource_type="TEMPLATE", tag=[m.ListTagResourcesRequestTag(key="env", value="prod")])
    assert by_tag == {(second, "team", "logistics"), (second, "env", "prod")}
    assert listed(resource_type="SIGN", resource_id=[sign]) == {(sign, "team", "logistics")}
    page = c.list_tag_resources(m.ListTagResourcesRequest(region_id="cn-hangzhou", prod_code="dysms",
                                                          resource_type="TEMPLATE", resource_id=[first, second],
                                                          page_size=3)).body
    assert len(page.tag_resources.tag_resource) == 3 and page.next_token
    rest = c.list_tag_resources(m.ListTagResourcesRequest(region_id="cn-hangzhou", prod_code="dysms",
                                                          resource_type="TEMPLATE", resource_id=[first, second],
                                                          page_size=3, next_token=page.next_token)).body
    assert len(rest.tag_resources.tag_resource) == 1 and not rest.next_token

    found = c.get_sms_template_list(m.GetSmsTemplateListRequest(page_index=1, page_size=10, template_tag="team")).body
    assert {x.template_code for x in found.data.list} == {first, second}
    tagged = {t.tag_key: t.tag_value for t in next(x for x in found.data.list if x.template_code == first).template_tag}
    assert tagged == {"team": "logistics", "env": "test"}

    assert c.untag_resources(m.UntagResourcesRequest(region_id="cn-hangzhou", prod_code="dysms",
                                                     resource_type="TEMPLATE", resource_id=[first],
                                                     tag_key=["env"])).body.code == "OK"
    assert listed(resource_type="TEMPLATE", resource_id=[first]) == {(first, "team", "logistics")}
    assert c.untag_resources(m.UntagResourcesRequest(region_id="cn-hangzhou", prod_code="dysms",
                                                     resource_type="TEMPLATE", resource_id=[first, second],
                                                     all=True)).body.code == "OK"
    assert listed(resource_type="TEMPLATE", resource_id=[first, second]) == set()

    for kwargs, words in (({"resource_id": ["SMS_000000001"]}, "does not exist"),
                          ({"resource_id": [first], "key": "aliyun:x"}, "Tag.1.Key"),
                          ({"resource_id": [first], "resource_type": "TASK"}, "ResourceType")):
        with pytest.raises(ClientException) as err:
            c.tag_resources(m.TagResourcesRequest(
                resource_type=kwargs.get("resource_type", "TEMPLATE"), resource_id=kwargs["resource_id"],
                region_id="cn-hangzhou", prod_code="dysms",
                tag=[m.TagResourcesRequestTag(key=kwargs.get("key", "k"), value="v")]))
        assert words in str(err.value), str(err.value)
