"""Login, logout, the language switch and the overview."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response

from cardsms.console.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Session,
    authenticate,
)
from cardsms.console.pages.forms import as_rate
from cardsms.services import (
    accounts,
    alerts,
    records,
)
from cardsms.services.core import CHINA

if TYPE_CHECKING:
    from cardsms.console.app import Console


async def login(console: Console, request: Request) -> Response:
    if request.method == "GET":
        token = secrets.token_urlsafe(16)
        page = console.render(request, "login.html", csrf=token, next=request.query_params.get("next", ""))
        page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/console",
                            secure=console._secure(request))
        return page
    try:  # no login: no files, a few small fields (web/limits.py caps the whole body at 16 KB)
        form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
    except (MultiPartException, ClientDisconnect):
        return console.render(request, "login.html", status=400, csrf="", next="",
                           error="The form is malformed; reload the page.")
    username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
    account, token = str(form.get("account", "")).strip(), str(form.get("csrf", ""))
    client = request.client.host if request.client else "?"
    keys = console.limiter.keys(username, client)
    error = None
    if not token or not secrets.compare_digest(token, request.cookies.get(LOGIN_CSRF_COOKIE, "")):
        error = "The form's security token is missing or old; reload the page."
    elif console.limiter.blocked(*keys):
        error = "Too many failed logins; wait five minutes and try again."
    if error is None:
        result = await authenticate(console.svc, username, password, account)
        if isinstance(result, Session):
            console.limiter.succeeded(*keys)
            nxt = str(form.get("next", ""))
            response = RedirectResponse(nxt if nxt.startswith("/console/") else "/console/", 303)
            response.set_cookie(SESSION_COOKIE, console.codec.encode(result), max_age=12 * 3600, httponly=True,
                                samesite="lax", path="/", secure=console._secure(request))
            return response
        console.limiter.failed(*keys)
        error = result
    return console.render(request, "login.html", status=400, csrf=token, error=error, username=username,
                       account=account, next=str(form.get("next", "")))


async def logout(console: Console, request: Request) -> Response:
    session = console.codec.decode(request.cookies.get(SESSION_COOKIE))
    if session is not None:  # revoked, not only forgotten: a copy of the cookie stops working too
        await accounts.end_sessions(console.svc, session.user_id)
    response = RedirectResponse("/console/login", 303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def switch_language(console: Console, request: Request) -> Response:
    to = request.query_params.get("to", "zh-CN")
    back = request.query_params.get("back", "/console/")
    response = RedirectResponse(back if back.startswith("/console") else "/console/", 303)
    response.set_cookie("cardsms_lang", "en" if to == "en" else "zh-CN", max_age=365 * 86400, path="/",
                        samesite="lax")
    return response


async def overview(console: Console, request: Request, session: Session) -> Response:
    now = console.svc.now().astimezone(CHINA)
    days = [(now - timedelta(days=i)).strftime("%Y%m%d") for i in range(6, -1, -1)]
    by_day = await records.daily_counts(console.svc, session.account_id, days)
    series: list[tuple[str, int, int, int, int]] = [(d, *by_day.get(d, [0, 0, 0, 0])) for d in days]  # type: ignore[misc]
    today = series[-1]
    peak = max([s[1] for s in series] + [1])
    return console.render(request, "overview.html", session, series=series, peak=peak, today=today,
                       delivery_rate=as_rate(today[2], today[1]), render_rate=as_rate(today[3], today[4]),
                       alerts=await alerts.recent_alerts(console.svc, session.account_id))
