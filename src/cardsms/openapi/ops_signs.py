"""Signatures: the current CreateSmsSign, GetSmsSign, UpdateSmsSign (on the grounds of a qualification
record), and the older AddSmsSign, QuerySmsSign, QuerySmsSignList, ModifySmsSign, DeleteSmsSign. Both
sets are views of the same signatures."""

from __future__ import annotations

from typing import Any

from cardsms.openapi.context import Ctx, Operation, audit_fields, page_args
from cardsms.openapi.params import Params
from cardsms.services import digital_signs, media, signs
from cardsms.services.core import china_time
from cardsms.services.signs import SignInput
from cardsms.vendors.gateway import ReviewState

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


def _current_sign(p: Params) -> SignInput:
    return SignInput(
        name=p.str("SignName", required=True, max_len=64).strip(),
        sign_source=p.int("SignSource", required=True, low=0, high=99),
        sign_type=p.int("SignType", default=1, low=0, high=99),
        remark=p.str("Remark", max_len=1000),
        qualification_id=p.int("QualificationId", required=True, low=1, high=1 << 62),
        third_party=p.bool("ThirdParty"),
        authorization_letter_id=p.optional_int("AuthorizationLetterId"),
        trademark_id=p.optional_int("TrademarkId"),
        app_icp_record_id=p.optional_int("AppIcpRecordId"),
        apply_scene=p.str("ApplySceneContent", max_len=500).strip(),
        more_data=p.strings("MoreData", max_items=10),
    )


async def create_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    name, sign_id = await signs.create_sign(ctx.svc, ctx.account_id, _current_sign(p))
    return {"SignName": name, "OrderId": f"SIGN-{sign_id}"}


async def update_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    name, sign_id = await signs.update_sign(ctx.svc, ctx.account_id, _current_sign(p))
    return {"SignName": name, "OrderId": f"SIGN-{sign_id}"}


async def get_sms_sign(ctx: Ctx, p: Params) -> dict[str, Any]:
    row = await signs.get_sign(ctx.svc, ctx.account_id, p.str("SignName", required=True, max_len=64))
    d = row["details"] or {}
    decided = row["status"] in (ReviewState.APPROVED, ReviewState.REJECTED)
    letter = d.get("authorization_letter_id")
    return {
        "SignName": row["name"], "SignCode": f"SIGN_{row['id']}", "SignStatus": row["status"],
        "SignType": row["sign_type"], "SignSource": row["sign_source"],
        "AuditInfo": {"RejectInfo": row["reason"], "AuditDate": china_time(row["updated_at"]) if decided else ""},
        "CreateDate": china_time(row["created_at"]), "OrderId": f"SIGN-{row['id']}", "Remark": row["remark"],
        "QualificationId": row["qualification_id"], "ThirdParty": bool(d.get("third_party", False)),
        "AuthorizationLetterId": letter, "AuthorizationLetterAuditPass":
        await signs.letter_passed(ctx.svc, ctx.account_id, letter),
        "TrademarkId": d.get("trademark_id"), "AppIcpRecordId": d.get("app_icp_record_id"),
        "ApplyScene": d.get("apply_scene", ""), "SignUsage": "",
        "FileUrlList": [media.download_url(ctx.svc, key) for key in d.get("more_data", [])]
        + [media.download_url(ctx.svc, f["key"]) for f in row["files"]],
        "SignTag": "2", "RegisterResult": -1, "SignIspRegisterDetailList": [],
    }


async def change_signature_qualification(ctx: Ctx, p: Params) -> dict[str, Any]:
    """Move a signature onto another qualification (and letter): its other attributes stay, the grounds are
    checked as for UpdateSmsSign and the signature is reviewed again."""
    name = p.str("SignatureName", required=True, max_len=64)
    row = await signs.get_sign(ctx.svc, ctx.account_id, name)
    d = row["details"] or {}
    letter = p.optional_int("AuthorizationLetterId")
    await signs.update_sign(ctx.svc, ctx.account_id, SignInput(
        name=row["name"], sign_source=row["sign_source"], sign_type=row["sign_type"], remark=row["remark"],
        qualification_id=p.int("QualificationId", required=True, low=1, high=1 << 62),
        third_party=bool(d.get("third_party", False)), authorization_letter_id=letter,
        trademark_id=d.get("trademark_id"), app_icp_record_id=d.get("app_icp_record_id"),
        apply_scene=d.get("apply_scene", ""), more_data=d.get("more_data", [])))
    return {"Data": {"Success": True, "Data": True, "ErrCode": "", "ErrMessage": ""}}


def _optional_int(p: Params, name: str, high: int) -> int | None:
    return p.int(name, low=0, high=high) if p.values.get(name, "").strip() else None


async def create_digital_sign_order(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": await digital_signs.order(
        ctx.svc, ctx.account_id, p.str("OrderType", required=True, max_len=40),
        p.str("SignName", required=True, max_len=64), sign_source=_optional_int(p, "SignSource", 99),
        sign_industry=_optional_int(p, "SignIndustry", 99), qualification_id=_optional_int(p, "QualificationId", 2**62),
        context=p.json("OrderContext"), extend_message=p.str("ExtendMessage", max_len=2000),
        submitter=p.str("Submitter", max_len=64))}


async def query_digital_sign_by_name(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"Data": await digital_signs.query(ctx.svc, ctx.account_id, p.str("SignName", required=True, max_len=64))}


OPERATIONS = {
    "CreateDigitalSignOrder": Operation(create_digital_sign_order, card=True),
    "QueryDigitalSignByName": Operation(query_digital_sign_by_name, card=True),
    "ChangeSignatureQualification": Operation(change_signature_qualification, card=True),
    "CreateSmsSign": Operation(create_sms_sign),
    "UpdateSmsSign": Operation(update_sms_sign),
    "GetSmsSign": Operation(get_sms_sign),
    "AddSmsSign": Operation(add_sms_sign),
    "ModifySmsSign": Operation(modify_sms_sign),
    "QuerySmsSign": Operation(query_sms_sign),
    "QuerySmsSignList": Operation(query_sms_sign_list),
    "DeleteSmsSign": Operation(delete_sms_sign),
}
