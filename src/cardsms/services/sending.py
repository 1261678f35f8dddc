"""Text sends (SendSms, SendBatchSms) and the checks every send makes (services.card_sending for cards).

Every send is checked whole before anything is written (signature, templates, numbers,
parameters); then one transaction writes a message row per recipient and channel, its `queued`
event, its short link and the idempotency record, and only then is the caller told OK.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.db.schema import suppressions
from cardsms.domain import sms
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, PhoneNumber, normalise_mainland_mobile, normalise_number
from cardsms.domain.variables import check_values
from cardsms.services.core import Services
from cardsms.services.outbox import Idempotency, Outbox, Replay, SendResult, commit_send, new_biz_id
from cardsms.services.signs import _get as get_sign_row
from cardsms.services.templates import get_template
from cardsms.vendors.gateway import ReviewState

MAX_SEND_NUMBERS = 1000
MAX_BATCH_NUMBERS = 100
FALLBACK_TYPES = ("SMS", "DIGITALSMS", "NONE")
PRIORITY_BY_TYPE = {0: 0, 1: 1, 2: 2, 3: 1}  # verification first, promotional last
CARD_PRIORITY = 1
DIGITAL_PRIORITY = 2
_VAR = re.compile(r"\$\{([^}]*)\}")
_URL = re.compile(r"https?://[^\s]{1,1000}")



# --- checks --------------------------------------------------------------------------------

async def approved_sign(conn: AsyncConnection, account_id: int, name: str, field_name: str = "SignName") -> Any:
    if not name.strip():
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
    row = await get_sign_row(conn, account_id, name)
    if row["status"] != ReviewState.APPROVED:
        state = {0: "still under review", 2: "rejected", 10: "cancelled"}.get(row["status"], "not approved")
        raise CardsmsError("isv.SMS_SIGNATURE_ILLEGAL", f"{field_name}: signature {name!r} is {state}; "
                           "only approved signatures can send")
    return row


async def approved_text_template(conn: AsyncConnection, account_id: int, code: str, field_name: str,
                                 kinds: tuple[str, ...] = ("text",)) -> Any:
    if not code.strip():
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action.")
    row = await get_template(conn, account_id, code, kinds)
    if row["status"] != ReviewState.APPROVED:
        state = {0: "still under review", 2: "rejected"}.get(row["status"], "not approved")
        raise CardsmsError("isv.SMS_TEMPLATE_ILLEGAL", f"{field_name}: template {code!r} is {state}; "
                           "only approved templates can send")
    return row


def render_template(tpl: Any, params: Any, field_name: str) -> str:
    """A text template filled: its variables' values are also checked against the rules it declared
    (CreateSmsTemplate's TemplateRule; templates made with AddSmsTemplate declare none)."""
    rule = (tpl["details"] or {}).get("template_rule") if "details" in tpl else None
    return render(tpl["content"], params, field_name, rule)


def render(content: str, params: Any, field_name: str, rule: dict[str, str] | None = None) -> str:
    """Fill `${name}` variables; every variable needs a value (string or number, ≤ 500 characters)."""
    names = _VAR.findall(content)
    if not names:
        return content
    if params in (None, ""):
        params = {}
    if not isinstance(params, dict):
        raise CardsmsError("isv.INVALID_JSON_PARAM", f"{field_name} must be a JSON object of template variables")
    missing_names = [n for n in dict.fromkeys(names) if params.get(n) in (None, "")]
    if missing_names:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}: no value for template variable(s) "
                           + ", ".join("${" + n + "}" for n in missing_names))
    for n in names:
        value = params[n]
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{n} must be a string or a number")
        if len(str(value)) > 500:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}.{n} is longer than 500 characters")
    if rule:
        check_values(rule, params, field_name)
    return _VAR.sub(lambda m: str(params[m.group(1)]), content)


def numbers_or_error(raws: Sequence[Any], field_name: str, mainland_only: bool) -> list[PhoneNumber]:
    """Normalise every number; any invalid one fails the whole call, naming up to five of them."""
    out, bad = [], []
    for i, raw in enumerate(raws, 1):
        try:
            text = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
            out.append(normalise_mainland_mobile(text) if mainland_only else normalise_number(text))
        except InvalidNumber as exc:
            bad.append(f"[{i}] {exc}")
    if bad:
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}: {len(bad)} invalid number(s): "
                           + "; ".join(bad[:5]) + more + ". Nothing was sent.")
    return out


def check_count(n: int, limit: int, field_name: str) -> None:
    if n == 0:
        raise CardsmsError("MissingParameter", f"{field_name} is mandatory for this action (at least one number).")
    if n > limit:
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name}: at most {limit} numbers per call, got {n}. "
                           "Nothing was sent.")


def check_custom_url(value: Any, field_name: str) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not _URL.fullmatch(value.strip()):
        raise CardsmsError("isv.INVALID_PARAMETERS", f"{field_name} must be an http(s) URL of at most 1000 characters")
    return value.strip()


_SUPPRESSED_ONE = select(suppressions.c.phone).where(suppressions.c.account_id == bindparam("account_id"),
                                                     suppressions.c.phone == bindparam("phone"))


async def suppressed(conn: AsyncConnection, account_id: int, phones: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(phones), 500):
        chunk = phones[i : i + 500]
        rows = await conn.execute(
            select(suppressions.c.phone).where(suppressions.c.account_id == account_id, suppressions.c.phone.in_(chunk))
        )
        found.update(r[0] for r in rows)
    return found


# --- text SMS -------------------------------------------------------------------------------

def _text_numbers(raws: Sequence[Any], field_name: str, template_type: int) -> list[PhoneNumber]:
    numbers = numbers_or_error(raws, field_name, mainland_only=False)
    for i, n in enumerate(numbers, 1):
        if template_type == 3 and n.mainland_mobile:
            raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}[{i}] {n.national} is a mainland number; "
                               "international templates (type 3) send outside the Chinese mainland only")
        if template_type != 3 and not n.e164.startswith("+86"):
            raise CardsmsError("isv.MOBILE_NUMBER_ILLEGAL", f"{field_name}[{i}] {n.e164} is outside the Chinese "
                               "mainland; use an international template (type 3)")
    return numbers


def _text_rows(box: Outbox, tpl: Any, biz_id: str, n: PhoneNumber, text: str, sign_name: str, out_id: str,
               up_extend_code: str, blocked: set[str], result: SendResult) -> None:
    opted_out = n.national in blocked
    if opted_out:
        result.skipped.append(n.national)
    box.add(biz_id=biz_id, channel="sms", number=n, content=text, priority=PRIORITY_BY_TYPE[tpl["template_type"]],
            out_id=out_id, sign_name=sign_name, template_code=tpl["code"], template_type=tpl["template_type"],
            state="skipped" if opted_out else "queued", error_code="SUPPRESSED" if opted_out else "",
            error_text="the number opted out" if opted_out else "", up_extend_code=up_extend_code)


async def send_sms(svc: Services, account_id: int, *, phones: Sequence[str], sign_name: str, template_code: str,
                   template_param: Any, out_id: str, up_extend_code: str, idem: Idempotency | None = None
                   ) -> SendResult | Replay:
    """One text to up to 1,000 numbers (`template_param` the decoded TemplateParam)."""
    check_count(len(phones), MAX_SEND_NUMBERS, "PhoneNumbers")
    async with svc.point_read() as conn:
        await approved_sign(conn, account_id, sign_name)
        tpl = await approved_text_template(conn, account_id, template_code, "TemplateCode")
        numbers = list({n.e164: n for n in _text_numbers(phones, "PhoneNumbers", tpl["template_type"])}.values())
        body = render_template(tpl, template_param, "TemplateParam")
        promo = tpl["template_type"] == 2
        blocked = await suppressed(conn, account_id, [n.national for n in numbers]) if promo else set()
    text = sms.compose(sign_name.strip(), body, opt_out=promo)
    box, result = Outbox(svc, account_id), SendResult(new_biz_id())
    for n in numbers:
        _text_rows(box, tpl, result.biz_id, n, text, sign_name.strip(), out_id, up_extend_code, blocked, result)
    return await commit_send(svc, account_id, box, result, idem)


async def send_batch_sms(svc: Services, account_id: int, *, phones: Sequence[Any], sign_names: Sequence[Any],
                         template_code: str, params: Sequence[Any] | None, extend_codes: Sequence[Any] | None,
                         out_id: str, idem: Idempotency | None = None) -> SendResult | Replay:
    """Up to 100 numbers, each with its own signature, variables and extension code (lists of one entry per
    number, or None)."""
    check_count(len(phones), MAX_BATCH_NUMBERS, "PhoneNumberJson")
    async with svc.point_read() as conn:
        tpl = await approved_text_template(conn, account_id, template_code, "TemplateCode")
        for i, name in enumerate(dict.fromkeys(map(str, sign_names)), 1):
            await approved_sign(conn, account_id, name, f"SignNameJson[{i}]")
        numbers = _text_numbers(phones, "PhoneNumberJson", tpl["template_type"])
        promo = tpl["template_type"] == 2
        blocked = await suppressed(conn, account_id, [n.national for n in numbers]) if promo else set()
    box, result = Outbox(svc, account_id), SendResult(new_biz_id())
    for i, n in enumerate(numbers):
        body = render_template(tpl, params[i] if params else None, f"TemplateParamJson[{i + 1}]")
        sign = str(sign_names[i]).strip()
        _text_rows(box, tpl, result.biz_id, n, sms.compose(sign, body, opt_out=promo), sign, out_id,
                   str(extend_codes[i]) if extend_codes else "", blocked, result)
    return await commit_send(svc, account_id, box, result, idem)
