"""Text templates: the current CreateSmsTemplate, GetSmsTemplate, UpdateSmsTemplate and GetSmsTemplateList
(variable rules, a related signature), and the older AddSmsTemplate, QuerySmsTemplate, QuerySmsTemplateList,
ModifySmsTemplate, DeleteSmsTemplate, CreateDigitalSmsTemplate and QueryDigitalSmsTemplate (a cardsms
addition: the SDK has no query for digital templates; QuerySmsTemplate answers for them too, with
TemplateType 7). Both sets are views of the same templates."""

from __future__ import annotations

import json
from typing import Any

from cardsms.domain.errors import invalid
from cardsms.openapi.context import AUDIT_STATE, Ctx, Operation, audit_fields, page_args
from cardsms.openapi.params import Params
from cardsms.services import media, tags, templates
from cardsms.services.core import china_time
from cardsms.services.templates import TemplateInput
from cardsms.vendors.gateway import ReviewState


def _text_args(p: Params) -> dict[str, Any]:
    return {
        "template_type": p.int("TemplateType", required=True, low=0, high=99),
        "name": p.str("TemplateName", required=True, max_len=200),
        "content": p.str("TemplateContent", required=True, max_len=2000),
        "remark": p.str("Remark", required=True, max_len=1000),
    }


async def add_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    return {"TemplateCode": await templates.add_text_template(ctx.svc, ctx.account_id, **_text_args(p))}


async def modify_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = p.str("TemplateCode", required=True, max_len=32)
    return {"TemplateCode": await templates.modify_text_template(ctx.svc, ctx.account_id, code, **_text_args(p))}


def _describe(row: Any) -> dict[str, Any]:
    return {"TemplateCode": row["code"], "TemplateName": row["name"], "TemplateType": row["template_type"],
            "TemplateContent": row["content"], "TemplateStatus": row["status"], "Reason": row["reason"],
            "CreateDate": china_time(row["created_at"])}


async def query_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = p.str("TemplateCode", required=True, max_len=32)
    return _describe(await templates.query_template(ctx.svc, ctx.account_id, code, ("text", "digital")))


async def query_digital_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = p.str("TemplateCode", required=True, max_len=32)
    row = await templates.query_template(ctx.svc, ctx.account_id, code, ("digital",))
    parts = [{"FileName": f["name"], "FileSuffix": f["suffix"], "FileSize": f["size"]} for f in row["body"]["parts"]]
    return {**_describe(row), "SignName": row["sign_name"], "TemplateContents": parts}


async def query_sms_template_list(ctx: Ctx, p: Params) -> dict[str, Any]:
    page, size = page_args(p)
    total, rows = await templates.list_templates(ctx.svc, ctx.account_id, ("text", "digital"), page, size)
    items = [
        {
            "TemplateCode": r["code"], "TemplateName": r["name"], "TemplateType": r["template_type"],
            "OuterTemplateType": r["template_type"], "TemplateContent": r["content"],
            "CreateDate": china_time(r["created_at"]), "OrderId": f"TPL-{r['id']}",
            "SignatureName": r["sign_name"], **audit_fields(r),
        }
        for r in rows
    ]
    return {"SmsTemplateList": items, "TotalCount": total, "CurrentPage": page, "PageSize": size}


async def delete_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = p.str("TemplateCode", required=True, max_len=32)
    return {"TemplateCode": await templates.delete_template(ctx.svc, ctx.account_id, code)}


async def create_digital_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    code = await templates.create_digital_template(
        ctx.svc, ctx.account_id,
        name=p.str("TemplateName", required=True, max_len=200),
        sign_name=p.str("SignName", max_len=64),
        remark=p.str("Remark", required=True, max_len=1000),
        contents=p.objects("TemplateContents", required=True),
    )
    return {"TemplateCode": code}


def _current_template(p: Params) -> TemplateInput:
    return TemplateInput(
        name=p.str("TemplateName", required=True, max_len=200),
        content=p.str("TemplateContent", required=True, max_len=2000),
        template_type=p.int("TemplateType", required=True, low=0, high=99),
        remark=p.str("Remark", max_len=1000),
        related_sign_name=p.str("RelatedSignName", max_len=64),
        template_rule=p.json("TemplateRule"),
        more_data=p.strings("MoreData", max_items=10),
        apply_scene=p.str("ApplySceneContent", max_len=500).strip(),
        intl_type=p.optional_int("IntlType", low=0, high=2),
        traffic_driving=p.str("TrafficDriving", max_len=500),
    )


async def create_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    t = _current_template(p)
    code, template_id = await templates.create_template(ctx.svc, ctx.account_id, t)
    return {"TemplateCode": code, "TemplateName": t.name.strip(), "OrderId": f"TPL-{template_id}"}


async def update_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    t = _current_template(p)
    code, template_id = await templates.update_template(
        ctx.svc, ctx.account_id, p.str("TemplateCode", required=True, max_len=32), t)
    return {"TemplateCode": code, "TemplateName": t.name.strip(), "OrderId": f"TPL-{template_id}"}


async def get_sms_template(ctx: Ctx, p: Params) -> dict[str, Any]:
    row = await templates.query_template(ctx.svc, ctx.account_id, p.str("TemplateCode", required=True, max_len=32),
                                         ("text",))
    d = row["details"] or {}
    decided = row["status"] in (ReviewState.APPROVED, ReviewState.REJECTED)
    files = [media.download_url(ctx.svc, key) for key in d.get("more_data", [])]
    return {
        "TemplateCode": row["code"], "TemplateName": row["name"], "TemplateContent": row["content"],
        "TemplateType": str(row["template_type"]), "TemplateStatus": str(row["status"]), "TemplateTag": 2,
        "AuditInfo": {"RejectInfo": row["reason"], "AuditDate": china_time(row["updated_at"]) if decided else ""},
        "CreateDate": china_time(row["created_at"]), "OrderId": f"TPL-{row['id']}", "Remark": row["remark"],
        "RelatedSignName": row["sign_name"], "SignList": {"SignList": [row["sign_name"]] if row["sign_name"] else []},
        "VariableAttribute": json.dumps(d.get("template_rule", {}), ensure_ascii=False),
        "ApplyScene": d.get("apply_scene", ""), "IntlType": d.get("intl_type"),
        "FileUrlList": {"FileUrl": files}, "MoreDataFileUrlList": {"MoreDataFileUrl": files},
        "VendorAuditStatus": {},
    }


async def get_sms_template_list(ctx: Ctx, p: Params) -> dict[str, Any]:
    page = p.int("PageIndex", default=1, low=1, high=1_000_000)
    size = p.int("PageSize", default=10, low=1, high=50)
    status = p.str("AuditStatus", max_len=40)
    states = {v: k for k, v in AUDIT_STATE.items()}
    if status and status not in states:
        raise invalid("AuditStatus", f"must be one of {', '.join(states)}, got {status[:40]!r}")
    filters = {"code": p.str("TemplateCode", max_len=32), "name": p.str("TemplateName", max_len=200),
               "sign_name": p.str("SignName", max_len=64), "status": states.get(status),
               "template_type": p.optional_int("TemplateType", low=0, high=3),
               "tag_key": p.str("TemplateTag", max_len=128).strip()}
    usable = p.strings("UsableStateList", max_items=5, max_len=20)
    if any(u != "normal" for u in usable):
        raise invalid("UsableStateList", "takes normal (approved templates)")
    if usable:
        filters["status"] = int(ReviewState.APPROVED)
    total, rows = await templates.search_templates(ctx.svc, ctx.account_id, filters, page, size)
    tagged = await tags.tags_of(ctx.svc, ctx.account_id, "TEMPLATE", [r["code"] for r in rows])
    items = [{"TemplateCode": r["code"], "TemplateName": r["name"], "TemplateContent": r["content"],
              "TemplateType": r["template_type"], "AuditStatus": AUDIT_STATE[r["status"]],
              "GmtCreate": china_time(r["created_at"]), "SignName": r["sign_name"], "WorkOrderId": f"TPL-{r['id']}",
              "TemplateTag": [{"TagKey": k, "TagValue": v} for k, v in tagged.get(r["code"], [])],
              "UsableStateList": ["normal"] if r["status"] == ReviewState.APPROVED else []}
             for r in rows]
    return {"Data": {"List": items, "PageNo": page, "PageSize": size, "Total": total}}


OPERATIONS = {
    "CreateSmsTemplate": Operation(create_sms_template),
    "UpdateSmsTemplate": Operation(update_sms_template),
    "GetSmsTemplate": Operation(get_sms_template),
    "GetSmsTemplateList": Operation(get_sms_template_list, card=True),
    "AddSmsTemplate": Operation(add_sms_template),
    "ModifySmsTemplate": Operation(modify_sms_template),
    "QuerySmsTemplate": Operation(query_sms_template),
    "QuerySmsTemplateList": Operation(query_sms_template_list),
    "DeleteSmsTemplate": Operation(delete_sms_template),
    "CreateDigitalSmsTemplate": Operation(create_digital_sms_template),
    "QueryDigitalSmsTemplate": Operation(query_digital_sms_template),
}
