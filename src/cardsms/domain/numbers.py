"""Phone number normalisation.

Chinese mainland mobiles take a fast path (no phonenumbers call): they are by far the most
common input and a 500,000-number import must not parse each one with the full library.
Everything else goes through phonenumbers and must be a valid E.164 number.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import phonenumbers

_SEPARATORS = re.compile(r"[\s\-()./]")
_MAINLAND_MOBILE = re.compile(r"1[3-9]\d{9}")


class InvalidNumber(ValueError):
    """A phone number that cannot be normalised; the message says why."""


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str  # "+8613800138000"
    mainland_mobile: bool

    @property
    def national(self) -> str:
        """The number as Alibaba's API shows mainland numbers (no country code)."""
        return self.e164[3:] if self.mainland_mobile else self.e164

    @property
    def sha1(self) -> str:
        """SHA1 hex of the national form, the EncryptType=SHA1 form of QueryMobilesCardSupport."""
        return hashlib.sha1(self.national.encode()).hexdigest()


def normalise_number(raw: str) -> PhoneNumber:
    """Normalise one number; accept +86, 86 and 0086 prefixes, spaces, dashes, dots, brackets."""
    if not isinstance(raw, str):
        raise InvalidNumber(f"{raw!r} is not a string")
    text = _SEPARATORS.sub("", raw.strip())
    if not text:
        raise InvalidNumber("the number is empty")
    if len(text) > 20:
        raise InvalidNumber(f"{raw!r} is longer than 20 characters")
    candidate = text
    for prefix in ("+86", "0086", "86"):
        if candidate.startswith(prefix) and len(candidate) == len(prefix) + 11:
            candidate = candidate[len(prefix) :]
            break
    if _MAINLAND_MOBILE.fullmatch(candidate):
        return PhoneNumber("+86" + candidate, True)
    if text.startswith("00"):
        text = "+" + text[2:]
    if not text.startswith("+"):
        if text.isdigit() and len(text) == 11 and text.startswith("1"):
            raise InvalidNumber(f"{raw!r} is not a valid Chinese mainland mobile number")
        # A bare number without + is read as international (country code first), as Alibaba does.
        text = "+" + text
    if not text[1:].isdigit():
        raise InvalidNumber(f"{raw!r} contains characters other than digits and separators")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"{raw!r} is not a phone number ({exc})") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"{raw!r} is not a valid phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    mainland = parsed.country_code == 86 and bool(_MAINLAND_MOBILE.fullmatch(e164[3:]))
    return PhoneNumber(e164, mainland)


def normalise_mainland_mobile(raw: str) -> PhoneNumber:
    """Normalise a number that must be a Chinese mainland mobile (card messages)."""
    number = normalise_number(raw)
    if not number.mainland_mobile:
        raise InvalidNumber(f"{raw!r} is not a Chinese mainland mobile number (card messages are mainland-only)")
    return number


def mainland_national(raw: str) -> str:
    """The national form of a mainland mobile; a fast path for the plain 11-digit form (imports)."""
    if len(raw) == 11 and raw.isascii() and raw.isdigit() and raw[0] == "1" and raw[1] in "3456789":
        return raw
    return normalise_mainland_mobile(raw.strip()).national
