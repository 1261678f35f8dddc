"""Text and digital templates: the list, the forms that add them, and a digital template's preview."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import api_error_field, form_int
from cardsms.domain.errors import CardsmsError
from cardsms.services import (
    templates,
)

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def text_templates(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        raw = await request.form()  # parsed once by Console.view, with this route's limits
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        try:
            if form.get("kind") == "digital":
                await _add_digital(console, session, form, [f for k, f in raw.multi_items()
                                                        if k == "media" and isinstance(f, UploadFile)])
            else:
                await templates.add_text_template(console.svc, session.account_id, form_int(form.get("type"), 1),
                                                  form.get("name", ""), form.get("content", ""),
                                                  form.get("remark", ""))
            return RedirectResponse("/console/templates", 303)
        except CardsmsError as exc:
            prefix = "d_" if form.get("kind") == "digital" else ""
            errors[prefix + api_error_field(exc, "content")] = exc.message
    _, text_rows = await templates.list_templates(console.svc, session.account_id, ("text",), 1, 200)
    _, digital_rows = await templates.list_templates(console.svc, session.account_id, ("digital",), 1, 200)
    return console.render(request, "templates.html", session, 400 if errors else 200, text_rows=text_rows,
                       digital_rows=digital_rows, errors=errors, form=form)


async def _add_digital(console: Console, session: Session, form: dict[str, str], files: list[UploadFile]) -> None:
    """A digital template from the form: its text and up to 9 media files, as CreateSmsTemplate takes them."""
    contents = []
    if form.get("content", "").strip():
        contents.append({"FileContents": base64.b64encode(form["content"].encode()).decode(), "FileSuffix": "txt",
                         "FileName": "text.txt"})
    for f in files:
        if f.filename:
            contents.append({"FileContents": base64.b64encode(await f.read()).decode(),
                             "FileSuffix": (f.filename.rsplit(".", 1)[-1] if "." in f.filename else ""),
                             "FileName": f.filename})
    await templates.create_digital_template(console.svc, session.account_id, form.get("name", ""), "",
                                            form.get("remark", ""), contents)


async def digital_detail(console: Console, request: Request, session: Session) -> Response:
    try:
        row, parts = await templates.digital_template_view(console.svc, session.account_id,
                                                           request.path_params["code"])
    except CardsmsError as exc:
        return console.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
    return console.render(request, "digital_detail.html", session, row=row, parts=parts,
                       size=sum(p["size"] for p in parts))
