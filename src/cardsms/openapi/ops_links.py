"""Short-link operations: GetCardSmsLink, AddShortUrl, QueryShortUrl, DeleteShortUrl."""

from __future__ import annotations

from typing import Any

from cardsms.domain.errors import CardsmsError
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.params import Params
from cardsms.services import links, sending


async def get_card_sms_link(ctx: Ctx, p: Params) -> dict[str, Any]:
    phones = sending.parse_json_param(p.str("PhoneNumberJson", required=True), "PhoneNumberJson")
    if not isinstance(phones, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", "PhoneNumberJson must be a JSON array")
    n = len(phones)
    signs = sending.parse_json_param(p.str("SignNameJson", required=True), "SignNameJson")
    if not isinstance(signs, list) or not signs:
        raise CardsmsError("isv.INVALID_JSON_PARAM", "SignNameJson must be a non-empty JSON array")
    if len(signs) not in (1, n):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SignNameJson holds {len(signs)} names; give one, or one per "
                           f"number ({n})")
    signs = signs * n if len(signs) == 1 else signs
    params = sending.per_number(p.str("CardTemplateParamJson"), "CardTemplateParamJson", n) if n else []
    params = [sending.card_params_list(v, f"CardTemplateParamJson[{i}]") for i, v in enumerate(params, 1)]
    custom = sending.parse_json_param(p.str("CustomShortCodeJson"), "CustomShortCodeJson")
    if custom is not None and not isinstance(custom, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", "CustomShortCodeJson must be a JSON array")
    data = await links.card_sms_links(
        ctx.svc, ctx.account_id, card_template_code=p.str("CardTemplateCode", required=True, max_len=32),
        phones=phones, sign_names=signs, params=params,
        code_type=p.int("CardCodeType", required=True, low=1, high=2),
        link_type=p.int("CardLinkType", default=1, low=1, high=2), custom_codes=custom,
        domain=p.str("Domain", max_len=200), out_id=p.str("OutId", max_len=256),
    )
    return {"Data": data}


async def add_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    data = await links.add_short_url(
        ctx.svc, ctx.account_id, p.str("SourceUrl", required=True, max_len=1000),
        p.str("ShortUrlName", required=True, max_len=64), p.int("EffectiveDays", required=True, low=1, high=90),
    )
    return {"Data": data}


async def query_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": await links.query_short_url(ctx.svc, ctx.account_id, p.str("ShortUrl", required=True,
                                                                                max_len=300))}


async def delete_short_url(ctx: Ctx, p: Params) -> dict[str, Any]:
    await links.delete_short_url(ctx.svc, ctx.account_id, p.str("SourceUrl", required=True, max_len=1000))
    return {}


OPERATIONS = {
    "GetCardSmsLink": Operation(get_card_sms_link, card=True),
    "AddShortUrl": Operation(add_short_url),
    "QueryShortUrl": Operation(query_short_url),
    "DeleteShortUrl": Operation(delete_short_url),
}
