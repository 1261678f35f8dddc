"""The simulated handset population.

A number's vendor and card support are a pure function of SHA1(national number), so that
QueryMobilesCardSupport with EncryptType=SHA1 answers the same as with plain numbers:

    h = int(sha1_hex[:8], 16)
    bucket = h % 100          -> vendor:  0-24 HuaWei, 25-34 HONOR, 35-49 XiaoMi, 50-64 OPPO,
                                          65-79 VIVO, 80-84 MEIZU, 85-99 other (no card support)
    share = (h // 100) % 100  -> card capable when share < CARDSMS_SIM_CARD_SHARE (default 80)

A CSV (CARDSMS_SIM_HANDSETS_CSV; columns mobile,vendor,support with support 0/1, vendor empty or
"other" for phones without a card vendor) overrides single numbers.
"""

from __future__ import annotations

import csv
from pathlib import Path

from cardsms.domain.numbers import InvalidNumber, normalise_number
from cardsms.domain.vendors import Vendor
from cardsms.vendors.gateway import Handset

_BUCKETS: tuple[tuple[int, Vendor | None], ...] = (
    (25, Vendor.HUAWEI), (35, Vendor.HONOR), (50, Vendor.XIAOMI), (65, Vendor.OPPO),
    (80, Vendor.VIVO), (85, Vendor.MEIZU), (100, None),
)


_VENDOR_OF_BUCKET = tuple(next(v for limit, v in _BUCKETS if bucket < limit) for bucket in range(100))


def simulated_handset(sha1_hex: str, card_share: int) -> Handset:
    h = int(sha1_hex[:8], 16)
    vendor = _VENDOR_OF_BUCKET[h % 100]
    capable = vendor is not None and (h // 100) % 100 < card_share
    return Handset(vendor, capable)


def load_overrides(path: Path) -> dict[str, Handset]:
    """Read the override CSV; errors name the line."""
    by_name = {v.value.lower(): v for v in Vendor}
    out: dict[str, Handset] = {}
    with path.open(newline="", encoding="utf-8-sig") as fh:
        for line_no, row in enumerate(csv.reader(fh), 1):
            if not row or (line_no == 1 and row[0].strip().lower() == "mobile"):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{line_no}: expected mobile,vendor,support")
            mobile, vendor_name, support = (c.strip() for c in row[:3])
            try:
                number = normalise_number(mobile)
            except InvalidNumber as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from None
            vendor = None if vendor_name.lower() in ("", "other") else by_name.get(vendor_name.lower())
            if vendor is None and vendor_name.lower() not in ("", "other"):
                raise ValueError(f"{path}:{line_no}: unknown vendor {vendor_name!r}")
            if support not in ("0", "1"):
                raise ValueError(f"{path}:{line_no}: support must be 0 or 1")
            out[number.sha1] = Handset(vendor, support == "1" and vendor is not None)
    return out


class SimulatedHandsets:
    def __init__(self, card_share: int, overrides: dict[str, Handset] | None = None) -> None:
        self.card_share = card_share
        self.overrides = overrides or {}

    def lookup(self, sha1_hex: str) -> Handset:
        return self.overrides.get(sha1_hex) or simulated_handset(sha1_hex, self.card_share)
