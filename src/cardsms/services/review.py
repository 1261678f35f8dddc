"""Review of signatures and templates: submission, processing of due reviews, overall status.

Signatures and text/digital templates have one review row (vendor ''): the platform/carrier
review. Card templates have one row per handset vendor. The overall status of a card template
is approved (1) as soon as one vendor approved it (numbers of other vendors fall back), reviewing
(0) while none approved and some still review, rejected (2) when no vendor approved.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import digital_signs, qualifications, reviews, sign_documents, signs, templates
from cardsms.domain.card import CardTemplate
from cardsms.domain.card_types import TYPE_RULES
from cardsms.domain.vendors import Vendor, parse_factorys, unsupported_reason
from cardsms.services import audit, webhooks
from cardsms.services.core import Services, china_time
from cardsms.vendors.gateway import ReviewRequest, ReviewState

# subject kinds: signatures, templates, qualification records ("qual"), authorization letters ("letter") and
# digital message signatures ("dsign", one review row per carrier)
_SUBJECT_TABLES = {"sign": signs, "template": templates, "qual": qualifications, "letter": sign_documents,
                   "dsign": digital_signs}


def card_vendor_states(card: CardTemplate, factorys: str) -> dict[str, tuple[ReviewState, str]]:
    """Which vendors a card template is submitted to, and why the others are not."""
    assert card.card_type in TYPE_RULES
    chosen = set(parse_factorys(factorys))
    out: dict[str, tuple[ReviewState, str]] = {}
    for vendor in Vendor:
        if vendor not in chosen:
            continue
        reason = unsupported_reason(vendor, card.card_type, card.actions)
        out[vendor.value] = (ReviewState.NOT_SUBMITTED, reason) if reason else (ReviewState.REVIEWING, "")
    return out


async def submit(
    conn: AsyncConnection, svc: Services, account_id: int, subject_kind: str, subject_id: int,
    vendor_states: dict[str, tuple[ReviewState, str]],
) -> None:
    """(Re)submit a subject for review; previous verdicts are dropped."""
    now = svc.now()
    due = now + timedelta(seconds=svc.reviewer.delay_seconds())
    await conn.execute(
        delete(reviews).where(
            reviews.c.account_id == account_id, reviews.c.subject_kind == subject_kind,
            reviews.c.subject_id == subject_id,
        )
    )
    await conn.execute(
        insert(reviews),
        [
            {
                "account_id": account_id, "subject_kind": subject_kind, "subject_id": subject_id,
                "vendor": vendor, "state": int(state), "reason": reason, "submitted_at": now, "due_at": due,
                "decided_at": None if state == ReviewState.REVIEWING else now,
            }
            for vendor, (state, reason) in vendor_states.items()
        ],
    )
    await refresh_status(conn, account_id, subject_kind, subject_id)
    table = _SUBJECT_TABLES[subject_kind]
    name_column = table.c.code if subject_kind == "template" else table.c.name
    name = await conn.scalar(select(name_column).where(table.c.id == subject_id))
    await audit.record(conn, svc, account_id, f"{subject_kind}.submit", f"{name} (#{subject_id})",
                       "created or changed, submitted for review")
    if svc.reviewer.delay_seconds() == 0:
        await process_due(conn, svc, subject=(account_id, subject_kind, subject_id))


async def process_due(
    conn: AsyncConnection, svc: Services, limit: int = 200, subject: tuple[int, str, int] | None = None
) -> int:
    """Ask the gateway for verdicts on reviews that are due; returns how many were decided."""
    query = select(reviews).where(reviews.c.state == int(ReviewState.REVIEWING), reviews.c.due_at <= svc.now())
    if subject:
        query = query.where(
            reviews.c.account_id == subject[0], reviews.c.subject_kind == subject[1],
            reviews.c.subject_id == subject[2],
        )
    rows = (await conn.execute(query.order_by(reviews.c.due_at).limit(limit))).mappings().all()
    decided = 0
    touched: set[tuple[int, str, int]] = set()
    for row in rows:
        request = await _review_request(conn, row)
        if request is None:  # the subject was deleted meanwhile
            await conn.execute(delete(reviews).where(reviews.c.id == row["id"]))
            continue
        verdict = await svc.reviewer.decide(request)
        if verdict is None:
            continue
        result = await conn.execute(
            update(reviews)
            .where(reviews.c.id == row["id"], reviews.c.state == int(ReviewState.REVIEWING))
            .values(state=int(verdict.state), reason=verdict.reason, decided_at=svc.now())
        )
        if result.rowcount:
            decided += 1
            touched.add((row["account_id"], row["subject_kind"], row["subject_id"]))
    reports = []
    for account_id, kind, subject_id in touched:
        await refresh_status(conn, account_id, kind, subject_id)
        report = await _review_report(conn, account_id, kind, subject_id)
        if report is not None:
            reports.append(report)
    await webhooks.enqueue(conn, svc, reports)
    return decided


async def _review_report(conn: AsyncConnection, account_id: int, kind: str, subject_id: int
                         ) -> tuple[int, str, dict[str, Any]] | None:
    """The review webhook report of a subject whose verdict changed (Alibaba's report types)."""
    table = _SUBJECT_TABLES[kind]
    row = (await conn.execute(select(table).where(table.c.account_id == account_id, table.c.id == subject_id))
           ).mappings().first()
    if row is None:
        return None
    if kind in ("qual", "letter", "dsign"):
        return None  # no report type for these in Alibaba's push reports; QuerySmsQualificationRecord shows them
    if kind == "sign":
        return account_id, "SignSmsReport", {"sign_name": row["name"], "sign_status": row["status"],
                                             "reason": row["reason"], "audit_date": china_time(row["updated_at"])}
    if row["kind"] != "card":
        return account_id, "TemplateSmsReport", {"template_code": row["code"], "template_status": row["status"],
                                                 "template_type": row["template_type"], "reason": row["reason"],
                                                 "audit_date": china_time(row["updated_at"])}
    vendors = await vendor_reviews(conn, account_id, "template", subject_id)
    return account_id, "MnsCardTemplate", {
        "template_code": row["code"], "approval_status": row["status"],
        "tmpOps": [{"vendorCode": v["vendor"], "state": min(int(v["state"]), 2), "desc": v["reason"]}
                   for v in vendors],
        "extData": "", "desc": row["reason"],
    }


async def _review_request(conn: AsyncConnection, row: Any) -> ReviewRequest | None:
    table = _SUBJECT_TABLES[row["subject_kind"]]
    subject = (
        await conn.execute(
            select(table).where(table.c.account_id == row["account_id"], table.c.id == row["subject_id"])
        )
    ).mappings().first()
    if subject is None:
        return None
    if row["subject_kind"] == "sign":
        texts: tuple[str, ...] = (subject["name"], subject["remark"])
        kind, card_type = "sign", None
    elif row["subject_kind"] == "qual":
        texts = (subject["name"], subject["company_name"], str(subject["details"].get("Remark", "")))
        kind, card_type = "qual", None
    elif row["subject_kind"] == "dsign":
        texts = (subject["name"], str(subject["context"].get("qualificationCompanyName", "")))
        kind, card_type = "dsign", None
    elif row["subject_kind"] == "letter":
        texts = (subject["name"], str(subject["details"].get("Authorization", "")))
        kind, card_type = "letter", None
    else:
        kind = subject["kind"]
        texts = (subject["name"], subject["content"], subject["sign_name"])
        if kind == "card":
            texts += tuple(_card_texts(subject["body"]))
        card_type = subject["template_type"] if kind == "card" else None
    return ReviewRequest(
        account_id=row["account_id"], subject_kind=row["subject_kind"], kind=kind, vendor=row["vendor"],
        texts=texts, card_type=card_type,
    )


def _card_texts(body: dict[str, Any]) -> list[str]:
    out = [body.get("cardSignName", "")]
    for page in body.get("templateContent", {}).get("pages", []):
        for el in page.get("tmpCards", []):
            out.append(el.get("content", ""))
            action = el.get("action") or {}
            out += [str(action.get("target", "")), str(action.get("merchantName", ""))]
    return out


async def refresh_status(conn: AsyncConnection, account_id: int, subject_kind: str, subject_id: int) -> None:
    rows = (
        await conn.execute(
            select(reviews.c.vendor, reviews.c.state, reviews.c.reason).where(
                reviews.c.account_id == account_id, reviews.c.subject_kind == subject_kind,
                reviews.c.subject_id == subject_id,
            )
        )
    ).all()
    status, reason = overall_status([(v, s, r) for v, s, r in rows])
    table = _SUBJECT_TABLES[subject_kind]
    await conn.execute(
        update(table)
        .where(and_(table.c.account_id == account_id, table.c.id == subject_id))
        .values(status=status, reason=reason)
    )


def overall_status(rows: list[tuple[str, int, str]]) -> tuple[int, str]:
    states = [s for _, s, _ in rows]
    if ReviewState.APPROVED in states:
        return int(ReviewState.APPROVED), ""
    if ReviewState.REVIEWING in states or not states:
        return int(ReviewState.REVIEWING), ""
    reasons = "; ".join(r for _, s, r in rows if r)
    return int(ReviewState.REJECTED), reasons or "rejected"


async def vendor_reviews(conn: AsyncConnection, account_id: int, kind: str, subject_id: int) -> list[Any]:
    return list(
        (
            await conn.execute(
                select(reviews).where(
                    reviews.c.account_id == account_id, reviews.c.subject_kind == kind,
                    reviews.c.subject_id == subject_id,
                ).order_by(reviews.c.id)
            )
        ).mappings().all()
    )


async def run_due_reviews(svc: Services) -> int:
    """One pass of the background reviewer (its own transaction). A point read first: most passes find no
    review due, and those need not take the writer."""
    async with svc.point_read() as conn:
        due = await conn.scalar(select(reviews.c.id).where(
            reviews.c.state == int(ReviewState.REVIEWING), reviews.c.due_at <= svc.now()).limit(1))
    if due is None:
        return 0
    async with svc.hold_writer() as conn:
        return await process_due(conn, svc)
