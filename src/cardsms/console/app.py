"""The operations console: server-rendered pages (Jinja2 + htmx) over the same services as the API.

Every handler is thin: read the form, call a service, render. Business rules live in services/ and
domain/; a `CardsmsError` with a `field` is shown next to that field.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cardsms import __version__
from cardsms.console.auth import (
    LOGIN_CSRF_COOKIE,
    ROLE_RANK,
    SESSION_COOKIE,
    LoginLimiter,
    Session,
    SessionCodec,
    authenticate,
)
from cardsms.console.designer import DESIGNER_ACTIONS, Design, type_choices
from cardsms.console.i18n import language, translator
from cardsms.domain import frequency as freq_rules
from cardsms.domain.errors import CardsmsError
from cardsms.domain.numbers import InvalidNumber, normalise_mainland_mobile
from cardsms.domain.schedule import can_revoke, parse_local_start
from cardsms.domain.vendors import Vendor
from cardsms.links.render import card_view
from cardsms.services import (
    accounts,
    alerts,
    audit,
    cards,
    domains,
    frequency,
    imports,
    media,
    public,
    qualifications,
    records,
    review,
    signs,
    suppression,
    tasks,
    templates,
    webhooks,
)
from cardsms.services.card_sending import CardRecipient, CardSend, CardSendResult, send_card
from cardsms.services.core import CHINA, Services, as_utc, china_time
from cardsms.services.qualifications import QualificationInput

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

    # --- plumbing -------------------------------------------------------------------------------

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

        def op(handler: Handler, files: int = 0, fields: int = 100) -> Callable[[Request], Awaitable[Response]]:
            return self.view(handler, "operator", files, fields)

        return [
            Route("/console/login", self.login, methods=["GET", "POST"]),
            Route("/console/logout", self.logout, methods=["POST"]),
            Route("/console/lang", self.switch_language),
            Route("/console/", v(self.overview)),
            Route("/console/qualifications", v(self.qualifications, files=4, fields=30), methods=["GET", "POST"]),
            Route("/console/signs", v(self.signs), methods=["GET", "POST"]),
            Route("/console/templates", v(self.text_templates, files=5, fields=20), methods=["GET", "POST"]),
            Route("/console/templates/digital/{code}", v(self.digital_detail)),
            Route("/console/cards", v(self.cards)),
            Route("/console/cards/new", op(self.designer, files=20, fields=500), methods=["GET", "POST"]),
            Route("/console/cards/preview", op(self.preview, files=20, fields=500), methods=["POST"]),
            Route("/console/cards/{code}", v(self.card_detail)),
            Route("/console/cards/{code}/reviews", v(self.card_reviews)),
            Route("/console/public", v(self.public_list)),
            Route("/console/public/{code}", v(self.public_test), methods=["GET", "POST"]),
            Route("/console/tasks", v(self.task_list)),
            Route("/console/tasks/rows", v(self.task_rows)),
            Route("/console/tasks/new", op(self.task_new, files=1, fields=50), methods=["GET", "POST"]),
            Route("/console/tasks/example.{ext}", v(self.example_file)),
            Route("/console/tasks/{id:int}", v(self.task_detail)),
            Route("/console/tasks/{id:int}/live", v(self.task_live)),
            Route("/console/tasks/{id:int}/export.csv", v(self.task_export)),
            Route("/console/tasks/{id:int}/{action}", op(self.task_action), methods=["POST"]),
            Route("/console/audiences", v(self.audiences, files=1, fields=10), methods=["GET", "POST"]),
            Route("/console/audiences/{id:int}", v(self.audience_detail)),
            Route("/console/audiences/{id:int}/invalid.csv", v(self.audience_problems)),
            Route("/console/audiences/{id:int}/delete", op(self.audience_delete), methods=["POST"]),
            Route("/console/records", v(self.records)),
            Route("/console/settings", v(self.settings_page)),
            Route("/console/users", admin(self.users_page), methods=["GET", "POST"]),
            Route("/console/users/{id:int}/{action}", admin(self.user_action), methods=["POST"]),
            Route("/console/password", v(self.password_page, post_role="viewer"), methods=["GET", "POST"]),
            Route("/console/audit", admin(self.audit_page)),
            Route("/console/audit.csv", admin(self.audit_export)),
            Route("/console/settings/{section}", admin(self.settings_post), methods=["POST"]),
            Route("/console/static/public/{code}.png", self.public_image),
            Mount("/console/static", StaticFiles(directory=HERE / "static"), name="console-static"),
        ]

    def _secure(self, request: Request) -> bool:
        """Cookies are Secure when clients reach us over https: the public URL says so, or this request came so."""
        return self.secure_cookies or request.url.scheme == "https"

    # --- login and language ---------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            token = secrets.token_urlsafe(16)
            page = self.render(request, "login.html", csrf=token, next=request.query_params.get("next", ""))
            page.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/console",
                                secure=self._secure(request))
            return page
        try:  # no login: no files, a few small fields (web/limits.py caps the whole body at 16 KB)
            form = await request.form(max_files=0, max_fields=10, max_part_size=4096)
        except (MultiPartException, ClientDisconnect):
            return self.render(request, "login.html", status=400, csrf="", next="",
                               error="The form is malformed; reload the page.")
        username, password = str(form.get("username", "")).strip(), str(form.get("password", ""))
        account, token = str(form.get("account", "")).strip(), str(form.get("csrf", ""))
        client = request.client.host if request.client else "?"
        keys = self.limiter.keys(username, client)
        error = None
        if not token or not secrets.compare_digest(token, request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            error = "The form's security token is missing or old; reload the page."
        elif self.limiter.blocked(*keys):
            error = "Too many failed logins; wait five minutes and try again."
        if error is None:
            result = await authenticate(self.svc, username, password, account)
            if isinstance(result, Session):
                self.limiter.succeeded(*keys)
                nxt = str(form.get("next", ""))
                response = RedirectResponse(nxt if nxt.startswith("/console/") else "/console/", 303)
                response.set_cookie(SESSION_COOKIE, self.codec.encode(result), max_age=12 * 3600, httponly=True,
                                    samesite="lax", path="/", secure=self._secure(request))
                return response
            self.limiter.failed(*keys)
            error = result
        return self.render(request, "login.html", status=400, csrf=token, error=error, username=username,
                           account=account, next=str(form.get("next", "")))

    async def logout(self, request: Request) -> Response:
        session = self.codec.decode(request.cookies.get(SESSION_COOKIE))
        if session is not None:  # revoked, not only forgotten: a copy of the cookie stops working too
            await accounts.end_sessions(self.svc, session.user_id)
        response = RedirectResponse("/console/login", 303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    async def switch_language(self, request: Request) -> Response:
        to = request.query_params.get("to", "zh-CN")
        back = request.query_params.get("back", "/console/")
        response = RedirectResponse(back if back.startswith("/console") else "/console/", 303)
        response.set_cookie("cardsms_lang", "en" if to == "en" else "zh-CN", max_age=365 * 86400, path="/",
                            samesite="lax")
        return response

    # --- overview -------------------------------------------------------------------------------

    async def overview(self, request: Request, session: Session) -> Response:
        now = self.svc.now().astimezone(CHINA)
        days = [(now - timedelta(days=i)).strftime("%Y%m%d") for i in range(6, -1, -1)]
        by_day = await records.daily_counts(self.svc, session.account_id, days)
        series: list[tuple[str, int, int, int, int]] = [(d, *by_day.get(d, [0, 0, 0, 0])) for d in days]  # type: ignore[misc]
        today = series[-1]
        peak = max([s[1] for s in series] + [1])
        return self.render(request, "overview.html", session, series=series, peak=peak, today=today,
                           delivery_rate=_rate(today[2], today[1]), render_rate=_rate(today[3], today[4]),
                           alerts=await alerts.recent_alerts(self.svc, session.account_id))

    # --- signatures and text templates -----------------------------------------------------------

    async def qualifications(self, request: Request, session: Session) -> Response:
        """Qualification records: the list with their review state, and a form that submits one with its files
        (the same checks as SubmitSmsQualification)."""
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            raw = await request.form(max_files=4, max_fields=30, max_part_size=MAX_FORM_BYTES)
            form = {k: v for k, v in raw.items() if isinstance(v, str)}
            try:
                await self._submit_qualification(session, form, {k: f for k, f in raw.items()
                                                                  if isinstance(f, UploadFile)})
                return RedirectResponse("/console/qualifications", 303)
            except CardsmsError as exc:
                errors[_qualification_field(exc)] = exc.message
        _, rows = await qualifications.list_qualifications(self.svc, session.account_id, {}, 1, 200)
        return self.render(request, "qualifications.html", session, 400 if errors else 200, rows=rows,
                           errors=errors, form=form)

    async def _submit_qualification(self, session: Session, form: dict[str, str], files: dict[str, UploadFile]
                                    ) -> None:
        company_type = form.get("company_type", "COMPANY")
        if company_type not in ("COMPANY", "NON_PROFIT_ORGANIZATION"):
            raise CardsmsError("InvalidField", "company_type: COMPANY or NON_PROFIT_ORGANIZATION", field="company_type")
        details: dict[str, Any] = {
            "AdminName": form.get("admin_name", "").strip(), "AdminPhoneNo": form.get("admin_phone", "").strip(),
            "AdminIDCardNo": form.get("admin_id", "").strip().upper(), "AdminIDCardType": "identityCard",
            "LegalPersonIDCardNo": form.get("legal_id", "").strip().upper(), "LegalPersonIDCardType": "identityCard",
            "Remark": form.get("remark", "").strip(), "OtherFiles": [],
            "BusinessLicensePics": [{"LicensePic": "", "Type": "businessLicense"}],
        }
        q = QualificationInput(
            name=form.get("name", "").strip(), company_name=form.get("company_name", "").strip(),
            company_type=company_type, organization_code=form.get("organization_code", "").strip().upper(),
            legal_person_name=form.get("legal_person_name", "").strip(),
            use_by_self=form.get("use_by_self", "true") != "false", whether_share=False, details=details, files=[])
        qualifications.check_qualification(q)  # every field before any file is stored
        datas = {name: await f.read() for name, f in files.items() if name in ("license", "id_front", "id_back")}
        if not datas.get("license"):
            raise CardsmsError("InvalidField", "license: choose the business licence (JPG, PNG or PDF)",
                               field="license")
        for name, data in datas.items():  # the types and sizes of all (the ID pictures are optional) first
            if data:
                media.check_console_file(data, name)
        keys = {name: await media.store_console_file(self.svc, session.account_id, data, name)
                for name, data in datas.items() if data}
        details.update(BusinessLicensePics=[{"LicensePic": keys["license"], "Type": "businessLicense"}],
                       AdminIDCardFrontFace=keys.get("id_front", ""), AdminIDCardPic=keys.get("id_back", ""))
        await qualifications.submit_qualification(self.svc, session.account_id, dataclasses.replace(
            q, details=details, files=[(k, [v]) for k, v in keys.items()]))

    async def signs(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await _text_form(request)
            try:
                await signs.add_sign(self.svc, session.account_id, form.get("name", ""),
                                     _int(form.get("source"), 0), _int(form.get("type"), 0), form.get("remark", ""), [])
                return RedirectResponse("/console/signs", 303)
            except CardsmsError as exc:
                errors[_api_field(exc, "name")] = exc.message
        _, rows = await signs.list_signs(self.svc, session.account_id, 1, 200)
        from cardsms.domain.text import SIGN_SOURCES, SIGN_TYPES

        return self.render(request, "signs.html", session, 400 if errors else 200, rows=rows, errors=errors,
                           form=form, sources=SIGN_SOURCES, types=SIGN_TYPES)

    async def text_templates(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            raw = await request.form(max_files=5, max_fields=20, max_part_size=MAX_FORM_BYTES)
            form = {k: v for k, v in raw.items() if isinstance(v, str)}
            try:
                if form.get("kind") == "digital":
                    await self._add_digital(session, form, [f for k, f in raw.multi_items()
                                                            if k == "media" and isinstance(f, UploadFile)])
                else:
                    await templates.add_text_template(self.svc, session.account_id, _int(form.get("type"), 1),
                                                      form.get("name", ""), form.get("content", ""),
                                                      form.get("remark", ""))
                return RedirectResponse("/console/templates", 303)
            except CardsmsError as exc:
                prefix = "d_" if form.get("kind") == "digital" else ""
                errors[prefix + _api_field(exc, "content")] = exc.message
        _, text_rows = await templates.list_templates(self.svc, session.account_id, ("text",), 1, 200)
        _, digital_rows = await templates.list_templates(self.svc, session.account_id, ("digital",), 1, 200)
        return self.render(request, "templates.html", session, 400 if errors else 200, text_rows=text_rows,
                           digital_rows=digital_rows, errors=errors, form=form)

    async def _add_digital(self, session: Session, form: dict[str, str], files: list[UploadFile]) -> None:
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
        await templates.create_digital_template(self.svc, session.account_id, form.get("name", ""), "",
                                                form.get("remark", ""), contents)

    # --- card templates, designer, preview -----------------------------------------------------

    async def cards(self, request: Request, session: Session) -> Response:
        _, rows = await templates.list_templates(self.svc, session.account_id, ("card",), 1, 200)
        return self.render(request, "cards.html", session, rows=rows)

    async def _design_from_request(self, request: Request, session: Session) -> tuple[Design, dict[str, str]]:
        """The posted design, with any image files uploaded and put in place of their elements."""
        form = await request.form(max_files=20, max_fields=500, max_part_size=MAX_FORM_BYTES)
        text = {k: v for k, v in form.items() if isinstance(v, str)}
        errors: dict[str, str] = {}
        for key, value in form.multi_items():
            if isinstance(value, UploadFile) and key.endswith("_file") and value.filename:
                data = await value.read()
                try:
                    text[key[: -len("_file")] + "_src"] = await media.store_console_image(
                        self.svc, session.account_id, data, key)
                except CardsmsError as exc:
                    errors[key] = exc.message
        return Design.from_form(text), errors

    async def _preview_view(self, session: Session, design: Design) -> dict[str, Any]:
        body = design.to_template()
        ids = [el.src for page in design.pages for el in page if el.src.isdigit()]
        urls = await media.resource_urls(self.svc, session.account_id, ids)
        return card_view(body, {p: "${" + p + "}" for p in design.params()}, urls)

    async def designer(self, request: Request, session: Session) -> Response:
        if request.method == "GET":
            design = Design.starter()
            return self.render(request, "designer.html", session, design=design, errors={},
                               view=await self._preview_view(session, design), types=type_choices(),
                               actions=DESIGNER_ACTIONS, vendors=list(Vendor))
        design, errors = await self._design_from_request(request, session)
        form = await request.form()
        op = str(form.get("op", ""))
        if op and op != "save":
            design.apply(op)
        elif op == "save" and not errors:
            try:
                code, _ = await cards.create_card_template(self.svc, session.account_id, design.name,
                                                           design.to_template(), design.factorys, "")
                target = f"/console/cards/{code}"
                if request.headers.get("hx-request"):
                    return Response(status_code=204, headers={"HX-Redirect": target})
                return RedirectResponse(target, 303)
            except CardsmsError as exc:
                errors["template"] = exc.message
        partial = "designer_form.html" if request.headers.get("hx-request") else "designer.html"
        return self.render(request, partial, session, 200, design=design, errors=errors,
                           view=await self._preview_view(session, design), types=type_choices(),
                           actions=DESIGNER_ACTIONS, vendors=list(Vendor))

    async def preview(self, request: Request, session: Session) -> Response:
        form = await request.form()
        design = Design.from_form({k: v for k, v in form.items() if isinstance(v, str)})
        return self.render(request, "phone.html", session, view=await self._preview_view(session, design))

    async def _card_context(self, session: Session, code: str) -> dict[str, Any]:
        async with self.svc.read() as conn:
            row = await templates.get_template(conn, session.account_id, code, ("card",))
            vendor_rows = await review.vendor_reviews(conn, row["account_id"], "template", row["id"])
        body = row["body"] or {}
        ids = [str(el.get("src")) for p in body.get("templateContent", {}).get("pages", [])
               for el in p.get("tmpCards", []) if el.get("srcType") == 1]
        urls = await media.resource_urls(self.svc, row["account_id"], ids)
        params = {p["name"][2:-1]: p.get("example", "") for p in body.get("extendInfo", {}).get("params", [])}
        (report,) = await cards.card_template_report(self.svc, session.account_id, [row["code"]], None, None)
        return {"row": row, "vendor_rows": vendor_rows, "view": card_view(body, params, urls),
                "settled": all(r["state"] != 0 for r in vendor_rows), "report": report}

    async def card_detail(self, request: Request, session: Session) -> Response:
        try:
            ctx = await self._card_context(session, request.path_params["code"])
        except CardsmsError as exc:
            return self.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
        return self.render(request, "card_detail.html", session, **ctx)

    async def digital_detail(self, request: Request, session: Session) -> Response:
        try:
            row, parts = await templates.digital_template_view(self.svc, session.account_id,
                                                               request.path_params["code"])
        except CardsmsError as exc:
            return self.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
        return self.render(request, "digital_detail.html", session, row=row, parts=parts,
                           size=sum(p["size"] for p in parts))

    async def card_reviews(self, request: Request, session: Session) -> Response:
        ctx = await self._card_context(session, request.path_params["code"])
        return self.render(request, "vendor_progress.html", session, **ctx)

    # --- public templates and test send -------------------------------------------------------

    async def public_list(self, request: Request, session: Session) -> Response:
        rows = await public.list_public(self.svc)
        return self.render(request, "public.html", session, rows=rows, purposes=public.PURPOSES)

    async def public_test(self, request: Request, session: Session) -> Response:
        code = request.path_params["code"]
        if not code.startswith(public.PREFIX):
            return self.render(request, "notice.html", session, 404, title="Not found",
                               message=f"{code} is not a public template")
        ctx = await self._card_context(session, code)
        approved_signs = await self._approved_signs(session)
        results: list[tuple[str, str, str]] = []
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            if not session.may("operator"):
                return self.render(request, "notice.html", session, 403, title="Not allowed",
                                   message="Your role may not do this; ask an administrator.")
            form = await _text_form(request)
            results, errors = await self._test_send(session, code, form)
            if request.headers.get("hx-request"):
                return self.render(request, "test_results.html", session, results=results, errors=errors)
        return self.render(request, "public_test.html", session, 400 if errors else 200, purpose=public.PURPOSES.get(
            code, ""), signs=approved_signs, results=results, errors=errors, form=form, **ctx)

    async def _test_send(self, session: Session, code: str, form: dict[str, str]
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
                sent = await send_card(self.svc, session.account_id, CardSend(code, "NONE"),
                                       list(recipients.values()))
            except CardsmsError as exc:
                return results, {_field(exc, "sign"): exc.message}
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

    async def public_image(self, request: Request) -> Response:
        png = public.cover_png(request.path_params["code"])
        if png is None:
            return PlainTextResponse("not found", 404)
        return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=86400"})

    # --- mass tasks -----------------------------------------------------------------------------

    async def _task_rows(self, session: Session) -> list[dict[str, Any]]:
        rows = await tasks.list_tasks(self.svc, session.account_id)
        stats = await tasks.tasks_stats(self.svc, [t["id"] for t in rows])
        out = []
        for t in rows:
            done = stats[t["id"]]["submitted"] + stats[t["id"]]["skipped"]
            start = as_utc(t["scheduled_at"]) if t["scheduled_at"] is not None else None
            out.append({"t": t, "stats": stats[t["id"]], "pct": _pct(done, t["total"]),
                        "revocable": t["state"] in ("scheduled", "importing") and can_revoke(start, self.svc.now())})
        return out

    async def task_list(self, request: Request, session: Session) -> Response:
        return self.render(request, "tasks.html", session, rows=await self._task_rows(session))

    async def task_rows(self, request: Request, session: Session) -> Response:
        return self.render(request, "task_rows.html", session, rows=await self._task_rows(session))

    async def _approved_signs(self, session: Session) -> list[str]:
        _, rows = await signs.list_signs(self.svc, session.account_id, 1, 500)
        return [s["name"] for s in rows if s["status"] == 1]

    async def _task_choices(self, session: Session) -> dict[str, Any]:
        _, card_rows = await templates.list_templates(self.svc, session.account_id, ("card",), 1, 500)
        _, text_rows = await templates.list_templates(self.svc, session.account_id, ("text",), 1, 500)
        _, digital_rows = await templates.list_templates(self.svc, session.account_id, ("digital",), 1, 500)
        return {"signs": await self._approved_signs(session),
                "cards": [(c["code"], c["name"]) for c in card_rows if c["status"] == 1]
                + [(p["code"], p["name"]) for p in await public.list_public(self.svc)],
                "texts": [(c["code"], c["name"]) for c in text_rows if c["status"] == 1],
                "digitals": [(c["code"], c["name"]) for c in digital_rows if c["status"] == 1],
                "audiences": [a for a in await imports.list_audiences(self.svc, session.account_id)
                              if a["state"] == "ready"],
                **await self._window_note(session)}

    async def _window_note(self, session: Session) -> dict[str, Any]:
        """The account's send window, and when a task sent now would start if now is outside it."""
        window = await accounts.send_window(self.svc, session.account_id)
        now = self.svc.now()
        return {"send_window": str(window), "waits_until": None if window.contains(now) else window.next_start(now)}

    async def task_new(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            raw = await request.form(max_files=1, max_fields=50, max_part_size=MAX_FORM_BYTES)
            form = {k: v for k, v in raw.items() if isinstance(v, str)}
            upload = raw.get("file")
            data = await upload.read() if isinstance(upload, UploadFile) and upload.filename else None
            try:
                task_form = _task_form(form)
                if form.get("source") == "audience":
                    data = None
                else:
                    task_form.audience_id = None
                task_id = await tasks.create_task(
                    self.svc, session.account_id, task_form, data=data,
                    file_name=upload.filename or "" if isinstance(upload, UploadFile) else "",
                    created_by=session.username)
                return RedirectResponse(f"/console/tasks/{task_id}", 303)
            except CardsmsError as exc:
                errors[_field(exc, "form")] = exc.message
        return self.render(request, "task_new.html", session, 400 if errors else 200, errors=errors, form=form,
                           **await self._task_choices(session))

    async def example_file(self, request: Request, session: Session) -> Response:
        ext = request.path_params["ext"]
        if ext not in ("csv", "txt"):
            return PlainTextResponse("Download example: csv or txt", 404)
        body = imports.EXAMPLE_CSV if ext == "csv" else imports.EXAMPLE_TXT
        return Response(body, media_type="text/csv" if ext == "csv" else "text/plain",
                        headers={"Content-Disposition": f'attachment; filename="numbers-example.{ext}"'})

    async def _task_context(self, session: Session, task_id: int) -> dict[str, Any]:
        t = await tasks.get_task(self.svc, session.account_id, task_id)
        aud = await imports.get_audience(self.svc, session.account_id, t["audience_id"])
        stats = await tasks.task_stats(self.svc, task_id)
        done = stats["submitted"] + stats["skipped"]
        funnel = [("Recipients", t["total"]), ("Submitted", stats["submitted"]), ("Delivered", stats["delivered"]),
                  ("Rendered", stats["rendered"]), ("Link opens", stats["opened"]), ("Replies", stats["replies"])]
        digital: list[dict[str, Any]] = []
        if t["fallback_type"] == "DIGITALSMS":
            with contextlib.suppress(CardsmsError):  # the template may have been deleted since
                digital = await templates.digital_preview(self.svc, session.account_id, t["digital_template_code"])
        return {"t": t, "aud": aud, "stats": stats, "pct": _pct(done, t["total"]), "funnel": funnel, "digital": digital,
                "funnel_peak": max([n for _, n in funnel] + [1]),
                "import_pct": _pct(aud["lines_done"], aud["total"]),
                "live": await tasks.progress(self.svc, t, stats),
                "events": await tasks.events(self.svc, session.account_id, task_id)}

    async def task_detail(self, request: Request, session: Session) -> Response:
        try:
            ctx = await self._task_context(session, request.path_params["id"])
        except CardsmsError as exc:
            return self.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
        return self.render(request, "task_detail.html", session, error=request.query_params.get("error", ""), **ctx)

    async def task_live(self, request: Request, session: Session) -> Response:
        ctx = await self._task_context(session, request.path_params["id"])
        return self.render(request, "task_live.html", session, **ctx)

    async def task_export(self, request: Request, session: Session) -> Response:
        task_id = request.path_params["id"]
        await tasks.get_task(self.svc, session.account_id, task_id)
        return StreamingResponse(tasks.export_rows(self.svc, session.account_id, task_id), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="task-{task_id}.csv"'})

    async def task_action(self, request: Request, session: Session) -> Response:
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
                await tasks.set_rate(self.svc, session.account_id, task_id, _limit(fields, "rate"),
                                     _limit(fields, "hourly_cap"))
            else:
                await actions[action](self.svc, session.account_id, task_id)
        except CardsmsError as exc:
            return RedirectResponse(f"/console/tasks/{task_id}?error=" + quote(exc.message), 303)
        return RedirectResponse(target, 303)

    # --- audiences ------------------------------------------------------------------------------

    async def audiences(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        if request.method == "POST":
            raw = await request.form(max_files=1, max_fields=10, max_part_size=MAX_FORM_BYTES)
            upload = raw.get("file")
            name = str(raw.get("name", "")).strip()
            try:
                if not name:
                    raise CardsmsError("InvalidField", "name: give the audience a name", field="name")
                if not isinstance(upload, UploadFile) or not upload.filename:
                    raise CardsmsError("InvalidFile", "file: choose a file of numbers", field="file")
                audience_id = await imports.start_import(self.svc, session.account_id, name=name, saved=True,
                                                         file_name=upload.filename, data=await upload.read())
                return RedirectResponse(f"/console/audiences/{audience_id}", 303)
            except CardsmsError as exc:
                errors[_field(exc, "file")] = exc.message
        rows = await imports.list_audiences(self.svc, session.account_id)
        return self.render(request, "audiences.html", session, 400 if errors else 200, rows=rows, errors=errors)

    async def audience_detail(self, request: Request, session: Session) -> Response:
        try:
            aud = await imports.get_audience(self.svc, session.account_id, request.path_params["id"])
        except CardsmsError as exc:
            return self.render(request, "notice.html", session, 404, title="Not found", message=exc.message)
        sample = await imports.sample_numbers(self.svc, session.account_id, aud["id"])
        template = "audience_live.html" if request.headers.get("hx-request") else "audience_detail.html"
        return self.render(request, template, session, aud=aud, sample=sample,
                           import_pct=_pct(aud["lines_done"], aud["total"]))

    async def audience_problems(self, request: Request, session: Session) -> Response:
        aud = await imports.get_audience(self.svc, session.account_id, request.path_params["id"])
        rows = await imports.problems(self.svc, session.account_id, aud["id"])
        return Response(tasks.csv_text([("line", "value", "reason"), *rows]), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="invalid-lines-{aud["id"]}.csv"'})

    async def audience_delete(self, request: Request, session: Session) -> Response:
        try:
            await imports.delete_audience(self.svc, session.account_id, request.path_params["id"])
        except CardsmsError as exc:
            return self.render(request, "notice.html", session, 409, title="Cannot delete", message=exc.message)
        return RedirectResponse("/console/audiences", 303)

    # --- records and settings -------------------------------------------------------------------

    async def records(self, request: Request, session: Session) -> Response:
        q = {k: request.query_params.get(k, "").strip() for k in ("phone", "day", "task", "biz")}
        rows = await records.find_messages(self.svc, session.account_id, phone=q["phone"],
                                           day=q["day"].replace("-", ""),
                                           task_id=int(q["task"]) if q["task"].isdigit() else None, biz_id=q["biz"])
        return self.render(request, "records.html", session, rows=rows, q=q)

    async def _settings_context(self, session: Session) -> dict[str, Any]:
        keys = await accounts.list_access_keys(self.svc, session.account)
        hooks = await webhooks.list_webhooks(self.svc, session.account_id)
        total, suppressed = await suppression.list_suppressed(self.svc, session.account_id)
        connectors = self.delivery.status()["connectors"] if self.delivery is not None else []
        own, hold = await accounts.window_settings(self.svc, session.account_id)
        return {"keys": keys, "hooks": hooks, "kinds": webhooks.KINDS, "suppressed": suppressed,
                "suppressed_total": total, "connectors": connectors, "own_window": own, "hold_api_sends": hold,
                "server_window": self.svc.settings.send_window,
                "freq": await frequency.describe(self.svc, session.account_id),
                "domains": await domains.list_domains(self.svc, session.account_id),
                "daily_alert": await alerts.daily_alert(self.svc, session.account_id),
                "link_base": self.svc.settings.link_base}

    async def settings_page(self, request: Request, session: Session) -> Response:
        return self.render(request, "settings.html", session, errors={}, created=None,
                           **await self._settings_context(session))

    async def settings_post(self, request: Request, session: Session) -> Response:
        form = await _text_form(request)
        section = request.path_params["section"]
        errors: dict[str, str] = {}
        created = None
        try:
            if section == "keys":
                key_id, secret = await accounts.create_access_key(self.svc, session.account,
                                                                  form.get("description", "")[:200])
                created = (key_id, secret)
            elif section == "keys-toggle":
                await accounts.set_access_key_enabled(self.svc, form.get("key_id", ""), form.get("enable") == "1",
                                                      account_id=session.account_id)
            elif section == "webhook":
                await webhooks.set_webhook(self.svc, session.account_id, form.get("kind", ""), form.get("url", ""))
            elif section == "webhook-remove":
                await webhooks.remove_webhook(self.svc, session.account_id, form.get("kind", ""))
            elif section == "suppress":
                await suppression.add_suppressed(self.svc, session.account_id, form.get("phone", ""),
                                                 form.get("detail", ""))
            elif section == "unsuppress":
                await suppression.remove_suppressed(self.svc, session.account_id, form.get("phone", ""))
            elif section == "alert":
                raw = form.get("daily_alert", "").strip()
                if raw and not raw.isdigit():
                    raise CardsmsError("isv.INVALID_PARAMETERS", f"daily_alert: a whole number of messages, or "
                                       f"empty for none; got {raw[:20]!r}")
                await alerts.set_daily_alert(self.svc, session.account_id, int(raw) if raw else None)
            elif section == "domain":
                await domains.add_domain(self.svc, session.account_id, form.get("domain", ""),
                                         form.get("default") == "1")
            elif section == "domain-remove":
                await domains.remove_domain(self.svc, session.account_id, form.get("domain", ""))
            elif section == "domain-default":
                await domains.set_default(self.svc, session.account_id, form.get("domain", ""))
            elif section == "frequency":
                await self._frequency_post(session, form)
            elif section == "window":
                await accounts.set_send_window(self.svc, session.account, form.get("window", "").strip() or "default",
                                               form.get("hold_api_sends") == "1")
            else:
                return PlainTextResponse(f"unknown settings section {section!r}", 404)
        except CardsmsError as exc:
            errors[section] = exc.message
        except accounts.AccountError as exc:
            errors[section] = str(exc)
        if not errors and created is None:
            return RedirectResponse("/console/settings", 303)
        return self.render(request, "settings.html", session, 400 if errors else 200, errors=errors,
                           created=created, **await self._settings_context(session))


    async def _frequency_post(self, session: Session, form: dict[str, str]) -> None:
        """The frequency control form: one field per kind and window (empty: the default), the exempt numbers
        and the duplicate-content seconds. Everything is checked before anything is changed."""
        current = await frequency.describe(self.svc, session.account_id)
        changes: list[tuple[str, str, int | None]] = []
        for row in current["limits"]:
            raw = form.get(f"limit_{row['kind']}_{row['period']}", "").strip()
            value = None if raw == "" else int(raw) if raw.isdigit() else -1
            if value is not None and (value < 0 or value > freq_rules.MAX_LIMIT):
                raise CardsmsError("isv.INVALID_PARAMETERS", f"limit_{row['kind']}_{row['period']}: a whole "
                                   f"number 0 (no limit) to {freq_rules.MAX_LIMIT}, or empty for the default; "
                                   f"got {raw[:20]!r}")
            if value != (row["limit"] if row["own"] else None):
                changes.append((row["kind"], row["period"], value))
        raw_seconds = form.get("duplicate_seconds", "").strip() or "0"
        if not raw_seconds.isdigit() or int(raw_seconds) > freq_rules.MAX_DUPLICATE_SECONDS:
            raise CardsmsError("isv.INVALID_PARAMETERS", f"duplicate_seconds: 0 (off) to "
                               f"{freq_rules.MAX_DUPLICATE_SECONDS} seconds; got {raw_seconds[:20]!r}")
        exempt = freq_rules.parse_exempt([form.get("exempt", "")])
        if sorted(set(exempt)) != current["exempt"]:
            await frequency.set_exempt(self.svc, session.account_id, exempt)  # checks every number first
        for kind, period, value in changes:
            await frequency.set_limit(self.svc, session.account_id, kind, period, value)
        if int(raw_seconds) != current["duplicate_seconds"]:
            await frequency.set_duplicate_seconds(self.svc, session.account_id, int(raw_seconds))

    # --- users, password, audit log (admins; the password page is everyone's) -------------------------

    async def users_page(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        form: dict[str, str] = {}
        if request.method == "POST":
            form = await _text_form(request)
            try:
                await accounts.create_user(self.svc, session.account, form.get("username", "").strip(),
                                           form.get("password", ""), form.get("role", "operator"))
                return RedirectResponse("/console/users", 303)
            except accounts.AccountError as exc:
                errors["username" if "user" in str(exc) else "password" if "password" in str(exc)
                       else "role"] = str(exc)
        return await self._users(request, session, errors, form)

    async def _users(self, request: Request, session: Session, errors: dict[str, str], form: dict[str, str],
                     reset: tuple[str, str] | None = None) -> Response:
        rows = await accounts.list_users(self.svc, session.account_id)
        return self.render(request, "users.html", session, 400 if errors else 200, rows=rows, errors=errors,
                           form=form, roles=accounts.ROLES, reset=reset)

    async def user_action(self, request: Request, session: Session) -> Response:
        form = await _text_form(request)
        user_id, action = request.path_params["id"], request.path_params["action"]
        try:
            password = await accounts.manage_user(self.svc, session.account_id, user_id, action,
                                                  form.get("role", ""))
        except accounts.AccountError as exc:
            return await self._users(request, session, {"action": str(exc)}, {})
        if password is not None:  # shown once, to the admin who reset it
            name = next(str(r["username"]) for r in await accounts.list_users(self.svc, session.account_id)
                        if r["id"] == user_id)
            return await self._users(request, session, {}, {}, reset=(name, password))
        return RedirectResponse("/console/users", 303)

    async def password_page(self, request: Request, session: Session) -> Response:
        errors: dict[str, str] = {}
        if request.method == "POST":
            form = await _text_form(request)
            try:
                if form.get("new", "") != form.get("again", ""):
                    raise accounts.AccountError("new password: the two entries differ")
                await accounts.change_password(self.svc, session.user_id, form.get("current", ""),
                                               form.get("new", ""))
            except accounts.AccountError as exc:
                errors["current" if str(exc).startswith("current") else "new"] = str(exc)
            else:  # every session of this user ended: sign in again with the new password
                response = RedirectResponse("/console/login", 303)
                response.delete_cookie(SESSION_COOKIE, path="/")
                return response
        return self.render(request, "password.html", session, 400 if errors else 200, errors=errors)

    async def audit_page(self, request: Request, session: Session) -> Response:
        rows = await audit.entries(self.svc, session.account_id, limit=500)
        return self.render(request, "audit.html", session, rows=rows)

    async def audit_export(self, request: Request, session: Session) -> Response:
        rows = await audit.entries(self.svc, session.account_id, limit=100_000)
        text = tasks.csv_text([("time", "actor", "action", "subject", "detail"),
                               *[(china_time(r["at"]), r["actor"], r["action"], r["subject"], r["detail"])
                                 for r in rows]])
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": 'attachment; filename="audit-log.csv"'})


# --- helpers ---------------------------------------------------------------------------------------

def _rate(part: int, whole: int) -> str:
    return f"{part * 100 / whole:.1f}%" if whole else "—"


def _pct(part: int, whole: int) -> int:
    return min(100, int(part * 100 / whole)) if whole else 0


def _int(value: str | None, default: int) -> int:
    return int(value) if value and value.strip().lstrip("-").isdigit() else default


def _field(exc: CardsmsError, default: str) -> str:
    return exc.field or default


_API_FIELDS = {"TemplateName": "name", "Remark": "remark", "TemplateContents": "media", "TemplateContent": "content",
               "SignName": "name", "SignSource": "source", "SignType": "type"}


def _api_field(exc: CardsmsError, default: str) -> str:
    """The form field an API-style message is about: the parameter it names first."""
    found = [(exc.message.find(api), -len(api), form) for api, form in _API_FIELDS.items() if api in exc.message]
    return min(found)[2] if found else _field(exc, default)


def _qualification_field(exc: CardsmsError) -> str:
    """The form field of a qualification error (the console's names for SubmitSmsQualification's parameters)."""
    names = {"QualificationName": "name", "CompanyName": "company_name", "OrganizationCode": "organization_code",
             "LegalPersonIDCardNo": "legal_id", "LegalPersonName": "legal_person_name", "AdminIDCardNo": "admin_id",
             "AdminName": "admin_name", "AdminPhoneNo": "admin_phone"}
    found = [(exc.message.find(api), form) for api, form in names.items() if api in exc.message]
    return min(found)[1] if found else _field(exc, "name")


async def _text_form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _limit(form: dict[str, str], name: str) -> int | None:
    """An optional positive whole number from a form (empty: no limit); a field error names the field."""
    raw = form.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit() or len(raw) > 9:
        label = {"rate": "the send rate", "hourly_cap": "the hourly cap"}[name]
        raise CardsmsError("InvalidField", f"{name}: {label} is a whole number (empty: no limit)", field=name)
    return int(raw) or None


def _task_form(form: dict[str, str]) -> tasks.TaskForm:
    scheduled = None
    if form.get("schedule") == "later":
        try:
            scheduled = parse_local_start(form.get("scheduled_at", ""))
        except ValueError:
            raise CardsmsError("InvalidField", "scheduled_at: enter a start date and time",
                               field="scheduled_at") from None
    audience = form.get("audience_id", "")
    return tasks.TaskForm(
        name=form.get("name", ""), sign_name=form.get("sign_name", ""),
        card_template_code=form.get("card_template_code", ""), fallback_type=form.get("fallback_type", "NONE"),
        sms_template_code=form.get("sms_template_code", "") if form.get("fallback_type") == "SMS" else "",
        digital_template_code=form.get("digital_template_code", "") if form.get("fallback_type") == "DIGITALSMS"
        else "",
        template_code=form.get("template_code", "") if form.get("custom") == "1" else "",
        audience_id=int(audience) if audience.isdigit() else None, scheduled_at=scheduled,
        rate=_limit(form, "rate"), hourly_cap=_limit(form, "hourly_cap"))
