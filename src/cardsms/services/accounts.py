"""Accounts, console users and API access keys."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.crypto import hash_password, new_access_key, verify_password
from cardsms.db.bulk import inserted_id
from cardsms.db.schema import access_keys, accounts, users
from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import SendWindow
from cardsms.services import audit
from cardsms.services.core import Services, as_utc

ROLES = ("admin", "operator", "viewer")


class AccountError(ValueError):
    """A bad account/user/key request; the message says what to do."""


@dataclass(frozen=True, slots=True)
class AccessKey:
    key_id: str
    account_id: int
    account_name: str
    secret: str
    enabled: bool
    qps_limit: int | None
    created_at: datetime


async def create_account(svc: Services, name: str, qps_limit: int | None = None) -> int:
    name = name.strip()
    if not 1 <= len(name) <= 64 or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise AccountError(f"account name {name!r} must be 1-64 letters, digits, '-', '_' or '.'")
    if qps_limit is not None and qps_limit < 1:
        raise AccountError("qps limit must be at least 1")
    try:
        async with svc.hold_writer() as conn:
            result = await conn.execute(
                insert(accounts).values(name=name, qps_limit=qps_limit, created_at=svc.now())
            )
            return inserted_id(result)
    except IntegrityError:
        raise AccountError(f"account {name!r} already exists") from None


async def account_id(svc: Services, name: str) -> int:
    async with svc.read() as conn:
        found = await conn.scalar(select(accounts.c.id).where(accounts.c.name == name))
    if found is None:
        raise AccountError(f"account {name!r} does not exist (create it with `cardsms account create {name}`)")
    return int(found)


async def list_accounts(svc: Services) -> list[dict[str, object]]:
    async with svc.read() as conn:
        rows = (await conn.execute(select(accounts).order_by(accounts.c.id))).mappings().all()
    return [dict(r) for r in rows]


async def set_qps_limit(svc: Services, name: str, qps_limit: int | None) -> None:
    acc = await account_id(svc, name)
    if qps_limit is not None and qps_limit < 1:
        raise AccountError("qps limit must be at least 1")
    async with svc.hold_writer() as conn:
        await conn.execute(update(accounts).where(accounts.c.id == acc).values(qps_limit=qps_limit))


async def set_send_window(svc: Services, name: str, window: str | None, hold_api_sends: bool | None = None) -> None:
    """The account's own send window ("HH:MM-HH:MM"; None: the server's), and whether its API sends wait for it."""
    acc = await account_id(svc, name)
    values: dict[str, Any] = {}
    if window is not None:
        try:
            values["send_window"] = str(SendWindow.parse(window)) if window != "default" else None
        except ValueError as exc:
            raise CardsmsError("InvalidField", f"window: {exc}", field="window") from None
    if hold_api_sends is not None:
        values["hold_api_sends"] = hold_api_sends
    if values:
        async with svc.hold_writer() as conn:
            await conn.execute(update(accounts).where(accounts.c.id == acc).values(**values))
            await audit.record(conn, svc, acc, "account.send_window", name, json.dumps(values))


async def window_settings(svc: Services, account_id: int) -> tuple[str, bool]:
    """The account's own send window ("" when it keeps the server's) and whether its API sends wait for it."""
    async with svc.read() as conn:
        row = (await conn.execute(select(accounts.c.send_window, accounts.c.hold_api_sends).where(
            accounts.c.id == account_id))).first()
    return (row.send_window or "", bool(row.hold_api_sends)) if row is not None else ("", False)


async def send_window(svc: Services, account_id: int) -> SendWindow:
    """The window an account's mass tasks (and, if it opted in, its API sends) keep to."""
    async with svc.point_read() as conn:
        own = await conn.scalar(select(accounts.c.send_window).where(accounts.c.id == account_id))
    return SendWindow.parse(own or svc.settings.send_window)


async def create_user(svc: Services, account: str, username: str, password: str, role: str) -> None:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if not 1 <= len(username) <= 64:
        raise AccountError("username must be 1-64 characters")
    if len(password) < 8:
        raise AccountError("password must be at least 8 characters")
    acc = await account_id(svc, account)
    password_hash = await asyncio.to_thread(hash_password, password)  # ~0.3 s: off the loop, outside the write
    try:
        async with svc.hold_writer() as conn:
            await conn.execute(
                insert(users).values(
                    account_id=acc, username=username, password_hash=password_hash, role=role,
                    disabled=False, created_at=svc.now(),
                )
            )
            await audit.record(conn, svc, acc, "user.create", username, f"role {role}")
    except IntegrityError:
        raise AccountError(f"user {username!r} already exists in account {account!r}") from None


async def create_access_key(svc: Services, account: str, description: str = "") -> tuple[str, str]:
    acc = await account_id(svc, account)
    key_id, secret = new_access_key()
    async with svc.hold_writer() as conn:
        await conn.execute(
            insert(access_keys).values(
                account_id=acc, key_id=key_id, secret_enc=svc.crypto.encrypt(secret), enabled=True,
                description=description[:200], created_at=svc.now(),
            )
        )
        await audit.record(conn, svc, acc, "accesskey.create", key_id, description)
    return key_id, secret


async def list_access_keys(svc: Services, account: str) -> list[AccessKey]:
    acc = await account_id(svc, account)
    async with svc.read() as conn:
        rows = (
            await conn.execute(
                select(access_keys, accounts.c.name, accounts.c.qps_limit)
                .join(accounts, accounts.c.id == access_keys.c.account_id)
                .where(access_keys.c.account_id == acc)
                .order_by(access_keys.c.id)
            )
        ).mappings().all()
    return [_key(r, svc) for r in rows]


def _key(row: object, svc: Services) -> AccessKey:
    r = row  # a RowMapping
    return AccessKey(
        key_id=r["key_id"], account_id=int(r["account_id"]), account_name=r["name"],  # type: ignore[index]
        secret=svc.crypto.decrypt(r["secret_enc"]), enabled=bool(r["enabled"]),  # type: ignore[index]
        qps_limit=r["qps_limit"], created_at=as_utc(r["created_at"]),  # type: ignore[index]
    )


_KEY_BY_ID = (select(access_keys, accounts.c.name, accounts.c.qps_limit)
              .join(accounts, accounts.c.id == access_keys.c.account_id)
              .where(access_keys.c.key_id == bindparam("key_id")))


async def find_access_key(svc: Services, key_id: str) -> AccessKey | None:
    """Read on every API call, never cached: a key disabled from another process stops at once."""
    rows = await svc.point_query(_KEY_BY_ID, key_id=key_id)
    return _key(rows[0], svc) if rows else None


async def set_access_key_enabled(svc: Services, key_id: str, enabled: bool, account_id: int | None = None) -> None:
    """Enable or disable a key; with `account_id` (the console) only a key of that account."""
    where = [access_keys.c.key_id == key_id]
    if account_id is not None:
        where.append(access_keys.c.account_id == account_id)
    async with svc.hold_writer() as conn:
        owner = await conn.scalar(select(access_keys.c.account_id).where(*where))
        result = await conn.execute(update(access_keys).where(*where).values(enabled=enabled))
        if owner is not None:
            await audit.record(conn, svc, owner, "accesskey.enable" if enabled else "accesskey.disable", key_id)
    if result.rowcount == 0:
        raise AccountError(f"access key {key_id!r} does not exist")


async def delete_access_key(svc: Services, key_id: str) -> None:
    async with svc.hold_writer() as conn:
        owner = await conn.scalar(select(access_keys.c.account_id).where(access_keys.c.key_id == key_id))
        result = await conn.execute(delete(access_keys).where(access_keys.c.key_id == key_id))
        if owner is not None:
            await audit.record(conn, svc, owner, "accesskey.delete", key_id)
    if result.rowcount == 0:
        raise AccountError(f"access key {key_id!r} does not exist")


async def count_users(svc: Services, account: str) -> int:
    acc = await account_id(svc, account)
    async with svc.read() as conn:
        return int(await conn.scalar(select(func.count()).where(users.c.account_id == acc)) or 0)


async def find_logins(svc: Services, username: str, account: str = "") -> list[dict[str, Any]]:
    """The console users called `username` (in `account` when given), with their account's name."""
    query = select(users, accounts.c.name.label("account_name")).join(accounts, accounts.c.id == users.c.account_id
                                                                       ).where(users.c.username == username)
    if account:
        query = query.where(accounts.c.name == account)
    async with svc.read() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


# --- console users: the users page and the password page (issue G) --------------------------------

async def list_users(svc: Services, account_id: int) -> list[Any]:
    async with svc.read() as conn:
        return list((await conn.execute(select(users).where(users.c.account_id == account_id)
                                        .order_by(users.c.username))).mappings().all())


async def session_state(svc: Services, user_id: int) -> Any:
    """What a console request checks of its user: still there, not disabled, the same session version."""
    async with svc.point_read() as conn:
        return (await conn.execute(select(users.c.disabled, users.c.session_version, users.c.role)
                                   .where(users.c.id == user_id))).mappings().first()


async def _user(conn: AsyncConnection, account_id: int, user_id: int) -> Any:
    row = (await conn.execute(select(users).where(users.c.account_id == account_id, users.c.id == user_id))
           ).mappings().first()
    if row is None:
        raise AccountError(f"user #{user_id} does not exist in this account")
    return row


async def _admins_left(conn: AsyncConnection, account_id: int, without: int) -> int:
    return int(await conn.scalar(select(func.count()).select_from(users).where(
        users.c.account_id == account_id, users.c.role == "admin", users.c.disabled.is_(False),
        users.c.id != without)) or 0)


async def manage_user(svc: Services, account_id: int, user_id: int, action: str, role: str = "") -> str | None:
    """disable | enable | reset (returns the new password, shown once) | role. Disabling and resetting end the
    user's sessions; an account always keeps an enabled admin."""
    new_password = None
    reset = ("", "")
    if action == "reset":  # hashed before the write: scrypt takes ~0.3 s
        password = secrets.token_urlsafe(12)
        reset = (password, await asyncio.to_thread(hash_password, password))
    async with svc.hold_writer() as conn:
        row = await _user(conn, account_id, user_id)
        values: dict[str, Any] = {}
        if action in ("disable", "role") and row["role"] == "admin" and (action == "disable" or role != "admin") \
                and await _admins_left(conn, account_id, user_id) == 0:
            raise AccountError("the account would be left without an enabled admin")
        if action == "disable":
            values = {"disabled": True, "session_version": row["session_version"] + 1}
        elif action == "enable":
            values = {"disabled": False}
        elif action == "reset":
            new_password, new_hash = reset
            values = {"password_hash": new_hash, "session_version": row["session_version"] + 1}
        elif action == "role":
            if role not in ROLES:
                raise AccountError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
            values = {"role": role}
        else:
            raise AccountError(f"unknown action {action!r}")
        await conn.execute(update(users).where(users.c.id == user_id).values(**values))
        await audit.record(conn, svc, account_id, f"user.{action}", str(row["username"]), role)
    return new_password


async def rehash_password(svc: Services, user_id: int, old_hash: str, new_hash: str) -> None:
    """Replace a hash made with weaker parameters (at a successful login), unless it changed meanwhile."""
    async with svc.hold_writer() as conn:
        await conn.execute(update(users).where(users.c.id == user_id, users.c.password_hash == old_hash)
                           .values(password_hash=new_hash))


async def end_sessions(svc: Services, user_id: int) -> None:
    """Revoke every signed session of the user (logout: a copied cookie stops working too)."""
    async with svc.hold_writer() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(
            session_version=users.c.session_version + 1))


async def change_password(svc: Services, user_id: int, current: str, new: str) -> None:
    """A user's own password; every session of the user ends (sign-out everywhere), this one included."""
    if len(new) < 8:
        raise AccountError("new password: at least 8 characters")
    async with svc.read() as conn:
        row = (await conn.execute(select(users).where(users.c.id == user_id))).mappings().first()
    # scrypt off the loop and outside the write: it takes ~0.3 s
    if row is None or not await asyncio.to_thread(verify_password, current, row["password_hash"]):
        raise AccountError("current password: wrong password")
    if current == new:
        raise AccountError("new password: must differ from the current one")
    new_hash = await asyncio.to_thread(hash_password, new)
    async with svc.hold_writer() as conn:
        await conn.execute(update(users).where(users.c.id == user_id).values(
            password_hash=new_hash, session_version=row["session_version"] + 1))
        await audit.record(conn, svc, int(row["account_id"]), "user.password", str(row["username"]))
