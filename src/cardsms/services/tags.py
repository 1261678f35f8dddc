"""Tags on templates and signatures (TagResources, UntagResources, ListTagResources): key/value labels an
account puts on its own objects to group and find them. A resource is a template (type TEMPLATE, id its
code) or a signature (SIGN, its name); each holds at most 20 tags."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import resource_tags, signs, templates
from cardsms.domain.errors import CardsmsError, invalid

RESOURCE_TYPES = ("TEMPLATE", "SIGN")
MAX_PER_CALL = 20
MAX_PER_RESOURCE = 20


def check_type(resource_type: str) -> str:
    value = (resource_type or "TEMPLATE").upper()
    if value not in RESOURCE_TYPES:
        raise invalid("ResourceType", f"must be one of {', '.join(RESOURCE_TYPES)}, got {resource_type[:20]!r}")
    return value


def check_tags(tags: list[dict[str, Any]]) -> list[tuple[str, str]]:
    if not tags:
        raise CardsmsError("MissingParameter", "Tag is mandatory for this action (at least one Key/Value).")
    if len(tags) > MAX_PER_CALL:
        raise invalid("Tag", f"at most {MAX_PER_CALL} tags per call, got {len(tags)}")
    out: dict[str, str] = {}
    for i, tag in enumerate(tags, 1):
        key, value = str(tag.get("Key") or "").strip(), str(tag.get("Value") or "")
        if not 1 <= len(key) <= 128:
            raise invalid(f"Tag.{i}.Key", "must be 1-128 characters")
        if key.lower().startswith(("aliyun", "acs:")) or "http://" in key or "https://" in key:
            raise invalid(f"Tag.{i}.Key", "must not start with aliyun or acs: nor contain http:// or https://")
        if len(value) > 128 or "http://" in value or "https://" in value:
            raise invalid(f"Tag.{i}.Value", "must be at most 128 characters without http:// or https://")
        out[key] = value
    return list(out.items())


def check_ids(ids: list[Any], required: bool = True) -> list[str]:
    if not ids and required:
        raise CardsmsError("MissingParameter", "ResourceId is mandatory for this action (template codes).")
    if len(ids) > MAX_PER_CALL:
        raise invalid("ResourceId", f"at most {MAX_PER_CALL} resources per call, got {len(ids)}")
    return [str(i).strip() for i in ids]


async def _existing(conn: AsyncConnection, account_id: int, resource_type: str, ids: list[str]) -> None:
    if resource_type == "TEMPLATE":
        found = set((await conn.execute(select(templates.c.code).where(
            templates.c.account_id == account_id, templates.c.code.in_(ids)))).scalars())
    else:
        found = set((await conn.execute(select(signs.c.name).where(
            signs.c.account_id == account_id, signs.c.name.in_(ids)))).scalars())
    for i, rid in enumerate(ids, 1):
        if rid not in found:
            what = "template" if resource_type == "TEMPLATE" else "signature"
            raise invalid(f"ResourceId.{i}", f"{what} {rid!r} does not exist in this account")


async def tag(svc: Any, account_id: int, resource_type: str, ids: list[str], tags: list[tuple[str, str]]) -> None:
    now = svc.now()
    async with svc.hold_writer() as conn:
        await _existing(conn, account_id, resource_type, ids)
        for rid in ids:
            where = (resource_tags.c.account_id == account_id, resource_tags.c.resource_type == resource_type,
                     resource_tags.c.resource_id == rid)
            current = dict((await conn.execute(select(resource_tags.c.tag_key, resource_tags.c.tag_value)
                                                .where(*where))).tuples().all())
            if len(set(current) | {k for k, _ in tags}) > MAX_PER_RESOURCE:
                raise invalid("Tag", f"{rid!r} would hold more than {MAX_PER_RESOURCE} tags")
            for key, value in tags:
                if key in current:
                    await conn.execute(update(resource_tags).where(*where, resource_tags.c.tag_key == key)
                                       .values(tag_value=value))
                else:
                    await conn.execute(insert(resource_tags).values(
                        account_id=account_id, resource_type=resource_type, resource_id=rid, tag_key=key,
                        tag_value=value, created_at=now))


async def untag(svc: Any, account_id: int, resource_type: str, ids: list[str], keys: list[str],
                everything: bool) -> int:
    if not keys and not everything:
        raise CardsmsError("MissingParameter", "TagKey is mandatory for this action unless All is true.")
    where = [resource_tags.c.account_id == account_id, resource_tags.c.resource_type == resource_type,
             resource_tags.c.resource_id.in_(ids)]
    if not everything:
        where.append(resource_tags.c.tag_key.in_(keys))
    async with svc.hold_writer() as conn:
        result = await conn.execute(delete(resource_tags).where(*where))
    return int(result.rowcount or 0)


async def list_tags(svc: Any, account_id: int, resource_type: str, ids: list[str], tags: list[tuple[str, str]],
                    offset: int, size: int) -> tuple[list[Any], bool]:
    """Tags of the given resources, or of the resources carrying all the given tags; (rows, more to come)."""
    if not ids and not tags:
        raise CardsmsError("MissingParameter", "ResourceId or Tag is mandatory for this action.")
    where = [resource_tags.c.account_id == account_id, resource_tags.c.resource_type == resource_type]
    if ids:
        where.append(resource_tags.c.resource_id.in_(ids))
    async with svc.read() as conn:
        if tags:
            matching = (select(resource_tags.c.resource_id).where(
                resource_tags.c.account_id == account_id, resource_tags.c.resource_type == resource_type,
                tuple_(resource_tags.c.tag_key, resource_tags.c.tag_value).in_(tags))
                .group_by(resource_tags.c.resource_id).having(func.count() == len(tags)))
            where.append(resource_tags.c.resource_id.in_(matching))
        rows = (await conn.execute(select(resource_tags).where(*where)
                                   .order_by(resource_tags.c.resource_id, resource_tags.c.tag_key)
                                   .offset(offset).limit(size + 1))).mappings().all()
    return list(rows[:size]), len(rows) > size


async def tags_of(svc: Any, account_id: int, resource_type: str, ids: list[str]) -> dict[str, list[tuple[str, str]]]:
    if not ids:
        return {}
    async with svc.read() as conn:
        rows = (await conn.execute(select(resource_tags.c.resource_id, resource_tags.c.tag_key,
                                          resource_tags.c.tag_value).where(
            resource_tags.c.account_id == account_id, resource_tags.c.resource_type == resource_type,
            resource_tags.c.resource_id.in_(ids)).order_by(resource_tags.c.tag_key))).tuples().all()
    out: dict[str, list[tuple[str, str]]] = {}
    for rid, key, value in rows:
        out.setdefault(rid, []).append((key, value))
    return out
