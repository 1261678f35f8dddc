"""Signatures: the list and the form that applies for one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import api_error_field, form_int, text_form
from cardsms.domain.errors import CardsmsError
from cardsms.services import (
    signs,
)

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def sign_list(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        form = await text_form(request)
        try:
            await signs.add_sign(console.svc, session.account_id, form.get("name", ""),
                                 form_int(form.get("source"), 0), form_int(form.get("type"), 0),
                                 form.get("remark", ""), [])
            return RedirectResponse("/console/signs", 303)
        except CardsmsError as exc:
            errors[api_error_field(exc, "name")] = exc.message
    _, rows = await signs.list_signs(console.svc, session.account_id, 1, 200)
    from cardsms.domain.text import SIGN_SOURCES, SIGN_TYPES

    return console.render(request, "signs.html", session, 400 if errors else 200, rows=rows, errors=errors,
                       form=form, sources=SIGN_SOURCES, types=SIGN_TYPES)
