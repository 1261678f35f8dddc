"""Reading sent messages back: details, card details, daily statistics, a message's timeline."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select

from cardsms.db.schema import daily_stats, message_events, messages
from cardsms.domain.errors import CardsmsError
from cardsms.services.core import CHINA, Services, china_time
from cardsms.services.retention import stats_filters

PENDING = ("queued", "paused", "submitting", "submitted")


def parse_day(value: str, field_name: str, retention_days: int, now: datetime) -> str:
    value = value.strip()
    try:
        day = datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise CardsmsError("InvalidParameter", f"{field_name}: must be a date yyyyMMdd, got {value!r}") from None
    today = now.astimezone(CHINA).date()
    if day > today + timedelta(days=1) or day < today - timedelta(days=retention_days):
        raise CardsmsError("InvalidParameter", f"{field_name}: records are kept for {retention_days} days; "
                           f"{value} is outside that window")
    return value


def text_status(state: str) -> int:
    """QuerySendDetails SendStatus: 1 waiting for receipt, 2 failed, 3 delivered."""
    return 3 if state == "delivered" else 1 if state in PENDING else 2


def card_status(row: Any) -> int:
    """GetCardSmsDetails SendStatus: 1 sending, 2 failed, 3 succeeded, 4 addressing failed."""
    if row["state"] == "skipped":
        return 4
    return text_status(row["state"])


def err_code(row: Any) -> str:
    if row["state"] == "delivered":
        return "DELIVERED"
    return row["error_code"] or ("" if row["state"] in PENDING else row["state"].upper())


async def query_send_details(svc: Services, account_id: int, phone: str, send_day: str, biz_id: str,
                             page: int, size: int) -> tuple[int, list[dict[str, Any]]]:
    where = [messages.c.account_id == account_id, messages.c.phone == phone, messages.c.send_day == send_day,
             messages.c.channel.in_(("sms", "card"))]
    if biz_id:
        where.append(messages.c.biz_id == biz_id)
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(messages).where(*where))
        rows = (await conn.execute(select(messages).where(*where).order_by(messages.c.id.desc())
                                   .offset((page - 1) * size).limit(size))).mappings().all()
    out = [{
        "PhoneNum": r["phone"], "SendStatus": text_status(r["state"]), "ErrCode": err_code(r),
        "TemplateCode": r["template_code"], "Content": r["content"], "OutId": r["out_id"],
        "SendDate": china_time(r["created_at"]),
        "ReceiveDate": china_time(r["done_at"]) if r["done_at"] and r["state"] == "delivered" else "",
        "BizId": r["biz_id"], "PossibleDuplicate": bool(r["possible_duplicate"]),
    } for r in rows]
    return int(total or 0), out


RECEIVE_TYPE = {"card": "CARD_SMS", "sms": "SMS", "digital": "DIGITAL_SMS"}


async def card_details(svc: Services, account_id: int, *, biz_ids: dict[str, str], phone: str, send_day: str,
                       page: int, size: int) -> tuple[int, list[dict[str, Any]]]:
    where = [messages.c.account_id == account_id, messages.c.send_day == send_day]
    legs = [and_(messages.c.channel == ch, messages.c.biz_id == b) for ch, b in biz_ids.items() if b]
    if not legs and not phone:
        raise CardsmsError("MissingParameter", "give BizCardId, BizSmsId, BizDigitId or PhoneNumber")
    if legs:
        from sqlalchemy import or_

        where.append(or_(*legs))
    else:
        where.append(messages.c.card_template_code != "")
    if phone:
        where.append(messages.c.phone == phone)
    async with svc.read() as conn:
        total = await conn.scalar(select(func.count()).select_from(messages).where(*where))
        rows = (await conn.execute(select(messages).where(*where).order_by(messages.c.id)
                                   .offset((page - 1) * size).limit(size))).mappings().all()
    out = [{
        "PhoneNumber": r["phone"], "SendStatus": card_status(r), "ErrCode": err_code(r),
        "TemplateCode": r["card_template_code"] if r["channel"] == "card" else r["template_code"],
        "OutId": r["out_id"], "ReceiveType": RECEIVE_TYPE[r["channel"]],
        "SendDate": china_time(r["created_at"]),
        "ReceiveDate": china_time(r["done_at"]) if r["done_at"] and r["state"] == "delivered" else "",
        "RenderStatus": 1 if r["render_status"] == 1 else 0,
        "RenderDate": china_time(r["rendered_at"]) if r["rendered_at"] else "",
        "SmsContent": r["content"] if r["channel"] == "sms" else "",
    } for r in rows]
    return int(total or 0), out


async def send_statistics(svc: Services, account_id: int, *, international: bool, start: str, end: str,
                          template_type: int | None, sign_name: str, page: int, size: int
                          ) -> tuple[int, list[dict[str, Any]]]:
    where = [messages.c.account_id == account_id, messages.c.send_day >= start, messages.c.send_day <= end,
             messages.c.channel.in_(("sms", "card")), messages.c.state != "skipped"]
    where.append(~messages.c.e164.startswith("+86") if international else messages.c.e164.startswith("+86"))
    if template_type is not None:
        where.append(and_(messages.c.channel == "sms", messages.c.template_type == template_type))
    if sign_name:
        where.append(messages.c.sign_name == sign_name)
    stmt = (select(
        messages.c.send_day,
        func.sum(messages.c.segments).label("total"),
        func.sum(case((messages.c.state == "delivered", messages.c.segments), else_=0)).label("ok"),
        func.sum(case((messages.c.state.in_(("failed", "expired")), messages.c.segments), else_=0)).label("bad"),
    ).where(*where).group_by(messages.c.send_day))
    # and the days' purged messages, folded into daily_stats (services/retention.py)
    d = daily_stats.c
    folded = [*stats_filters(account_id=account_id, days=(start, end)), d.channel.in_(("sms", "card")),
              d.state != "skipped", d.international.is_(international)]
    if template_type is not None:
        folded.append(and_(d.channel == "sms", d.template_type == template_type))
    if sign_name:
        folded.append(d.sign_name == sign_name)
    kept = (select(d.day, func.sum(d.segments), func.sum(case((d.state == "delivered", d.segments), else_=0)),
                   func.sum(case((d.state.in_(("failed", "expired")), d.segments), else_=0)))
            .where(*folded).group_by(d.day))
    by_day: dict[str, list[int]] = {}
    async with svc.read() as conn:
        for row in [*(await conn.execute(stmt)).all(), *(await conn.execute(kept)).all()]:
            sums = by_day.setdefault(row[0], [0, 0, 0])
            for i in range(3):
                sums[i] += int(row[i + 1] or 0)
    out = [{"SendDate": day, "TotalCount": t, "RespondedSuccessCount": ok, "RespondedFailCount": bad,
            "NoRespondedCount": t - ok - bad} for day, (t, ok, bad) in sorted(by_day.items(), reverse=True)]
    return len(out), out[(page - 1) * size : page * size]


async def timelines(svc: Services, account_id: int, biz_id: str, phone: str) -> list[dict[str, Any]]:
    """Every message of a send to one number (all channels), with its state and its events in order."""
    async with svc.read() as conn:
        rows = (await conn.execute(select(messages).where(
            messages.c.account_id == account_id, messages.c.biz_id == biz_id, messages.c.phone == phone,
        ).order_by(messages.c.id))).mappings().all()
        events = (await conn.execute(select(message_events).where(
            message_events.c.account_id == account_id,
            message_events.c.message_id.in_([r["id"] for r in rows]),
        ).order_by(message_events.c.id))).mappings().all() if rows else []
    by_message: dict[int, list[dict[str, str]]] = {}
    for e in events:
        by_message.setdefault(e["message_id"], []).append(
            {"Event": e["kind"], "Time": china_time(e["at"]), "Detail": e["detail"]})
    return [{"Channel": r["channel"], "State": r["state"], "ErrCode": err_code(r), "Attempts": r["attempts"],
             "PossibleDuplicate": bool(r["possible_duplicate"]), "Segments": r["segments"],
             "Opens": r["opens"], "Events": by_message.get(r["id"], [])} for r in rows]


async def daily_counts(svc: Services, account_id: int, days: list[str]) -> dict[str, list[int]]:
    """yyyyMMdd -> [messages, delivered, rendered, card messages] of those days (skipped ones left out), the
    live records and the purged ones' daily counts together."""
    d = daily_stats.c
    async with svc.read() as conn:
        rows = [*(await conn.execute(select(
            messages.c.send_day, func.count(),
            func.sum(case((messages.c.state == "delivered", 1), else_=0)),
            func.sum(case((messages.c.render_status == 1, 1), else_=0)),
            func.sum(case((messages.c.channel == "card", 1), else_=0)),
        ).where(messages.c.account_id == account_id, messages.c.send_day.in_(days),
                messages.c.state != "skipped").group_by(messages.c.send_day))).all(),
            *(await conn.execute(select(
                d.day, func.sum(d.messages), func.sum(case((d.state == "delivered", d.messages), else_=0)),
                func.sum(d.rendered), func.sum(case((d.channel == "card", d.messages), else_=0)),
            ).where(*stats_filters(account_id=account_id, days=days), d.state != "skipped").group_by(d.day))).all()]
    out: dict[str, list[int]] = {}
    for r in rows:
        sums = out.setdefault(r[0], [0, 0, 0, 0])
        for i in range(4):
            sums[i] += int(r[i + 1] or 0)
    return out


async def find_messages(svc: Services, account_id: int, *, phone: str = "", day: str = "", task_id: int | None = None,
                        biz_id: str = "", limit: int = 100) -> list[Any]:
    """The newest messages of the account matching every filter given (phone: a part of the number)."""
    where = [messages.c.account_id == account_id]
    if phone:
        where.append(messages.c.phone.contains(phone, autoescape=True))  # a % or _ typed in is no wildcard
    if day:
        where.append(messages.c.send_day == day)
    if task_id is not None:
        where.append(messages.c.task_id == task_id)
    if biz_id:
        where.append(messages.c.biz_id == biz_id)
    async with svc.read() as conn:
        return list((await conn.execute(select(messages).where(*where).order_by(messages.c.id.desc()).limit(limit))
                     ).mappings().all())
