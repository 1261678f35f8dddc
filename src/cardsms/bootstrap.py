"""First start of the embedded default: a demo account, an admin user and a demo AccessKey."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from cardsms.services import accounts
from cardsms.services.core import Services

DEMO_ACCOUNT = "demo"
ADMIN_USER = "admin"


@dataclass(frozen=True, slots=True)
class Welcome:
    admin_user: str
    admin_password: str | None  # None when the first-start password file was removed
    key_id: str | None
    key_secret: str | None


async def ensure_demo(svc: Services) -> Welcome:
    """Create the demo account on an empty database; return what to print either way."""
    password_file = svc.settings.data_dir / "initial-admin-password"
    if not await accounts.list_accounts(svc):
        await accounts.create_account(svc, DEMO_ACCOUNT)
        first_password = secrets.token_urlsafe(12)
        await accounts.create_user(svc, DEMO_ACCOUNT, ADMIN_USER, first_password, "admin")
        await accounts.create_access_key(svc, DEMO_ACCOUNT, "demo key created at first start")
        svc.settings.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(first_password + "\n")
    password = password_file.read_text().strip() if password_file.exists() else None
    try:
        keys = [k for k in await accounts.list_access_keys(svc, DEMO_ACCOUNT) if k.enabled]
    except accounts.AccountError:
        keys = []
    key = keys[0] if keys else None
    return Welcome(ADMIN_USER, password, key.key_id if key else None, key.secret if key else None)
