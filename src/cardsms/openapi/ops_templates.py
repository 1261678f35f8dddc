"""AddSmsTemplate, QuerySmsTemplate, QuerySmsTemplateList, ModifySmsTemplate, DeleteSmsTemplate,
CreateDigitalSmsTemplate and QueryDigitalSmsTemplate (a cardsms addition: the SDK has no query
for digital templates; QuerySmsTemplate answers for them too, with TemplateType 7)."""

from __future__ import annotations

from typing import Any

from cardsms.openapi.context import Ctx, Operation, audit_fields, page_args
from cardsms.openapi.params import Params
from cardsms.services import templates
from cardsms.services.core import china_time


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


OPERATIONS = {
    "AddSmsTemplate": Operation(add_sms_template),
    "ModifySmsTemplate": Operation(modify_sms_template),
    "QuerySmsTemplate": Operation(query_sms_template),
    "QuerySmsTemplateList": Operation(query_sms_template_list),
    "DeleteSmsTemplate": Operation(delete_sms_template),
    "CreateDigitalSmsTemplate": Operation(create_digital_sms_template),
    "QueryDigitalSmsTemplate": Operation(query_digital_sms_template),
}
