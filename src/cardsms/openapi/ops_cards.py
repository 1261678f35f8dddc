"""Card template, media and capability operations (they answer with `Success` and `Data`)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from cardsms.domain.card import decode_template_json
from cardsms.domain.errors import CardsmsError, invalid
from cardsms.openapi import wire
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.params import Params
from cardsms.services import capability, cards, media


async def create_card_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    raw = p.str("Template", required=True)
    template, twice = decode_template_json(raw)
    code, _ = await cards.create_card_template(
        ctx.svc, ctx.account_id, p.str("TemplateName", required=True, max_len=200), template,
        p.str("Factorys", max_len=200), p.str("Memo", max_len=1000),
    )
    out: dict[str, Any] = {"Data": {"TemplateCode": code}}
    if twice:
        out["Message"] = "OK (note: Template arrived JSON-encoded twice; it was decoded once more)"
    return out


async def query_card_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = p.str("TemplateCode", required=True, max_len=32)
    return {"Data": {"Templates": [await cards.query_card_template(ctx.svc, ctx.account_id, code)]}}


def _day(p: Params, name: str) -> date | None:
    raw = p.str(name, max_len=40).strip()
    if not raw:
        return None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    raise invalid(name, f"must be yyyy-MM-dd HH:mm:ss, got {raw!r}")


async def query_card_sms_template_report(ctx: Ctx, p: Params) -> dict[str, Any]:
    codes = [str(c).strip() for c in p.list("TemplateCodes", required=True)]
    if not codes or len(codes) > 100 or not all(codes):
        raise invalid("TemplateCodes", "give 1-100 non-empty template codes")
    start, end = _day(p, "StartDate"), _day(p, "EndDate")
    if start and end and start > end:
        raise invalid("StartDate", "must not be after EndDate")
    model = await cards.card_template_report(ctx.svc, ctx.account_id, codes, start, end)
    return {"Data": {"model": model}}


async def get_oss_info_for_card_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": media.oss_policy(ctx.svc, ctx.account_id)}


async def get_media_resource_id(ctx: Ctx, p: Params) -> dict[str, Any]:
    resource_id, url = await media.register_media(
        ctx.svc, ctx.account_id,
        resource_type=p.int("ResourceType", required=True, low=1, high=4),
        oss_key=p.str("OssKey", required=True, max_len=300),
        file_size=p.int("FileSize", required=True, low=1, high=1 << 40),
        img_rate=wire.image_rate(p.str("ExtendInfo", max_len=1000)),
        memo=p.str("Memo", max_len=1000),
    )
    return {"Data": {"ResourceId": resource_id, "ResUrlDownload": url}}


def _mobiles(p: Params, key: str) -> list[str]:
    items = p.list("Mobiles", required=True)
    out = []
    for i, item in enumerate(items, 1):
        value = item.get(key) or item.get(key.lower()) or item.get(key.capitalize()) if isinstance(item, dict) else item
        if not isinstance(value, str | int) or isinstance(value, bool) or not str(value).strip():
            raise CardsmsError("InvalidParameter", f"param Mobiles[{i}] must be an object with a {key!r} number")
        out.append(str(value).strip())
    return out


async def check_mobiles_card_support(ctx: Ctx, p: Params) -> dict[str, Any]:
    mobiles = _mobiles(p, "mobile")
    code = p.str("TemplateCode", required=True, max_len=32)
    result = await capability.card_support(ctx.svc, ctx.account_id, code, mobiles)
    return {"Data": {"queryResult": [{"mobile": m, "support": ok} for m, ok in result]}}


async def query_mobiles_card_support(ctx: Ctx, p: Params) -> dict[str, Any]:
    mobiles = _mobiles(p, "Mobile")
    code = p.str("TemplateCode", required=True, max_len=32)
    encrypt = p.str("EncryptType", default="NORMAL", max_len=10).upper() or "NORMAL"
    result = await capability.card_support(ctx.svc, ctx.account_id, code, mobiles, encrypt)
    return {"Data": {"QueryResult": [{"Mobile": m, "Support": ok} for m, ok in result]}}


OPERATIONS = {
    "CreateCardSmsTemplate": Operation(create_card_sms_template, card=True),
    "QueryCardSmsTemplate": Operation(query_card_sms_template, card=True),
    "QueryCardSmsTemplateReport": Operation(query_card_sms_template_report, card=True),
    "GetOSSInfoForCardTemplate": Operation(get_oss_info_for_card_template, card=True),
    "GetMediaResourceId": Operation(get_media_resource_id, card=True),
    "CheckMobilesCardSupport": Operation(check_mobiles_card_support, card=True),
    "QueryMobilesCardSupport": Operation(query_mobiles_card_support, card=True),
}
