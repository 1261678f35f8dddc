"""What a handler gets: the services and the authenticated account."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cardsms.openapi.params import Params
from cardsms.services.core import Services, china_time

AUDIT_STATE = {0: "AUDIT_STATE_INIT", 1: "AUDIT_STATE_PASS", 2: "AUDIT_STATE_NOT_PASS", 10: "AUDIT_STATE_CANCEL"}


@dataclass(frozen=True, slots=True)
class Ctx:
    svc: Services
    account_id: int
    request_id: str
    idempotency_key: str | None = None  # header x-cardsms-idempotency-key


Handler = Callable[[Ctx, Params], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Operation:
    handler: Handler
    card: bool = False  # card operations carry `Success` and wrap results in `Data`


def page_args(p: Params) -> tuple[int, int]:
    return p.int("PageIndex", default=1, low=1, high=1_000_000), p.int("PageSize", default=10, low=1, high=50)


def audit_fields(row: Any) -> dict[str, Any]:
    """`AuditStatus` and the `Reason` object of the list operations (signatures and templates alike)."""
    return {
        "AuditStatus": AUDIT_STATE[row["status"]],
        "Reason": {"RejectInfo": row["reason"] or "No audit remarks", "RejectSubInfo": "",
                   "RejectDate": china_time(row["updated_at"]) if row["status"] == 2 else ""},
    }
