"""Variable attributes of text templates (CreateSmsTemplate's TemplateRule, GetSmsTemplate's
VariableAttribute): each `${var}` of a template made with the current operations declares what it holds,
the declarations are checked against the content when the template is created, and every value sent is
checked against its declaration (SendSms, SendBatchSms, the fallback text of card sends).

The attribute names are those of Alibaba's "Examples for the TemplateRule&TemplateContent parameters";
the limits are ours, written after its variable specifications (docs/api.md lists them)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cardsms.domain.errors import CardsmsError


@dataclass(frozen=True, slots=True)
class VariableRule:
    meaning: str
    rule: str  # what a value must be, as an error message says it
    check: Callable[[str], bool]


def _pattern(regex: str) -> Callable[[str], bool]:
    compiled = re.compile(regex)
    return lambda value: compiled.fullmatch(value) is not None


def _text(limit: int) -> Callable[[str], bool]:
    return lambda value: 1 <= len(value) <= limit and "【" not in value and "】" not in value


_DATE = r"\d{4}(?:[-/.年]?\d{1,2}(?:[-/.月]?\d{1,2}日?)?)?"
_CLOCK = r"\d{1,2}(?:[:：]\d{2}(?:[:：]\d{2})?|[点时](?:\d{1,2}分?)?)?"
_PERIOD = r"(?:上午|下午|晚上|中午|凌晨|早上)"

RULES: dict[str, VariableRule] = {
    "numberCaptcha": VariableRule("verification code, digits", "4-6 digits", _pattern(r"\d{4,6}")),
    "characterWithNumber2": VariableRule("verification code, letters or letters and digits",
                                         "4-6 letters or digits", _pattern(r"[A-Za-z0-9]{4,6}")),
    "name": VariableRule("a person's name", "1-20 characters", _text(20)),
    "unit_name": VariableRule("a company or organisation name", "1-30 characters", _text(30)),
    "address": VariableRule("an address", "1-50 characters", _text(50)),
    "phone_number2": VariableRule(
        "a phone number", "a mainland mobile number (11 digits, starting with 1) or a landline of 5-13 digits "
        "and dashes (at most 15 characters)", _pattern(r"1\d{10}|(?=[\d-]{5,15}$)\d[\d-]*\d")),
    "email_address": VariableRule("an e-mail address", "an e-mail address of at most 50 characters",
                                  _pattern(r"(?=.{3,50}$)[^@\s]+@[^@\s]+\.[^@\s]+")),
    "time": VariableRule("a date or time", "a date (yyyyMMdd, yyyy-MM-dd, yyyy/MM/dd), a time (hh:mm[:ss]) or "
                         "both, optionally with 上午/下午/晚上",
                         _pattern(f"(?:{_DATE})?\\s?{_PERIOD}?\\s?(?:{_CLOCK})?(?<=\\S)")),
    "money": VariableRule("an amount of money", "digits with at most 2 decimals (at most 15 characters), "
                          "optionally with a currency sign or 元",
                          _pattern(r"(?=.{1,15}$)[¥￥$]?\d+(?:\.\d{1,2})?元?")),
    "other_number2": VariableRule("an order, account or other number", "1-35 letters, digits, dashes or "
                                  "underscores", _pattern(r"[A-Za-z0-9_-]{1,35}")),
    "tracking_number": VariableRule("a parcel tracking number", "6-35 letters or digits",
                                    _pattern(r"[A-Za-z0-9]{6,35}")),
    "pick_up_code": VariableRule("a parcel pick-up code", "1-12 letters, digits or dashes",
                                 _pattern(r"[A-Za-z0-9-]{1,12}")),
    "license_plate_number": VariableRule("a vehicle licence plate", "a mainland plate such as 浙A12345",
                                         _pattern(r"[\u4e00-\u9fff][A-Z][A-Z0-9]{5,6}")),
    "link_param": VariableRule("the variable part of a link", "1-30 letters, digits or -_./?=&%",
                               _pattern(r"[A-Za-z0-9\-_./?=&%]{1,30}")),
    "others": VariableRule("anything else", "1-35 characters", _text(35)),
}
CAPTCHA_RULES = ("numberCaptcha", "characterWithNumber2")


def _bad(message: str) -> CardsmsError:
    return CardsmsError("isv.INVALID_PARAMETERS", message)


def check_template_rule(rule: Any, variables: list[str], template_type: int) -> dict[str, str]:
    """TemplateRule against the content's variables: every variable declared once, with a known attribute;
    a verification code template's one variable is a code."""
    if not isinstance(rule, dict):
        raise _bad('TemplateRule must be a JSON object of variable -> attribute, e.g. {"code": "numberCaptcha"}')
    declared = {str(k): v for k, v in rule.items()}
    for name, attribute in declared.items():
        if name not in variables:
            raise _bad(f"TemplateRule names ${{{name}}}, which TemplateContent does not hold")
        if attribute not in RULES:
            raise _bad(f"TemplateRule ${{{name}}}: {str(attribute)[:40]!r} is not a variable attribute; use one of "
                       f"{', '.join(RULES)}")
        if template_type == 0 and attribute not in CAPTCHA_RULES:
            raise _bad(f"TemplateRule ${{{name}}}: a verification code template (TemplateType 0) takes "
                       f"{' or '.join(CAPTCHA_RULES)}, got {attribute}")
        if template_type != 0 and attribute in CAPTCHA_RULES:
            raise _bad(f"TemplateRule ${{{name}}}: {attribute} is for verification code templates (TemplateType "
                       "0) only")
    for name in variables:
        if name not in declared:
            raise _bad(f"TemplateRule: TemplateContent holds ${{{name}}}, which TemplateRule does not declare")
    return declared


def check_values(rule: dict[str, str], values: dict[str, Any], field: str) -> None:
    """The values sent for a template with declared variables, each against its attribute."""
    for name, attribute in rule.items():
        if name not in values:
            continue  # a missing value is reported by the renderer, which names it
        value = str(values[name])
        spec = RULES.get(attribute)
        if spec is not None and not spec.check(value):
            raise _bad(f"{field} ${{{name}}}: {value[:40]!r} is not {spec.meaning} ({attribute}: {spec.rule})")
