"""Link domains per account: the hosts an account's card links and short links are on.

A platform serving several brands gives each account its own link domain(s), registered beforehand
(console Settings, `cardsms domain`, audited); a domain belongs to one account. An account's links use its
default domain (its first, or the one made default); without any, the server's CARDSMS_LINK_BASE_URL.
GetCardSmsLink's and AddShortUrl's `Domain` must be one of the account's domains (the server's link host
when it has none). The resolver answers `/s/<code>` on every host, but on a registered domain only the
codes of the account that registered it: another account's code is not found there.

The scheme and the path of every link come from CARDSMS_LINK_BASE_URL (e.g. `https://` and `/s`): a
domain is a host name, optionally with a port, and must be served by this server (DNS and TLS are the
operator's).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, insert, select, update

from cardsms.db.schema import link_domains
from cardsms.domain.errors import CardsmsError
from cardsms.services import audit
from cardsms.services.core import Services

MAX_DOMAINS = 20  # per account
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?")
TABLES = {"link_domains"}


def normalise(raw: str, field_name: str = "Domain") -> str:
    """A host name (letters, digits, hyphens, dots; at most 253 characters) with an optional port."""
    value = raw.strip().lower().rstrip(".") if isinstance(raw, str) else ""
    host = value.rsplit(":", 1)[0] if ":" in value else value
    if not value or len(host) > 253 or not _DOMAIN.fullmatch(value):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} {str(raw)[:80]!r} must be a host name such as "
                           "links.example.com (letters, digits, hyphens and dots, optionally :PORT), without "
                           "scheme or path")
    if ":" in value and not 1 <= int(value.rsplit(":", 1)[1]) <= 65535:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} {raw[:80]!r}: the port must be 1-65535")
    return value


def base_on(svc: Services, domain: str) -> str:
    """The link base on a domain: the scheme and path of CARDSMS_LINK_BASE_URL, the domain as host."""
    parts = urlsplit(svc.settings.link_base)
    return f"{parts.scheme}://{domain}{parts.path}".rstrip("/")


async def list_domains(svc: Services, account_id: int) -> list[dict[str, Any]]:
    async with svc.read() as conn:
        return [dict(r) for r in (await conn.execute(
            select(link_domains.c.domain, link_domains.c.is_default, link_domains.c.created_at).where(
                link_domains.c.account_id == account_id).order_by(link_domains.c.id))).mappings()]


async def _own(svc: Services, account_id: int) -> tuple[str, ...]:
    """The account's domains, its default first (cached for a second; this process's changes clear it)."""

    async def load() -> tuple[str, ...]:
        rows = await list_domains(svc, account_id)
        return tuple(r["domain"] for r in sorted(rows, key=lambda r: not r["is_default"]))

    return await svc.caches.memo("link-domains", TABLES, account_id, load)


async def link_base(svc: Services, account_id: int) -> str:
    """Where the account's new links go: its default domain, else the server's link base."""
    own = await _own(svc, account_id)
    return base_on(svc, own[0]) if own else svc.settings.link_base


async def base_for(svc: Services, account_id: int, domain: str, field_name: str = "Domain") -> str:
    """The link base for a call's `Domain` (empty: the account's default): it must be one of the account's
    registered domains, or the server's link host when the account has none."""
    if not domain.strip():
        return await link_base(svc, account_id)
    wanted = normalise(domain, field_name)
    own = await _own(svc, account_id)
    if own:
        if wanted not in own:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} {wanted!r} is not a link domain registered "
                               f"for this account; registered: {', '.join(own)}")
        return base_on(svc, wanted)
    server = urlsplit(svc.settings.link_base)
    if wanted not in (server.netloc.lower(), (server.hostname or "").lower()):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} {wanted!r} is not registered; this account has "
                           f"no link domain of its own, and the server's is {server.netloc}")
    return svc.settings.link_base


async def owner_of_host(svc: Services, host: str) -> int | None:
    """The account that registered this host (as a request's Host header names it), if any."""

    async def load() -> dict[str, int]:
        async with svc.read() as conn:
            return {r.domain: r.account_id for r in await conn.execute(
                select(link_domains.c.domain, link_domains.c.account_id))}

    owners = await svc.caches.memo("link-domain-owners", TABLES, "all", load)
    host = host.strip().lower().rstrip(".")
    return owners.get(host, owners.get(host.rsplit(":", 1)[0]) if ":" in host else None)


async def add_domain(svc: Services, account_id: int, domain: str, make_default: bool = False) -> str:
    value = normalise(domain)
    async with svc.hold_writer() as conn:
        taken = await conn.scalar(select(link_domains.c.account_id).where(link_domains.c.domain == value))
        if taken is not None:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"Domain {value!r} is already registered" +
                               (" for this account" if taken == account_id else " (by another account)"))
        own = (await conn.execute(select(link_domains.c.id).where(link_domains.c.account_id == account_id))).all()
        if len(own) >= MAX_DOMAINS:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"an account may register at most {MAX_DOMAINS} link domains")
        first = not own
        if make_default and not first:
            await conn.execute(update(link_domains).where(link_domains.c.account_id == account_id).values(
                is_default=False))
        await conn.execute(insert(link_domains).values(account_id=account_id, domain=value,
                                                       is_default=first or make_default, created_at=svc.now()))
        await audit.record(conn, svc, account_id, "domain.add", value, "default" if first or make_default else "")
    return value


async def remove_domain(svc: Services, account_id: int, domain: str) -> None:
    value = normalise(domain)
    async with svc.hold_writer() as conn:
        row = (await conn.execute(select(link_domains.c.id, link_domains.c.is_default).where(
            link_domains.c.account_id == account_id, link_domains.c.domain == value))).first()
        if row is None:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"Domain {value!r} is not registered for this account")
        await conn.execute(delete(link_domains).where(link_domains.c.id == row.id))
        if row.is_default:  # the oldest left takes over
            nxt = await conn.scalar(select(link_domains.c.id).where(link_domains.c.account_id == account_id)
                                    .order_by(link_domains.c.id).limit(1))
            if nxt is not None:
                await conn.execute(update(link_domains).where(link_domains.c.id == nxt).values(is_default=True))
        await audit.record(conn, svc, account_id, "domain.remove", value)


async def set_default(svc: Services, account_id: int, domain: str) -> None:
    value = normalise(domain)
    async with svc.hold_writer() as conn:
        found = await conn.scalar(select(link_domains.c.id).where(link_domains.c.account_id == account_id,
                                                                  link_domains.c.domain == value))
        if found is None:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"Domain {value!r} is not registered for this account")
        await conn.execute(update(link_domains).where(link_domains.c.account_id == account_id).values(
            is_default=link_domains.c.id == found))
        await audit.record(conn, svc, account_id, "domain.default", value)
