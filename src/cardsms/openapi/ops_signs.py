"""AddSmsSign, QuerySmsSign, QuerySmsSignList, ModifySmsSign, DeleteSmsSign."""

from __future__ import annotations

from typing import Any

from cardsms.openapi.context import Ctx, Operation, audit_fields, page_args
from cardsms.openapi.params import Params
from cardsms.services import signs
from cardsms.services.core import china_time

_BUSINESS_TYPE = {0: "Verification code", 1: "General-purpose"}


def _sign_args(p: Params) -> dict[str, Any]:
    return {
        "name": p.str("SignName", required=True, max_len=64),
        "sign_source": p.int("SignSource", required=True, low=0, high=99),
        "sign_type": p.int("SignType", default=1, low=0, high=99),
        "remark": p.str("Remark", required=True, max_len=1000),
        "files": p.objects("SignFileList"),
    }


async def add_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = await signs.add_sign(ctx.svc, ctx.account_id, **_sign_args(p))
    return {"SignName": name}


async def modify_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = await signs.modify_sign(ctx.svc, ctx.account_id, **_sign_args(p))
    return {"SignName": name}


async def query_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    row = await signs.get_sign(ctx.svc, ctx.account_id, p.str("SignName", required=True, max_len=64))
    return {"SignName": row["name"], "SignStatus": row["status"], "Reason": row["reason"],
            "CreateDate": china_time(row["created_at"])}


async def query_sms_sign_list(ctx: Ctx, p: Params) -> dict[str, Any]:
    page, size = page_args(p)
    total, rows = await signs.list_signs(ctx.svc, ctx.account_id, page, size)
    items = [
        {
            "SignName": r["name"], "BusinessType": _BUSINESS_TYPE.get(r["sign_type"], "General-purpose"),
            "CreateDate": china_time(r["created_at"]), "OrderId": f"SIGN-{r['id']}", **audit_fields(r),
        }
        for r in rows
    ]
    return {"SmsSignList": items, "TotalCount": total, "CurrentPage": page, "PageSize": size}


async def delete_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    name = await signs.delete_sign(ctx.svc, ctx.account_id, p.str("SignName", required=True, max_len=64))
    return {"SignName": name}


OPERATIONS = {
    "AddSmsSign": Operation(add_sms_sign),
    "ModifySmsSign": Operation(modify_sms_sign),
    "QuerySmsSign": Operation(query_sms_sign),
    "QuerySmsSignList": Operation(query_sms_sign_list),
    "DeleteSmsSign": Operation(delete_sms_sign),
}
