"""Files that arrive base64-encoded inside API parameters (signature proofs, digital template parts)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from cardsms.domain.errors import CardsmsError
from cardsms.media.sniff import sniff

_SUFFIX_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif",
    "mp4": "video/mp4", "mp3": "audio/mpeg", "txt": "text/plain",
}


@dataclass(frozen=True, slots=True)
class InlineFile:
    suffix: str
    content_type: str
    data: bytes


def decode_inline_file(where: str, contents: object, suffix: object, allowed: tuple[str, ...],
                       max_bytes: int) -> InlineFile:
    if not isinstance(suffix, str) or suffix.lower().lstrip(".") not in allowed:
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}.FileSuffix must be one of {', '.join(allowed)}, "
                           f"got {suffix!r}")
    suffix = suffix.lower().lstrip(".")
    if not isinstance(contents, str) or not contents.strip():
        raise CardsmsError("MissingParameter", f"{where}.FileContents is mandatory (base64 file content)")
    if len(contents) > (max_bytes * 4) // 3 + 8:
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: the file is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(contents, validate=True)
    except (binascii.Error, ValueError):
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}.FileContents is not valid base64") from None
    if not data:
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: the file is empty")
    if len(data) > max_bytes:
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: the file is {len(data)} bytes, at most {max_bytes}")
    expected = _SUFFIX_TYPES[suffix]
    if expected == "text/plain":
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: a txt file must be UTF-8 text") from None
        if "\x00" in text:
            raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: a txt file must not contain NUL characters")
    elif sniff(data) != expected:
        raise CardsmsError("isv.FILE_ILLEGAL", f"{where}: the content is not a {suffix} file "
                           f"(looks like {sniff(data) or 'unknown data'})")
    return InlineFile(suffix, expected, data)
