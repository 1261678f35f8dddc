"""Short links: card links (group, personal, custom code), plain short URLs, and what happens
when one is opened (counted per link and per message; a vendor parser's fetch is the render receipt)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.bulk import insert_rows
from cardsms.db.schema import link_domains, link_opens, messages, reviews, short_links, templates
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.domain.vendors import approved_vendors, shows_card
from cardsms.services import domains, outbox, review, sending
from cardsms.services.core import Services, as_utc, china_time
from cardsms.services.media import resource_urls
from cardsms.services.templates import PUBLIC_ACCOUNT, get_template
from cardsms.vendors.gateway import ReviewState

MAX_LINK_NUMBERS = 10_000
MAX_SMART_NUMBERS = 1_000
_CUSTOM_CODE = re.compile(r"[A-Za-z0-9]{4,8}")
_CODE = re.compile(r"[A-Za-z0-9]{4,16}")


async def _insert_links(svc: Services, rows: list[dict[str, Any]]) -> None:
    try:
        async with svc.hold_writer() as conn:
            await conn.execute(insert(short_links), rows)
    except IntegrityError:
        raise CardsmsError("isv.INVALID_PARAMETERS", "CustomShortCodeJson: a short code is already taken; "
                           "choose another") from None


@dataclass
class CardLinks:
    """GetCardSmsLink's result: the numbers (in order) whose phones show the card, their signatures, the links
    made for them (one for all, or one each), and the numbers or identifiers that get no card."""

    card_phones: list[str] = field(default_factory=list)
    card_signs: list[str] = field(default_factory=list)
    card_params: list[Any] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    not_media: list[str] = field(default_factory=list)


async def card_sms_links(svc: Services, account_id: int, *, card_template_code: str, phones: list[Any],
                         sign_names: list[Any], params: list[Any], code_type: int, link_type: int,
                         custom_codes: list[Any] | None, domain: str, out_id: str) -> CardLinks:
    if not phones:
        raise CardsmsError("MissingParameter", "PhoneNumberJson is mandatory for this action.")
    if len(phones) > MAX_LINK_NUMBERS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"PhoneNumberJson: at most {MAX_LINK_NUMBERS} numbers, "
                           f"got {len(phones)}")
    base = await domains.base_for(svc, account_id, domain)
    async with svc.read() as conn:
        card = await get_template(conn, account_id, card_template_code, ("card",))
        rows = await review.vendor_reviews(conn, account_id, "template", card["id"])
        for i, name in enumerate(dict.fromkeys(str(s) for s in sign_names), 1):
            await sending.approved_sign(conn, account_id, name, f"SignNameJson[{i}]")
    approved = approved_vendors(rows)
    if not approved:
        raise CardsmsError("TEMPLATE_NOT_APPROVED", f"CardTemplateCode: card template {card_template_code!r} is "
                           "not approved by any vendor")
    found = _card_phones(svc, approved, phones, sign_names, params)
    if found.card_phones:
        codes = _link_codes(1 if code_type == 1 else len(found.card_phones), link_type, custom_codes)
        now = svc.now()
        expires = now + timedelta(days=svc.settings.link_ttl_days)
        kind = "custom" if link_type == 2 else ("group" if code_type == 1 else "personal")
        await _insert_links(svc, [
            {"account_id": account_id, "code": c, "kind": kind, "card_template_code": card["code"],
             "phone": "" if code_type == 1 else found.card_phones[i],
             "params": found.card_params[0 if code_type == 1 else i], "source_url": "", "name": out_id[:64],
             "deleted": False, "page_views": 0, "unique_visitors": 0, "created_at": now, "expires_at": expires,
             "message_id": None}
            for i, c in enumerate(codes)
        ])
        found.links = [f"{base}/{c}" for c in codes]
    return found


def _card_phones(svc: Services, approved: frozenset[str], phones: list[Any], sign_names: list[Any],
                 params: list[Any]) -> CardLinks:
    """Which numbers' phones show the card (SPEC.md sending rule 3), with their signatures and variables."""
    found = CardLinks()
    for i, raw in enumerate(phones):
        try:
            number = normalise_mainland_mobile(str(raw))
        except InvalidNumber:
            found.not_media.append(str(raw))  # a user id or another identifier: no card capability known
            continue
        if shows_card(svc.handsets.lookup(number.sha1), approved):
            found.card_phones.append(number.national)
            found.card_signs.append(str(sign_names[i]))
            found.card_params.append(params[i] or {})
        else:
            found.not_media.append(number.national)
    return found


def _link_codes(wanted: int, link_type: int, custom_codes: list[Any] | None) -> list[str]:
    """The short codes of the links: the caller's own (CardLinkType 2, checked) or new random ones."""
    if link_type != 2:
        return [outbox.new_link_code() for _ in range(wanted)]
    if not custom_codes or len(custom_codes) < wanted:
        raise CardsmsError("MissingParameter", f"CustomShortCodeJson must give {wanted} custom short "
                           "code(s) when CardLinkType is 2")
    codes = [str(c) for c in custom_codes[:wanted]]
    bad = [c for c in codes if not _CUSTOM_CODE.fullmatch(c)]
    if bad:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"CustomShortCodeJson: {bad[0]!r} must be 4-8 letters or digits")
    return codes


def _check_source_url(url: str, field_name: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 1000 or any(c.isspace() for c in url):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} must be an http(s) URL of at most 1000 "
                           "characters without spaces")
    return url


async def add_short_url(svc: Services, account_id: int, source_url: str, name: str, days: int,
                        domain: str = "") -> dict[str, Any]:
    url = _check_source_url(source_url, "SourceUrl")
    base = await domains.base_for(svc, account_id, domain)
    if not 1 <= len(name.strip()) <= 64:
        raise CardsmsError("isv.INVALID_PARAMETERS", "ShortUrlName must be 1-64 characters")
    now = svc.now()
    code = outbox.new_link_code()
    expires = now + timedelta(days=days)
    await _insert_links(svc, [{
        "account_id": account_id, "code": code, "kind": "url", "source_url": url, "name": name.strip(),
        "card_template_code": "", "phone": "", "params": None, "deleted": False, "page_views": 0,
        "unique_visitors": 0, "created_at": now, "expires_at": expires, "message_id": None,
    }])
    return {"ShortUrl": f"{base}/{code}", "SourceUrl": url,
            "ExpireDate": china_time(expires)}


async def create_smart_short_urls(svc: Services, account_id: int, source_url: str, phones: list[str],
                                  out_id: str) -> list[dict[str, Any]]:
    """CreateSmartShortUrl: one personal link per number to the same page, so each click tells who opened it
    (QueryPageSmartShortUrlLog). A smart link redirects like AddShortUrl's and lives CARDSMS_LINK_TTL_DAYS."""
    url = _check_source_url(source_url, "SourceUrl")
    if not phones:
        raise CardsmsError("MissingParameter", "PhoneNumbers is mandatory for this action.")
    if len(phones) > MAX_SMART_NUMBERS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"PhoneNumbers: at most {MAX_SMART_NUMBERS} numbers, "
                           f"got {len(phones)}")
    if len(out_id) > 64:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"OutId: at most 64 characters, got {len(out_id)}")
    numbers = sending.numbers_or_error(phones, "PhoneNumbers", mainland_only=True)
    now = svc.now()
    expires = now + timedelta(days=svc.settings.link_ttl_days)
    rows = [{"account_id": account_id, "code": outbox.new_link_code(), "kind": "smart", "source_url": url,
             "name": out_id, "card_template_code": "", "phone": n.national, "params": None, "deleted": False,
             "page_views": 0, "unique_visitors": 0, "created_at": now, "expires_at": expires, "message_id": None}
            for n in numbers]
    await _insert_links(svc, rows)
    base = await domains.link_base(svc, account_id)
    domain = urlsplit(base).netloc
    return [{"PhoneNumber": r["phone"], "ShortName": r["code"], "ShortUrl": f"{base}/{r['code']}",
             "Domain": domain, "Expiration": int(expires.timestamp() * 1000)} for r in rows]


async def smart_link_log(svc: Services, account_id: int, *, phone: str, short_url: str, start_ms: int | None,
                         end_ms: int | None, page: int, size: int) -> tuple[int, list[dict[str, Any]]]:
    """QueryPageSmartShortUrlLog: the account's smart links with whether and when each was first clicked."""
    where = [short_links.c.account_id == account_id, short_links.c.kind == "smart"]
    if phone:
        where.append(short_links.c.phone == sending.numbers_or_error([phone], "PhoneNumber", True)[0].national)
    if short_url:
        where.append(short_links.c.code == code_of(short_url, svc))
    if start_ms is not None:
        where.append(short_links.c.created_at >= datetime.fromtimestamp(start_ms / 1000, UTC))
    if end_ms is not None:
        where.append(short_links.c.created_at <= datetime.fromtimestamp(end_ms / 1000, UTC))
    first_click = (select(func.min(link_opens.c.at)).where(
        link_opens.c.account_id == account_id, link_opens.c.link_id == short_links.c.id).scalar_subquery())
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(short_links).where(*where))
        rows = (await conn.execute(select(short_links.c.code, short_links.c.phone, short_links.c.created_at,
                                          first_click.label("clicked_at")).where(*where)
                                   .order_by(short_links.c.id.desc()).offset((page - 1) * size).limit(size))).all()
    ms = lambda t: int(as_utc(t).timestamp() * 1000)  # noqa: E731
    base = await domains.link_base(svc, account_id)
    return int(total or 0), [
        {"PhoneNumber": r.phone, "ShortName": r.code, "ShortUrl": f"{base}/{r.code}",
         "CreateTime": ms(r.created_at), "ClickState": 1 if r.clicked_at else 0,
         "ClickTime": ms(r.clicked_at) if r.clicked_at else None} for r in rows]


def code_of(short_url: str, svc: Services) -> str:
    code = short_url.strip().rstrip("/").rsplit("/", 1)[-1]
    if not _CODE.fullmatch(code):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"ShortUrl {short_url!r} is not a short link of this server")
    return code


async def query_short_url(svc: Services, account_id: int, short_url: str) -> dict[str, Any]:
    code = code_of(short_url, svc)
    async with svc.read() as conn:
        row = (await conn.execute(select(short_links).where(
            short_links.c.account_id == account_id, short_links.c.code == code))).mappings().first()
    if row is None:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"ShortUrl {short_url!r} does not exist in this account")
    status = "deleted" if row["deleted"] else "expired" if as_utc(row["expires_at"]) <= svc.now() else "effective"
    return {
        "ShortUrl": f"{await domains.link_base(svc, account_id)}/{code}", "SourceUrl": row["source_url"],
        "ShortUrlName": row["name"], "ShortUrlStatus": status, "CreateDate": china_time(row["created_at"]),
        "ExpireDate": china_time(row["expires_at"]), "PageViewCount": str(row["page_views"]),
        "UniqueVisitorCount": str(row["unique_visitors"]),
    }


async def delete_short_url(svc: Services, account_id: int, source_url: str) -> int:
    url = _check_source_url(source_url, "SourceUrl")
    async with svc.hold_writer() as conn:
        result = await conn.execute(update(short_links).where(
            short_links.c.account_id == account_id, short_links.c.kind == "url", short_links.c.source_url == url,
            short_links.c.deleted.is_(False)).values(deleted=True))
    if not result.rowcount:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"SourceUrl {url!r} has no short link in this account")
    return int(result.rowcount)


# --- the resolver -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Resolved:
    link: Any
    expired: bool


_LINK_BY_CODE = select(short_links).where(short_links.c.code == bindparam("code"))


async def resolve(svc: Services, code: str) -> Resolved | None:
    if not _CODE.fullmatch(code):
        return None
    found = await svc.point_query(_LINK_BY_CODE, code=code)
    if not found:
        return None
    link = found[0]
    return Resolved(link, bool(link["deleted"]) or as_utc(link["expires_at"]) <= svc.now())


def visitor_id(ip: str, user_agent: str) -> str:
    return hashlib.sha1(f"{ip}|{user_agent}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Open:
    link: Any
    client: str  # parser | browser | redirect
    visitor: str
    mobile: str
    agent: str = ""  # the user agent's class (mobile, desktop, bot, other), for LinkClick reports


def record_open(svc: Services, resolved: Resolved, client: str, visitor: str, mobile: str = "", agent: str = ""
                ) -> None:
    """Count an open; a parser fetch marks the message rendered (the render receipt).

    The open is not awaited: opens are written in batches every CARDSMS_OPEN_FLUSH_MS (and answered
    at once), so a burst of phones costs the writer a few large transactions, not one each. The
    durability contract (docs/sending.md): a process killed outright loses the opens of its last
    flush interval; a graceful stop writes them."""
    linger = svc.settings.open_flush_ms / 1000
    svc.group_commit("opens", record_opens, max_batch=2000, linger=linger, urgent=False).record(
        Open(resolved.link, client, visitor, mobile, agent))


async def record_opens(conn: AsyncConnection, opens: Sequence[Open], *, svc: Services) -> list[int | None]:
    """Record a batch of opens in one transaction with a fixed number of statements."""
    from cardsms.services import receipts

    now = svc.now()
    message_ids: list[int | None] = []
    for o in opens:
        message_id = o.link["message_id"]
        if message_id is None and o.mobile and o.link["kind"] in ("group", "custom"):
            message_id = await conn.scalar(select(messages.c.id).where(
                messages.c.account_id == o.link["account_id"], messages.c.link_code == o.link["code"],
                messages.c.phone == o.mobile).limit(1))
        message_ids.append(message_id)
    seen: set[tuple[int, str]] = {(r[0], r[1]) for r in await conn.execute(
        select(link_opens.c.link_id, link_opens.c.visitor).where(
            link_opens.c.account_id.in_({o.link["account_id"] for o in opens}),
            link_opens.c.link_id.in_({o.link["id"] for o in opens}),
            link_opens.c.visitor.in_({o.visitor for o in opens})))}
    counts: dict[int, list[int]] = {}  # link id -> [page views, new unique visitors]
    for o in opens:
        count = counts.setdefault(o.link["id"], [0, 0])
        count[0] += 1
        if (o.link["id"], o.visitor) not in seen:
            seen.add((o.link["id"], o.visitor))
            count[1] += 1
    await insert_rows(conn, link_opens, [
        {"account_id": o.link["account_id"], "link_id": o.link["id"], "message_id": m, "client": o.client,
         "visitor": o.visitor, "at": now} for o, m in zip(opens, message_ids, strict=True)])
    await conn.execute(update(short_links).where(short_links.c.id == bindparam("lid")).values(
        page_views=short_links.c.page_views + bindparam("pv"),
        unique_visitors=short_links.c.unique_visitors + bindparam("uv")),
        [{"lid": lid, "pv": pv, "uv": uv} for lid, (pv, uv) in counts.items()])
    rendered = {m for o, m in zip(opens, message_ids, strict=True) if m is not None and o.client == "parser"}
    opened = [(o.link["account_id"], m, o.client) for o, m in zip(opens, message_ids, strict=True)
              if m is not None and o.client != "parser"]
    await receipts.mark_rendered(conn, svc, rendered)
    await receipts.mark_opened(conn, svc, opened)
    await _click_reports(conn, svc, [(o, m) for o, m in zip(opens, message_ids, strict=True) if o.client != "parser"],
                         now)
    return message_ids


def agent_class(user_agent: str) -> str:
    """mobile, desktop, bot or other: what a LinkClick report says of the client (never the whole string)."""
    ua = user_agent.lower()
    if not ua:
        return "other"
    if any(w in ua for w in ("bot", "spider", "crawler", "curl", "python", "wget", "httpx", "preview")):
        return "bot"
    if any(w in ua for w in ("mobile", "android", "iphone", "ipad", "harmonyos", "micromessenger")):
        return "mobile"
    if any(w in ua for w in ("windows", "macintosh", "x11", "linux")):
        return "desktop"
    return "other"


async def _click_reports(conn: AsyncConnection, svc: Services, opens: list[tuple[Open, int | None]],
                         now: datetime) -> None:
    """LinkClick reports (a cardsms addition) for accounts with that webhook: one per open in a browser or
    redirect, with the message's number and BizId when the link belongs to a message."""
    from cardsms.services import webhooks

    if not opens:
        return
    wanted = await webhooks.subscribed(conn, "LinkClick", {o.link["account_id"] for o, _ in opens})
    opens = [(o, m) for o, m in opens if o.link["account_id"] in wanted]
    if not opens:
        return
    ids = sorted({m for _, m in opens if m is not None})
    rows = {r["id"]: r for r in (await conn.execute(select(
        messages.c.id, messages.c.phone, messages.c.biz_id, messages.c.out_id, messages.c.card_template_code
    ).where(messages.c.id.in_(ids)))).mappings()} if ids else {}
    defaults = {r.account_id: domains.base_on(svc, r.domain) for r in await conn.execute(
        select(link_domains.c.account_id, link_domains.c.domain).where(
            link_domains.c.account_id.in_(wanted), link_domains.c.is_default.is_(True)))}
    reports = []
    for o, m in opens:
        row = rows.get(m) if m is not None else None
        base = defaults.get(o.link["account_id"], svc.settings.link_base)
        reports.append((o.link["account_id"], "LinkClick", {
            "phone_number": row["phone"] if row else o.link["phone"], "short_url": f"{base}/{o.link['code']}",
            "short_name": o.link["code"], "link_kind": o.link["kind"], "click_time": china_time(now),
            "user_agent_class": o.agent or "other", "client": o.client, "biz_id": row["biz_id"] if row else "",
            "out_id": row["out_id"] if row else o.link["name"],
            "template_code": row["card_template_code"] if row else o.link["card_template_code"],
        }))
    await webhooks.enqueue(conn, svc, reports)


@dataclass(frozen=True, slots=True)
class Card:
    row: Any  # the card template, None when it is gone
    vendors: frozenset[str]  # vendors that approved it
    urls: dict[str, str]  # media resource id -> download URL
    # answers rendered from this card, by (kind, language, parameters): links/resolver.py; they live as long as the
    # card itself (its cache's second, or until this process changes templates, reviews or media)
    bodies: dict[Any, bytes] = field(default_factory=dict, compare=False)


async def link_card(svc: Services, link: Any) -> Card:
    """The card a link shows, cached for a second (services.cache; cleared when this process changes
    templates, reviews or media)."""
    async def load() -> Card:
        async with svc.read() as conn:
            row = (await conn.execute(select(templates).where(
                templates.c.account_id.in_((link["account_id"], PUBLIC_ACCOUNT)),
                templates.c.code == link["card_template_code"], templates.c.kind == "card"))).mappings().first()
            vendors = frozenset() if row is None else frozenset(r.vendor for r in await conn.execute(
                select(reviews.c.vendor).where(
                    reviews.c.account_id == row["account_id"], reviews.c.subject_kind == "template",
                    reviews.c.subject_id == row["id"], reviews.c.state == int(ReviewState.APPROVED))))
        urls = await resource_urls(svc, link["account_id"], _media_ids(row["body"] or {})) if row else {}
        return Card(row, vendors, urls)

    return await svc.caches.memo("link-cards", {"templates", "reviews", "media"},
                                 (link["account_id"], link["card_template_code"]), load)


def _media_ids(body: dict[str, Any]) -> list[str]:
    ids = []
    for page in (body.get("templateContent") or {}).get("pages", []):
        for el in page.get("tmpCards", []):
            ids += [str(el[k]) for k in ("src", "coverSrc") if el.get(k)]
    return ids
