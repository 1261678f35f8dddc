"""First start of the embedded default: a demo account, an admin user and a demo AccessKey."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cardsms.services import accounts
from cardsms.services.core import Services

DEMO_ACCOUNT = "demo"
ADMIN_USER = "admin"


@dataclass(frozen=True, slots=True)
class Welcome:
    admin_user: str
    admin_password: str | None  # only at the first start; later starts name `password_file`
    key_id: str | None
    key_secret: str | None  # only at the first start; later starts name `key_file`
    password_file: Path
    key_file: Path


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


async def ensure_demo(svc: Services) -> Welcome:
    """Create the demo account on an empty database; return what to print. The admin password and the demo
    AccessKey secret are printed at the first start only (a start's output ends up in logs and terminals);
    they stay in two files readable by the owner only, which later starts name."""
    data = svc.settings.data_dir
    password_file, key_file = data / "initial-admin-password", data / "initial-demo-accesskey.json"
    first = not await accounts.list_accounts(svc)
    password = key_secret = None
    if first:
        await accounts.create_account(svc, DEMO_ACCOUNT)
        password = secrets.token_urlsafe(12)
        await accounts.create_user(svc, DEMO_ACCOUNT, ADMIN_USER, password, "admin")
        key_id, key_secret = await accounts.create_access_key(svc, DEMO_ACCOUNT, "demo key created at first start")
        data.mkdir(parents=True, exist_ok=True)
        _private_file(password_file, password + "\n")
        _private_file(key_file, json.dumps({"AccessKeyId": key_id, "AccessKeySecret": key_secret}) + "\n")
    try:
        keys = [k for k in await accounts.list_access_keys(svc, DEMO_ACCOUNT) if k.enabled]
    except accounts.AccountError:
        keys = []
    key = keys[0] if keys else None
    return Welcome(ADMIN_USER, password, key.key_id if key else None, key_secret if key else None,
                   password_file, key_file)
