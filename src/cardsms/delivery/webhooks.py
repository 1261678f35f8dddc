"""The webhook sender: POSTs pending outbox reports in batches (JSON array, one account and
type per request) with the `x-cardsms-signature` HMAC-SHA256 header; a report counts as
delivered when the receiver answers HTTP 200 with a JSON body whose `code` is 0. Otherwise it
is retried with exponential backoff (base `CARDSMS_WEBHOOK_RETRY_BASE_SECONDS`, at most one
hour apart) until `CARDSMS_WEBHOOK_RETRY_HOURS` after it was queued, then marked failed.

Each account's deliveries run on their own (one task per account with reports on their way), and every
POST has one deadline for the whole request, so a slow or dripping receiver holds only its own account."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog
from sqlalchemy import bindparam, select, update

from cardsms.db.schema import webhook_outbox, webhooks
from cardsms.domain.outbound import MAX_ANSWER_BYTES, Network, OutboundRefused, parse_networks, refusal
from cardsms.logs import pass_failed
from cardsms.services.core import Services, as_utc
from cardsms.services.idle import IdleWait
from cardsms.services.webhooks import SIGNATURE_HEADER, sign

log = structlog.get_logger("cardsms.webhooks")
BATCH = 100


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # with the checked address in place of the host name
    host: str  # for the Host header and the TLS server name


async def resolve(url: str, allowed: Sequence[Network]) -> Target:
    """The URL pinned to an address the rules allow (domain/outbound.py); every address of the name must be."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise OutboundRefused(f"{url[:100]!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise OutboundRefused(f"{host} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    for address in addresses:
        if reason := refusal(address, allowed):
            raise OutboundRefused(f"{host} resolves to {reason}")
    chosen = addresses[0]
    literal = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    return Target(urlunsplit((parts.scheme, f"{literal}:{port}", parts.path or "/", parts.query, "")),
                  parts.netloc.rsplit("@", 1)[-1])


class WebhookSender:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        # no redirects (a 3xx is a failed delivery): a redirect could lead past the address rules
        self.client = httpx.AsyncClient(timeout=svc.settings.webhook_timeout_seconds, follow_redirects=False)
        self.allowed = parse_networks(svc.settings.outbound_allow_networks)
        self.delivered = 0
        self.failed_attempts = 0
        self._busy: set[int] = set()  # accounts with deliveries on their way
        self._inflight: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        await asyncio.gather(*self._inflight, return_exceptions=True)
        await self.client.aclose()

    async def pass_once(self) -> int:
        """Start delivering the due reports of every account that has none on its way: each account's POSTs
        run in a task of their own, so one slow receiver holds only its own account's reports. Returns the
        reports started (not yet delivered)."""
        now = self.svc.now()
        where = [webhook_outbox.c.state == "pending", webhook_outbox.c.due_at <= now]
        if self._busy:
            where.append(webhook_outbox.c.account_id.notin_(self._busy))
        async with self.svc.read() as conn:
            rows = (await conn.execute(select(webhook_outbox).where(*where).order_by(webhook_outbox.c.id)
                                       .limit(1000))).mappings().all()
            if not rows:
                return 0
            hooks = {(h["account_id"], h["kind"]): h for h in (await conn.execute(select(webhooks).where(
                webhooks.c.account_id.in_({r["account_id"] for r in rows})))).mappings()}
        accounts: dict[int, list[Any]] = {}
        for r in rows:
            accounts.setdefault(r["account_id"], []).append(r)
        for account_id, items in accounts.items():
            self._busy.add(account_id)
            task = asyncio.create_task(self._deliver(account_id, items, hooks, now), name=f"webhooks-{account_id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        return len(rows)

    async def _deliver(self, account_id: int, rows: list[Any], hooks: dict[tuple[int, str], Any],
                       now: datetime) -> None:
        try:
            await self._deliver_account(rows, hooks, now)
        except Exception:
            pass_failed(log, "webhook.account_failed", account=account_id)
        finally:
            self._busy.discard(account_id)

    async def _deliver_account(self, rows: list[Any], hooks: dict[tuple[int, str], Any], now: datetime) -> None:
        groups: dict[tuple[int, str], list[Any]] = {}
        for r in rows:
            groups.setdefault((r["account_id"], r["kind"]), []).append(r)
        batches = [(key, items[i:i + BATCH]) for key, items in groups.items() for i in range(0, len(items), BATCH)]
        results = await asyncio.gather(*(self._post_within_deadline(hooks.get(key), items) for key, items in batches))
        done, retry, failed = [], [], []
        for (_, items), error in zip(batches, results, strict=True):
            for r in items:
                if error is None:
                    done.append({"oid": r["id"]})
                    continue
                attempts = r["attempts"] + 1
                age = now - as_utc(r["created_at"])
                if age >= timedelta(hours=self.svc.settings.webhook_retry_hours):
                    failed.append({"oid": r["id"], "att": attempts, "err": error})
                else:
                    delay = min(self.svc.settings.webhook_retry_base_seconds * 2 ** (attempts - 1), 3600.0)
                    retry.append({"oid": r["id"], "att": attempts, "err": error,
                                  "due": now + timedelta(seconds=delay)})
        async with self.svc.hold_writer() as conn:
            if done:
                await conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == bindparam("oid"))
                                   .values(state="delivered", delivered_at=now,
                                           attempts=webhook_outbox.c.attempts + 1), done)
            if retry:
                await conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == bindparam("oid"))
                                   .values(attempts=bindparam("att"), last_error=bindparam("err"),
                                           due_at=bindparam("due")), retry)
            if failed:
                await conn.execute(update(webhook_outbox).where(webhook_outbox.c.id == bindparam("oid"))
                                   .values(state="failed", attempts=bindparam("att"), last_error=bindparam("err")),
                                   failed)
        self.delivered += len(done)
        self.failed_attempts += len(retry) + len(failed)
        if failed:
            log.warning("webhook.gave_up", reports=len(failed))

    async def _post_within_deadline(self, hook: Any, items: list[Any]) -> str | None:
        """`_post` under one deadline for the whole request: httpx's timeout is per read, so a receiver dripping
        a byte a second would otherwise hold this pass, and every other account's reports behind it, for hours."""
        deadline = self.svc.settings.webhook_timeout_seconds
        try:
            async with asyncio.timeout(deadline):
                return await self._post(hook, items)
        except TimeoutError:
            return f"no whole answer within {deadline:g} s (CARDSMS_WEBHOOK_TIMEOUT_SECONDS)"

    async def _post(self, hook: Any, items: list[Any]) -> str | None:
        """None on success, else the reason."""
        if hook is None:
            return "the webhook was removed"
        body = json.dumps([r["payload"] for r in items], ensure_ascii=False, separators=(",", ":")).encode()
        secret = self.svc.crypto.decrypt(hook["secret_enc"])
        try:
            target = await resolve(hook["url"], self.allowed)
        except OutboundRefused as exc:
            return f"refused: {exc}"[:500]
        request = self.client.build_request("POST", target.url, content=body, headers={
            "host": target.host, "content-type": "application/json; charset=utf-8",
            SIGNATURE_HEADER: sign(secret, body), "x-cardsms-report-type": hook["kind"],
        }, extensions={"sni_hostname": urlsplit(hook["url"]).hostname or ""})
        try:
            resp = await self.client.send(request, stream=True)
            try:
                if resp.status_code != 200:
                    return f"HTTP {resp.status_code}"
                raw = bytearray()
                async for chunk in resp.aiter_bytes():
                    raw += chunk
                    if len(raw) > MAX_ANSWER_BYTES:
                        return f"the answer is longer than {MAX_ANSWER_BYTES} bytes"
            finally:
                await resp.aclose()
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:500]
        try:
            answer = json.loads(raw)
        except ValueError:
            return "the answer is not JSON with a numeric code"
        code = answer.get("code") if isinstance(answer, dict) else None
        if isinstance(code, bool) or not isinstance(code, int):
            return "the answer has no numeric code"
        return None if code == 0 else f"the receiver answered code {code}"

    async def run(self) -> None:
        idle = IdleWait(0.2, self.svc.settings.idle_poll_seconds)
        while True:
            try:
                n = await self.pass_once()
            except Exception:
                pass_failed(log, "webhook.pass_failed")
                n = 0
            if rest := idle.after(n > 0):
                await asyncio.sleep(rest)
