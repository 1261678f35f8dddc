"""Console users, the password page and the audit log."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    SESSION_COOKIE,
    Session,
)
from cardsms.console.pages.forms import text_form
from cardsms.services import (
    accounts,
    audit,
    task_reports,
)
from cardsms.services.core import china_time

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def users_page(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    if request.method == "POST":
        form = await text_form(request)
        try:
            await accounts.create_user(console.svc, session.account, form.get("username", "").strip(),
                                       form.get("password", ""), form.get("role", "operator"))
            return RedirectResponse("/console/users", 303)
        except accounts.AccountError as exc:
            errors["username" if "user" in str(exc) else "password" if "password" in str(exc)
                   else "role"] = str(exc)
    return await _users(console, request, session, errors, form)


async def _users(console: Console, request: Request, session: Session, errors: dict[str, str], form: dict[str, str],
                 reset: tuple[str, str] | None = None) -> Response:
    rows = await accounts.list_users(console.svc, session.account_id)
    return console.render(request, "users.html", session, 400 if errors else 200, rows=rows, errors=errors,
                       form=form, roles=accounts.ROLES, reset=reset)


async def user_action(console: Console, request: Request, session: Session) -> Response:
    form = await text_form(request)
    user_id, action = request.path_params["id"], request.path_params["action"]
    try:
        password = await accounts.manage_user(console.svc, session.account_id, user_id, action,
                                              form.get("role", ""))
    except accounts.AccountError as exc:
        return await _users(console, request, session, {"action": str(exc)}, {})
    if password is not None:  # shown once, to the admin who reset it
        name = next(str(r["username"]) for r in await accounts.list_users(console.svc, session.account_id)
                    if r["id"] == user_id)
        return await _users(console, request, session, {}, {}, reset=(name, password))
    return RedirectResponse("/console/users", 303)


async def password_page(console: Console, request: Request, session: Session) -> Response:
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = await text_form(request)
        try:
            if form.get("new", "") != form.get("again", ""):
                raise accounts.AccountError("new password: the two entries differ")
            await accounts.change_password(console.svc, session.user_id, form.get("current", ""),
                                           form.get("new", ""))
        except accounts.AccountError as exc:
            errors["current" if str(exc).startswith("current") else "new"] = str(exc)
        else:  # every session of this user ended: sign in again with the new password
            response = RedirectResponse("/console/login", 303)
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response
    return console.render(request, "password.html", session, 400 if errors else 200, errors=errors)


async def audit_page(console: Console, request: Request, session: Session) -> Response:
    rows = await audit.entries(console.svc, session.account_id, limit=500)
    return console.render(request, "audit.html", session, rows=rows)


async def audit_export(console: Console, request: Request, session: Session) -> Response:
    rows = await audit.entries(console.svc, session.account_id, limit=100_000)
    text = task_reports.csv_text([("time", "actor", "action", "subject", "detail"),
                           *[(china_time(r["at"]), r["actor"], r["action"], r["subject"], r["detail"])
                             for r in rows]])
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="audit-log.csv"'})
