"""SMS text rules: composition, GSM-7/UCS-2 choice, segment counting, concatenation (UDH),
delivery receipt text, opt-out keywords. Pure functions.

Segment sizes: GSM-7 160 septets alone or 153 per part; UCS-2 70 characters alone or 67 per
part (characters outside the BMP take two UTF-16 units). GSM-7 extension characters (``^{}[]~|€\\``)
take two septets and are never split across parts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# GSM 03.38 default alphabet, in code order (0x1B is the escape to the extension table).
_GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D, "]": 0x3E,
            "|": 0x40, "€": 0x65}
_GSM_CODE = {ch: i for i, ch in enumerate(_GSM_BASIC) if ch != "\x1b"}
_GSM_DECODE = {i: ch for ch, i in _GSM_CODE.items()}
_GSM_EXT_DECODE = {v: k for k, v in _GSM_EXT.items()}

GSM7, UCS2 = 0, 8  # SMPP data_coding values
OPT_OUT_KEYWORDS = frozenset({"r", "t", "td", "退订", "stop"})
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


_GSM_ALL = frozenset(_GSM_CODE) | frozenset(_GSM_EXT)


def is_gsm7(text: str) -> bool:
    return _GSM_ALL.issuperset(text)


def _septets(ch: str) -> int:
    return 2 if ch in _GSM_EXT else 1


@dataclass(frozen=True, slots=True)
class Encoded:
    data_coding: int
    parts: tuple[bytes, ...]  # each part's payload (without UDH)

    @property
    def segments(self) -> int:
        return len(self.parts)


def encode_gsm7(text: str) -> bytes:
    """One octet per septet (the unpacked form SMPP carries for data_coding 0)."""
    out = bytearray()
    for ch in text:
        if ch in _GSM_EXT:
            out += bytes((0x1B, _GSM_EXT[ch]))
        else:
            out.append(_GSM_CODE[ch])
    return bytes(out)


def decode_gsm7(data: bytes) -> str:
    out, escape = [], False
    for b in data:
        if escape:
            out.append(_GSM_EXT_DECODE.get(b, " "))
            escape = False
        elif b == 0x1B:
            escape = True
        else:
            out.append(_GSM_DECODE.get(b, "?"))
    return "".join(out)


def _split_gsm(text: str, size: int) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for ch in text:
        n = _septets(ch)
        if used + n > size:
            parts.append("".join(current))
            current, used = [], 0
        current.append(ch)
        used += n
    parts.append("".join(current))
    return parts


def _split_ucs2(text: str, size: int) -> list[bytes]:
    units = text.encode("utf-16-be")
    parts, start = [], 0
    while start < len(units):
        end = min(start + size * 2, len(units))
        # do not split a surrogate pair
        if end < len(units) and 0xD8 <= units[end - 2] <= 0xDB:
            end -= 2
        parts.append(units[start:end])
        start = end
    return parts


def encode(text: str) -> Encoded:
    """Choose the alphabet and split into parts (payloads without UDH)."""
    if is_gsm7(text):
        septets = sum(_septets(ch) for ch in text)
        if septets <= 160:
            return Encoded(GSM7, (encode_gsm7(text),))
        return Encoded(GSM7, tuple(encode_gsm7(p) for p in _split_gsm(text, 153)))
    units = len(text.encode("utf-16-be")) // 2
    if units <= 70:
        return Encoded(UCS2, (text.encode("utf-16-be"),))
    return Encoded(UCS2, tuple(_split_ucs2(text, 67)))


def count_segments(text: str) -> int:
    return encode(text).segments


def udh(ref: int, total: int, seq: int) -> bytes:
    """The 8-bit-reference concatenation header (IEI 0x00)."""
    return bytes((0x05, 0x00, 0x03, ref & 0xFF, total, seq))


def decode_payload(data: bytes, data_coding: int) -> str:
    if data_coding == UCS2:
        return data.decode("utf-16-be", errors="replace")
    if data_coding in (3, 4):  # Latin-1, binary
        return data.decode("latin-1")
    return decode_gsm7(data)


def split_udh(payload: bytes) -> tuple[tuple[int, int, int] | None, bytes]:
    """(ref, total, seq) of a concatenation UDH and the rest; for esm_class with UDHI set."""
    if not payload:
        return None, payload
    length = payload[0]
    header, rest = payload[1 : 1 + length], payload[1 + length :]
    i = 0
    while i + 1 < len(header):
        iei, ln = header[i], header[i + 1]
        value = header[i + 2 : i + 2 + ln]
        if iei == 0x00 and ln == 3:
            return (value[0], value[1], value[2]), rest
        if iei == 0x08 and ln == 4:
            return (int.from_bytes(value[:2], "big"), value[2], value[3]), rest
        i += 2 + ln
    return None, rest


def with_signature(sign_name: str, body: str) -> str:
    return f"【{sign_name}】{body}"


def opt_out_line(text: str) -> str:
    return "拒收请回复R" if _CJK.search(text) else "To unsubscribe, reply R."


def compose(sign_name: str, body: str, link: str = "", opt_out: bool = False) -> str:
    """`【signature】body[ link][ opt-out line]`; the opt-out line is not added twice."""
    text = with_signature(sign_name, body.strip())
    if link:
        text = f"{text} {link}"
    if opt_out and "回复R" not in text and "reply R" not in text:
        text = f"{text} {opt_out_line(body)}"  # the language of the body, not of the signature
    return text


def is_opt_out(content: str) -> bool:
    return content.strip().strip("。.!！").lower() in OPT_OUT_KEYWORDS


_DLR_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ReceiptText:
    message_id: str
    stat: str
    err: str


def parse_receipt(text: str) -> ReceiptText | None:
    """Parse the SMPP 3.4 Appendix B receipt text (`id:... stat:DELIVRD err:000 ...`)."""
    fields = {k.lower(): v for k, v in _DLR_FIELD.findall(text)}
    if "stat" not in fields:
        return None
    return ReceiptText(fields.get("id", ""), fields["stat"].upper(), fields.get("err", ""))


def receipt_text(message_id: str, submit: str, done: str, stat: str, err: str, text: str) -> str:
    """Build the receipt text as SMSCs send it (dates as yyMMddhhmm)."""
    delivered = "001" if stat == "DELIVRD" else "000"
    return (f"id:{message_id} sub:001 dlvrd:{delivered} submit date:{submit} done date:{done} "
            f"stat:{stat} err:{err} text:{text[:20]}")


FINAL_STATS = {"DELIVRD": "delivered", "EXPIRED": "expired", "DELETED": "failed", "UNDELIV": "failed",
               "REJECTD": "failed", "UNKNOWN": "failed"}
