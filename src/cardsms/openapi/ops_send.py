"""Sending and send-record operations: SendSms, SendBatchSms, SendCardSms, SendBatchCardSms,
QuerySendDetails, GetCardSmsDetails, QuerySendStatistics.

Sends honour the `x-cardsms-idempotency-key` header: the same key within 24 hours returns the
first answer and sends nothing new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from cardsms.domain.errors import CardsmsError
from cardsms.domain.frequency import Refusal
from cardsms.openapi import wire
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.params import Params
from cardsms.services import card_sending, outbox, records, sending
from cardsms.services.card_sending import CardSend, CardSendResult
from cardsms.services.outbox import Idempotency, Replay, SendResult

R = TypeVar("R", SendResult, CardSendResult)


def _skip_note(skipped: list[str]) -> str:
    if not skipped:
        return "OK"
    shown = ",".join(skipped[:20]) + ("..." if len(skipped) > 20 else "")
    return f"OK; {len(skipped)} number(s) skipped because they opted out (replied R): {shown}"


def _with_limits(answer: dict[str, Any], refused: list[Refusal]) -> dict[str, Any]:
    """A send's answer naming the numbers frequency control left out (Message; card sends' Data too)."""
    if not refused:
        return answer
    phones = list(dict.fromkeys(r.phone for r in refused))
    shown = "; ".join(r.text for r in refused[:10]) + ("; ..." if len(refused) > 10 else "")
    note = f"{len(phones)} number(s) left out by frequency control ({shown})"
    message = answer.get("Message", "OK")
    out = {**answer, "Message": f"{message}; {note}" if message != "OK" else f"OK; {note}"}
    if isinstance(answer.get("Data"), dict):
        out["Data"] = {**answer["Data"], "LimitedMobiles": ",".join(phones)}
    return out


def text_answer(result: SendResult) -> dict[str, Any]:
    """SendSms's and SendBatchSms's answer."""
    return _with_limits({"BizId": result.biz_id, "Message": _skip_note(result.skipped)}, result.limited)


def card_answer(result: CardSendResult) -> dict[str, Any]:
    """SendCardSms's and SendBatchCardSms's answer."""
    data: dict[str, Any] = {
        "BizCardId": result.biz_card_id, "BizSmsId": result.biz_sms_id, "BizDigitalId": result.biz_digital_id,
        "CardTmpState": 1, "MediaMobiles": ",".join(result.media), "NotMediaMobiles": ",".join(result.not_media),
    }
    answer: dict[str, Any] = {"Data": data}
    if result.skipped:
        data["SuppressedMobiles"] = ",".join(result.skipped)
        answer["Message"] = _skip_note(result.skipped)
    return _with_limits(answer, result.limited)


async def _send(ctx: Ctx, action: str, answer: Callable[[R], dict[str, Any]],
                send: Callable[[Idempotency | None], Awaitable[R | Replay]]) -> dict[str, Any]:
    """A send under the call's idempotency key: an earlier call's answer, or this one's, rendered."""
    key = ctx.idempotency_key
    if key and (earlier := await outbox.idempotent_answer(ctx.svc, ctx.account_id, key, action)) is not None:
        return earlier
    result = await send(Idempotency(key, action, answer) if key else None)
    return result.answer if isinstance(result, Replay) else answer(result)


async def send_sms(ctx: Ctx, p: Params) -> dict[str, Any]:
    phones = wire.split_numbers(p.str("PhoneNumbers", required=True, max_len=30_000))
    sign_name = p.str("SignName", required=True, max_len=64)
    template_code = p.str("TemplateCode", required=True, max_len=32)
    param = wire.parse_json_param(p.str("TemplateParam", max_len=100_000), "TemplateParam")
    out_id, ext = p.str("OutId", max_len=256), _ext(p.str("SmsUpExtendCode", max_len=12))
    return await _send(ctx, "SendSms", text_answer, lambda idem: sending.send_sms(
        ctx.svc, ctx.account_id, phones=phones, sign_name=sign_name, template_code=template_code,
        template_param=param, out_id=out_id, up_extend_code=ext, idem=idem))


def _ext(value: str) -> str:
    if value and not value.isdigit():
        raise CardsmsError("InvalidParameter", "SmsUpExtendCode: must be digits")
    return value


async def send_batch_sms(ctx: Ctx, p: Params) -> dict[str, Any]:
    phones = wire.json_list(p.str("PhoneNumberJson", required=True), "PhoneNumberJson", None) or []
    sending.check_count(len(phones), sending.MAX_BATCH_NUMBERS, "PhoneNumberJson")
    n = len(phones)
    signs = wire.json_list(p.str("SignNameJson", required=True), "SignNameJson", n) or []
    params = wire.json_list(p.str("TemplateParamJson"), "TemplateParamJson", n, required=False)
    ext = wire.json_list(p.str("SmsUpExtendCodeJson"), "SmsUpExtendCodeJson", n, required=False)
    template_code, out_id = p.str("TemplateCode", required=True, max_len=32), p.str("OutId", max_len=256)
    return await _send(ctx, "SendBatchSms", text_answer, lambda idem: sending.send_batch_sms(
        ctx.svc, ctx.account_id, phones=phones, sign_names=signs, template_code=template_code, params=params,
        extend_codes=ext, out_id=out_id, idem=idem))


def _spec(p: Params) -> CardSend:
    return CardSend(
        card_template_code=p.str("CardTemplateCode", required=True, max_len=32),
        fallback_type=p.str("FallbackType", default="NONE").strip().upper() or "NONE",
        sms_template_code=p.str("SmsTemplateCode", max_len=32),
        digital_template_code=p.str("DigitalTemplateCode", max_len=32),
        template_code=p.str("TemplateCode", max_len=32), out_id=p.str("OutId", max_len=256),
        up_extend_code=_ext(p.str("SmsUpExtendCode", max_len=12)),
    )


async def send_card_sms(ctx: Ctx, p: Params) -> dict[str, Any]:
    spec = _spec(p)
    objects = wire.card_objects(p.list("CardObjects", required=True))
    sending.check_count(len(objects), sending.MAX_SEND_NUMBERS, "CardObjects")
    n = len(objects)
    sign = p.str("SignName", required=True, max_len=64).strip()
    sms_params = wire.json_object(p.str("SmsTemplateParam"), "SmsTemplateParam")
    digital_params = wire.json_object(p.str("DigitalTemplateParam"), "DigitalTemplateParam")
    custom_params = wire.json_object(p.str("TemplateParam"), "TemplateParam")
    recipients = card_sending.card_recipients(
        [o[0] for o in objects], "CardObjects.mobile", [sign] * n, [o[1] for o in objects], [o[2] for o in objects],
        [sms_params] * n, [digital_params] * n, [custom_params] * n,
    )
    return await _send(ctx, "SendCardSms", card_answer,
                       lambda idem: card_sending.send_card(ctx.svc, ctx.account_id, spec, recipients, idem))


async def send_batch_card_sms(ctx: Ctx, p: Params) -> dict[str, Any]:
    spec = _spec(p)
    phones = wire.parse_json_param(p.str("PhoneNumberJson", required=True), "PhoneNumberJson")
    if not isinstance(phones, list):
        raise CardsmsError("isv.INVALID_JSON_PARAM", "PhoneNumberJson must be a JSON array of numbers")
    sending.check_count(len(phones), sending.MAX_BATCH_NUMBERS, "PhoneNumberJson")
    n = len(phones)
    signs = wire.per_number(p.str("SignNameJson", required=True), "SignNameJson", n)
    card_params = [wire.card_params(v, f"CardTemplateParamJson[{i}]") for i, v in
                   enumerate(wire.per_number(p.str("CardTemplateParamJson"), "CardTemplateParamJson", n), 1)]
    recipients = card_sending.card_recipients(
        phones, "PhoneNumberJson", [str(s or "").strip() for s in signs], card_params, [""] * n,
        wire.per_number(p.str("SmsTemplateParamJson"), "SmsTemplateParamJson", n),
        wire.per_number(p.str("DigitalTemplateParamJson"), "DigitalTemplateParamJson", n),
        wire.per_number(p.str("TemplateParamJson"), "TemplateParamJson", n),
    )
    return await _send(ctx, "SendBatchCardSms", card_answer,
                       lambda idem: card_sending.send_card(ctx.svc, ctx.account_id, spec, recipients, idem))


def _phone(p: Params, name: str, required: bool) -> str:
    raw = p.str(name, required=required, max_len=30)
    if not raw.strip():
        return ""
    numbers = sending.numbers_or_error([raw], name, mainland_only=False)
    return numbers[0].national


async def query_send_details(ctx: Ctx, p: Params) -> dict[str, Any]:
    day = records.parse_day(p.str("SendDate", required=True, max_len=8), "SendDate",
                            ctx.svc.settings.retention_days, ctx.svc.now())
    total, rows = await records.query_send_details(
        ctx.svc, ctx.account_id, _phone(p, "PhoneNumber", True), day, p.str("BizId", max_len=32).strip(),
        p.int("CurrentPage", required=True, low=1, high=1_000_000), p.int("PageSize", required=True, low=1, high=50),
    )
    return {"TotalCount": str(total), "SmsSendDetailDTOs": {"SmsSendDetailDTO": rows}}


async def get_card_sms_details(ctx: Ctx, p: Params) -> dict[str, Any]:
    day = records.parse_day(p.str("SendDate", required=True, max_len=8), "SendDate",
                            ctx.svc.settings.retention_days, ctx.svc.now())
    page = p.int("CurrentPage", default=1, low=1, high=1_000_000)
    size = p.int("PageSize", default=10, low=1, high=100)
    total, rows = await records.card_details(
        ctx.svc, ctx.account_id, biz_ids={"card": p.str("BizCardId", max_len=32).strip(),
                                          "sms": p.str("BizSmsId", max_len=32).strip(),
                                          "digital": p.str("BizDigitId", max_len=32).strip()},
        phone=_phone(p, "PhoneNumber", False), send_day=day, page=page, size=size,
    )
    return {"CardSendDetailDTO": {"CurrentPage": page, "PageSize": size, "TotalCount": total, "Records": rows}}


async def query_send_statistics(ctx: Ctx, p: Params) -> dict[str, Any]:
    now = ctx.svc.now()  # statistics outlive the records (services/retention.py): any past day, ten years back
    start = records.parse_day(p.str("StartDate", required=True, max_len=8), "StartDate", 3650, now)
    end = records.parse_day(p.str("EndDate", required=True, max_len=8), "EndDate", 3650, now)
    if start > end:
        raise CardsmsError("InvalidParameter", "StartDate: must not be after EndDate")
    is_globe = p.int("IsGlobe", required=True, low=1, high=2)
    template_type = p.int("TemplateType", low=0, high=7) if p.str("TemplateType").strip() else None
    total, rows = await records.send_statistics(
        ctx.svc, ctx.account_id, international=is_globe == 2, start=start, end=end, template_type=template_type,
        sign_name=p.str("SignName", max_len=64).strip(), page=p.int("PageIndex", required=True, low=1, high=100_000),
        size=p.int("PageSize", required=True, low=1, high=50),
    )
    return {"Data": {"TotalSize": total, "TargetList": rows}}


async def query_send_timeline(ctx: Ctx, p: Params) -> dict[str, Any]:
    """cardsms addition: the state and event timeline of one send (BizId, or a card send's BizCardId /
    BizSmsId / BizDigitalId) to one number."""
    biz_id = p.str("BizId", required=True, max_len=32).strip()
    messages = await records.timelines(ctx.svc, ctx.account_id, biz_id, _phone(p, "PhoneNumber", True))
    return {"Messages": messages}


OPERATIONS = {
    "SendSms": Operation(send_sms),
    "SendBatchSms": Operation(send_batch_sms),
    "SendCardSms": Operation(send_card_sms, card=True),
    "SendBatchCardSms": Operation(send_batch_card_sms, card=True),
    "QuerySendDetails": Operation(query_send_details),
    "GetCardSmsDetails": Operation(get_card_sms_details, card=True),
    "QuerySendStatistics": Operation(query_send_statistics),
    "QuerySendTimeline": Operation(query_send_timeline),
}
