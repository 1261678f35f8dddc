"""The identifiers of qualification records: unified social credit codes (GB 32100-2015) and mainland
resident identity card numbers (GB 11643-1999), each with its check character. A typing mistake in either
is caught here, before a reviewer ever sees the record."""

from __future__ import annotations

import re
from datetime import date

_USCC_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # no I, O, S, V, Z
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_USCC = re.compile(f"[{_USCC_CHARS}]{{18}}")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID = re.compile(r"\d{17}[\dX]")
_MOBILE = re.compile(r"1[3-9]\d{9}")


def uscc_check_char(first17: str) -> str:
    total = sum(_USCC_CHARS.index(ch) * w for ch, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_CHARS[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str:
    """Why `code` is not a unified social credit code, or '' when it is one."""
    if not _USCC.fullmatch(code):
        return ("must be 18 characters of digits and upper-case letters other than I, O, S, V and Z "
                f"(a unified social credit code), got {code[:40]!r}")
    if uscc_check_char(code[:17]) != code[17]:
        return f"{code} fails the check character of GB 32100 (a typing mistake?)"
    return ""


def id_card_check_char(first17: str) -> str:
    return _ID_CHECK[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def id_card_problem(number: str) -> str:
    """Why `number` is not a mainland resident identity card number, or '' when it is one."""
    number = number.upper()
    if not _ID.fullmatch(number):
        return f"must be 18 characters: 17 digits and a digit or X, got {number[:40]!r}"
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return f"{number[6:14]} in {number} is not a date of birth"
    if id_card_check_char(number[:17]) != number[17]:
        return f"{number} fails the check digit of GB 11643 (a typing mistake?)"
    return ""


def mobile_problem(number: str) -> str:
    return "" if _MOBILE.fullmatch(number) else f"must be a mainland mobile number of 11 digits, got {number[:40]!r}"
