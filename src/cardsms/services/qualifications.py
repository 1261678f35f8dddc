"""Qualification records and the documents a signature may rest on.

A qualification (SubmitSmsQualification) is the company behind signatures: its unified social credit
code, legal person, administrator and licence pictures. It is reviewed like a signature (the reviewer
interface, reviews.subject_kind "qual"); a signature made with CreateSmsSign must name an approved one of
its own account. Besides it a signature may need an authorization letter (third-party use: reviewed,
subject_kind "letter"), a trademark (SignSource 5) or an app ICP filing (SignSource 2): `sign_documents`.

Every file these records name is an object the account uploaded through its file upload policy
(GetOSSInfoForUploadFile / GetQualificationOssInfo), checked to exist before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.schema import media_objects, qualifications, reviews, sign_documents, signs
from cardsms.domain.errors import CardsmsError, invalid, missing
from cardsms.domain.identity import id_card_problem, mobile_problem, uscc_problem
from cardsms.services import review
from cardsms.services.core import Services, read_page
from cardsms.services.media import file_prefix
from cardsms.vendors.gateway import ReviewState

QUAL_KIND = "qual"  # reviews.subject_kind (at most 8 characters)
LETTER_KIND = "letter"
DOCUMENT_KINDS = {"letter": "authorization letter", "trademark": "trademark", "app_icp": "app ICP filing"}
MAX_FILES = 10
ID_CARD_TYPES = ("identityCard", "passport", "homeReturnPermit", "TaiwanCompatriotPermit", "residencePermit")


def bad(message: str) -> CardsmsError:
    return CardsmsError("isv.QUALIFICATION_ILLEGAL", message)


def parse_day(name: str, value: str, required: bool = False) -> str:
    """A yyyy-MM-dd date (or the word 长期 / 'long-term' for licences without an end), as given."""
    value = value.strip()
    if not value:
        if required:
            raise missing(name)
        return ""
    if value in ("长期", "long-term"):
        return value
    for part in value.split("~"):
        try:
            datetime.strptime(part.strip(), "%Y-%m-%d")
        except ValueError:
            raise invalid(name, f"must be a date yyyy-MM-dd (or a range yyyy-MM-dd~yyyy-MM-dd, or 长期), "
                          f"got {value[:40]!r}") from None
    return value


async def check_files(conn: AsyncConnection, account_id: int, keys: list[str], field: str) -> list[str]:
    """The keys, each an object this account uploaded through its file upload policy."""
    if len(keys) > MAX_FILES:
        raise invalid(field, f"at most {MAX_FILES} files, got {len(keys)}")
    for i, key in enumerate(keys, 1):
        if not isinstance(key, str) or not key.startswith(file_prefix(account_id)):
            raise invalid(f"{field}[{i}]", f"must be the key of a file uploaded with GetOSSInfoForUploadFile "
                          f"(starting {file_prefix(account_id)!r}), got {str(key)[:80]!r}")
    if keys:
        found = set((await conn.execute(select(media_objects.c.oss_key).where(
            media_objects.c.account_id == account_id, media_objects.c.oss_key.in_(keys)))).scalars())
        for i, key in enumerate(keys, 1):
            if key not in found:
                raise invalid(f"{field}[{i}]", f"no file {key!r} was uploaded by this account")
    return keys


@dataclass(frozen=True, slots=True)
class QualificationInput:
    """What SubmitSmsQualification / UpdateSmsQualification carry (names as in the API)."""

    name: str
    company_name: str
    company_type: str
    organization_code: str
    legal_person_name: str
    use_by_self: bool
    whether_share: bool
    details: dict[str, Any]
    files: list[tuple[str, list[str]]]  # (field, keys) to check


def check_qualification(q: QualificationInput) -> None:
    for field, value, limit in (("QualificationName", q.name, 64), ("CompanyName", q.company_name, 128),
                                ("LegalPersonName", q.legal_person_name, 64)):
        if not value.strip():
            raise missing(field)
        if len(value) > limit:
            raise invalid(field, f"must be at most {limit} characters, got {len(value)}")
    if problem := uscc_problem(q.organization_code):
        raise invalid("OrganizationCode", problem)
    d = q.details
    for field in ("LegalPersonIDCardNo", "AdminIDCardNo"):
        type_field = field.replace("No", "Type")
        kind = d.get(type_field) or "identityCard"
        if kind not in ID_CARD_TYPES:
            raise invalid(type_field, f"must be one of {', '.join(ID_CARD_TYPES)}, got {kind[:40]!r}")
        number = d.get(field, "")
        if not number and field == "AdminIDCardNo":
            raise missing(field)
        if number and kind == "identityCard" and (problem := id_card_problem(number)):
            raise invalid(field, problem)
    if not d.get("AdminName"):
        raise missing("AdminName")
    if problem := mobile_problem(d.get("AdminPhoneNo", "")):
        raise invalid("AdminPhoneNo", problem)
    if not d.get("BusinessLicensePics"):
        raise missing("BusinessLicensePics")


async def submit_qualification(svc: Services, account_id: int, q: QualificationInput) -> int:
    check_qualification(q)
    now = svc.now()
    async with svc.hold_writer() as conn:
        for field, keys in q.files:
            await check_files(conn, account_id, keys, field)
        result = await conn.execute(insert(qualifications).values(
            account_id=account_id, name=q.name, company_name=q.company_name, company_type=q.company_type,
            organization_code=q.organization_code, legal_person_name=q.legal_person_name,
            use_by_self=q.use_by_self, whether_share=q.whether_share, details=q.details, status=0, reason="",
            created_at=now, updated_at=now))
        qual_id = inserted_id(result)
        await review.submit(conn, svc, account_id, QUAL_KIND, qual_id, {"": (ReviewState.REVIEWING, "")})
    return qual_id


async def get_qualification(conn: AsyncConnection, account_id: int, qual_id: int, field: str = "QualificationId"
                            ) -> Any:
    row = (await conn.execute(select(qualifications).where(
        qualifications.c.account_id == account_id, qualifications.c.id == qual_id))).mappings().first()
    if row is None:
        raise bad(f"{field} {qual_id}: no such qualification in this account")
    return row


async def read_qualification(svc: Services, account_id: int, qual_id: int, order_id: int | None) -> Any:
    if order_id is not None and order_id != qual_id:
        raise bad(f"OrderId {order_id}: not the work order of qualification {qual_id}")
    async with svc.read() as conn:
        return await get_qualification(conn, account_id, qual_id, "QualificationGroupId")


async def list_qualifications(svc: Services, account_id: int, filters: dict[str, Any], page: int, size: int
                              ) -> tuple[int, list[Any]]:
    where = [qualifications.c.account_id == account_id]
    if filters.get("company_name"):
        where.append(qualifications.c.company_name.contains(filters["company_name"], autoescape=True))
    if filters.get("legal_person_name"):
        where.append(qualifications.c.legal_person_name.contains(filters["legal_person_name"], autoescape=True))
    if filters.get("name"):
        where.append(qualifications.c.name.contains(filters["name"], autoescape=True))
    if filters.get("state") is not None:
        where.append(qualifications.c.status == filters["state"])
    if filters.get("use_by_self") is not None:
        where.append(qualifications.c.use_by_self == filters["use_by_self"])
    if filters.get("order_id") is not None:
        where.append(qualifications.c.id == filters["order_id"])
    return await read_page(svc, qualifications, where, page, size)


async def update_qualification(svc: Services, account_id: int, qual_id: int, order_id: int | None,
                               q: QualificationInput) -> int:
    if order_id is not None and order_id != qual_id:
        raise bad(f"OrderId {order_id}: not the work order of qualification {qual_id}")
    check_qualification(q)
    async with svc.hold_writer() as conn:
        row = await get_qualification(conn, account_id, qual_id, "QualificationGroupId")
        if row["status"] == ReviewState.REVIEWING:
            raise CardsmsError("isv.REVIEW_IN_PROGRESS", f"qualification {qual_id} is being reviewed; update it "
                               "after the review has finished")
        if row["organization_code"] != q.organization_code:
            raise invalid("OrganizationCode", "a qualification keeps its unified social credit code; submit a new "
                          "qualification for another company")
        for field, keys in q.files:
            await check_files(conn, account_id, keys, field)
        await conn.execute(update(qualifications).where(qualifications.c.id == qual_id).values(
            name=q.name, company_name=q.company_name, legal_person_name=q.legal_person_name,
            details=q.details, updated_at=svc.now()))
        await review.submit(conn, svc, account_id, QUAL_KIND, qual_id, {"": (ReviewState.REVIEWING, "")})
    return qual_id


async def delete_qualification(svc: Services, account_id: int, qual_id: int, order_id: int | None) -> None:
    if order_id is not None and order_id != qual_id:
        raise bad(f"OrderId {order_id}: not the work order of qualification {qual_id}")
    async with svc.hold_writer() as conn:
        row = await get_qualification(conn, account_id, qual_id, "QualificationGroupId")
        users = (await conn.execute(select(signs.c.name).where(
            signs.c.account_id == account_id, signs.c.qualification_id == qual_id).limit(5))).scalars().all()
        if users:
            raise bad(f"qualification {qual_id} is in use by signature(s) {', '.join(users)}; delete or move "
                      "them to another qualification first")
        await conn.execute(delete(qualifications).where(qualifications.c.id == qual_id))
        await conn.execute(delete(reviews).where(reviews.c.account_id == account_id,
                                                 reviews.c.subject_kind == QUAL_KIND, reviews.c.subject_id == qual_id))
        orphans = await _unreferenced(conn, account_id, file_keys(account_id, row["details"]))
        if orphans:
            await conn.execute(delete(media_objects).where(media_objects.c.account_id == account_id,
                                                           media_objects.c.oss_key.in_(orphans)))
    for key in orphans:  # the ID-card and licence scans do not outlive their record
        svc.media_store.delete(key)


def file_keys(account_id: int, value: Any) -> set[str]:
    """Every uploaded file a record's JSON names (keys under the account's file prefix)."""
    prefix = file_prefix(account_id)
    if isinstance(value, str):
        return {value} if value.startswith(prefix) else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return set().union(*(file_keys(account_id, v) for v in value)) if value else set()
    return set()


async def _unreferenced(conn: AsyncConnection, account_id: int, keys: set[str]) -> list[str]:
    """Those of `keys` that no remaining qualification, signature or document of the account names."""
    left = []
    for key in sorted(keys):
        named = False
        for table, column in ((qualifications, qualifications.c.details), (sign_documents, sign_documents.c.details),
                              (signs, signs.c.details), (signs, signs.c.files)):
            if await conn.scalar(select(func.count()).select_from(table).where(
                    table.c.account_id == account_id, cast(column, Text).contains(key, autoescape=True))):
                named = True
                break
        if not named:
            left.append(key)
    return left


# --- authorization letters, trademarks, app ICP filings ------------------------------------------

async def create_document(svc: Services, account_id: int, kind: str, name: str, organization_code: str,
                          details: dict[str, Any], files: list[tuple[str, list[str]]]) -> int:
    assert kind in DOCUMENT_KINDS
    now = svc.now()
    async with svc.hold_writer() as conn:
        for field, keys in files:
            await check_files(conn, account_id, keys, field)
        result = await conn.execute(insert(sign_documents).values(
            account_id=account_id, kind=kind, name=name, organization_code=organization_code, details=details,
            status=0 if kind == LETTER_KIND else 1, reason="", created_at=now, updated_at=now))
        doc_id = inserted_id(result)
        if kind == LETTER_KIND:
            await review.submit(conn, svc, account_id, LETTER_KIND, doc_id, {"": (ReviewState.REVIEWING, "")})
    return doc_id


async def list_documents(svc: Services, account_id: int, kind: str, ids: list[int] | None = None) -> list[Any]:
    where = [sign_documents.c.account_id == account_id, sign_documents.c.kind == kind]
    if ids:
        where.append(sign_documents.c.id.in_(ids))
    async with svc.read() as conn:
        return list((await conn.execute(select(sign_documents).where(*where).order_by(sign_documents.c.id.desc())
                                        .limit(500))).mappings().all())


async def get_document(conn: AsyncConnection, account_id: int, kind: str, doc_id: int, field: str) -> Any:
    row = (await conn.execute(select(sign_documents).where(
        sign_documents.c.account_id == account_id, sign_documents.c.kind == kind,
        sign_documents.c.id == doc_id))).mappings().first()
    if row is None:
        raise bad(f"{field} {doc_id}: no such {DOCUMENT_KINDS[kind]} in this account")
    return row
