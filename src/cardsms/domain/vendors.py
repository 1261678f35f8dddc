"""Handset vendors and what each supports, kept as data (CARD_TEMPLATES.md's matrix)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any


class Vendor(StrEnum):
    HUAWEI = "HuaWei"
    HONOR = "HONOR"
    XIAOMI = "XiaoMi"
    OPPO = "OPPO"
    VIVO = "VIVO"
    MEIZU = "MEIZU"


ALL_VENDORS: tuple[Vendor, ...] = tuple(Vendor)

_H, _X, _O, _V, _M = Vendor.HUAWEI, Vendor.XIAOMI, Vendor.OPPO, Vendor.VIVO, Vendor.MEIZU

# card type -> vendors that render it (HONOR is added below: treated like HuaWei until documented)
CARD_TYPE_SUPPORT: dict[int, frozenset[Vendor]] = {
    1: frozenset({_H, _O, _M}),  # horizontal-slide 1
    2: frozenset({_H, _O, _M}),  # horizontal-slide 2
    3: frozenset({_H, _X, _V}),  # general notification
    4: frozenset({_H, _O, _V}),  # video
    5: frozenset({_H, _X, _O, _M, _V}),  # image-text
    6: frozenset({_H}),  # trip notification
    7: frozenset({_H, _X, _O, _M, _V}),  # multi image-text
    8: frozenset({_H, _O, _V}),  # red packet
    9: frozenset({_H}),  # news
    10: frozenset({_H, _V}),  # e-commerce
    11: frozenset({_H, _V}),  # carousel 16:9
    12: frozenset({_H, _V}),  # carousel 1:1
    13: frozenset({_H, _O, _V}),  # carousel 48:65
    14: frozenset({_H}),  # video image-text
    15: frozenset({_H, _O}),  # long text
    16: frozenset({_H}),  # personalised red packet
    17: frozenset({_H}),  # e-commerce multi-product
    18: frozenset({_H}),  # image-text video
    19: frozenset({_H}),  # single coupon
    20: frozenset({_H}),  # multi coupon
}

ACTION_SUPPORT: dict[str, frozenset[Vendor]] = {
    "OPEN_QUICK": frozenset({_H, _X, _O, _M, _V}),
    "OPEN_APP": frozenset({_H, _X, _O, _M, _V}),
    "OPEN_BROWSER": frozenset({_H, _X, _O, _M, _V}),
    "OPEN_URL": frozenset({_H, _X, _M, _V}),
    "DIAL_PHONE": frozenset({_H, _X, _M, _V}),
    "OPEN_SMS": frozenset({_H, _X, _M, _V}),
    "OPEN_SCHEDULE": frozenset({_H, _X, _M, _V}),
    "OPEN_EMAIL": frozenset({_H, _X, _M}),
    "OPEN_MAP": frozenset({_H, _X, _M}),
    "OPEN_POPUP": frozenset({_H}),
    "COPY_PARAMETER": frozenset({_H}),
}


def _with_honor(support: frozenset[Vendor]) -> frozenset[Vendor]:
    return support | {Vendor.HONOR} if Vendor.HUAWEI in support else support


CARD_TYPE_SUPPORT = {k: _with_honor(v) for k, v in CARD_TYPE_SUPPORT.items()}
ACTION_SUPPORT = {k: _with_honor(v) for k, v in ACTION_SUPPORT.items()}


def parse_factorys(raw: str | None) -> tuple[Vendor, ...]:
    """`Factorys` is a comma-separated vendor list; empty means all vendors."""
    if raw is None or not raw.strip():
        return ALL_VENDORS
    by_name = {v.value.lower(): v for v in Vendor}
    chosen: list[Vendor] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in by_name:
            allowed = ", ".join(v.value for v in Vendor)
            raise ValueError(f"unknown vendor {part.strip()!r}; allowed: {allowed}")
        if by_name[name] not in chosen:
            chosen.append(by_name[name])
    return tuple(chosen) or ALL_VENDORS


def unsupported_reason(vendor: Vendor, card_type: int, actions: set[str]) -> str | None:
    """Why a template is not submitted to a vendor, or None when the vendor supports it all."""
    if vendor not in CARD_TYPE_SUPPORT.get(card_type, frozenset()):
        return f"not submitted: {vendor.value} does not support card type {card_type}"
    for action in sorted(actions):
        if vendor not in ACTION_SUPPORT.get(action, frozenset()):
            return f"not submitted: {vendor.value} does not support action {action}"
    return None


class ReviewState(IntEnum):
    REVIEWING = 0
    APPROVED = 1
    REJECTED = 2
    NOT_SUBMITTED = 3  # the vendor does not support the card type or an action


@dataclass(frozen=True, slots=True)
class Handset:
    vendor: Vendor | None  # None: a phone of a vendor without card support (e.g. Apple)
    card_capable: bool


def approved_vendors(reviews: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The vendors that approved a card template, from its per-vendor review rows (`vendor`, `state`)."""
    return frozenset(r["vendor"] for r in reviews if r["state"] == ReviewState.APPROVED)


def shows_card(handset: Handset, approved: frozenset[str] | set[str]) -> bool:
    """Whether this handset renders a card of a template these vendors approved: the phone parses cards and
    its vendor is one of them (SPEC.md sending rule 3; the same rule for sends, links and capability checks)."""
    return handset.card_capable and handset.vendor is not None and handset.vendor.value in approved
