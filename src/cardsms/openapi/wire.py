"""Decoding the Alibaba wire's compound parameters: JSON strings (TemplateParam, the five `...Json` lists of the
batch sends, CardObjects, CustomShortCodeJson) and comma-separated number lists, into the plain values the
services take. Every refusal names the parameter and the rule, with the code of the error table."""

from __future__ import annotations

import json
from typing import Any

from cardsms.domain.errors import MAX_JSON_DEPTH, CardsmsError, json_too_deep
from cardsms.services.sending import check_custom_url


def split_numbers(raw: str) -> list[str]:
    """PhoneNumbers / PhoneNumberJson-less calls: numbers separated by commas, blanks dropped."""
    return [p for p in (x.strip() for x in raw.split(",")) if p]


def parse_json_param(raw: Any, field_name: str) -> Any:
    """A parameter that may arrive as a JSON string or already decoded."""
    if isinstance(raw, str):
        if not raw.strip():
            return None
        if json_too_deep(raw):
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} nests deeper than {MAX_JSON_DEPTH} levels")
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} is not valid JSON: {exc.msg} "
                               f"at character {exc.pos}") from None
    return raw


def json_list(raw: Any, field_name: str, n: int | None, required: bool = True) -> list[Any] | None:
    value = parse_json_param(raw, field_name)
    if value is None:
        if required:
            raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
        return None
    if not isinstance(value, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON array")
    if n is not None and len(value) != n:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} holds {len(value)} entries; it must hold one "
                           f"per phone number ({n})")
    return value


def card_params(raw: Any, field_name: str) -> dict[str, Any]:
    value = parse_json_param(raw, field_name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object of card variables")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, str | int | float):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{k} must be a string or a number")
    return value


def card_objects(objects: list[Any]) -> list[tuple[Any, dict[str, Any], str]]:
    """(mobile, dyncParams, customUrl) of SendCardSms's CardObjects."""
    out = []
    for i, obj in enumerate(objects, 1):
        if not isinstance(obj, dict):
            raise CardsmsError("isv.INVALID_JSON_PARAM", f"CardObjects[{i}] must be an object with a mobile")
        mobile = obj.get("mobile") or obj.get("Mobile")
        if mobile in (None, ""):
            raise CardsmsError("MissingParameter", f"CardObjects[{i}].mobile is mandatory for this action.")
        params = card_params(obj.get("dyncParams") or obj.get("DyncParams"), f"CardObjects[{i}].dyncParams")
        url = check_custom_url(obj.get("customUrl") or obj.get("CustomUrl"), f"CardObjects[{i}].customUrl")
        out.append((mobile, params, url))
    return out


def per_number(raw: Any, field_name: str, n: int) -> list[Any]:
    value = json_list(raw, field_name, n, required=False)
    return value if value is not None else [None] * n


def json_object(raw: Any, field_name: str) -> Any:
    value = parse_json_param(raw, field_name)
    if value is not None and not isinstance(value, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object")
    return value


def image_rate(raw: str) -> str | None:
    """GetMediaResourceId's ExtendInfo, `{"img_rate": "..."}`: the rate as given (checked by the service),
    None when the parameter is absent."""
    if not raw:
        return None
    if json_too_deep(raw):
        raise CardsmsError("InvalidParameter", "param ExtendInfo nests too deep (an object of img_rate expected)")
    try:
        info = json.loads(raw)
    except json.JSONDecodeError:
        raise CardsmsError("InvalidParameter", "param ExtendInfo is not valid JSON") from None
    rate = info.get("img_rate") if isinstance(info, dict) else None
    return rate if isinstance(rate, str) else repr(rate)
