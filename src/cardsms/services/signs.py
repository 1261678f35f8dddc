"""Signatures (the 【name】 prefix): add, query, list, modify, delete; reviewed like templates."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import reviews, signs
from cardsms.domain.errors import CardsmsError
from cardsms.domain.text import SIGN_SOURCES, SIGN_TYPES, check_remark, check_sign_name
from cardsms.services import review
from cardsms.services.core import Services
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
        async with svc.write() as conn:
            result = await conn.execute(
                insert(signs).values(
                    account_id=account_id, name=name, name_key=name.lower(), sign_type=sign_type,
                    sign_source=sign_source, remark=remark, files=stored, status=0, reason="",
                    created_at=now, updated_at=now,
                )
            )
            sign_id = int(result.inserted_primary_key[0])  # type: ignore[index]
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
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(signs).where(signs.c.account_id == account_id))
        rows = (
            await conn.execute(
                select(signs).where(signs.c.account_id == account_id).order_by(signs.c.id.desc())
                .offset((page - 1) * size).limit(size)
            )
        ).mappings().all()
    return int(total or 0), list(rows)


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
    async with svc.write() as conn:
        await conn.execute(
            update(signs).where(signs.c.account_id == account_id, signs.c.id == current["id"]).values(
                sign_source=sign_source, sign_type=sign_type, remark=remark, files=stored, status=0, reason="",
                updated_at=svc.now(),
            )
        )
        await review.submit(conn, svc, account_id, "sign", current["id"], {"": (ReviewState.REVIEWING, "")})
    return str(current["name"])


async def delete_sign(svc: Services, account_id: int, name: str) -> str:
    async with svc.write() as conn:
        current = await _get(conn, account_id, name)
        await conn.execute(delete(signs).where(signs.c.account_id == account_id, signs.c.id == current["id"]))
        await conn.execute(
            delete(reviews).where(
                reviews.c.account_id == account_id, reviews.c.subject_kind == "sign",
                reviews.c.subject_id == current["id"],
            )
        )
    for f in current["files"]:
        svc.media_store.delete(f["key"])
    return str(current["name"])
