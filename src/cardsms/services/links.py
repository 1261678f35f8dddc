"""Short links: card links (group, personal, custom code), plain short URLs, and what happens
when one is opened (counted per link and per message; a vendor parser's fetch is the render receipt)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from cardsms.db.schema import link_opens, messages, short_links
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.services import review, sending
from cardsms.services.core import Services, as_utc, china_time
from cardsms.services.templates import get_template
from cardsms.vendors.gateway import ReviewState

MAX_LINK_NUMBERS = 10_000
_CUSTOM_CODE = re.compile(r"[A-Za-z0-9]{4,8}")
_CODE = re.compile(r"[A-Za-z0-9]{4,16}")


async def _insert_links(svc: Services, rows: list[dict[str, Any]]) -> None:
    try:
        async with svc.engine.begin() as conn:
            await conn.execute(insert(short_links), rows)
    except IntegrityError:
        raise CardsmsError("isv.INVALID_PARAMETERS", "CustomShortCodeJson: a short code is already taken; "
                           "choose another") from None


async def card_sms_links(svc: Services, account_id: int, *, card_template_code: str, phones: list[Any],
                         sign_names: list[Any], params: list[Any], code_type: int, link_type: int,
                         custom_codes: list[Any] | None, domain: str, out_id: str) -> dict[str, Any]:
    if not phones:
        raise CardsmsError("MissingParameter", "PhoneNumberJson is mandatory for this action.")
    if len(phones) > MAX_LINK_NUMBERS:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"PhoneNumberJson: at most {MAX_LINK_NUMBERS} numbers, "
                           f"got {len(phones)}")
    base = svc.settings.link_base
    if domain and domain.strip().lower() not in (urlsplit(base).netloc.lower(), urlsplit(base).hostname):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"Domain {domain!r} is not registered; the link domain of "
                           f"this server is {urlsplit(base).netloc}")
    async with svc.engine.connect() as conn:
        card = await get_template(conn, account_id, card_template_code, ("card",))
        rows = await review.vendor_reviews(conn, account_id, "template", card["id"])
        for i, name in enumerate(dict.fromkeys(str(s) for s in sign_names), 1):
            await sending.approved_sign(conn, account_id, name, f"SignNameJson[{i}]")
    approved = {r["vendor"] for r in rows if r["state"] == ReviewState.APPROVED}
    if not approved:
        raise CardsmsError("TEMPLATE_NOT_APPROVED", f"CardTemplateCode: card template {card_template_code!r} is "
                           "not approved by any vendor")
    card_phones, card_signs, card_params, not_media = [], [], [], []
    for i, raw in enumerate(phones):
        try:
            number = normalise_mainland_mobile(str(raw))
        except InvalidNumber:
            not_media.append(str(raw))  # a user id or another identifier: no card capability known
            continue
        handset = svc.handsets.lookup(number.sha1)
        if handset.card_capable and handset.vendor is not None and handset.vendor.value in approved:
            card_phones.append(number.national)
            card_signs.append(str(sign_names[i]))
            card_params.append(params[i] or {})
        else:
            not_media.append(number.national)
    codes: list[str] = []
    if card_phones:
        wanted = 1 if code_type == 1 else len(card_phones)
        if link_type == 2:
            if not custom_codes or len(custom_codes) < wanted:
                raise CardsmsError("MissingParameter", f"CustomShortCodeJson must give {wanted} custom short "
                                   "code(s) when CardLinkType is 2")
            codes = [str(c) for c in custom_codes[:wanted]]
            bad = [c for c in codes if not _CUSTOM_CODE.fullmatch(c)]
            if bad:
                raise CardsmsError("isv.INVALID_PARAMETERS", f"CustomShortCodeJson: {bad[0]!r} must be 4-8 "
                                   "letters or digits")
        else:
            codes = [sending.new_link_code() for _ in range(wanted)]
        now = svc.now()
        expires = now + timedelta(days=svc.settings.link_ttl_days)
        kind = "custom" if link_type == 2 else ("group" if code_type == 1 else "personal")
        await _insert_links(svc, [
            {"account_id": account_id, "code": c, "kind": kind, "card_template_code": card["code"],
             "phone": "" if code_type == 1 else card_phones[i], "params": card_params[0 if code_type == 1 else i],
             "source_url": "", "name": out_id[:64], "deleted": False, "page_views": 0, "unique_visitors": 0,
             "created_at": now, "expires_at": expires, "message_id": None}
            for i, c in enumerate(codes)
        ])
    links = [f"{base}/{c}" for c in codes]
    return {
        "CardTmpState": int(ReviewState.APPROVED),
        "CardPhoneNumbers": ",".join(card_phones),
        "CardSignNames": ",".join(card_signs),
        "CardSmsLinks": ",".join(links),
        "NotMediaMobiles": ",".join(not_media),
    }


def _check_source_url(url: str, field_name: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 1000 or any(c.isspace() for c in url):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} must be an http(s) URL of at most 1000 "
                           "characters without spaces")
    return url


async def add_short_url(svc: Services, account_id: int, source_url: str, name: str, days: int) -> dict[str, Any]:
    url = _check_source_url(source_url, "SourceUrl")
    if not 1 <= len(name.strip()) <= 64:
        raise CardsmsError("isv.INVALID_PARAMETERS", "ShortUrlName must be 1-64 characters")
    now = svc.now()
    code = sending.new_link_code()
    expires = now + timedelta(days=days)
    await _insert_links(svc, [{
        "account_id": account_id, "code": code, "kind": "url", "source_url": url, "name": name.strip(),
        "card_template_code": "", "phone": "", "params": None, "deleted": False, "page_views": 0,
        "unique_visitors": 0, "created_at": now, "expires_at": expires, "message_id": None,
    }])
    return {"ShortUrl": f"{svc.settings.link_base}/{code}", "SourceUrl": url,
            "ExpireDate": china_time(expires)}


def code_of(short_url: str, svc: Services) -> str:
    code = short_url.strip().rstrip("/").rsplit("/", 1)[-1]
    if not _CODE.fullmatch(code):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"ShortUrl {short_url!r} is not a short link of this server")
    return code


async def query_short_url(svc: Services, account_id: int, short_url: str) -> dict[str, Any]:
    code = code_of(short_url, svc)
    async with svc.engine.connect() as conn:
        row = (await conn.execute(select(short_links).where(
            short_links.c.account_id == account_id, short_links.c.code == code))).mappings().first()
    if row is None:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"ShortUrl {short_url!r} does not exist in this account")
    status = "deleted" if row["deleted"] else "expired" if as_utc(row["expires_at"]) <= svc.now() else "effective"
    return {
        "ShortUrl": f"{svc.settings.link_base}/{code}", "SourceUrl": row["source_url"],
        "ShortUrlName": row["name"], "ShortUrlStatus": status, "CreateDate": china_time(row["created_at"]),
        "ExpireDate": china_time(row["expires_at"]), "PageViewCount": str(row["page_views"]),
        "UniqueVisitorCount": str(row["unique_visitors"]),
    }


async def delete_short_url(svc: Services, account_id: int, source_url: str) -> int:
    url = _check_source_url(source_url, "SourceUrl")
    async with svc.engine.begin() as conn:
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
    message: Any | None
    expired: bool


async def resolve(svc: Services, code: str) -> Resolved | None:
    if not _CODE.fullmatch(code):
        return None
    async with svc.engine.connect() as conn:
        link = (await conn.execute(select(short_links).where(short_links.c.code == code))).mappings().first()
        if link is None:
            return None
        message = None
        if link["message_id"] is not None:
            message = (await conn.execute(select(messages).where(
                messages.c.account_id == link["account_id"], messages.c.id == link["message_id"]))).mappings().first()
    expired = bool(link["deleted"]) or as_utc(link["expires_at"]) <= svc.now()
    return Resolved(link, message, expired)


def visitor_id(ip: str, user_agent: str) -> str:
    return hashlib.sha1(f"{ip}|{user_agent}".encode()).hexdigest()


async def record_open(svc: Services, resolved: Resolved, client: str, visitor: str, mobile: str = "") -> int | None:
    """Count an open; a parser fetch marks the message rendered. Returns the message id affected."""
    from cardsms.services import receipts

    link = resolved.link
    now = svc.now()
    message_id = link["message_id"]
    async with svc.engine.begin() as conn:
        if message_id is None and mobile and link["kind"] in ("group", "custom"):
            message_id = await conn.scalar(select(messages.c.id).where(
                messages.c.account_id == link["account_id"], messages.c.link_code == link["code"],
                messages.c.phone == mobile).limit(1))
        seen = await conn.scalar(select(func.count()).select_from(link_opens).where(
            link_opens.c.account_id == link["account_id"], link_opens.c.link_id == link["id"],
            link_opens.c.visitor == visitor))
        await conn.execute(insert(link_opens).values(
            account_id=link["account_id"], link_id=link["id"], message_id=message_id, client=client,
            visitor=visitor, at=now))
        await conn.execute(update(short_links).where(short_links.c.id == link["id"]).values(
            page_views=short_links.c.page_views + 1,
            unique_visitors=short_links.c.unique_visitors + (0 if seen else 1)))
        if message_id is not None:
            if client == "parser":
                await receipts.mark_rendered(conn, svc, link["account_id"], message_id)
            else:
                await receipts.mark_opened(conn, svc, link["account_id"], message_id, client)
    return message_id
