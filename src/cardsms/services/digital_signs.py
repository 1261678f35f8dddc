"""Digital message signatures: CreateDigitalSignOrder (create, update, delete) and QueryDigitalSignByName.

A digital signature is filed with each mainland carrier: its review has one row per carrier ("mobile",
"unicom", "telecom") through the reviewer interface, shown as each carrier's register and availability
status. Once an account has any digital signature, a send with a digital leg needs its SignName to be one
that at least one carrier approved."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.schema import digital_signs, reviews
from cardsms.domain.errors import CardsmsError
from cardsms.services import review
from cardsms.services.core import Services, as_utc
from cardsms.vendors.gateway import ReviewState

ORDER_TYPES = ("CREATE_DIGITALSMS_SIGN", "UPDATE_DIGITALSMS_SIGN", "DELETE_DIGITALSMS_SIGN")
CARRIERS = ("mobile", "unicom", "telecom")
SIGN_SOURCES = (0, 2, 5, 7)  # company, app, trademark, e-commerce shop
INDUSTRIES = (0, 1)  # general, e-commerce
CONTEXT_FIELDS = {  # OrderContext: the qualification the signature is filed with
    "qualificationCompanyName": re.compile(r"[^\s!-/:-@\[-`{-~]{1}[\s\S]{0,149}"),
    "qualificationOrganizationCode": re.compile(r"[0-9A-Za-z]{18}"),
    "qualificationAdminName": re.compile(r"\S.{0,31}"),
    "qualificationAdminIDCard": re.compile(r"[0-9]{17}[0-9Xx]"),
    "qualificationLegalPersonName": re.compile(r"\S.{0,31}"),
    "qualificationLegalPersonIDCard": re.compile(r"[0-9]{17}[0-9Xx]"),
}
_NAME = re.compile(r"[\u4e00-\u9fffA-Za-z0-9]{2,16}")
# review state of a carrier's row -> its RegisterStatus (3 filed, -1 filing, 0 failed) and availability
_REGISTER = {int(ReviewState.APPROVED): 3, int(ReviewState.REVIEWING): -1, int(ReviewState.REJECTED): 0}


def check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name):
        raise CardsmsError("isv.INVALID_PARAMETERS", "SignName: 2-16 Chinese characters, letters or digits, no "
                                                     f"spaces or other symbols, got {name[:40]!r}")
    if name.isdigit() or (name.isascii() and name.isalpha()):
        raise CardsmsError("isv.INVALID_PARAMETERS", "SignName: not only letters and not only digits")
    return name


def check_context(context: Any, required: bool) -> dict[str, str]:
    if context is None or context == {}:
        if required:
            raise CardsmsError("MissingParameter", "OrderContext is mandatory when creating a digital signature "
                                                   f"(its fields: {', '.join(CONTEXT_FIELDS)})")
        return {}
    if not isinstance(context, dict):
        raise CardsmsError("isv.INVALID_PARAMETERS", "OrderContext must be a JSON object")
    unknown = set(context) - set(CONTEXT_FIELDS)
    if unknown:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"OrderContext: unknown fields {sorted(unknown)}")
    out = {}
    for key, rule in CONTEXT_FIELDS.items():
        value = context.get(key)
        if value is None:
            raise CardsmsError("MissingParameter", f"OrderContext.{key} is mandatory")
        if not isinstance(value, str) or not rule.fullmatch(value.strip()):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"OrderContext.{key}: {str(value)[:40]!r} does not have "
                                                         "the form this field takes")
        out[key] = value.strip()
    return out


async def _get(conn: AsyncConnection, account_id: int, name: str) -> Any:
    row = (await conn.execute(select(digital_signs).where(
        digital_signs.c.account_id == account_id, digital_signs.c.name_key == name.strip().lower()))).mappings().first()
    if row is None:
        raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"digital signature {name.strip()[:40]!r} does not exist "
                                                        "in this account")
    return row


async def order(svc: Services, account_id: int, order_type: str, name: str, *, sign_source: int | None,
                sign_industry: int | None, qualification_id: int | None, context: Any, extend_message: str,
                submitter: str) -> dict[str, Any]:
    """Carry out one CreateDigitalSignOrder; its Data."""
    if order_type not in ORDER_TYPES:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"OrderType: must be one of {', '.join(ORDER_TYPES)}, "
                                                     f"got {order_type[:40]!r}")
    name = check_name(name)
    if sign_source is not None and sign_source not in SIGN_SOURCES:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SignSource: must be one of {SIGN_SOURCES}")
    if sign_industry is not None and sign_industry not in INDUSTRIES:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SignIndustry: must be one of {INDUSTRIES}")
    creating = order_type == "CREATE_DIGITALSMS_SIGN"
    fields = check_context(context, required=creating) if order_type != "DELETE_DIGITALSMS_SIGN" else {}
    values = {"sign_source": sign_source, "sign_industry": sign_industry, "qualification_id": qualification_id,
              "context": fields or None, "extend_message": extend_message or None}
    async with svc.hold_writer() as conn:
        if creating:
            sign_id, code = await _create(conn, svc, account_id, name, values, submitter)
        else:
            row = await _get(conn, account_id, name)
            sign_id, code = int(row["id"]), str(row["code"])
            if order_type == "DELETE_DIGITALSMS_SIGN":
                await conn.execute(delete(digital_signs).where(digital_signs.c.id == sign_id))
                await conn.execute(delete(reviews).where(reviews.c.account_id == account_id,
                                                         reviews.c.subject_kind == "dsign",
                                                         reviews.c.subject_id == sign_id))
                return {"signId": sign_id, "signCode": code, "signOrderId": sign_id, "signName": row["name"]}
            changes = {k: v for k, v in values.items() if v is not None}
            await conn.execute(update(digital_signs).where(digital_signs.c.id == sign_id).values(
                updated_at=svc.now(), version=row["version"] + 1, **changes))
        await review.submit(conn, svc, account_id, "dsign", sign_id,
                            {carrier: (ReviewState.REVIEWING, "") for carrier in CARRIERS})
    return {"signId": sign_id, "signCode": code, "signOrderId": sign_id, "signName": name}


async def _create(conn: AsyncConnection, svc: Services, account_id: int, name: str, values: dict[str, Any],
                  submitter: str) -> tuple[int, str]:
    """A new digital signature (id, code); the name must be new in the account."""
    exists = await conn.scalar(select(digital_signs.c.id).where(
        digital_signs.c.account_id == account_id, digital_signs.c.name_key == name.lower()))
    if exists is not None:
        raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"digital signature {name!r} exists already; "
                                                        "update it with UPDATE_DIGITALSMS_SIGN")
    now = svc.now()
    code = f"DIGSIGN_{account_id}_{int(now.timestamp() * 1000)}_{secrets.token_urlsafe(4)}"
    result = await conn.execute(insert(digital_signs).values(
        account_id=account_id, name=name, name_key=name.lower(), code=code, sign_source=values["sign_source"] or 0,
        sign_industry=values["sign_industry"] or 0, qualification_id=values["qualification_id"],
        context=values["context"] or {}, extend_message=values["extend_message"] or "", submitter=submitter,
        version=1, status=0, reason="", created_at=now, updated_at=now))
    return inserted_id(result), code


async def query(svc: Services, account_id: int, name: str) -> dict[str, Any]:
    """QueryDigitalSignByName's Data."""
    async with svc.read() as conn:
        row = await _get(conn, account_id, name)
        states = {r["vendor"]: int(r["state"]) for r in await review.vendor_reviews(conn, account_id, "dsign",
                                                                                    int(row["id"]))}
    out: dict[str, Any] = {
        "signId": row["id"], "signName": row["name"], "signCode": row["code"], "signSource": row["sign_source"],
        "signIndustry": row["sign_industry"], "qualificationId": row["qualification_id"],
        "signVersion": row["version"], "signType": 1, "remark": row["reason"], "creator": row["submitter"],
        "gmtCreate": int(as_utc(row["created_at"]).timestamp() * 1000),
        "gmtModified": int(as_utc(row["updated_at"]).timestamp() * 1000),
        "attachmentList": [], "extendMessage": row["extend_message"] or "{}", "auditStatus": row["status"],
    }
    for carrier in CARRIERS:
        state = states.get(carrier, int(ReviewState.REVIEWING))
        out[f"{carrier}RegisterStatus"] = _REGISTER.get(state, -2)
        out[f"{carrier}AvailableStatus"] = 1 if state == int(ReviewState.APPROVED) else 0
    return out


async def check_for_send(conn: AsyncConnection, account_id: int, sign_names: list[str]) -> None:
    """A send with a digital leg: once the account has digital signatures, each SignName must be an approved one."""
    if not await conn.scalar(select(func.count()).select_from(digital_signs).where(
            digital_signs.c.account_id == account_id)):
        return
    for name in dict.fromkeys(sign_names):
        status = await conn.scalar(select(digital_signs.c.status).where(
            digital_signs.c.account_id == account_id, digital_signs.c.name_key == name.strip().lower()))
        if status != 1:
            state = "is not a digital signature of this account" if status is None else \
                "is still under the carriers' review" if status == 0 else "was rejected by every carrier"
            raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"SignName: {name[:40]!r} {state}; this account sends "
                                                            "digital messages under approved digital signatures "
                                                            "(CreateDigitalSignOrder)")
