"""The operations console: server-rendered pages (Jinja2 + htmx) over the same services as the API.

Every handler is thin: read the form, call a service, render. Business rules live in services/ and
domain/; a `CardsmsError` with a `field` is shown next to that field.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cardsms import __version__
from cardsms.console.auth import (
    ROLE_RANK,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    SessionCodec,
)
from cardsms.console.i18n import language, translator
from cardsms.console.pages import audiences as audiences_page
from cardsms.console.pages import cards as cards_page
from cardsms.console.pages import public as public_page
from cardsms.console.pages import qualifications as qualifications_page
from cardsms.console.pages import session as session_page
from cardsms.console.pages import settings as settings_page
from cardsms.console.pages import signs as signs_page
from cardsms.console.pages import tasks as tasks_page
from cardsms.console.pages import templates as templates_page
from cardsms.console.pages import users as users_page
from cardsms.services import (
    accounts,
    audit,
)
from cardsms.services.core import Services, china_time

HERE = Path(__file__).parent
Handler = Callable[[Request, Session], Awaitable[Response]]
MAX_FORM_BYTES = 4 * 1024 * 1024
FIELD_BYTES = 64 * 1024  # a text field of a form that takes no files
NAV = [("overview", "/console/", "Overview"), ("qualifications", "/console/qualifications", "Qualifications"),
       ("signs", "/console/signs", "Signatures"),
       ("templates", "/console/templates", "Text templates"), ("cards", "/console/cards", "Card templates"),
       ("public", "/console/public", "Public templates"), ("tasks", "/console/tasks", "Mass tasks"),
       ("audiences", "/console/audiences", "Audiences"), ("records", "/console/records", "Send records"),
       ("settings", "/console/settings", "Settings"), ("users", "/console/users", "Users"),
       ("audit", "/console/audit", "Audit log"), ("password", "/console/password", "Password")]
ADMIN_PAGES = ("users", "audit")
REVIEW_NAMES = {0: "Reviewing", 1: "Approved", 2: "Rejected", 3: "Not submitted"}


class Console:
    def __init__(self, svc: Services, delivery: Any = None) -> None:
        self.svc, self.delivery = svc, delivery
        self.codec = SessionCodec(svc.settings.resolved_secret_key())
        self.limiter = LoginLimiter()
        self.secure_cookies = svc.settings.base_url.startswith("https://")
        self.env = Environment(
            loader=ChoiceLoader([FileSystemLoader(HERE / "templates"),
                                 FileSystemLoader(HERE.parent / "links" / "templates")]), auto_reload=False,
            autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["cn_time"] = lambda v: china_time(v) if v else ""
        self.env.filters["fromjson"] = json.loads

    def render(self, request: Request, name: str, session: Session | None = None, status: int = 200,
               **context: Any) -> HTMLResponse:
        lang = language(request)
        html = self.env.get_template(name).render(
            _=translator(lang), lang=lang, session=session, nav=NAV, admin_pages=ADMIN_PAGES, path=request.url.path,
            version=__version__, review_names=REVIEW_NAMES, **context)
        return HTMLResponse(html, status)

    def view(self, handler: Handler, role: str = "viewer", files: int = 0, fields: int = 100,
             post_role: str = "operator") -> Callable[[Request], Awaitable[Response]]:
        """The handler behind the session, role and CSRF checks. A POST's form is parsed here, once, with the
        route's own limits (starlette keeps the first parse): `files` file parts at most (0 for forms that take
        none) and `fields` fields, each field at most FIELD_BYTES (MAX_FORM_BYTES where files come)."""
        part_size = MAX_FORM_BYTES if files else FIELD_BYTES

        async def endpoint(request: Request) -> Response:
            session = self.codec.decode(request.cookies.get(SESSION_COOKIE))
            if session is not None:  # the user may have been disabled, reset or changed password meanwhile
                state = await accounts.session_state(self.svc, session.user_id)
                if state is None or state["disabled"] or state["session_version"] != session.version:
                    session = None
                elif state["role"] != session.role:  # a role changed by an admin applies at once
                    session = dataclasses.replace(session, role=state["role"])
            if session is None:
                target = "/console/login?next=" + quote(request.url.path)
                if request.headers.get("hx-request"):
                    return Response(status_code=204, headers={"HX-Redirect": target})
                return RedirectResponse(target, 303)
            need = role if request.method == "GET" else max(role, post_role, key=ROLE_RANK.__getitem__)
            if not session.may(need):
                return self.render(request, "notice.html", session, 403, title="Not allowed",
                                   message="Your role may not do this; ask an administrator.")
            audit.set_actor(f"user:{session.username}")
            if request.method == "POST":
                try:
                    form = await request.form(max_files=files, max_fields=fields, max_part_size=part_size)
                except (MultiPartException, ClientDisconnect) as exc:
                    return self.render(request, "notice.html", session, 400, title="Invalid input",
                                       message=f"the form: {str(exc)[:200]}")
                token = str(form.get("csrf") or request.headers.get("x-csrf-token") or "")
                if not secrets.compare_digest(token, session.csrf):
                    return self.render(request, "notice.html", session, 403, title="Form expired",
                                       message="The form's security token is missing or old; reload the page.")
                nul = next((k for k, v in form.multi_items() if isinstance(v, str) and "\x00" in v), None)
                if nul is not None:  # no text field holds NUL (PostgreSQL cannot store it; no person types it)
                    return self.render(request, "notice.html", session, 400, title="Invalid input",
                                       message=f"field {nul[:40]}: must not contain NUL characters")
            return await handler(request, session)
        return endpoint

    def routes(self) -> list[BaseRoute]:
        v, admin = self.view, (lambda h: self.view(h, "admin"))

        def p(page: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
            return partial(page, self)  # a page's handler, given this console

        def op(handler: Handler, files: int = 0, fields: int = 100) -> Callable[[Request], Awaitable[Response]]:
            return self.view(handler, "operator", files, fields)

        return [
            Route("/console/login", p(session_page.login), methods=["GET", "POST"]),
            Route("/console/logout", p(session_page.logout), methods=["POST"]),
            Route("/console/lang", p(session_page.switch_language)),
            Route("/console/", v(p(session_page.overview))),
            Route("/console/qualifications", v(p(qualifications_page.qualification_list), files=4, fields=30),
                  methods=["GET", "POST"]),
            Route("/console/signs", v(p(signs_page.sign_list)), methods=["GET", "POST"]),
            Route("/console/templates", v(p(templates_page.text_templates), files=5, fields=20),
                  methods=["GET", "POST"]),
            Route("/console/templates/digital/{code}", v(p(templates_page.digital_detail))),
            Route("/console/cards", v(p(cards_page.card_list))),
            Route("/console/cards/new", op(p(cards_page.designer), files=20, fields=500), methods=["GET", "POST"]),
            Route("/console/cards/preview", op(p(cards_page.preview), files=20, fields=500), methods=["POST"]),
            Route("/console/cards/{code}", v(p(cards_page.card_detail))),
            Route("/console/cards/{code}/reviews", v(p(cards_page.card_reviews))),
            Route("/console/public", v(p(public_page.public_list))),
            Route("/console/public/{code}", v(p(public_page.public_test)), methods=["GET", "POST"]),
            Route("/console/tasks", v(p(tasks_page.task_list))),
            Route("/console/tasks/rows", v(p(tasks_page.task_rows))),
            Route("/console/tasks/new", op(p(tasks_page.task_new), files=1, fields=50), methods=["GET", "POST"]),
            Route("/console/tasks/example.{ext}", v(p(tasks_page.example_file))),
            Route("/console/tasks/{id:int}", v(p(tasks_page.task_detail))),
            Route("/console/tasks/{id:int}/live", v(p(tasks_page.task_live))),
            Route("/console/tasks/{id:int}/export.csv", v(p(tasks_page.task_export))),
            Route("/console/tasks/{id:int}/{action}", op(p(tasks_page.task_action)), methods=["POST"]),
            Route("/console/audiences", v(p(audiences_page.audiences), files=1, fields=10), methods=["GET", "POST"]),
            Route("/console/audiences/{id:int}", v(p(audiences_page.audience_detail))),
            Route("/console/audiences/{id:int}/invalid.csv", v(p(audiences_page.audience_problems))),
            Route("/console/audiences/{id:int}/delete", op(p(audiences_page.audience_delete)), methods=["POST"]),
            Route("/console/records", v(p(audiences_page.record_list))),
            Route("/console/settings", v(p(settings_page.settings_page))),
            Route("/console/users", admin(p(users_page.users_page)), methods=["GET", "POST"]),
            Route("/console/users/{id:int}/{action}", admin(p(users_page.user_action)), methods=["POST"]),
            Route("/console/password", v(p(users_page.password_page), post_role="viewer"), methods=["GET", "POST"]),
            Route("/console/audit", admin(p(users_page.audit_page))),
            Route("/console/audit.csv", admin(p(users_page.audit_export))),
            Route("/console/settings/{section}", admin(p(settings_page.settings_post)), methods=["POST"]),
            Route("/console/static/public/{code}.png", p(public_page.public_image)),
            Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static"),
        ]

    def _secure(self, request: Request) -> bool:
        """Cookies are Secure when clients reach us over https: the public URL says so, or this request came so."""
        return self.secure_cookies or request.url.scheme == "https"
