"""Console sessions: a signed cookie (HMAC-SHA256), a CSRF token per session, roles, and a login
rate limit. Passwords are scrypt hashes (cardsms.crypto)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from cardsms.crypto import dummy_hash, hash_password, needs_rehash, verify_password
from cardsms.domain.recent import RecentEvents
from cardsms.services.accounts import find_logins, rehash_password
from cardsms.services.core import Services

SESSION_COOKIE = "cardsms_session"
LOGIN_CSRF_COOKIE = "cardsms_login_csrf"
SESSION_SECONDS = 12 * 3600
ROLE_RANK = {"viewer": 0, "operator": 1, "admin": 2}


@dataclass(frozen=True)
class Session:
    user_id: int
    account_id: int
    account: str
    username: str
    role: str
    csrf: str
    expires: int
    version: int = 0  # the user's session_version when signed in: raised by a password change, reset or disable

    def may(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, -1) >= ROLE_RANK[role]


class SessionCodec:
    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(("cardsms-console-session:" + secret_key).encode()).digest()

    def _mac(self, payload: bytes) -> str:
        return base64.urlsafe_b64encode(hmac.new(self._key, payload, hashlib.sha256).digest()).decode().rstrip("=")

    def encode(self, session: Session) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(asdict(session), separators=(",", ":")).encode())
        return payload.decode().rstrip("=") + "." + self._mac(payload.rstrip(b"="))

    def decode(self, cookie: str | None) -> Session | None:
        if not cookie or "." not in cookie:
            return None
        payload, mac = cookie.rsplit(".", 1)
        if not hmac.compare_digest(self._mac(payload.encode()), mac):
            return None
        try:
            data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(**data)
        except (ValueError, TypeError):
            return None
        return session if session.expires > time.time() else None


class LoginLimiter:
    """At most `limit` failed logins in `window` seconds per key: the client address (`keys`). An address
    guessing at one name or at many is stopped; a name failed from elsewhere does not lock its owner out.
    At most `max_keys` keys are tracked (domain/recent.py)."""

    def __init__(self, limit: int = 5, window: float = 300.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._failures = RecentEvents(window, max_keys)

    @staticmethod
    def keys(username: str, address: str) -> tuple[str]:
        """What a login attempt counts against. The address alone: a (name, address) count would never pass
        the address's own, which every failure from that address adds to."""
        return (f"ip:{address}",)

    def blocked(self, *keys: str) -> bool:
        return any(self._failures.count(k) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        for k in keys:
            self._failures.add(k)

    def succeeded(self, *keys: str) -> None:
        for k in keys:
            self._failures.forget(k)

    def __len__(self) -> int:
        return len(self._failures)


async def authenticate(svc: Services, username: str, password: str, account: str) -> Session | str:
    """A new session, or the message to show (never which of name and password was wrong)."""
    rows = await find_logins(svc, username, account)
    if len(rows) > 1:
        return "Several accounts have this user name: enter the account too."
    # scrypt in a thread (it takes ~0.3 s), and against a dummy hash when nobody matched: same time either way
    stored = rows[0]["password_hash"] if rows else dummy_hash()
    good = await asyncio.to_thread(verify_password, password, stored)
    if not rows or rows[0]["disabled"] or not good:
        return "Wrong user name or password."
    row = rows[0]
    if needs_rehash(stored):
        await rehash_password(svc, int(row["id"]), stored, await asyncio.to_thread(hash_password, password))
    return Session(int(row["id"]), int(row["account_id"]), row["account_name"], row["username"], row["role"],
                   secrets.token_urlsafe(24), int(time.time()) + SESSION_SECONDS, int(row["session_version"]))
