"""Card templates: create (validated, submitted to each vendor), query, report."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import case, func, select

from cardsms.db.schema import media, messages
from cardsms.domain.card import CardTemplate, parse_card_template
from cardsms.domain.errors import CardsmsError
from cardsms.domain.vendors import parse_factorys
from cardsms.services import review
from cardsms.services.core import Services, china_time
from cardsms.services.templates import get_template, insert_template
from cardsms.vendors.gateway import ReviewState

MEMO_MAX = 200


async def media_ratios(svc: Services, account_id: int) -> dict[str, str | None]:
    async with svc.read() as conn:
        rows = (await conn.execute(
            select(media.c.resource_id, media.c.ratio, media.c.resource_type).where(media.c.account_id == account_id)
        )).all()
    return {rid: (ratio or "unknown") if rtype == 2 else None for rid, ratio, rtype in rows}


async def create_card_template(
    svc: Services, account_id: int, name: str, template: dict[str, Any], factorys: str, memo: str
) -> tuple[str, CardTemplate]:
    try:
        vendors = parse_factorys(factorys)
    except ValueError as exc:
        raise CardsmsError("InvalidParameter", f"param Factorys: {exc}") from None
    if len(memo) > MEMO_MAX:
        raise CardsmsError("InvalidParameter", f"param memo length must <= {MEMO_MAX}")
    card = parse_card_template(name, template, await media_ratios(svc, account_id))
    states = review.card_vendor_states(card, ",".join(v.value for v in vendors))
    async with svc.hold_writer() as conn:
        template_id, code = await insert_template(
            conn, svc, account_id, "card",
            {"name": card.name, "template_type": card.card_type, "content": "", "sign_name": card.sign_name,
             "remark": memo, "factorys": ",".join(states), "body": card.to_wire()},
        )
        await review.submit(conn, svc, account_id, "template", template_id, states)
    return code, card


def _vendor_ops(rows: list[Any]) -> list[dict[str, Any]]:
    ops = []
    for r in rows:
        state = r["state"]
        wire_state = int(ReviewState.REJECTED) if state == ReviewState.NOT_SUBMITTED else int(state)
        ops.append({
            "vendorCode": r["vendor"], "state": wire_state, "submitted": state != ReviewState.NOT_SUBMITTED,
            "remark": r["reason"], "desc": r["reason"],
        })
    return ops


async def query_card_template(svc: Services, account_id: int, code: str) -> dict[str, Any]:
    async with svc.read() as conn:
        row = await get_template(conn, account_id, code, ("card",))
        rows = await review.vendor_reviews(conn, account_id, "template", row["id"])
    return {
        "templateCode": row["code"], "templateName": row["name"], "cardTmpState": row["status"],
        "state": row["status"], "reason": row["reason"], "memo": row["remark"],
        "createTime": china_time(row["created_at"]), "tmpOps": _vendor_ops(rows), "template": row["body"],
    }


async def card_template_report(
    svc: Services, account_id: int, codes: list[str], start: date | None, end: date | None
) -> list[dict[str, Any]]:
    async with svc.read() as conn:
        for code in codes:
            await get_template(conn, account_id, code, ("card",))
        # Counted from the card messages themselves (the card_template_stats table of migration 0001 is unused):
        # sent = card messages submitted; rendered = exposeUv = cards shown; exposePv = parser fetches;
        # clickPv = link opens from the card; clickUv = recipients who opened at least once.
        where = [messages.c.account_id == account_id, messages.c.channel == "card",
                 messages.c.card_template_code.in_(codes), messages.c.state != "skipped"]
        if start:
            where.append(messages.c.send_day >= start.strftime("%Y%m%d"))
        if end:
            where.append(messages.c.send_day <= end.strftime("%Y%m%d"))
        rows = (await conn.execute(select(
            messages.c.card_template_code.label("code"), messages.c.vendor, func.count().label("sent"),
            func.sum(messages.c.render_status).label("rendered"), func.sum(messages.c.opens).label("clicks"),
            func.sum(case((messages.c.opens > 0, 1), else_=0)).label("openers"),
        ).where(*where).group_by(messages.c.card_template_code, messages.c.vendor))).all()
    totals = {c: _figures() for c in codes}
    vendors: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in codes}
    for r in rows:
        rendered = int(r.rendered or 0)
        figures = {"sent": int(r.sent), "rendered": rendered, "rptSuccessCount": rendered, "exposeUv": rendered,
                   "exposePv": rendered, "clickPv": int(r.clicks or 0), "clickUv": int(r.openers or 0)}
        for key, value in figures.items():
            totals[r.code][key] += value
        per = vendors[r.code].setdefault(r.vendor or "unknown", _figures())
        for key, value in figures.items():
            per[key] += value
    out = []
    for code in codes:
        t = totals[code]
        fac = [{"factory": name, **f, "ctrUv": _ctr(f)} for name, f in sorted(vendors[code].items())]
        out.append({"tmpCode": code, **t, "ctrUv": _ctr(t), "facPvUvList": fac,
                    "date": start.isoformat() if start else "",
                    "startDate": start.isoformat() if start else "", "endDate": end.isoformat() if end else ""})
    return out


def _figures() -> dict[str, int]:
    return {"exposeUv": 0, "exposePv": 0, "clickUv": 0, "clickPv": 0, "sent": 0, "rendered": 0, "rptSuccessCount": 0}


def _ctr(figures: dict[str, int]) -> float:
    return round(figures["clickUv"] / figures["exposeUv"], 4) if figures["exposeUv"] else 0.0
