"""Rules for signatures and text/digital templates (names, content, variables)."""

from __future__ import annotations

import re

from cardsms.domain.errors import CardsmsError

TEMPLATE_TYPES = {0: "verification code", 1: "notification", 2: "promotional", 3: "international"}
DIGITAL_TEMPLATE_TYPE = 7
SIGN_SOURCES = {
    0: "enterprise or public institution", 1: "MIIT-registered website", 2: "app",
    3: "official account or mini program", 4: "e-commerce store", 5: "trademark",
}
SIGN_TYPES = {0: "verification code", 1: "general"}

TEMPLATE_NAME_MAX = 30
TEMPLATE_CONTENT_MAX = 500
REMARK_MAX = 200
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_VARIABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,19}")
_SIGN_NAME = re.compile(r"[\w\u4e00-\u9fff]+")


def _bad(rule: str) -> CardsmsError:
    return CardsmsError("isv.INVALID_PARAMETERS", rule)


def check_sign_name(name: str) -> str:
    name = name.strip()
    if not 2 <= len(name) <= 12:
        raise _bad(f"SignName must be 2-12 characters, got {len(name)}")
    if not _SIGN_NAME.fullmatch(name):
        raise _bad(f"SignName {name!r} may hold only Chinese characters, letters and digits (no 【】 or symbols)")
    return name


def check_remark(remark: str | None, required: bool = False) -> str:
    remark = (remark or "").strip()
    if required and not remark:
        raise CardsmsError("MissingParameter", "Remark is mandatory for this action (describe the use case).")
    if len(remark) > REMARK_MAX:
        raise _bad(f"Remark must be at most {REMARK_MAX} characters, got {len(remark)}")
    return remark


def check_template_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= TEMPLATE_NAME_MAX:
        raise _bad(f"TemplateName must be 1-{TEMPLATE_NAME_MAX} characters, got {len(name)}")
    return name


def template_variables(content: str) -> list[str]:
    return _VARIABLE.findall(content)


def check_text_template(template_type: int, content: str) -> str:
    """Validate a text template's content for its type; return the content stripped."""
    if template_type not in TEMPLATE_TYPES:
        raise _bad(f"TemplateType must be one of {sorted(TEMPLATE_TYPES)} "
                   f"({', '.join(f'{k} {v}' for k, v in TEMPLATE_TYPES.items())}), got {template_type}")
    content = content.strip()
    if not content:
        raise CardsmsError("MissingParameter", "TemplateContent is mandatory for this action.")
    if len(content) > TEMPLATE_CONTENT_MAX:
        raise _bad(f"TemplateContent must be at most {TEMPLATE_CONTENT_MAX} characters, got {len(content)}")
    if "【" in content or "】" in content:
        raise _bad("TemplateContent must not contain 【】: the signature is added when sending")
    names = template_variables(content)
    for n in names:
        if not _VARIABLE_NAME.fullmatch(n):
            raise _bad(f"TemplateContent variable ${{{n}}}: names are 1-20 letters, digits or underscores, "
                       "starting with a letter")
    if template_type == 0 and len(names) != 1:
        raise _bad(f"a verification code template (TemplateType 0) holds exactly one variable, got {len(names)}")
    return content
