"""Console languages: Simplified Chinese (default) and English.

Templates write English and call `_("...")`; ZH maps each English string to Chinese. A test checks
that every string the templates use has a Chinese entry. The language comes from the
`cardsms_lang` cookie (the switch in the page), else from Accept-Language.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

LANGUAGES = ("zh-CN", "en")


def language(request: Request) -> str:
    chosen = request.cookies.get("cardsms_lang")
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "zh-CN"


def translator(lang: str) -> Callable[[str], str]:
    if lang == "en":
        return lambda s: s
    return lambda s: ZH.get(s, s)


ZH: dict[str, str] = {}
