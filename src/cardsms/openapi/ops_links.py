"""Short-link operations: GetCardSmsLink, AddShortUrl, QueryShortUrl, DeleteShortUrl, CreateSmartShortUrl,
QueryPageSmartShortUrlLog; and the tags of templates and signatures: TagResources, UntagResources,
ListTagResources."""

from __future__ import annotations

from typing import Any

from cardsms.domain.errors import CardsmsError
from cardsms.openapi import wire
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.params import Params
from cardsms.services import links, tags


async def get_card_sms_link(ctx: Ctx, p: Params) -> dict[str, Any]:
    phones = wire.parse_json_param(p.str("PhoneNumberJson", required=True), "PhoneNumberJson")
    if not isinstance(phones, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", "PhoneNumberJson must be a JSON array")
    n = len(phones)
    signs = wire.parse_json_param(p.str("SignNameJson", required=True), "SignNameJson")
    if not isinstance(signs, list) or not signs:
        raise CardsmsError("isv.INVALID_JSON_PARAM", "SignNameJson must be a non-empty JSON array")
    if len(signs) not in (1, n):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SignNameJson holds {len(signs)} names; give one, or one per "
                           f"number ({n})")
    signs = signs * n if len(signs) == 1 else signs
    params = wire.per_number(p.str("CardTemplateParamJson"), "CardTemplateParamJson", n) if n else []
    params = [wire.card_params(v, f"CardTemplateParamJson[{i}]") for i, v in enumerate(params, 1)]
    custom = wire.parse_json_param(p.str("CustomShortCodeJson"), "CustomShortCodeJson")
    if custom is not None and not isinstance(custom, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", "CustomShortCodeJson must be a JSON array")
    data = await links.card_sms_links(
        ctx.svc, ctx.account_id, card_template_code=p.str("CardTemplateCode", required=True, max_len=32),
        phones=phones, sign_names=signs, params=params,
        code_type=p.int("CardCodeType", required=True, low=1, high=2),
        link_type=p.int("CardLinkType", default=1, low=1, high=2), custom_codes=custom,
        domain=p.str("Domain", max_len=200), out_id=p.str("OutId", max_len=256),
    )
    return {"Data": {"CardTmpState": 1, "CardPhoneNumbers": ",".join(data.card_phones),
                     "CardSignNames": ",".join(data.card_signs), "CardSmsLinks": ",".join(data.links),
                     "NotMediaMobiles": ",".join(data.not_media)}}


async def add_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    data = await links.add_short_url(
        ctx.svc, ctx.account_id, p.str("SourceUrl", required=True, max_len=1000),
        p.str("ShortUrlName", required=True, max_len=64), p.int("EffectiveDays", required=True, low=1, high=90),
        p.str("Domain", max_len=253),
    )
    return {"Data": data}


async def query_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": await links.query_short_url(ctx.svc, ctx.account_id, p.str("ShortUrl", required=True,
                                                                                max_len=300))}


async def delete_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    await links.delete_short_url(ctx.svc, ctx.account_id, p.str("SourceUrl", required=True, max_len=1000))
    return {}


async def create_smart_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    phones = [x for x in p.str("PhoneNumbers", required=True, max_len=20_000).split(",") if x.strip()]
    model = await links.create_smart_short_urls(ctx.svc, ctx.account_id, p.str("SourceUrl", required=True,
                                                max_len=1000), phones, p.str("OutId", max_len=256))
    return {"Model": model}


async def query_page_smart_short_url_log(ctx: Ctx, p: Params) -> dict[str, Any]:
    page = p.int("PageNo", default=1, low=1, high=1_000_000)
    size = p.int("PageSize", default=10, low=1, high=100)
    start = p.optional_int("CreateDateStart", low=0)
    end = p.optional_int("CreateDateEnd", low=0)
    if start is None and end is None and not p.str("PhoneNumber") and not p.str("ShortUrl"):
        raise CardsmsError("MissingParameter", "PhoneNumber, ShortUrl or CreateDateStart/CreateDateEnd is "
                           "mandatory for this action (which links to show).")
    total, rows = await links.smart_link_log(
        ctx.svc, ctx.account_id, phone=p.str("PhoneNumber", max_len=20), short_url=p.str("ShortUrl", max_len=300),
        start_ms=start, end_ms=end, page=page, size=size)
    return {"Model": {"List": rows, "PageNo": page, "PageSize": size, "TotalCount": total,
                      "TotalPage": (total + size - 1) // size}}


async def tag_resources(ctx: Ctx, p: Params) -> dict[str, Any]:
    resource_type = tags.check_type(p.str("ResourceType", max_len=20))
    ids = tags.check_ids(p.strings("ResourceId", max_items=tags.MAX_PER_CALL, max_len=64))
    await tags.tag(ctx.svc, ctx.account_id, resource_type, ids, tags.check_tags(p.objects("Tag")))
    return {"Data": "true"}


async def untag_resources(ctx: Ctx, p: Params) -> dict[str, Any]:
    resource_type = tags.check_type(p.str("ResourceType", max_len=20))
    ids = tags.check_ids(p.strings("ResourceId", max_items=tags.MAX_PER_CALL, max_len=64))
    await tags.untag(ctx.svc, ctx.account_id, resource_type, ids,
                     p.strings("TagKey", max_items=tags.MAX_PER_CALL, max_len=128), p.bool("All"))
    return {"Data": "true"}


async def list_tag_resources(ctx: Ctx, p: Params) -> dict[str, Any]:
    resource_type = tags.check_type(p.str("ResourceType", max_len=20))
    ids = tags.check_ids(p.strings("ResourceId", max_items=tags.MAX_PER_CALL, max_len=64), required=False)
    wanted = tags.check_tags(p.objects("Tag")) if p.list("Tag") else []
    token = p.str("NextToken", max_len=20)
    if token and not token.isdigit():
        raise CardsmsError("InvalidParameter", "NextToken: pass back the NextToken of the previous page")
    size = p.int("PageSize", default=50, low=1, high=1000)
    rows, more = await tags.list_tags(ctx.svc, ctx.account_id, resource_type, ids, wanted, int(token or 0), size)
    return {"NextToken": str(int(token or 0) + size) if more else "",
            "TagResources": {"TagResource": [{"ResourceId": r["resource_id"], "ResourceType": r["resource_type"],
                                              "TagKey": r["tag_key"], "TagValue": r["tag_value"]} for r in rows]}}


OPERATIONS = {
    "CreateSmartShortUrl": Operation(create_smart_short_url),
    "QueryPageSmartShortUrlLog": Operation(query_page_smart_short_url_log, card=True),
    "TagResources": Operation(tag_resources),
    "UntagResources": Operation(untag_resources),
    "ListTagResources": Operation(list_tag_resources),
    "GetCardSmsLink": Operation(get_card_sms_link, card=True),
    "AddShortUrl": Operation(add_short_url),
    "QueryShortUrl": Operation(query_short_url),
    "DeleteShortUrl": Operation(delete_short_url),
}
