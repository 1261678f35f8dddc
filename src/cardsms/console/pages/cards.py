"""Card templates: the list, the designer and its live preview, a template's page and its vendor reviews."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.designer import DESIGNER_ACTIONS, Design, type_choices
from cardsms.domain.errors import CardsmsError
from cardsms.domain.vendors import Vendor
from cardsms.links.render import card_view
from cardsms.services import (
    cards,
    media,
    review,
    templates,
)

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def card_list(console: Console, request: Request, session: Session) -> Response:
    _, rows = await templates.list_templates(console.svc, session.account_id, ("card",), 1, 200)
    return console.render(request, "cards.html", session, rows=rows)


async def _design_from_request(console: Console, request: Request, session: Session) -> tuple[Design, dict[str, str]]:
    """The posted design, with any image files uploaded and put in place of their elements."""
    form = await request.form()  # parsed once by Console.view, with this route's limits
    text = {k: v for k, v in form.items() if isinstance(v, str)}
    errors: dict[str, str] = {}
    for key, value in form.multi_items():
        if isinstance(value, UploadFile) and key.endswith("_file") and value.filename:
            data = await value.read()
            try:
                text[key[: -len("_file")] + "_src"] = await media.store_console_image(
                    console.svc, session.account_id, data, key)
            except CardsmsError as exc:
                errors[key] = exc.message
    return Design.from_form(text), errors


async def _preview_view(console: Console, session: Session, design: Design) -> dict[str, Any]:
    body = design.to_template()
    ids = [el.src for page in design.pages for el in page if el.src.isdigit()]
    urls = await media.resource_urls(console.svc, session.account_id, ids)
    return card_view(body, {p: "${" + p + "}" for p in design.params()}, urls)


async def designer(console: Console, request: Request, session: Session) -> Response:
    if request.method == "GET":
        design = Design.starter()
        return console.render(request, "designer.html", session, design=design, errors={},
                           view=await _preview_view(console, session, design), types=type_choices(),
                           actions=DESIGNER_ACTIONS, vendors=list(Vendor))
    design, errors = await _design_from_request(console, request, session)
    form = await request.form()
    op = str(form.get("op", ""))
    if op and op != "save":
        design.apply(op)
    elif op == "save" and not errors:
        try:
            code, _ = await cards.create_card_template(console.svc, session.account_id, design.name,
                                                       design.to_template(), design.factorys, "")
            target = f"/console/cards/{code}"
            if request.headers.get("hx-request"):
                return Response(status_code=204, headers={"HX-Redirect": target})
            return RedirectResponse(target, 303)
        except CardsmsError as exc:
            errors["template"] = exc.message
    partial = "designer_form.html" if request.headers.get("hx-request") else "designer.html"
    return console.render(request, partial, session, 200, design=design, errors=errors,
                       view=await _preview_view(console, session, design), types=type_choices(),
                       actions=DESIGNER_ACTIONS, vendors=list(Vendor))


async def preview(console: Console, request: Request, session: Session) -> Response:
    form = await request.form()
    design = Design.from_form({k: v for k, v in form.items() if isinstance(v, str)})
    return console.render(request, "phone.html", session, view=await _preview_view(console, session, design))


async def card_context(console: Console, session: Session, code: str) -> dict[str, Any]:
    async with console.svc.read() as conn:
        row = await templates.get_template(conn, session.account_id, code, ("card",))
        vendor_rows = await review.vendor_reviews(conn, row["account_id"], "template", row["id"])
    body = row["body"] or {}
    ids = [str(el.get("src")) for p in body.get("templateContent", {}).get("pages", [])
           for el in p.get("tmpCards", []) if el.get("srcType") == 1]
    urls = await media.resource_urls(console.svc, row["account_id"], ids)
    params = {p["name"][2:-1]: p.get("example", "") for p in body.get("extendInfo", {}).get("params", [])}
    (report,) = await cards.card_template_report(console.svc, session.account_id, [row["code"]], None, None)
    return {"row": row, "vendor_rows": vendor_rows, "view": card_view(body, params, urls),
            "settled": all(r["state"] != 0 for r in vendor_rows), "report": report}


async def card_detail(console: Console, request: Request, session: Session) -> Response:
    try:
        ctx = await card_context(console, session, request.path_params["code"])
    except CardsmsError as exc:
        return console.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
    return console.render(request, "card_detail.html", session, **ctx)


async def card_reviews(console: Console, request: Request, session: Session) -> Response:
    ctx = await card_context(console, session, request.path_params["code"])
    return console.render(request, "vendor_progress.html", session, **ctx)
