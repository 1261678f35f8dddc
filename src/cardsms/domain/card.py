"""The card template model and its validation (CARD_TEMPLATES.md).

`parse_card_template` takes the `Template` JSON of CreateCardSmsTemplate, checks every rule and
returns a `CardTemplate` whose `to_wire()` is the normalised template in the same wire form.
Errors are `CardsmsError`s whose message names the page, the element and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cardsms.domain.card_types import (
    CARD_TYPE_NAMES,
    MAX_PARAMS,
    MAX_VARS_PER_TEXT,
    TARGET_MAX,
    TEMPLATE_NAME_MAX,
    TITLE_MAX,
    TYPE_RULES,
    TypeRule,
)
from cardsms.domain.errors import MAX_JSON_DEPTH, CardsmsError, json_too_deep

RATIOS = ("oneToOne", "sixteenToNine", "threeToOne", "fortyEightToSixtyFive")
ACTION_TYPES = (
    "OPEN_URL", "OPEN_BROWSER", "OPEN_APP", "OPEN_QUICK", "DIAL_PHONE", "OPEN_SMS",
    "OPEN_EMAIL", "OPEN_SCHEDULE", "OPEN_MAP", "OPEN_POPUP", "COPY_PARAMETER",
)
ELEMENT_TYPES = ("TEXT", "IMAGE", "VIDEO", "BUTTON")

_PLACEHOLDER = re.compile(r"\$\{([^}]*)\}")
_PARAM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{0,9}")
_PACKAGE = re.compile(r"[A-Za-z][A-Za-z0-9_]*(\.[A-Za-z][A-Za-z0-9_]*)+")
_PHONE_TARGET = re.compile(r"\+?[0-9\-]{3,20}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TRIAL_WORDS = ("测试", "test")


def _bad(rule: str) -> CardsmsError:
    return CardsmsError("InvalidParameter", rule)


@dataclass(slots=True)
class CardTemplate:
    """A validated card template in our normalised model."""

    name: str
    card_type: int
    sign_name: str
    extend_info: dict[str, Any]
    pages: list[list[dict[str, Any]]]
    params: list[str] = field(default_factory=list)

    @property
    def actions(self) -> set[str]:
        return {el["actionType"] for page in self.pages for el in page if el.get("actionType")}

    @property
    def resource_ids(self) -> set[str]:
        ids = set()
        for page in self.pages:
            for el in page:
                if el["type"] in ("IMAGE", "VIDEO") and el["srcType"] == 1:
                    ids.add(el["src"])
                if el["type"] == "VIDEO" and el.get("coverSrcType", 1) == 1 and el.get("cover"):
                    ids.add(el["cover"])
        return ids

    def texts(self) -> list[str]:
        """Every human-readable string of the card (what reviewers read)."""
        out = [self.name, self.sign_name]
        for page in self.pages:
            for el in page:
                if el.get("content"):
                    out.append(el["content"])
                action = el.get("action") or {}
                out += [str(v) for k, v in action.items() if k in ("target", "merchantName") and v]
        return out

    def to_wire(self) -> dict[str, Any]:
        return {
            "extendInfo": self.extend_info,
            "templateContent": {"pages": [{"tmpCards": page} for page in self.pages]},
            "cardSignName": self.sign_name,
            "cardType": self.card_type,
        }


def decode_template_json(raw: str) -> tuple[dict[str, Any], bool]:
    """Decode the `Template` parameter. Returns the object and whether it was JSON-encoded twice."""
    if isinstance(raw, str) and json_too_deep(raw):
        raise _bad(f"param Template nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, TypeError) as exc:
        raise _bad(f"param Template is not valid JSON ({exc})") from None
    if "\x00" in json.dumps(value, ensure_ascii=False):
        raise _bad("param Template must not contain NUL characters (\\u0000)")
    twice = False
    if isinstance(value, str):
        if json_too_deep(value):
            raise _bad(f"param Template nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise _bad("param Template must be a JSON object, got a JSON string") from None
        twice = True
    if not isinstance(value, dict):
        raise _bad(f"param Template must be a JSON object, got {type(value).__name__}")
    return value, twice


def parse_card_template(
    name: str, template: Mapping[str, Any], media_ratios: Mapping[str, str | None]
) -> CardTemplate:
    """Validate a card template.

    `media_ratios` maps each of the account's media resource ids to its declared ratio (None for
    videos); a resource id not in it is "param resUrl not exist".
    """
    name = _text(name, "templateName")
    if not name:
        raise CardsmsError("MissingParameter", "param templateName is required")
    if len(name) > TEMPLATE_NAME_MAX:
        raise _bad(f"param templateName length must < 20 (got {len(name)})")
    card_type = template.get("cardType")
    if isinstance(card_type, str) and card_type.isdigit():
        card_type = int(card_type)
    if not isinstance(card_type, int) or isinstance(card_type, bool) or card_type not in CARD_TYPE_NAMES:
        raise _bad(f"param cardType invalid: {card_type!r} (1-20)")
    rule = TYPE_RULES[card_type]
    sign_name = _text(template.get("cardSignName"), "cardSignName")
    if not sign_name:
        raise CardsmsError("MissingParameter", "param cardSignName is required")
    if not 2 <= len(sign_name) <= 12:
        raise _bad("param cardSignName length must be 2-12")
    extend_info, params = _parse_extend_info(template.get("extendInfo"))
    content = template.get("templateContent")
    if not isinstance(content, dict) or not isinstance(content.get("pages"), list):
        raise CardsmsError("MissingParameter", "param templateContent.pages is required (a list of pages)")
    raw_pages = content["pages"]
    low, high = rule.pages
    if not low <= len(raw_pages) <= high:
        raise _bad(f"param templateContent.pages: card type {card_type} ({CARD_TYPE_NAMES[card_type]}) "
                   f"takes {low}-{high} pages, got {len(raw_pages)}")
    pages = [
        _parse_page(i, p, rule, card_type, set(params), media_ratios) for i, p in enumerate(raw_pages, 1)
    ]
    card = CardTemplate(name, card_type, sign_name, extend_info, pages, params)
    if extend_info["purpose"] == "2":
        _check_trial_words(card)
    return card


def _text(value: Any, field_name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"param {field_name} must be a string")
    return value.strip()


def _parse_param(p: Any, where: str, seen: list[str]) -> dict[str, Any]:
    """One declared template parameter, normalised: {"name": "${x}", "type": 1-9, "example": ...}."""
    if not isinstance(p, dict):
        raise _bad(f"param {where} must be an object with name, type, example")
    pname = _text(p.get("name"), f"{where}.name")
    m = re.fullmatch(r"\$\{(.*)\}", pname)
    bare = m.group(1) if m else pname
    if not _PARAM_NAME.fullmatch(bare):
        raise _bad(f"param {where}.name {pname!r}: letters and digits only, starting with a letter, "
                   "at most 10 characters, no underscore")
    if bare in seen:
        raise _bad(f"param {where}.name {pname!r} is defined twice")
    ptype = p.get("type", 1)
    if isinstance(ptype, str) and ptype.isdigit():
        ptype = int(ptype)
    if not isinstance(ptype, int) or isinstance(ptype, bool) or not 1 <= ptype <= 9:
        raise _bad(f"param {where}.type must be an integer 1-9")
    example = _text(p.get("example"), f"{where}.example")
    if not 1 <= len(example) <= 20:
        raise _bad(f"param {where}.example must be 1-20 characters")
    return {"name": "${" + bare + "}", "type": ptype, "example": example}


def _parse_extend_info(raw: Any) -> tuple[dict[str, Any], list[str]]:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _bad("param extendInfo must be an object")
    scene = _text(raw.get("scene"), "extendInfo.scene")
    if len(scene) > 10:
        raise _bad(f"param scene must < 10 characters (got {len(scene)})")
    purpose = str(raw.get("purpose", "1")).strip()
    if purpose not in ("1", "2"):
        raise _bad(f"param extendInfo.purpose must be 1 (commercial) or 2 (trial), got {purpose!r}")
    raw_params = raw.get("params") or []
    if not isinstance(raw_params, list):
        raise _bad("param extendInfo.params must be a list")
    if len(raw_params) > MAX_PARAMS:
        raise _bad(f"param extendInfo.params: at most {MAX_PARAMS} parameters, got {len(raw_params)}")
    norm_params: list[dict[str, Any]] = []
    for i, p in enumerate(raw_params, 1):
        norm_params.append(_parse_param(p, f"extendInfo.params[{i}]", [n["name"][2:-1] for n in norm_params]))
    params = [n["name"][2:-1] for n in norm_params]
    user_ext = raw.get("userExt") or {}
    if not isinstance(user_ext, dict) or not all(isinstance(k, str) for k in user_ext):
        raise _bad("param extendInfo.userExt must be an object")
    info: dict[str, Any] = {"scene": scene, "purpose": purpose, "params": norm_params, "userExt": user_ext}
    return info, params


def _parse_page(
    page_no: int, raw: Any, rule: TypeRule, card_type: int, params: set[str],
    media_ratios: Mapping[str, str | None],
) -> list[dict[str, Any]]:
    where_page = f"pages[{page_no}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("tmpCards"), list) or not raw["tmpCards"]:
        raise _bad(f"param {where_page}.tmpCards must be a non-empty list of elements")
    elements = []
    for i, el in enumerate(raw["tmpCards"], 1):
        elements.append(_parse_element(f"{where_page}.tmpCards[{i}]", el, i, rule, params, media_ratios))
    positions = [e["positionNumber"] for e in elements]
    if len(set(positions)) != len(positions):
        raise _bad(f"param {where_page}: positionNumber values must be unique")
    elements.sort(key=lambda e: e["positionNumber"])
    counts = {
        "images": sum(e["type"] == "IMAGE" for e in elements),
        "videos": sum(e["type"] == "VIDEO" for e in elements),
        "titles": sum(e["type"] == "TEXT" and e["isTextTitle"] for e in elements),
        "bodies": sum(e["type"] == "TEXT" and not e["isTextTitle"] for e in elements),
        "buttons": sum(e["type"] == "BUTTON" for e in elements),
    }
    labels = {"images": "IMAGE", "videos": "VIDEO", "titles": "title TEXT", "bodies": "body TEXT",
              "buttons": "BUTTON"}
    for kind, count in counts.items():
        low, high = getattr(rule, kind)
        if not low <= count <= high:
            raise _bad(f"param {where_page}: card type {card_type} ({CARD_TYPE_NAMES[card_type]}) takes "
                       f"{low}-{high} {labels[kind]} element(s) per page, got {count}")
    if rule.same_count and len({counts[k] for k in rule.same_count}) > 1:
        got = ", ".join(f"{counts[k]} {labels[k]}" for k in rule.same_count)
        raise _bad(f"param {where_page}: card type {card_type} ({CARD_TYPE_NAMES[card_type]}) holds items of one "
                   f"{' and one '.join(labels[k] for k in rule.same_count)} each, got {got}")
    if rule.personal and not any(_PLACEHOLDER.search(e["content"]) for e in elements if e["type"] == "TEXT"):
        raise _bad(f"param {where_page}: card type {card_type} ({CARD_TYPE_NAMES[card_type]}) is personalised: "
                   "its title or text must hold a parameter such as ${amount} (filled per recipient)")
    return elements


def _parse_element(
    where: str, raw: Any, index: int, rule: TypeRule, params: set[str], media_ratios: Mapping[str, str | None]
) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise _bad(f"param {where} must be an object")
    etype = raw.get("type")
    if etype not in ELEMENT_TYPES:
        raise _bad(f"param {where}.type must be one of {', '.join(ELEMENT_TYPES)}, got {etype!r}")
    where = f"{where} ({etype})"
    position = raw.get("positionNumber", index)
    if isinstance(position, str) and position.isdigit():
        position = int(position)
    if not isinstance(position, int) or isinstance(position, bool) or position < 1:
        raise _bad(f"param {where}.positionNumber must be a positive integer")
    el: dict[str, Any] = {"type": etype, "positionNumber": position}
    if etype == "TEXT":
        is_title = raw.get("isTextTitle", False)
        if not isinstance(is_title, bool):
            raise _bad(f"param {where}.isTextTitle must be true or false")
        content = _text(raw.get("content"), f"{where}.content")
        limit = TITLE_MAX if is_title else rule.body_max
        _check_text(where, content, limit, rule.max_lines, params)
        el.update(isTextTitle=is_title, content=content)
    elif etype == "BUTTON":
        content = _text(raw.get("content"), f"{where}.content")
        _check_text(where, content, rule.button_max, 1, params)
        el["content"] = content
        if not raw.get("actionType"):
            raise CardsmsError("MissingParameter", f"param {where}.actionType is required for a button")
    else:
        el.update(_parse_media(where, etype, raw, rule, media_ratios))
    if raw.get("actionType"):
        if etype in ("TEXT", "VIDEO"):
            raise _bad(f"param {where}: a {etype} element cannot carry an action")
        el["actionType"], el["action"] = _parse_action(where, raw.get("actionType"), raw.get("action"), params)
    return el


def _check_text(where: str, content: str, limit: int, max_lines: int, params: set[str]) -> None:
    if not content:
        raise CardsmsError("MissingParameter", f"param {where}.content is required")
    if len(content) > limit:
        raise _bad(f"param {where}.content length must be <= {limit} (got {len(content)})")
    lines = content.count("\n") + 1
    if max_lines == 1 and lines > 1:
        raise _bad(f"param {where}.content: this card type does not support line breaks "
                   "(they would be cut off and rejected); remove them")
    if lines > max_lines:
        raise _bad(f"param {where}.content: at most {max_lines} lines, got {lines}")
    _check_placeholders(where + ".content", content, params)


def _check_placeholders(where: str, text: str, params: set[str]) -> None:
    names = _PLACEHOLDER.findall(text)
    if len(names) > MAX_VARS_PER_TEXT:
        raise _bad(f"param {where}: at most {MAX_VARS_PER_TEXT} variables per text, got {len(names)}")
    for n in names:
        if n not in params:
            raise _bad(f"param {where}: variable ${{{n}}} is not defined in extendInfo.params")


def _parse_media(
    where: str, etype: str, raw: dict[str, Any], rule: TypeRule, media_ratios: Mapping[str, str | None]
) -> dict[str, Any]:
    src_type = raw.get("srcType")
    if isinstance(src_type, str) and src_type.isdigit():
        src_type = int(src_type)
    if src_type not in (1, 2):
        raise _bad(f"param {where}.srcType must be 1 (media resource id) or 2 (URL), got {src_type!r}")
    out: dict[str, Any] = {"srcType": src_type, "src": _media_src(where + ".src", src_type, raw.get("src"))}
    if src_type == 1:
        ratio = media_ratios.get(out["src"], "missing")
        if ratio == "missing":
            raise _bad(f"param resUrl not exist: {where}.src {out['src']!r} is not a media resource of this "
                       "account (upload it and call GetMediaResourceId first)")
        if etype == "IMAGE" and ratio is None:
            raise _bad(f"param {where}.src {out['src']!r} is a video, not an image")
        if etype == "VIDEO" and ratio is not None:
            raise _bad(f"param {where}.src {out['src']!r} is an image, not a video")
        if etype == "IMAGE" and rule.ratio and ratio != rule.ratio:
            raise _bad(f"param {where}.src: this card type needs a {rule.ratio} image, resource is {ratio}")
    if etype == "VIDEO":
        cover_type = raw.get("coverSrcType", src_type)
        if cover_type not in (1, 2):
            raise _bad(f"param {where}.coverSrcType must be 1 or 2")
        cover = _media_src(where + ".cover", cover_type, raw.get("cover"))
        if cover_type == 1 and media_ratios.get(cover, "missing") in ("missing", None):
            raise _bad(f"param resUrl not exist: {where}.cover {cover!r} is not an image resource of this account")
        out.update(cover=cover, coverSrcType=cover_type)
    return out


def _media_src(where: str, src_type: int, value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    src = _text(value, where)
    if not src:
        raise CardsmsError("MissingParameter", f"param {where} is required")
    if src_type == 2 and not _is_url(src, https_only=False):
        raise _bad(f"param {where} must be an http(s) URL when srcType is 2")
    return src


def _is_url(value: str, https_only: bool = True) -> bool:
    parts = urlsplit(value)
    schemes = ("https",) if https_only else ("http", "https")
    return parts.scheme in schemes and bool(parts.netloc) and " " not in value


def _app_target(where: str, raw: dict[str, Any], resolved: str) -> dict[str, Any]:
    """OPEN_APP's packageName (one or more) and floorUrl (the page shown without the app), checked."""
    packages = raw.get("packageName")
    if isinstance(packages, str):
        packages = [p.strip() for p in packages.split(",") if p.strip()]
    if not isinstance(packages, list) or not packages:
        raise CardsmsError("MissingParameter", f"param {where}.action.packageName is required for OPEN_APP")
    for p in packages:
        if not isinstance(p, str) or not _PACKAGE.fullmatch(p):
            raise _bad(f"param {where}.action.packageName {p!r} is not a package name like com.example.app")
    floor = _text(raw.get("floorUrl"), f"{where}.action.floorUrl")
    if not floor:
        raise CardsmsError("MissingParameter", f"param {where}.action.floorUrl is required for OPEN_APP "
                           "(the page shown when the app is not installed)")
    if not _is_url(_PLACEHOLDER.sub("x", floor)):
        raise _bad(f"param {where}.action.floorUrl must be an https URL")
    if "://" not in resolved:
        raise _bad(f"param {where}.action.target must be a deep link such as app://path for OPEN_APP")
    return {"packageName": packages, "floorUrl": floor}


def _parse_action(where: str, action_type: Any, raw: Any, params: set[str]) -> tuple[str, dict[str, Any]]:
    if action_type not in ACTION_TYPES:
        raise _bad(f"param {where}.actionType must be one of {', '.join(ACTION_TYPES)}, got {action_type!r}")
    if not isinstance(raw, dict):
        raise CardsmsError("MissingParameter", f"param {where}.action is required for actionType {action_type}")
    target = _text(raw.get("target"), f"{where}.action.target")
    if not target:
        raise CardsmsError("MissingParameter", f"param {where}.action.target is required")
    if len(target) > TARGET_MAX:
        raise _bad(f"param {where}.action.target length must be <= {TARGET_MAX}")
    _check_placeholders(where + ".action.target", target, params)
    action: dict[str, Any] = {"target": target}
    merchant = _text(raw.get("merchantName"), f"{where}.action.merchantName")
    if len(merchant) > 30:
        raise _bad(f"param {where}.action.merchantName length must be <= 30")
    if merchant:
        action["merchantName"] = merchant
    resolved = _PLACEHOLDER.sub("x", target)
    if action_type in ("OPEN_URL", "OPEN_BROWSER"):
        if not _is_url(resolved):
            raise _bad(f"param {where}.action.target must be an https URL for {action_type}")
        if action_type == "OPEN_URL" and urlsplit(resolved).path.lower().endswith(".apk"):
            raise _bad(f"param {where}: OPEN_URL cannot trigger a download or open an app; "
                       "use OPEN_BROWSER for a download page")
    elif action_type == "OPEN_APP":
        action.update(_app_target(where, raw, resolved))
    elif action_type in ("DIAL_PHONE", "OPEN_SMS"):
        if not _PHONE_TARGET.fullmatch(resolved):
            raise _bad(f"param {where}.action.target must be a phone number of at most 20 characters")
    elif action_type == "OPEN_EMAIL" and not _EMAIL.fullmatch(resolved):
        raise _bad(f"param {where}.action.target must be an e-mail address")
    return action_type, action


def _check_trial_words(card: CardTemplate) -> None:
    for p_no, page in enumerate(card.pages, 1):
        for el in page:
            if el["type"] in ("TEXT", "BUTTON"):
                content = el["content"].lower()
                if not any(w in content for w in _TRIAL_WORDS):
                    raise _bad(f"param pages[{p_no}] {el['type']} {el['content']!r}: trial templates "
                               "(purpose 2) must carry 测试 or 'test' in title, body and buttons")


def placeholder_names(text: str) -> list[str]:
    return _PLACEHOLDER.findall(text)
