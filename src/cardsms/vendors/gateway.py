"""Interfaces to handset vendors' review and capability services.

The simulator (cardsms.simulator) is one implementation; a real vendor gateway plugs in here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cardsms.domain.vendors import Handset, ReviewState, Vendor  # noqa: F401  (the vendors' vocabulary)


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    account_id: int
    subject_kind: str  # sign | template | qual (qualification record) | letter (authorization letter)
    kind: str  # sign | text | digital | card | qual | letter
    vendor: str  # "" for the platform/carrier review of signatures and text/digital templates
    texts: tuple[str, ...]
    card_type: int | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    state: ReviewState
    reason: str = ""


class ReviewGateway(Protocol):
    def delay_seconds(self) -> float:
        """How long after submission a verdict can be asked for."""

    async def decide(self, request: ReviewRequest) -> Verdict | None:
        """The verdict, or None while the vendor has not decided yet (asked again later)."""


class HandsetDirectory(Protocol):
    def lookup(self, sha1_hex: str) -> Handset:
        """The handset behind a number, by the SHA1 hex of its national form."""
