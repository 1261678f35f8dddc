"""The operations console: server-rendered pages (Jinja2 + htmx) over the same services as the API.

Every handler is thin: read the form, call a service, render. Business rules live in services/ and
domain/; a `CardsmsError` with a `field` is shown next to that field.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
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


PageFn = Callable[..., Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Page:
    """A console page behind a login: who may see it (`role`), who may post to it (`post_role`), and the
    limits its form is parsed with (`files` file parts, `fields` fields)."""

    path: str
    page: PageFn
    role: str = "viewer"
    files: int = 0
    fields: int = 100
    methods: tuple[str, ...] = ("GET",)
    post_role: str = "operator"


GET_POST, POST = ("GET", "POST"), ("POST",)
OPEN_PAGES: tuple[tuple[str, PageFn, tuple[str, ...]], ...] = (
    ("/console/login", session_page.login, GET_POST),
    ("/console/logout", session_page.logout, POST),
    ("/console/lang", session_page.switch_language, ("GET",)),
    ("/console/static/public/{code}.png", public_page.public_image, ("GET",)),
)
PAGES = (
    Page("/console/", session_page.overview),
    Page("/console/qualifications", qualifications_page.qualification_list, files=4, fields=30, methods=GET_POST),
    Page("/console/signs", signs_page.sign_list, methods=GET_POST),
    Page("/console/templates", templates_page.text_templates, files=5, fields=20, methods=GET_POST),
    Page("/console/templates/digital/{code}", templates_page.digital_detail),
    Page("/console/cards", cards_page.card_list),
    Page("/console/cards/new", cards_page.designer, "operator", files=20, fields=500, methods=GET_POST),
    Page("/console/cards/preview", cards_page.preview, "operator", files=20, fields=500, methods=POST),
    Page("/console/cards/{code}", cards_page.card_detail),
    Page("/console/cards/{code}/reviews", cards_page.card_reviews),
    Page("/console/public", public_page.public_list),
    Page("/console/public/{code}", public_page.public_test, methods=GET_POST),
    Page("/console/tasks", tasks_page.task_list),
    Page("/console/tasks/rows", tasks_page.task_rows),
    Page("/console/tasks/new", tasks_page.task_new, "operator", files=1, fields=50, methods=GET_POST),
    Page("/console/tasks/example.{ext}", tasks_page.example_file),
    Page("/console/tasks/{id:int}", tasks_page.task_detail),
    Page("/console/tasks/{id:int}/live", tasks_page.task_live),
    Page("/console/tasks/{id:int}/export.csv", tasks_page.task_export),
    Page("/console/tasks/{id:int}/{action}", tasks_page.task_action, "operator", methods=POST),
    Page("/console/audiences", audiences_page.audiences, files=1, fields=10, methods=GET_POST),
    Page("/console/audiences/{id:int}", audiences_page.audience_detail),
    Page("/console/audiences/{id:int}/invalid.csv", audiences_page.audience_problems),
    Page("/console/audiences/{id:int}/delete", audiences_page.audience_delete, "operator", methods=POST),
    Page("/console/records", audiences_page.record_list),
    Page("/console/settings", settings_page.settings_page),
    Page("/console/users", users_page.users_page, "admin", methods=GET_POST),
    Page("/console/users/{id:int}/{action}", users_page.user_action, "admin", methods=POST),
    Page("/console/password", users_page.password_page, methods=GET_POST, post_role="viewer"),
    Page("/console/audit", users_page.audit_page, "admin"),
    Page("/console/audit.csv", users_page.audit_export, "admin"),
    Page("/console/settings/{section}", settings_page.settings_post, "admin", methods=POST),
)


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
        limits = {"max_files": files, "max_fields": fields, "max_part_size": MAX_FORM_BYTES if files else FIELD_BYTES}

        async def endpoint(request: Request) -> Response:
            session = await self._session(request)
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
            refused = await self._refused_form(request, session, limits) if request.method == "POST" else None
            return refused or await handler(request, session)
        return endpoint

    async def _session(self, request: Request) -> Session | None:
        """The request's session, if its user may still use it (not disabled, reset or logged out elsewhere
        meanwhile); a role an admin changed applies at once."""
        session = self.codec.decode(request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        state = await accounts.session_state(self.svc, session.user_id)
        if state is None or state["disabled"] or state["session_version"] != session.version:
            return None
        return dataclasses.replace(session, role=state["role"]) if state["role"] != session.role else session

    async def _refused_form(self, request: Request, session: Session, limits: dict[str, int]) -> Response | None:
        """The answer to a POST whose form breaks the route's limits, lacks the CSRF token or holds NUL; None
        when it may go on."""
        try:
            form = await request.form(**limits)
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
        return None

    def routes(self) -> list[BaseRoute]:
        open_routes = [Route(path, partial(page, self), methods=list(methods)) for path, page, methods in OPEN_PAGES]
        pages = [Route(p.path, self.view(partial(p.page, self), p.role, p.files, p.fields, p.post_role),
                       methods=list(p.methods)) for p in PAGES]
        return [*open_routes, *pages,
                Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static")]

    def _secure(self, request: Request) -> bool:
        """Cookies are Secure when clients reach us over https: the public URL says so, or this request came so."""
        return self.secure_cookies or request.url.scheme == "https"
