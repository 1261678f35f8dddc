"""Mass tasks: the list (refreshed live), the form that creates one, a task's page, its export and actions."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse

from cardsms.console.auth import (
    Session,
)
from cardsms.console.pages.forms import as_pct, error_field, form_limit, task_form
from cardsms.domain.errors import CardsmsError
from cardsms.domain.schedule import can_revoke
from cardsms.services import (
    accounts,
    imports,
    public,
    signs,
    task_reports,
    tasks,
    templates,
)
from cardsms.services.core import as_utc

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def _task_rows(console: Console, session: Session) -> list[dict[str, Any]]:
    rows = await tasks.list_tasks(console.svc, session.account_id)
    stats = await task_reports.tasks_stats(console.svc, [t["id"] for t in rows])
    out = []
    for t in rows:
        done = stats[t["id"]]["submitted"] + stats[t["id"]]["skipped"]
        start = as_utc(t["scheduled_at"]) if t["scheduled_at"] is not None else None
        out.append({"t": t, "stats": stats[t["id"]], "pct": as_pct(done, t["total"]),
                    "revocable": t["state"] in ("scheduled", "importing") and can_revoke(start, console.svc.now())})
    return out


async def task_list(console: Console, request: Request, session: Session) -> Response:
    return console.render(request, "tasks.html", session, rows=await _task_rows(console, session))


async def task_rows(console: Console, request: Request, session: Session) -> Response:
    return console.render(request, "task_rows.html", session, rows=await _task_rows(console, session))


async def approved_signs(console: Console, session: Session) -> list[str]:
    _, rows = await signs.list_signs(console.svc, session.account_id, 1, 500)
    return [s["name"] for s in rows if s["status"] == 1]


async def _task_choices(console: Console, session: Session) -> dict[str, Any]:
    _, card_rows = await templates.list_templates(console.svc, session.account_id, ("card",), 1, 500)
    _, text_rows = await templates.list_templates(console.svc, session.account_id, ("text",), 1, 500)
    _, digital_rows = await templates.list_templates(console.svc, session.account_id, ("digital",), 1, 500)
    return {"signs": await approved_signs(console, session),
            "cards": [(c["code"], c["name"]) for c in card_rows if c["status"] == 1]
            + [(p["code"], p["name"]) for p in await public.list_public(console.svc)],
            "texts": [(c["code"], c["name"]) for c in text_rows if c["status"] == 1],
            "digitals": [(c["code"], c["name"]) for c in digital_rows if c["status"] == 1],
            "audiences": [a for a in await imports.list_audiences(console.svc, session.account_id)
                          if a["state"] == "ready"],
            **await _window_note(console, session)}


async def _window_note(console: Console, session: Session) -> dict[str, Any]:
    """The account's send window, and when a task sent now would start if now is outside it."""
    window = await accounts.send_window(console.svc, session.account_id)
    now = console.svc.now()
    return {"send_window": str(window), "waits_until": None if window.contains(now) else window.next_start(now)}


async def task_new(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        raw = await request.form()  # parsed once by Console.view, with this route's limits
        form = {k: v for k, v in raw.items() if isinstance(v, str)}
        upload = raw.get("file")
        data = await upload.read() if isinstance(upload, UploadFile) and upload.filename else None
        try:
            parsed = task_form(form)
            if form.get("source") == "audience":
                data = None
            else:
                parsed.audience_id = None
            task_id = await tasks.create_task(
                console.svc, session.account_id, parsed, data=data,
                file_name=upload.filename or "" if isinstance(upload, UploadFile) else "",
                created_by=session.username)
            return RedirectResponse(f"/console/tasks/{task_id}", 303)
        except CardsmsError as exc:
            errors[error_field(exc, "form")] = exc.message
    return console.render(request, "task_new.html", session, 400 if errors else 200, errors=errors, form=form,
                       **await _task_choices(console, session))


async def example_file(console: Console, request: Request, session: Session) -> Response:
    ext = request.path_params["ext"]
    if ext not in ("csv", "txt"):
        return PlainTextResponse("Download example: csv or txt", 404)
    body = imports.EXAMPLE_CSV if ext == "csv" else imports.EXAMPLE_TXT
    return Response(body, media_type="text/csv" if ext == "csv" else "text/plain",
                    headers={"Content-Disposition": f'attachment; filename="numbers-example.{ext}"'})


async def _task_context(console: Console, session: Session, task_id: int) -> dict[str, Any]:
    t = await tasks.get_task(console.svc, session.account_id, task_id)
    aud = await imports.get_audience(console.svc, session.account_id, t["audience_id"])
    stats = await task_reports.task_stats(console.svc, task_id)
    done = stats["submitted"] + stats["skipped"]
    funnel = [("Recipients", t["total"]), ("Submitted", stats["submitted"]), ("Delivered", stats["delivered"]),
              ("Rendered", stats["rendered"]), ("Link opens", stats["opened"]), ("Replies", stats["replies"])]
    digital: list[dict[str, Any]] = []
    if t["fallback_type"] == "DIGITALSMS":
        with contextlib.suppress(CardsmsError):  # the template may have been deleted since
            digital = await templates.digital_preview(console.svc, session.account_id, t["digital_template_code"])
    return {"t": t, "aud": aud, "stats": stats, "pct": as_pct(done, t["total"]), "funnel": funnel, "digital": digital,
            "funnel_peak": max([n for _, n in funnel] + [1]),
            "import_pct": as_pct(aud["lines_done"], aud["total"]),
            "live": await task_reports.progress(console.svc, t, stats),
            "events": await tasks.events(console.svc, session.account_id, task_id)}


async def task_detail(console: Console, request: Request, session: Session) -> Response:
    try:
        ctx = await _task_context(console, session, request.path_params["id"])
    except CardsmsError as exc:
        return console.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
    return console.render(request, "task_detail.html", session, error=request.query_params.get("error", ""), **ctx)


async def task_live(console: Console, request: Request, session: Session) -> Response:
    ctx = await _task_context(console, session, request.path_params["id"])
    return console.render(request, "task_live.html", session, **ctx)


async def task_export(console: Console, request: Request, session: Session) -> Response:
    task_id = request.path_params["id"]
    await tasks.get_task(console.svc, session.account_id, task_id)
    return StreamingResponse(task_reports.export_rows(console.svc, session.account_id, task_id), media_type="text/csv",
                             headers={"Content-Disposition": f'attachment; filename="task-{task_id}.csv"'})


async def task_action(console: Console, request: Request, session: Session) -> Response:
    task_id, action = request.path_params["id"], request.path_params["action"]
    actions = {"revoke": tasks.revoke_task, "pause": tasks.pause_task, "resume": tasks.resume_task,
               "cancel": tasks.cancel_task}
    if action not in actions and action != "rate":
        return PlainTextResponse(f"unknown action {action!r}", 404)
    form = await request.form()
    target = str(form.get("back") or f"/console/tasks/{task_id}")
    target = target if target.startswith("/console/") else "/console/tasks"
    try:
        if action == "rate":
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            await tasks.set_rate(console.svc, session.account_id, task_id, form_limit(fields, "rate"),
                                 form_limit(fields, "hourly_cap"))
        else:
            await actions[action](console.svc, session.account_id, task_id)
    except CardsmsError as exc:
        return RedirectResponse(f"/console/tasks/{task_id}?error=" + quote(exc.message), 303)
    return RedirectResponse(target, 303)
