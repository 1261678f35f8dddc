"""Card sends (SendCardSms, SendBatchCardSms, console test sends, mass-task chunks): which recipients get the
card and which the fallback (SPEC.md sending rule 3), with typed recipients in and a typed result out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from cardsms.domain import sms
from cardsms.domain.errors import CardsmsError
from cardsms.domain.frequency import Refusal
from cardsms.domain.numbers import PhoneNumber
from cardsms.domain.vendors import approved_vendors, shows_card
from cardsms.services import digital_signs, domains, review
from cardsms.services.core import Services
from cardsms.services.outbox import Idempotency, Outbox, Replay, commit_send, new_biz_id, new_link_code
from cardsms.services.sending import (
    _SUPPRESSED_ONE,
    _VAR,
    PRIORITY_BY_TYPE,
    approved_sign,
    approved_text_template,
    numbers_or_error,
    render,
    render_template,
    suppressed,
)
from cardsms.services.templates import get_template

FALLBACK_TYPES = ("SMS", "DIGITALSMS", "NONE")
CARD_PRIORITY = 1
DIGITAL_PRIORITY = 2


@dataclass
class CardRecipient:
    number: PhoneNumber
    sign_name: str
    card_params: dict[str, Any]
    custom_url: str = ""
    sms_params: Any = None
    digital_params: Any = None
    custom_params: Any = None


@dataclass
class CardSend:
    card_template_code: str
    fallback_type: str
    sms_template_code: str = ""
    digital_template_code: str = ""
    template_code: str = ""  # custom send content
    out_id: str = ""
    up_extend_code: str = ""


def fill_card_text(text: str, params: dict[str, Any]) -> str:
    return _VAR.sub(lambda m: str(params.get(m.group(1), "")), text)


def card_title(body: dict[str, Any]) -> str:
    for page in (body.get("templateContent") or {}).get("pages", []):
        for el in page.get("tmpCards", []):
            if el.get("type") == "TEXT" and el.get("isTextTitle"):
                return str(el.get("content", ""))
    return ""


def check_fallback(spec: CardSend) -> None:
    if spec.fallback_type not in FALLBACK_TYPES:
        raise CardsmsError("InvalidParameter", f"FallbackType: must be one of {', '.join(FALLBACK_TYPES)}, "
                           f"got {spec.fallback_type!r}")
    if spec.fallback_type == "SMS" and not spec.sms_template_code.strip():
        raise CardsmsError("MissingParameter", "SmsTemplateCode is mandatory when FallbackType is SMS.")
    if spec.fallback_type == "DIGITALSMS" and not spec.digital_template_code.strip():
        raise CardsmsError("MissingParameter", "DigitalTemplateCode is mandatory when FallbackType is DIGITALSMS.")


@dataclass
class CardPlan:
    """The approved objects a card send uses, resolved once per call (or per mass-task chunk)."""

    card: Any
    approved: frozenset[str]
    sms_tpl: Any | None
    digital_tpl: Any | None
    custom_tpl: Any | None
    link_base: str = ""  # where the account's card links go (services.domains); the server's when empty


async def plan_card(conn: AsyncConnection, account_id: int, spec: CardSend, sign_names: Sequence[str]) -> CardPlan:
    """Check that every object of the send exists and is approved; raise before anything is queued."""
    check_fallback(spec)
    card = await get_template(conn, account_id, spec.card_template_code, ("card",))
    vendor_rows = await review.vendor_reviews(conn, card["account_id"], "template", card["id"])
    approved = approved_vendors(vendor_rows)
    if not approved:
        state = "still under review" if card["status"] == 0 else "rejected by every vendor"
        raise CardsmsError("TEMPLATE_NOT_APPROVED", f"CardTemplateCode: card template "
                           f"{spec.card_template_code!r} is {state}; nothing was sent")
    for i, name in enumerate(dict.fromkeys(sign_names), 1):
        await approved_sign(conn, account_id, name, "SignName" if i == 1 else f"SignName[{i}]")
    sms_tpl = (await approved_text_template(conn, account_id, spec.sms_template_code, "SmsTemplateCode")
               if spec.fallback_type == "SMS" else None)
    digital_tpl = (await approved_text_template(conn, account_id, spec.digital_template_code,
                                                "DigitalTemplateCode", ("digital",))
                   if spec.fallback_type == "DIGITALSMS" else None)
    if digital_tpl is not None:
        await digital_signs.check_for_send(conn, account_id, list(sign_names))
    custom_tpl = (await approved_text_template(conn, account_id, spec.template_code, "TemplateCode")
                  if spec.template_code.strip() else None)
    return CardPlan(card, approved, sms_tpl, digital_tpl, custom_tpl)


@dataclass
class CardLegs:
    """Which recipients got which leg of a card send."""

    biz: dict[str, str] = field(default_factory=lambda: {k: new_biz_id() for k in ("card", "sms", "digital")})
    used: set[str] = field(default_factory=set)
    media: list[str] = field(default_factory=list)
    not_media: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def queue_card(svc: Services, plan: CardPlan, spec: CardSend, recipients: Sequence[CardRecipient],
               blocked: set[str], box: Outbox, legs: CardLegs, task_id: int | None = None) -> None:
    """Decide card or fallback per recipient (SPEC.md sending rule 3) and add the rows to the box."""
    leg = _Leg(svc, plan, spec, box, legs, {"out_id": spec.out_id, "card_template_code": plan.card["code"],
                                            "task_id": task_id})
    for i, r in enumerate(recipients, 1):
        if r.number.national in blocked:
            leg.opted_out(r)
            continue
        handset = svc.handsets.lookup(r.number.sha1)
        if shows_card(handset, plan.approved):
            leg.card(i, r, handset.vendor.value if handset.vendor is not None else "")
            continue
        legs.not_media.append(r.number.national)
        if plan.sms_tpl is not None:
            leg.sms(i, r, plan.sms_tpl)
        elif plan.digital_tpl is not None:
            leg.digital(i, r, plan.digital_tpl)
        else:
            leg.no_fallback(r)


@dataclass
class _Leg:
    """The rows of each leg of a card send, added to its outbox."""

    svc: Services
    plan: CardPlan
    spec: CardSend
    box: Outbox
    legs: CardLegs
    common: dict[str, Any]

    def opted_out(self, r: CardRecipient) -> None:
        self.legs.skipped.append(r.number.national)
        self.legs.not_media.append(r.number.national)
        self.box.add(biz_id=self.legs.biz["card"], channel="card", number=r.number, content="",
                     priority=CARD_PRIORITY, sign_name=r.sign_name, template_code=self.plan.card["code"],
                     state="skipped", error_code="SUPPRESSED",
                     error_text="the number opted out (replied R); card sends skip it", **self.common)

    def card(self, i: int, r: CardRecipient, vendor: str) -> None:
        plan, card = self.plan, self.plan.card
        self.legs.media.append(r.number.national)
        code = new_link_code()
        link = f"{plan.link_base or self.svc.settings.link_base}/{code}"
        if plan.custom_tpl is not None:
            text_body = render_template(plan.custom_tpl, r.custom_params, f"TemplateParam[{i}]")
        else:
            text_body = fill_card_text(card_title(card["body"] or {}), r.card_params) or "您有一条新消息"
        content = sms.compose(r.sign_name, text_body, link=link, opt_out=True)
        idx = self.box.add(biz_id=self.legs.biz["card"], channel="card", number=r.number, content=content,
                           priority=CARD_PRIORITY, sign_name=r.sign_name,
                           template_code=plan.custom_tpl["code"] if plan.custom_tpl is not None else card["code"],
                           link_code=code, custom_url=r.custom_url, up_extend_code=self.spec.up_extend_code,
                           vendor=vendor, **self.common)
        self.box.link(idx, code=code, kind="personal", card_template_code=card["code"], phone=r.number.national,
                      params=r.card_params, source_url=r.custom_url)
        self.legs.used.add("card")

    def sms(self, i: int, r: CardRecipient, tpl: Any) -> None:
        text = sms.compose(r.sign_name, render_template(tpl, r.sms_params, f"SmsTemplateParam[{i}]"),
                           opt_out=tpl["template_type"] == 2)
        self.box.add(biz_id=self.legs.biz["sms"], channel="sms", number=r.number, content=text,
                     priority=PRIORITY_BY_TYPE.get(tpl["template_type"], 1), sign_name=r.sign_name,
                     template_code=tpl["code"], template_type=tpl["template_type"],
                     up_extend_code=self.spec.up_extend_code, **self.common)
        self.legs.used.add("sms")

    def digital(self, i: int, r: CardRecipient, tpl: Any) -> None:
        text = render(tpl["content"], r.digital_params, f"DigitalTemplateParam[{i}]")
        self.box.add(biz_id=self.legs.biz["digital"], channel="digital", number=r.number, content=text,
                     priority=DIGITAL_PRIORITY, sign_name=r.sign_name, template_code=tpl["code"], template_type=7,
                     **self.common)
        self.legs.used.add("digital")

    def no_fallback(self, r: CardRecipient) -> None:
        self.box.add(biz_id=self.legs.biz["card"], channel="card", number=r.number, content="",
                     priority=CARD_PRIORITY, sign_name=r.sign_name, template_code=self.plan.card["code"],
                     state="skipped", error_code="NO_CARD_SUPPORT",
                     error_text="the phone cannot show this card and FallbackType is NONE", **self.common)
        self.legs.used.add("card")


async def cached_plan(svc: Services, account_id: int, spec: CardSend, sign_names: Sequence[str]) -> CardPlan:
    """plan_card's answer, cached for a second (services.cache; this process's own changes to
    templates, their reviews or signatures clear it at once)."""
    signs = tuple(dict.fromkeys(sign_names))
    key = (account_id, spec.card_template_code, spec.fallback_type, spec.sms_template_code,
           spec.digital_template_code, spec.template_code, signs)

    async def load() -> CardPlan:
        async with svc.point_read() as conn:
            plan = await plan_card(conn, account_id, spec, signs)
        plan.link_base = await domains.link_base(svc, account_id)
        return plan

    return await svc.caches.memo("card-plans", {"templates", "reviews", "signs", *domains.TABLES}, key, load)


@dataclass
class CardSendResult:
    """What a card send did: the BizId of each leg used ("" when unused), the numbers that got the card
    (media) and those that did not, the numbers skipped because they opted out, and those frequency
    control left out."""

    biz_card_id: str
    biz_sms_id: str
    biz_digital_id: str
    media: list[str]
    not_media: list[str]
    skipped: list[str]
    limited: list[Refusal] = field(default_factory=list)


async def _blocked(svc: Services, account_id: int, recipients: list[CardRecipient]) -> set[str]:
    if len(recipients) == 1:  # the common API call: one number, one compiled-once lookup
        return {r["phone"] for r in await svc.point_query(
            _SUPPRESSED_ONE, account_id=account_id, phone=recipients[0].number.national)}
    async with svc.point_read() as conn:
        return await suppressed(conn, account_id, [r.number.national for r in recipients])


async def send_card(svc: Services, account_id: int, spec: CardSend, recipients: list[CardRecipient],
                    idem: Idempotency | None = None) -> CardSendResult | Replay:
    plan = await cached_plan(svc, account_id, spec, [r.sign_name for r in recipients])
    blocked = await _blocked(svc, account_id, recipients)
    box, legs = Outbox(svc, account_id), CardLegs()
    queue_card(svc, plan, spec, recipients, blocked, box, legs)
    biz, used = legs.biz, legs.used
    result = CardSendResult(biz_card_id=biz["card"] if "card" in used or legs.skipped else "",
                            biz_sms_id=biz["sms"] if "sms" in used else "",
                            biz_digital_id=biz["digital"] if "digital" in used else "",
                            media=legs.media, not_media=legs.not_media, skipped=legs.skipped)
    return await commit_send(svc, account_id, box, result, idem)


def card_recipients(mobiles: Sequence[Any], field_name: str, sign_names: Sequence[str],
                    card_params: Sequence[dict[str, Any]], custom_urls: Sequence[str],
                    sms_params: Sequence[Any], digital_params: Sequence[Any], custom_params: Sequence[Any]
                    ) -> list[CardRecipient]:
    numbers = numbers_or_error(mobiles, field_name, mainland_only=True)
    seen: dict[str, CardRecipient] = {}
    for i, n in enumerate(numbers):
        seen.setdefault(n.e164, CardRecipient(n, sign_names[i], card_params[i], custom_urls[i], sms_params[i],
                                              digital_params[i], custom_params[i]))
    return list(seen.values())
