"""`GET /s/{code}`: the short-link resolver.

- a plain short URL (AddShortUrl) redirects to its target;
- a vendor parser (header `X-Card-Parser: <vendor>`, or `Accept: application/json`) gets the card
  as JSON; when the fetch carries the vendor's signature (links/parsers.py) it is the render receipt
  of the message, otherwise an open like any other;
- a browser gets the card as a mobile web page — or, when the card cannot be rendered (template
  deleted or no longer approved) and the send named a `customUrl`, a redirect there;
- unknown codes get a 404 page, expired or deleted links a friendly 410 page.
Every open is recorded (per link, per visitor, per message), up to CARDSMS_LINK_OPENS_PER_MINUTE per
link and address.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from cardsms.links import parsers
from cardsms.links.render import card_json, card_view, render_card_page, render_notice
from cardsms.services import domains, links
from cardsms.services.core import Services


def _lang(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "zh").lower().startswith("en") else "zh-CN"


BODIES_PER_CARD = 1024  # rendered answers kept per card (links/resolver._rendered): distinct parameter sets


def _rendered(card: Any, kind: str, lang: str, params: dict[str, Any], make: Callable[[], bytes]) -> bytes:
    """The card's answer for these parameters, rendered once per card and parameters: a mass task's links mostly
    share a template and its parameters, and rendering (Jinja, JSON) was a large part of an open."""
    try:
        key: Any = (kind, lang, tuple(sorted(params.items())))
        hash(key)
    except TypeError:  # a parameter value that is not hashable: key on its JSON
        key = (kind, lang, json.dumps(params, sort_keys=True, ensure_ascii=False, default=str))
    body = card.bodies.get(key)
    if body is None:
        body = make()
        if len(card.bodies) < BODIES_PER_CARD:
            card.bodies[key] = body
    return body


def _json_bytes(content: Any) -> bytes:  # as starlette's JSONResponse renders it
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode()


def _notice(request: Request, status: int, zh: tuple[str, str], en: tuple[str, str]) -> Response:
    lang = _lang(request)
    title, message = en if lang == "en" else zh
    return HTMLResponse(render_notice(title, message, lang), status)


class _Resolver:
    """GET /s/{code}: a card link answers the card (a page, or JSON for a vendor's parser), a short link
    redirects; every open is recorded (a parser's signed fetch is the render receipt)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.limiter = parsers.OpenLimiter(svc.settings.link_opens_per_minute)
        self.parser_secret = svc.settings.resolved_parser_secret()

    def record(self, found: Any, client: str, visitor: str, address: str, mobile: str = "", agent: str = "") -> None:
        if client == "parser" or self.limiter.admit(found.link["id"], address):
            links.record_open(self.svc, found, client, visitor, mobile, agent)

    async def endpoint(self, request: Request) -> Response:
        code = request.path_params["code"]
        found = await links.resolve(self.svc, code)
        if found is not None:  # on an account's own link domain, only that account's codes exist
            owner = await domains.owner_of_host(self.svc, request.headers.get("host", ""))
            if owner is not None and owner != found.link["account_id"]:
                found = None
        if found is None:
            return _notice(request, 404, ("链接不存在", "请检查短信中的链接是否完整。"),
                           ("Link not found", "Check that the link in your message is complete."))
        if found.expired:
            return _notice(request, 410, ("链接已过期", "该链接已失效，如有需要请联系发送方。"),
                           ("This link has expired", "The link is no longer valid; contact the sender if you need it."))
        link = found.link
        ip = request.client.host if request.client else ""
        visitor = links.visitor_id(ip, request.headers.get("user-agent", ""))
        agent = links.agent_class(request.headers.get("user-agent", ""))
        if link["kind"] in ("url", "smart"):  # AddShortUrl's and CreateSmartShortUrl's links redirect
            self.record(found, "redirect", visitor, ip, agent=agent)
            return RedirectResponse(link["source_url"], 302)
        card = await links.link_card(self.svc, link)
        parser = request.headers.get("x-card-parser", "")
        if parser or "application/json" in request.headers.get("accept", ""):
            return self.card_json(request, found, card, parser, visitor, ip, agent)
        return self.card_page(request, found, card, visitor, ip, agent)

    def card_json(self, request: Request, found: Any, card: Any, parser: str, visitor: str, ip: str,
                  agent: str) -> Response:
        """The card as a vendor's parser fetches it."""
        if card.row is None or not card.vendors or (parser and parser not in card.vendors):
            return JSONResponse({"code": "CARD_NOT_AVAILABLE",
                                 "message": "the card template is deleted or not approved for this vendor"}, 404)
        mobile = request.headers.get("x-card-mobile", "")
        if parser and parsers.verified(self.parser_secret, parser, request.path_params["code"], mobile,
                                       request.headers.get(parsers.SIGNATURE_HEADER, "")):
            self.record(found, "parser", visitor, ip, mobile)  # the render receipt
        else:  # anyone can send the parser headers: without the vendor's signature it is an open, no render
            self.record(found, "browser", visitor, ip, agent=agent)
        params = found.link["params"] or {}
        body = _rendered(card, "json", "", params, lambda: _json_bytes(
            {"code": "OK", "card": card_json(card.row["body"] or {}, params, card.urls)}))
        return Response(body, media_type="application/json")

    def card_page(self, request: Request, found: Any, card: Any, visitor: str, ip: str, agent: str) -> Response:
        """The card as a web page (a browser without card support); a withdrawn card redirects to the link's
        source when it has one."""
        link = found.link
        if card.row is None or not card.vendors:
            if link["source_url"]:
                self.record(found, "redirect", visitor, ip, agent=agent)
                return RedirectResponse(link["source_url"], 302)
            return _notice(request, 410, ("内容已下线", "该卡片内容已不可用。"),
                           ("Content unavailable", "This card is no longer available."))
        self.record(found, "browser", visitor, ip, agent=agent)
        params, lang = link["params"] or {}, _lang(request)

        def page() -> bytes:
            view = card_view(card.row["body"] or {}, params, card.urls)
            title = next((el["text"] for page in view["pages"] for el in page if el.get("title")), card.row["name"])
            return render_card_page(view, title, lang).encode()

        return HTMLResponse(_rendered(card, "page", lang, params, page))


def resolver(svc: Services) -> Any:
    """The route's endpoint (a method: starlette calls a function with the request, an object as an ASGI app)."""
    return _Resolver(svc).endpoint
