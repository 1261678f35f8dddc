"""Recognise media files by their bytes (never by the name a client gave) and read image sizes."""

from __future__ import annotations

import struct


def sniff(data: bytes) -> str | None:
    """The content type of data, or None for anything that is not a supported media file."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "video/mp4"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if data.startswith(b"ID3") or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"):
        return "audio/mpeg"
    return None


def image_size(data: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) of a PNG, GIF or JPEG, or None when the header is unreadable."""
    try:
        if content_type == "image/png" and len(data) >= 24:
            w, h = struct.unpack(">II", data[16:24])
            return w, h
        if content_type == "image/gif" and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return w, h
        if content_type == "image/jpeg":
            return _jpeg_size(data)
    except struct.error:
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


RATIOS = {"oneToOne": 1.0, "sixteenToNine": 16 / 9, "threeToOne": 3.0, "fortyEightToSixtyFive": 48 / 65}
RATIO_TOLERANCE = 0.05


def ratio_matches(size: tuple[int, int], ratio: str) -> bool:
    w, h = size
    if h == 0:
        return False
    return abs((w / h) / RATIOS[ratio] - 1) <= RATIO_TOLERANCE
