"""Per-account webhooks (Alibaba's HTTP batch push) and their durable outbox.

Reports are written to `webhook_outbox` in the transaction that records the event, so none is lost;
`delivery.webhooks.WebhookSender` POSTs them in batches and retries with exponential backoff for
`CARDSMS_WEBHOOK_RETRY_HOURS`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import insert_rows
from cardsms.db.schema import webhook_outbox, webhooks
from cardsms.domain.errors import CardsmsError
from cardsms.domain.outbound import OutboundRefused, check_literal, parse_networks
from cardsms.services import audit
from cardsms.services.core import Services, china_time

KINDS = ("SmsReport", "SmsUp", "MnsCardVender", "MnsCardTemplate", "TemplateSmsReport", "SignSmsReport",
         "LinkClick", "VolumeAlert")  # cardsms additions: each open of a link in a browser (as Twilio's
# link-clicked); the day's messages passing the account's threshold (services/alerts.py)
SIGNATURE_HEADER = "x-cardsms-signature"


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise CardsmsError("InvalidParameter", f"type: must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


async def set_webhook(svc: Services, account_id: int, kind: str, url: str) -> str:
    """Create or replace the account's webhook of this kind; returns its (new) signing secret."""
    check_kind(kind)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CardsmsError("InvalidParameter", f"url: must be an http(s) URL, got {url!r}")
    try:
        check_literal(url, parse_networks(svc.settings.outbound_allow_networks))
    except OutboundRefused as exc:
        raise CardsmsError("InvalidParameter", f"url: {exc}") from None
    secret = secrets.token_urlsafe(32)
    async with svc.hold_writer() as conn:
        await conn.execute(delete(webhooks).where(webhooks.c.account_id == account_id, webhooks.c.kind == kind))
        await conn.execute(insert(webhooks).values(account_id=account_id, kind=kind, url=url,
                                                   secret_enc=svc.crypto.encrypt(secret), created_at=svc.now()))
        await audit.record(conn, svc, account_id, "webhook.set", kind, url)
    return secret


async def remove_webhook(svc: Services, account_id: int, kind: str) -> bool:
    async with svc.hold_writer() as conn:
        result = await conn.execute(delete(webhooks).where(webhooks.c.account_id == account_id,
                                                           webhooks.c.kind == check_kind(kind)))
        if result.rowcount:
            await audit.record(conn, svc, account_id, "webhook.remove", kind)
    return bool(result.rowcount)


async def list_webhooks(svc: Services, account_id: int) -> list[dict[str, Any]]:
    async with svc.read() as conn:
        hooks = (await conn.execute(select(webhooks).where(webhooks.c.account_id == account_id)
                                    .order_by(webhooks.c.kind))).mappings().all()
        counts = (await conn.execute(
            select(webhook_outbox.c.kind, webhook_outbox.c.state, func.count())
            .where(webhook_outbox.c.account_id == account_id)
            .group_by(webhook_outbox.c.kind, webhook_outbox.c.state))).all()
        last_errors = dict((await conn.execute(
            select(webhook_outbox.c.kind, func.max(webhook_outbox.c.last_error))
            .where(webhook_outbox.c.account_id == account_id, webhook_outbox.c.last_error != "")
            .group_by(webhook_outbox.c.kind))).all())
    by_kind: dict[str, dict[str, int]] = {}
    for kind, state, n in counts:
        by_kind.setdefault(kind, {})[state] = int(n)
    return [{"type": h["kind"], "url": h["url"], "created": china_time(h["created_at"]),
             "pending": by_kind.get(h["kind"], {}).get("pending", 0),
             "delivered": by_kind.get(h["kind"], {}).get("delivered", 0),
             "failed": by_kind.get(h["kind"], {}).get("failed", 0),
             "last_error": last_errors.get(h["kind"], "")} for h in hooks]


async def subscribed(conn: AsyncConnection, kind: str, accounts: Iterable[int]) -> set[int]:
    """Which of the accounts have a webhook of this kind (build their reports only)."""
    wanted = set(accounts)
    if not wanted:
        return set()
    return {r[0] for r in await conn.execute(select(webhooks.c.account_id).where(
        webhooks.c.kind == kind, webhooks.c.account_id.in_(wanted)))}


async def enqueue(conn: AsyncConnection, svc: Services, reports: Iterable[tuple[int, str, dict[str, Any]]]) -> int:
    """Queue (account_id, kind, payload) reports for accounts that have a webhook of that kind."""
    items = list(reports)
    if not items:
        return 0
    accounts = {a for a, _, _ in items}
    configured = {(a, k) for a, k in (await conn.execute(
        select(webhooks.c.account_id, webhooks.c.kind).where(webhooks.c.account_id.in_(accounts)))).all()}
    now = svc.now()
    rows = [{"account_id": a, "kind": k, "payload": p, "state": "pending", "attempts": 0, "last_error": "",
             "created_at": now, "due_at": now} for a, k, p in items if (a, k) in configured]
    await insert_rows(conn, webhook_outbox, rows)
    return len(rows)
