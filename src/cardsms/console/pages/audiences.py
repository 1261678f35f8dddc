"""Audiences (imported number lists) and send records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import as_pct, error_field
from cardsms.domain.errors import CardsmsError
from cardsms.services import (
    imports,
    records,
    task_reports,
)

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def audiences(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    if request.method == "POST":
        raw = await request.form()  # parsed once by Console.view, with this route's limits
        upload = raw.get("file")
        name = str(raw.get("name", "")).strip()
        try:
            if not name:
                raise CardsmsError("InvalidField", "name: give the audience a name", field="name")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise CardsmsError("InvalidFile", "file: choose a file of numbers", field="file")
            audience_id = await imports.start_import(console.svc, session.account_id, name=name, saved=True,
                                                     file_name=upload.filename, data=await upload.read())
            return RedirectResponse(f"/console/audiences/{audience_id}", 303)
        except CardsmsError as exc:
            errors[error_field(exc, "file")] = exc.message
    rows = await imports.list_audiences(console.svc, session.account_id)
    return console.render(request, "audiences.html", session, 400 if errors else 200, rows=rows, errors=errors)


async def audience_detail(console: Console, request: Request, session: Session) -> Response:
    try:
        aud = await imports.get_audience(console.svc, session.account_id, request.path_params["id"])
    except CardsmsError as exc:
        return console.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
    sample = await imports.sample_numbers(console.svc, session.account_id, aud["id"])
    template = "audience_live.html" if request.headers.get("hx-request") else "audience_detail.html"
    return console.render(request, template, session, aud=aud, sample=sample,
                       import_pct=as_pct(aud["lines_done"], aud["total"]))


async def audience_problems(console: Console, request: Request, session: Session) -> Response:
    aud = await imports.get_audience(console.svc, session.account_id, request.path_params["id"])
    rows = await imports.problems(console.svc, session.account_id, aud["id"])
    return Response(task_reports.csv_text([("line", "value", "reason"), *rows]), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="invalid-lines-{aud["id"]}.csv"'})


async def audience_delete(console: Console, request: Request, session: Session) -> Response:
    try:
        await imports.delete_audience(console.svc, session.account_id, request.path_params["id"])
    except CardsmsError as exc:
        return console.render(request, "notice.html", session, 409, title="Cannot delete", message=exc.message)
    return RedirectResponse("/console/audiences", 303)


async def record_list(console: Console, request: Request, session: Session) -> Response:
    q = {k: request.query_params.get(k, "").strip() for k in ("phone", "day", "task", "biz")}
    rows = await records.find_messages(console.svc, session.account_id, phone=q["phone"],
                                       day=q["day"].replace("-", ""),
                                       task_id=int(q["task"]) if q["task"].isdigit() else None, biz_id=q["biz"])
    return console.render(request, "records.html", session, rows=rows, q=q)
