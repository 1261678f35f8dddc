"""Public card templates: the list, a test send to up to 10 numbers, and their cover images."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.cards import card_context
from cardsms.console.pages.forms import error_field, text_form
from cardsms.console.pages.tasks import approved_signs
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.services import (
    public,
)
from cardsms.services.card_sending import CardRecipient, CardSend, CardSendResult, send_card

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def public_list(console: Console, request: Request, session: Session) -> Response:
    rows = await public.list_public(console.svc)
    return console.render(request, "public.html", session, rows=rows, purposes=public.PURPOSES)


async def public_test(console: Console, request: Request, session: Session) -> Response:
    code = request.path_params["code"]
    if not code.startswith(public.PREFIX):
        return console.render(request, "notice.html", session, 404, title="Not found",
                           message=f"{code} is not a public template")
    ctx = await card_context(console, session, code)
    approved = await approved_signs(console, session)
    results: list[tuple[str, str, str]] = []
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        if not session.may("operator"):
            return console.render(request, "notice.html", session, 403, title="Not allowed",
                               message="Your role may not do this; ask an administrator.")
        form = await text_form(request)
        results, errors = await _test_send(console, session, code, form)
        if request.headers.get("hx-request"):
            return console.render(request, "test_results.html", session, results=results, errors=errors)
    return console.render(request, "public_test.html", session, 400 if errors else 200, purpose=public.PURPOSES.get(
        code, ""), signs=approved, results=results, errors=errors, form=form, **ctx)


async def _test_send(console: Console, session: Session, code: str, form: dict[str, str]
                     ) -> tuple[list[tuple[str, str, str]], dict[str, str]]:
    sign = form.get("sign", "").strip()
    raw = [n.strip() for n in form.get("numbers", "").replace(",", "\n").splitlines() if n.strip()]
    if not sign:
        return [], {"sign": "Choose an approved signature."}
    if not raw:
        return [], {"numbers": "Enter 1 to 10 mobile numbers."}
    if len(raw) > 10:
        return [], {"numbers": f"At most 10 numbers per test send, got {len(raw)}."}
    results: list[tuple[str, str, str]] = []
    recipients: dict[str, CardRecipient] = {}
    for n in raw:
        try:
            number = normalise_mainland_mobile(n)
        except InvalidNumber as exc:
            results.append((n, "invalid", str(exc)))
            continue
        recipients.setdefault(number.national, CardRecipient(number, sign, {}))
    if recipients:
        try:
            sent = await send_card(console.svc, session.account_id, CardSend(code, "NONE"),
                                   list(recipients.values()))
        except CardsmsError as exc:
            return results, {error_field(exc, "sign"): exc.message}
        assert isinstance(sent, CardSendResult)  # no idempotency key: never a replay
        media_set, blocked = set(sent.media), set(sent.skipped)
        for phone in recipients:
            if phone in media_set:
                results.append((phone, "card", sent.biz_card_id))
            elif phone in blocked:
                results.append((phone, "suppressed", "opted out"))
            else:
                results.append((phone, "no_card", sent.biz_card_id))
    return results, {}


async def public_image(console: Console, request: Request) -> Response:
    png = public.cover_png(request.path_params["code"])
    if png is None:
        return PlainTextResponse("not found", 404)
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})
