"""The card renderer: one card template + its parameters -> a view model -> a mobile web page.

The same view model and template render the resolver's card page and (issue C) the console's
phone preview, so both look the same. Jinja2 autoescapes every value: card text containing
HTML or script is shown as text.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from cardsms.domain.card_types import TYPE_RULES

_VAR = re.compile(r"\$\{([^}]*)\}")
# auto_reload off: the templates ship with the package; checking their mtime cost every link open a stat()
_env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), auto_reload=False,
                   autoescape=select_autoescape(default=True, default_for_string=True))


def fill(text: str, params: dict[str, Any]) -> str:
    return _VAR.sub(lambda m: str(params.get(m.group(1), m.group(0))), text)


def _href(action_type: str, action: dict[str, Any], params: dict[str, Any]) -> str:
    target = fill(str(action.get("target", "")), params)
    if action_type in ("OPEN_URL", "OPEN_BROWSER"):
        return target if target.startswith(("https://", "http://")) else ""
    if action_type == "OPEN_APP":
        return fill(str(action.get("floorUrl", "")), params)  # a browser cannot open the app: its fallback page
    if action_type == "DIAL_PHONE":
        return "tel:" + target
    if action_type == "OPEN_SMS":
        return "sms:" + target
    if action_type == "OPEN_EMAIL":
        return "mailto:" + target
    return ""


def card_view(body: dict[str, Any], params: dict[str, Any], media_urls: dict[str, str]) -> dict[str, Any]:
    """Pages of elements with parameters filled, media resolved and actions as links."""
    pages = []
    for page in (body.get("templateContent") or {}).get("pages", []):
        elements = []
        for el in sorted(page.get("tmpCards", []), key=lambda e: e.get("positionNumber", 0)):
            kind = el.get("type")
            item: dict[str, Any] = {"type": kind}
            if kind in ("IMAGE", "VIDEO"):
                src = str(el.get("src", ""))
                item["src"] = media_urls.get(src, src if src.startswith(("https://", "http://")) else "")
                item["cover"] = media_urls.get(str(el.get("coverSrc", "")), "")
            else:
                item["text"] = fill(str(el.get("content", "")), params)
                item["title"] = bool(el.get("isTextTitle"))
            action_type = el.get("actionType")
            if action_type:
                item["href"] = _href(action_type, el.get("action") or {}, params)
                item["action"] = action_type
            elements.append(item)
        pages.append(elements)
    return {"sign": body.get("cardSignName", ""), "pages": pages, "type": body.get("cardType"),
            "items": [_items(body.get("cardType"), page) for page in pages]}


def _items(card_type: Any, page: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Types whose page is a list of items (news, e-commerce multi-product, multi coupon): the i-th picture,
    title and text belong together, and the page shows them as rows."""
    rule = TYPE_RULES.get(card_type) if isinstance(card_type, int) else None
    if rule is None or not rule.same_count:
        return None
    images = [e for e in page if e["type"] == "IMAGE"]
    titles = [e for e in page if e["type"] == "TEXT" and e["title"]]
    texts = [e for e in page if e["type"] == "TEXT" and not e["title"]]
    return [{"image": images[i] if i < len(images) else None, "title": title,
             "text": texts[i] if i < len(texts) else None} for i, title in enumerate(titles)]


def card_json(body: dict[str, Any], params: dict[str, Any], media_urls: dict[str, str]) -> dict[str, Any]:
    """What a vendor parser receives: the template with parameters filled and media resolved."""
    view = card_view(body, params, media_urls)
    return {"cardType": body.get("cardType"), "cardSignName": body.get("cardSignName", ""),
            "pages": view["pages"], "extendInfo": body.get("extendInfo", {})}


# the card page's style sheet is static: read once, not included (a template context each) per open
_CARD_CSS = Markup("".join((Path(__file__).parent / "templates" / name).read_text(encoding="utf-8")
                           for name in ("card.css", "card_parts.css")))
_card_page = _env.get_template("card.html")


def render_card_page(view: dict[str, Any], title: str, lang: str = "zh-CN") -> str:
    return _card_page.render(view=view, title=title, lang=lang, card_css=_CARD_CSS)


def render_notice(title: str, message: str, lang: str = "zh-CN") -> str:
    return _env.get_template("notice.html").render(title=title, message=message, lang=lang)
