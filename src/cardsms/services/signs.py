"""Signatures (the 【name】 prefix): add, query, list, modify, delete; reviewed like templates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import inserted_id
from cardsms.db.schema import resource_tags, reviews, sign_documents, signs
from cardsms.domain.errors import CardsmsError
from cardsms.domain.text import SIGN_SOURCES, SIGN_TYPES, check_remark, check_sign_name
from cardsms.services import audit, review
from cardsms.services.core import Services, read_page
from cardsms.services.files import decode_inline_file
from cardsms.vendors.gateway import ReviewState

MAX_SIGN_FILES = 10
SIGN_FILE_MAX_BYTES = 2 * 1024 * 1024


def _check_choice(name: str, value: int, choices: dict[int, str]) -> int:
    if value not in choices:
        listed = ", ".join(f"{k} {v}" for k, v in choices.items())
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{name} must be one of: {listed}; got {value}")
    return value


async def _store_files(svc: Services, account_id: int, name_key: str, files: list[dict[str, Any]]) -> list[dict]:
    if len(files) > MAX_SIGN_FILES:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SignFileList holds at most {MAX_SIGN_FILES} files")
    decoded = [
        decode_inline_file(f"SignFileList.{i}", f.get("FileContents"), f.get("FileSuffix"),
                           ("jpg", "jpeg", "png", "gif"), SIGN_FILE_MAX_BYTES)
        for i, f in enumerate(files, 1)
    ]
    stored = []
    stamp = svc.now().strftime("%Y%m%d%H%M%S%f")
    for i, f in enumerate(decoded, 1):
        key = f"signs/{account_id}/{stamp}-{i}.{f.suffix}"
        svc.media_store.put(key, f.data)
        stored.append({"key": key, "suffix": f.suffix, "size": len(f.data)})
    return stored


async def add_sign(
    svc: Services, account_id: int, name: str, sign_source: int, sign_type: int, remark: str,
    files: list[dict[str, Any]],
) -> str:
    name = check_sign_name(name)
    _check_choice("SignSource", sign_source, SIGN_SOURCES)
    _check_choice("SignType", sign_type, SIGN_TYPES)
    remark = check_remark(remark, required=True)
    stored = await _store_files(svc, account_id, name.lower(), files)
    now = svc.now()
    try:
        async with svc.hold_writer() as conn:
            result = await conn.execute(
                insert(signs).values(
                    account_id=account_id, name=name, name_key=name.lower(), sign_type=sign_type,
                    sign_source=sign_source, remark=remark, files=stored, status=0, reason="",
                    created_at=now, updated_at=now,
                )
            )
            sign_id = inserted_id(result)
            await review.submit(conn, svc, account_id, "sign", sign_id, {"": (ReviewState.REVIEWING, "")})
    except IntegrityError:
        for f in stored:
            svc.media_store.delete(f["key"])
        raise CardsmsError("isv.SMS_SIGN_NAME_EXIST", f"signature {name!r} already exists in this account") from None
    return name


async def _get(conn: AsyncConnection, account_id: int, name: str) -> Any:
    row = (
        await conn.execute(
            select(signs).where(signs.c.account_id == account_id, signs.c.name_key == name.strip().lower())
        )
    ).mappings().first()
    if row is None:
        raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"signature {name!r} does not exist in this account")
    return row


async def get_sign(svc: Services, account_id: int, name: str) -> Any:
    async with svc.read() as conn:
        return await _get(conn, account_id, name)


async def list_signs(svc: Services, account_id: int, page: int, size: int) -> tuple[int, list[Any]]:
    return await read_page(svc, signs, [signs.c.account_id == account_id], page, size)


async def modify_sign(
    svc: Services, account_id: int, name: str, sign_source: int, sign_type: int, remark: str,
    files: list[dict[str, Any]],
) -> str:
    _check_choice("SignSource", sign_source, SIGN_SOURCES)
    _check_choice("SignType", sign_type, SIGN_TYPES)
    remark = check_remark(remark, required=True)
    async with svc.read() as conn:
        current = await _get(conn, account_id, name)
    if current["status"] == ReviewState.REVIEWING:
        raise CardsmsError("isv.REVIEW_IN_PROGRESS", f"signature {name!r} is being reviewed; modify it after the "
                           "review has finished")
    stored = await _store_files(svc, account_id, current["name_key"], files) if files else current["files"]
    async with svc.hold_writer() as conn:
        await conn.execute(
            update(signs).where(signs.c.account_id == account_id, signs.c.id == current["id"]).values(
                sign_source=sign_source, sign_type=sign_type, remark=remark, files=stored, status=0, reason="",
                updated_at=svc.now(),
            )
        )
        await review.submit(conn, svc, account_id, "sign", current["id"], {"": (ReviewState.REVIEWING, "")})
    return str(current["name"])


async def delete_sign(svc: Services, account_id: int, name: str) -> str:
    async with svc.hold_writer() as conn:
        current = await _get(conn, account_id, name)
        await conn.execute(delete(signs).where(signs.c.account_id == account_id, signs.c.id == current["id"]))
        await audit.record(conn, svc, account_id, "sign.delete", str(current["name"]))
        await conn.execute(delete(resource_tags).where(
            resource_tags.c.account_id == account_id, resource_tags.c.resource_type == "SIGN",
            resource_tags.c.resource_id == current["name"]))
        await conn.execute(
            delete(reviews).where(
                reviews.c.account_id == account_id, reviews.c.subject_kind == "sign",
                reviews.c.subject_id == current["id"],
            )
        )
    for f in current["files"]:
        svc.media_store.delete(f["key"])
    return str(current["name"])


# --- the current operations: CreateSmsSign, UpdateSmsSign, GetSmsSign ----------------------------

CURRENT_SIGN_SOURCES = {0: "enterprise or public institution", 2: "app", 5: "trademark"}


@dataclass(frozen=True, slots=True)
class SignInput:
    """What CreateSmsSign / UpdateSmsSign carry."""

    name: str
    sign_source: int
    sign_type: int
    remark: str
    qualification_id: int
    third_party: bool
    authorization_letter_id: int | None
    trademark_id: int | None
    app_icp_record_id: int | None
    apply_scene: str
    more_data: list[str]


async def _check_letter(conn: AsyncConnection, account_id: int, s: SignInput, qual: Any) -> None:
    """A signature for third-party use rests on an approved authorization letter of the qualification's
    organisation that names the signature."""
    from cardsms.services import qualifications as q

    if s.authorization_letter_id is None:
        raise q.bad("AuthorizationLetterId is required when ThirdParty is true: a signature for third-party "
                    "use rests on an authorization letter (CreateSmsAuthorizationLetter)")
    letter = await q.get_document(conn, account_id, "letter", s.authorization_letter_id, "AuthorizationLetterId")
    if letter["status"] != ReviewState.APPROVED:
        raise q.bad(f"AuthorizationLetterId {letter['id']}: the letter is not approved yet")
    if letter["organization_code"] != qual["organization_code"]:
        raise q.bad(f"AuthorizationLetterId {letter['id']}: its unified social credit code "
                    f"{letter['organization_code']} is not the qualification's {qual['organization_code']}")
    if s.name not in letter["details"].get("SignList", []):
        raise q.bad(f"AuthorizationLetterId {letter['id']}: the letter does not authorize the signature "
                    f"{s.name!r} (its SignList)")


async def _check_grounds(conn: AsyncConnection, account_id: int, s: SignInput) -> dict[str, Any]:
    """The records a signature rests on, each checked against the rule that requires it; returns `details`."""
    from cardsms.services import qualifications as q

    qual = await q.get_qualification(conn, account_id, s.qualification_id)
    if qual["status"] != ReviewState.APPROVED:
        state = "under review" if qual["status"] == ReviewState.REVIEWING else "rejected"
        raise q.bad(f"QualificationId {s.qualification_id}: the qualification is {state}; a signature needs an "
                    "approved qualification")
    if s.third_party == bool(qual["use_by_self"]):
        use = "third-party use (ThirdParty true)" if s.third_party else "the account's own use (ThirdParty false)"
        raise q.bad(f"QualificationId {s.qualification_id}: a signature for {use} needs a qualification "
                    f"submitted with UseBySelf {str(not s.third_party).lower()}")
    if s.third_party:
        await _check_letter(conn, account_id, s, qual)
    if s.sign_source == 5:
        if s.trademark_id is None:
            raise q.bad("TrademarkId is required when SignSource is 5 (trademark): CreateSmsTrademark first")
        await q.get_document(conn, account_id, "trademark", s.trademark_id, "TrademarkId")
    if s.sign_source == 2:
        if s.app_icp_record_id is None:
            raise q.bad("AppIcpRecordId is required when SignSource is 2 (app): CreateSmsAppIcpRecord first")
        await q.get_document(conn, account_id, "app_icp", s.app_icp_record_id, "AppIcpRecordId")
        if not s.apply_scene.startswith(("http://", "https://")):
            raise CardsmsError("isv.INVALID_PARAMETERS", "ApplySceneContent: for an app signature (SignSource 2), "
                               "the app store link, starting http:// or https://")
    await q.check_files(conn, account_id, s.more_data, "MoreData")
    return {"third_party": s.third_party, "authorization_letter_id": s.authorization_letter_id,
            "trademark_id": s.trademark_id, "app_icp_record_id": s.app_icp_record_id,
            "apply_scene": s.apply_scene, "more_data": s.more_data}


def _check_input(s: SignInput) -> str:
    _check_choice("SignSource", s.sign_source, CURRENT_SIGN_SOURCES)
    _check_choice("SignType", s.sign_type, SIGN_TYPES)
    if len(s.remark) > 200:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"Remark: at most 200 characters, got {len(s.remark)}")
    return check_sign_name(s.name)


async def create_sign(svc: Services, account_id: int, s: SignInput) -> tuple[str, int]:
    """A signature on the grounds of an approved qualification (and letter, trademark or app filing as its
    source needs); returns (name, id)."""
    name = _check_input(s)
    now = svc.now()
    try:
        async with svc.hold_writer() as conn:
            details = await _check_grounds(conn, account_id, s)
            result = await conn.execute(insert(signs).values(
                account_id=account_id, name=name, name_key=name.lower(), sign_type=s.sign_type,
                sign_source=s.sign_source, remark=s.remark.strip(), files=[], status=0, reason="",
                created_at=now, updated_at=now, qualification_id=s.qualification_id, details=details))
            sign_id = inserted_id(result)
            await review.submit(conn, svc, account_id, "sign", sign_id, {"": (ReviewState.REVIEWING, "")})
    except IntegrityError:
        raise CardsmsError("isv.SMS_SIGN_NAME_EXIST", f"signature {name!r} already exists in this account") from None
    return name, sign_id


async def update_sign(svc: Services, account_id: int, s: SignInput) -> tuple[str, int]:
    """Change a signature that is not under review and submit it again (its name stays)."""
    _check_input(s)
    async with svc.hold_writer() as conn:
        current = await _get(conn, account_id, s.name)
        if current["status"] == ReviewState.REVIEWING:
            raise CardsmsError("isv.REVIEW_IN_PROGRESS", f"signature {s.name!r} is being reviewed; update it after "
                               "the review has finished")
        details = await _check_grounds(conn, account_id, s)
        await conn.execute(update(signs).where(signs.c.account_id == account_id, signs.c.id == current["id"]).values(
            sign_source=s.sign_source, sign_type=s.sign_type, remark=s.remark.strip(), status=0, reason="",
            updated_at=svc.now(), qualification_id=s.qualification_id, details=details))
        await review.submit(conn, svc, account_id, "sign", current["id"], {"": (ReviewState.REVIEWING, "")})
    return str(current["name"]), int(current["id"])


async def letter_passed(svc: Services, account_id: int, letter_id: int | None) -> bool:
    if letter_id is None:
        return False
    async with svc.read() as conn:
        status = await conn.scalar(select(sign_documents.c.status).where(
            sign_documents.c.account_id == account_id, sign_documents.c.id == letter_id))
    return status == ReviewState.APPROVED
