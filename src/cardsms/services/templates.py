"""Text and digital templates (and the kind-independent get/list/delete of every template)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.schema import resource_tags, reviews, templates
from cardsms.domain.errors import CardsmsError
from cardsms.domain.text import (
    DIGITAL_TEMPLATE_TYPE,
    check_remark,
    check_template_name,
    check_text_template,
    template_variables,
)
from cardsms.domain.variables import check_template_rule
from cardsms.services import audit, review, signs
from cardsms.services.core import Services, random_digits, read_page
from cardsms.services.files import decode_inline_file
from cardsms.vendors.gateway import ReviewState

DIGITAL_MAX_BYTES = 2 * 1024 * 1024
DIGITAL_MAX_PARTS = 10
PUBLIC_ACCOUNT = 0  # owner of the public templates (services/public.py)
CODE_PREFIX = {"text": "SMS_", "digital": "SMS_", "card": "CARD_SMS_"}


async def insert_template(conn: AsyncConnection, svc: Services, account_id: int, kind: str,
                          values: dict[str, Any]) -> tuple[int, str]:
    """Insert a template row with a new code (unique within the account); returns (id, code)."""
    now = svc.now()
    for _ in range(10):
        code = CODE_PREFIX[kind] + random_digits(9 if kind != "card" else 8)
        exists = await conn.scalar(
            select(templates.c.id).where(templates.c.account_id == account_id, templates.c.code == code)
        )
        if exists is None:
            break
    else:  # pragma: no cover - 10 collisions in a 10^9 space
        raise CardsmsError("SYSTEM_ERROR", "could not allocate a template code; retry")
    result = await conn.execute(
        insert(templates).values(
            account_id=account_id, code=code, kind=kind, status=0, reason="", created_at=now, updated_at=now,
            **values,
        )
    )
    return inserted_id(result), code


async def add_text_template(
    svc: Services, account_id: int, template_type: int, name: str, content: str, remark: str
) -> str:
    content = check_text_template(template_type, content)
    values = {
        "name": check_template_name(name), "template_type": template_type, "content": content,
        "remark": check_remark(remark, required=True),
    }
    async with svc.hold_writer() as conn:
        template_id, code = await insert_template(conn, svc, account_id, "text", values)
        await review.submit(conn, svc, account_id, "template", template_id, {"": (ReviewState.REVIEWING, "")})
    return code


async def get_template(conn: AsyncConnection, account_id: int, code: str, kinds: tuple[str, ...]) -> Any:
    """The account's template by code; card lookups also find the public templates (`PUB_` codes)."""
    owners = [account_id, PUBLIC_ACCOUNT] if kinds == ("card",) and code.strip().startswith("PUB_") else [account_id]
    row = (
        await conn.execute(
            select(templates).where(templates.c.account_id.in_(owners), templates.c.code == code.strip())
        )
    ).mappings().first()
    if row is None:
        if kinds == ("card",):
            raise CardsmsError("TEMPLATE_NOT_EXIST", f"card template {code!r} does not exist in this account")
        raise CardsmsError("isv.SMS_TEMPLATE_ILLEGAL", f"template {code!r} does not exist in this account")
    if row["kind"] not in kinds:
        raise CardsmsError("isv.SMS_TEMPLATE_TYPE_MISMATCH",
                           f"template {code!r} is a {row['kind']} template; this operation takes "
                           f"{' or '.join(kinds)} templates")
    return row


async def query_template(svc: Services, account_id: int, code: str, kinds: tuple[str, ...]) -> Any:
    async with svc.read() as conn:
        return await get_template(conn, account_id, code, kinds)


async def list_templates(svc: Services, account_id: int, kinds: tuple[str, ...], page: int, size: int
                         ) -> tuple[int, list[Any]]:
    return await read_page(svc, templates, [templates.c.account_id == account_id, templates.c.kind.in_(kinds)],
                           page, size)


async def modify_text_template(
    svc: Services, account_id: int, code: str, template_type: int, name: str, content: str, remark: str
) -> str:
    content = check_text_template(template_type, content)
    values = {"name": check_template_name(name), "template_type": template_type, "content": content,
              "remark": check_remark(remark, required=True)}
    async with svc.hold_writer() as conn:
        row = await get_template(conn, account_id, code, ("text",))
        if row["status"] == ReviewState.REVIEWING:
            raise CardsmsError("isv.REVIEW_IN_PROGRESS",
                               f"template {code!r} is being reviewed; modify it after the review has finished")
        await conn.execute(
            update(templates).where(templates.c.id == row["id"], templates.c.account_id == account_id)
            .values(updated_at=svc.now(), **values)
        )
        await review.submit(conn, svc, account_id, "template", row["id"], {"": (ReviewState.REVIEWING, "")})
    return str(row["code"])


async def delete_template(svc: Services, account_id: int, code: str) -> str:
    async with svc.hold_writer() as conn:
        row = await get_template(conn, account_id, code, ("text", "digital", "card"))
        await conn.execute(delete(templates).where(templates.c.id == row["id"], templates.c.account_id == account_id))
        await audit.record(conn, svc, account_id, "template.delete", str(row["code"]), str(row["name"]))
        await conn.execute(delete(resource_tags).where(
            resource_tags.c.account_id == account_id, resource_tags.c.resource_type == "TEMPLATE",
            resource_tags.c.resource_id == row["code"]))
        await conn.execute(
            delete(reviews).where(
                reviews.c.account_id == account_id, reviews.c.subject_kind == "template",
                reviews.c.subject_id == row["id"],
            )
        )
    if row["kind"] == "digital":
        for part in row["body"]["parts"]:
            svc.media_store.delete(part["key"])
    return str(row["code"])


async def create_digital_template(
    svc: Services, account_id: int, name: str, sign_name: str, remark: str, contents: list[dict[str, Any]]
) -> str:
    name = check_template_name(name)
    remark = check_remark(remark, required=True)
    if not contents:
        raise CardsmsError("MissingParameter", "TemplateContents is mandatory for this action.")
    if len(contents) > DIGITAL_MAX_PARTS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"TemplateContents holds at most {DIGITAL_MAX_PARTS} files")
    if sign_name:
        await signs.get_sign(svc, account_id, sign_name)
    parts = [
        decode_inline_file(f"TemplateContents.{i}", c.get("FileContents"), c.get("FileSuffix"),
                           ("txt", "jpg", "jpeg", "png", "gif", "mp3", "mp4"), DIGITAL_MAX_BYTES)
        for i, c in enumerate(contents, 1)
    ]
    if sum(p.suffix == "mp4" for p in parts) > 1:
        raise CardsmsError("isv.INVALID_PARAMETERS", "TemplateContents: at most one video (mp4) per template")
    total = sum(len(p.data) for p in parts)
    if total > DIGITAL_MAX_BYTES:
        raise CardsmsError("isv.FILE_ILLEGAL", f"TemplateContents: {total} bytes in all, at most {DIGITAL_MAX_BYTES}")
    text = "\n".join(p.data.decode("utf-8") for p in parts if p.suffix == "txt")
    async with svc.hold_writer() as conn:
        template_id, code = await insert_template(
            conn, svc, account_id, "digital",
            {"name": name, "template_type": DIGITAL_TEMPLATE_TYPE, "content": text, "sign_name": sign_name,
             "remark": remark, "body": {"parts": []}},
        )
        stored = []
        for i, (part, raw) in enumerate(zip(parts, contents, strict=True), 1):
            key = f"digital/{account_id}/{code}/{i}.{part.suffix}"
            svc.media_store.put(key, part.data)
            file_name = str(raw.get("FileName") or f"part{i}")[:64]
            stored.append({"key": key, "name": file_name, "suffix": part.suffix, "size": len(part.data)})
        await conn.execute(update(templates).where(templates.c.id == template_id).values(body={"parts": stored}))
        await review.submit(conn, svc, account_id, "template", template_id, {"": (ReviewState.REVIEWING, "")})
    return code


async def digital_parts(svc: Services, account_id: int, code: str) -> tuple[str, list[tuple[str, str, bytes]]]:
    """What a digital template sends: its name (the message's subject) and its parts in their order, each as
    (file suffix, file name, bytes). A part whose file is gone fails the send (isv.FILE_ILLEGAL)."""
    async with svc.read() as conn:
        row = await get_template(conn, account_id, code, ("digital",))
    out = []
    for part in (row["body"] or {}).get("parts", []):
        data = svc.media_store.get(part["key"])
        if data is None:
            raise CardsmsError("isv.FILE_ILLEGAL", f"digital template {code}: the file of {part['name']!r} is missing")
        out.append((str(part["suffix"]), str(part["name"]), data))
    return str(row["name"]), out


async def digital_preview(svc: Services, account_id: int, code: str) -> list[dict[str, Any]]:
    """A digital template's parts for a page: name, suffix, size, a signed URL, and the text of text parts."""
    return (await digital_template_view(svc, account_id, code))[1]


async def digital_template_view(svc: Services, account_id: int, code: str) -> tuple[Any, list[dict[str, Any]]]:
    """A digital template's row and its parts as `digital_preview` gives them."""
    from cardsms.services.media import download_url

    async with svc.read() as conn:
        row = await get_template(conn, account_id, code, ("digital",))
    out = []
    for part in (row["body"] or {}).get("parts", []):
        text = ""
        if part["suffix"] == "txt":
            text = (svc.media_store.get(part["key"]) or b"").decode("utf-8", "replace")
        out.append({"name": part["name"], "suffix": part["suffix"], "size": part["size"], "text": text,
                    "url": download_url(svc, part["key"])})
    return row, out


# --- the current operations: CreateSmsTemplate, UpdateSmsTemplate, GetSmsTemplate(List) ----------

@dataclass(frozen=True, slots=True)
class TemplateInput:
    """What CreateSmsTemplate / UpdateSmsTemplate carry."""

    name: str
    content: str
    template_type: int
    remark: str
    related_sign_name: str
    template_rule: Any  # the decoded TemplateRule JSON
    more_data: list[str]
    apply_scene: str
    intl_type: int | None
    traffic_driving: str


async def _checked(conn: AsyncConnection, svc: Services, account_id: int, t: TemplateInput) -> dict[str, Any]:
    from cardsms.services import qualifications

    content = check_text_template(t.template_type, t.content)
    rule = check_template_rule(t.template_rule if t.template_rule is not None else {},
                               template_variables(content), t.template_type)
    if t.template_type != 3 and not t.related_sign_name.strip():
        raise CardsmsError("MissingParameter", "RelatedSignName is mandatory for templates sent in the Chinese "
                           "mainland (TemplateType 0, 1, 2): the signature the template is sent with")
    if t.related_sign_name.strip():
        sign = await signs._get(conn, account_id, t.related_sign_name)
        if sign["status"] == ReviewState.REJECTED:
            raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"RelatedSignName {t.related_sign_name!r}: the "
                               "signature was rejected; update it first")
    await qualifications.check_files(conn, account_id, t.more_data, "MoreData")
    return {
        "name": check_template_name(t.name), "template_type": t.template_type, "content": content,
        "remark": check_remark(t.remark), "sign_name": t.related_sign_name.strip(),
        "details": {"template_rule": rule, "more_data": t.more_data, "apply_scene": t.apply_scene,
                    "intl_type": t.intl_type, "traffic_driving": t.traffic_driving},
    }


async def create_template(svc: Services, account_id: int, t: TemplateInput) -> tuple[str, int]:
    async with svc.hold_writer() as conn:
        values = await _checked(conn, svc, account_id, t)
        template_id, code = await insert_template(conn, svc, account_id, "text", values)
        await review.submit(conn, svc, account_id, "template", template_id, {"": (ReviewState.REVIEWING, "")})
    return code, template_id


async def update_template(svc: Services, account_id: int, code: str, t: TemplateInput) -> tuple[str, int]:
    async with svc.hold_writer() as conn:
        row = await get_template(conn, account_id, code, ("text",))
        if row["status"] == ReviewState.REVIEWING:
            raise CardsmsError("isv.REVIEW_IN_PROGRESS",
                               f"template {code!r} is being reviewed; update it after the review has finished")
        values = await _checked(conn, svc, account_id, t)
        await conn.execute(update(templates).where(templates.c.id == row["id"], templates.c.account_id == account_id)
                           .values(updated_at=svc.now(), **values))
        await review.submit(conn, svc, account_id, "template", row["id"], {"": (ReviewState.REVIEWING, "")})
    return str(row["code"]), int(row["id"])


async def search_templates(svc: Services, account_id: int, filters: dict[str, Any], page: int, size: int
                           ) -> tuple[int, list[Any]]:
    """GetSmsTemplateList: text templates of the account, filtered."""
    where = [templates.c.account_id == account_id, templates.c.kind == "text"]
    if filters.get("code"):
        where.append(templates.c.code == filters["code"])
    if filters.get("name"):
        where.append(templates.c.name.contains(filters["name"], autoescape=True))
    if filters.get("sign_name"):
        where.append(templates.c.sign_name == filters["sign_name"])
    if filters.get("template_type") is not None:
        where.append(templates.c.template_type == filters["template_type"])
    if filters.get("status") is not None:
        where.append(templates.c.status == filters["status"])
    if filters.get("tag_key"):
        where.append(templates.c.code.in_(select(resource_tags.c.resource_id).where(
            resource_tags.c.account_id == account_id, resource_tags.c.resource_type == "TEMPLATE",
            resource_tags.c.tag_key == filters["tag_key"])))
    return await read_page(svc, templates, where, page, size)
