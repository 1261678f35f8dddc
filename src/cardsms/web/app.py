"""The ASGI application of `cardsms serve`/`cardsms api`: API at the root path, object-store upload,
media downloads, /healthz, /metrics, and (for now) a start page where the console will live."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from html import escape
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cardsms import __version__
from cardsms.bounds import URL_TOO_LONG
from cardsms.console.app import Console
from cardsms.delivery.mm7 import Mm7Link
from cardsms.delivery.runtime import ConnectorMetrics, Delivery
from cardsms.links.resolver import resolver
from cardsms.logs import pass_failed
from cardsms.media.sniff import sniff
from cardsms.openapi.dispatch import ApiEndpoint, ApiMetrics
from cardsms.services import alerts, media, public, task_runner
from cardsms.services.core import Services
from cardsms.services.hub import serve_hub
from cardsms.services.review import run_due_reviews
from cardsms.stopping import stop_services
from cardsms.web.limits import BodyLimit, BodyTooLarge, UploadFormError, read_policy_upload

log = structlog.get_logger("cardsms.web")


# Every answer: no MIME sniffing, no referrer beyond this origin, never framed, and a CSP: `default-src 'none'`
# for answers that are no page (API envelopes, uploads, downloads, health), so even a browser that is tricked
# into rendering one as a document runs nothing of it. Pages (console, card pages): a CSP without inline script
# (the console's one script is a file; inline styles only).
_BASE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                 (b"x-frame-options", b"DENY")]
_NO_PAGE_HEADERS = [*_BASE_HEADERS, (
    b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")]
_PAGE_HEADERS = [*_BASE_HEADERS, (b"content-security-policy", (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: http: https:; "
    b"media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    b"frame-ancestors 'none'"))]


_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeaders:
    """Pure ASGI middleware (no per-request objects beyond a closure): adds the headers above, and HSTS when
    the public URL is https (browsers then never reach the console over plain http)."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        self.page_headers = [*_PAGE_HEADERS, _HSTS] if https else _PAGE_HEADERS
        self.no_page_headers = [*_NO_PAGE_HEADERS, _HSTS] if https else _NO_PAGE_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.page_headers if scope["path"].startswith(("/console", "/s/")) else self.no_page_headers

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _upload_error(code: str, message: str, status: int) -> Response:
    """An object-store error; the connection closes after it, so a refused upload's sender stops sending (the
    rest of its body is never read)."""
    xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{escape(code)}</Code>"
           f"<Message>{escape(message)}</Message></Error>")
    return Response(xml, status, media_type="application/xml", headers={"connection": "close"})


async def _body_too_large(request: Request, exc: Exception) -> Response:
    return Response(str(exc), 413, media_type="text/plain; charset=utf-8", headers={"connection": "close"})


class _Site:
    """The routes of one process's ASGI app besides the console's, and its lifespan (the background loops)."""

    def __init__(self, svc: Services, delivery: Delivery | None, run_reviewer: bool,
                 inbound: list[Mm7Link] | None, hub: Path | None = None) -> None:
        self.svc, self.delivery, self.run_reviewer, self.hub = svc, delivery, run_reviewer, hub
        self.digital_links = delivery.digital_links if delivery is not None else inbound or []
        self.registry = CollectorRegistry()
        self.api = ApiEndpoint(svc, ApiMetrics(self.registry))
        self.open_link = resolver(svc)  # one resolver (and its open limiter) for the route and the direct path
        self.reviews_done = Gauge("cardsms_reviews_decided", "reviews decided by this process", registry=self.registry)
        if delivery is not None:
            self.registry.register(ConnectorMetrics(delivery))
        self.ready = False
        self.token = svc.settings.metrics_token.get_secret_value()

    async def root(self, request: Request) -> Response:
        if (request.headers.get("x-acs-action") or "Action" in request.query_params or request.method == "POST"
                or URL_TOO_LONG in request.scope):
            return await self.api(request)
        return RedirectResponse("/console/", 303)

    def insider(self, request: Request) -> bool:
        """Who may read connector hosts and errors: the bearer of CARDSMS_METRICS_TOKEN, or without one a client
        on loopback that no proxy forwarded."""
        if self.token:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            return secrets.compare_digest(given.encode(), self.token.encode())
        host = request.client.host if request.client else ""
        forwarded = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        return host in ("127.0.0.1", "::1") and not forwarded

    async def healthz(self, request: Request) -> Response:
        if not self.ready:
            return JSONResponse({"status": "starting"}, 503)
        if not self.insider(request):
            return JSONResponse({"status": "ok"})
        body: dict[str, Any] = {"status": "ok", "version": __version__,
                                "process": {"pid": os.getpid(), "dispatches": self.delivery is not None}}
        if self.delivery is not None:
            body["delivery"] = self.delivery.status()
        if self.svc.writer is not None:  # SQLite: how the one writer thread is doing (db/writer.py)
            body["writer"] = dataclasses.asdict(self.svc.writer.stats)
        return JSONResponse(body)

    async def metrics(self, request: Request) -> Response:
        if not self.insider(request):
            return Response("metrics: send Authorization: Bearer <CARDSMS_METRICS_TOKEN>", 401,
                            media_type="text/plain; charset=utf-8", headers={"www-authenticate": "Bearer"})
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    async def upload(self, request: Request) -> Response:
        # streamed: the policy is checked when the file part begins, before its bytes are kept (web/limits.py)
        targets: list[media.UploadTarget] = []

        async def check(fields: dict[str, str]) -> int:
            targets.append(media.upload_target(self.svc, fields))
            return targets[-1].max_bytes

        try:
            fields, data = await read_policy_upload(request, check)
            up = await media.accept_upload(self.svc, fields, data, targets[-1] if targets else None)
        except media.UploadError as exc:
            return _upload_error(exc.code, exc.message, exc.status)
        except UploadFormError as exc:
            return _upload_error(exc.code, str(exc), 400)
        status = int(fields.get("success_action_status") or 204)
        status = status if status in (200, 201, 204) else 204
        if status == 204:
            return Response(status_code=204, headers={"ETag": f'"{up.key}"'})
        return JSONResponse({"key": up.key, "size": up.size, "contentType": up.content_type}, status)

    async def download(self, request: Request) -> Response:
        key = request.path_params["key"]
        if not media.verify_download(self.svc, key, request.query_params.get("token", ""),
                                     request.query_params.get("expires", "")):
            return _upload_error("AccessDenied", "query token: missing, wrong or expired download token (ask the "
                                 "API for the record again for a fresh URL)", 403)
        data = self.svc.media_store.get(key)
        if data is None:
            return _upload_error("NoSuchKey", f"object {key!r} does not exist", 404)
        return Response(data, media_type=sniff(data) or "application/octet-stream")

    async def mm7_inbound(self, request: Request) -> Response:
        """What an MMSC posts to a digital link: delivery reports and replies (delivery/mm7.py)."""
        name = request.path_params["name"]
        link = next((x for x in self.digital_links if x.name == name), None)
        if link is None:
            return Response(f"no digital link {name!r} takes reports on this server", 404, media_type="text/plain")
        why = link.authorized(request.headers.get("authorization", ""), request.client.host if request.client else "")
        if why:
            return Response(why, 401, media_type="text/plain", headers={"www-authenticate": 'Basic realm="mm7"'})
        status, content_type, body = await link.inbound(request.headers.get("content-type", ""), await request.body())
        return Response(body, status, headers={"content-type": content_type})

    async def reviewer(self) -> None:
        while True:
            try:
                self.reviews_done.inc(await run_due_reviews(self.svc))
            except Exception:
                pass_failed(log, "reviewer.pass_failed")
            await asyncio.sleep(self.svc.settings.review_poll_seconds)

    async def volume_alerts(self) -> None:
        while True:
            await asyncio.sleep(self.svc.settings.alert_check_seconds)
            try:
                await alerts.check_volume(self.svc)
            except Exception:
                pass_failed(log, "alerts.pass_failed")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        svc, delivery = self.svc, self.delivery
        await public.ensure_public_templates(svc)
        background = [asyncio.create_task(self.reviewer(), name="reviewer"),
                      asyncio.create_task(self.volume_alerts(), name="volume-alerts")] if self.run_reviewer else []
        if delivery is not None:
            await delivery.start()
            background.append(asyncio.create_task(task_runner.run_forever(svc), name="task-runner"))
        hub = await serve_hub(self.hub, self.api.admit_for_hub, svc.wake) if self.hub is not None else None
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            if hub is not None:
                hub.close()
            if delivery is None:  # a delivery closes its own links
                await asyncio.gather(*(x.stop() for x in self.digital_links), return_exceptions=True)
            await stop_services(svc, delivery, background)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.root, methods=["GET", "POST"]),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            Route(f"/oss/{media.BUCKET}", self.upload, methods=["POST"]),
            Route("/media/{key:path}", self.download),
            Route("/s/{code}", self.open_link),
            Route("/mm7/{name}", self.mm7_inbound, methods=["POST"]),
            *Console(self.svc, self.delivery).routes(),
        ]


def _direct(handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """A request handler as an ASGI app, without starlette.routing.request_response's exception wrapper."""
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive))
        await response(scope, receive, send)

    return app


class _HotPaths:
    """The two paths under load go straight to their handlers through the same security headers and body limit,
    without Starlette's error and exception middleware, router and per-route wrapper (40% of the event loop's
    HTTP time under SendCardSms load, docs/performance.md): `/`, the RPC endpoint every SDK call goes to, and
    `/s/{code}`, a short link's open (GET and HEAD, as its route). Every other request goes to the app. Both
    handlers answer their errors themselves (openapi/dispatch.py, links/resolver.py)."""

    def __init__(self, app: Starlette, rpc: ASGIApp, link: ASGIApp) -> None:
        self.app, self.rpc, self.link = app, rpc, link

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            if path == "/" and method in ("GET", "HEAD", "POST"):
                await self.rpc(scope, receive, send)
                return
            if path.startswith("/s/") and len(path) > 3 and "/" not in path[3:] and method in ("GET", "HEAD"):
                scope["path_params"] = {"code": path[3:]}  # as the route /s/{code} would give it
                await self.link(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(svc: Services, delivery: Delivery | None, run_reviewer: bool = True,
               inbound: list[Mm7Link] | None = None, hub: Path | None = None) -> ASGIApp:
    """The ASGI app; `delivery` (cardsms.compose.build_delivery) also dispatches in this process, None: API only.
    `inbound`: digital links that only take reports and replies here (`cardsms api`; a delivery has its own).
    `hub`: where this (main) process answers its HTTP children (`serve --http-processes N`, services.hub)."""
    site = _Site(svc, delivery, run_reviewer, inbound, hub)
    https = svc.settings.base_url.startswith("https://")
    app = Starlette(
        routes=site.routes(),
        lifespan=site.lifespan,
        middleware=[Middleware(SecurityHeaders, https=https), Middleware(BodyLimit)],
        exception_handlers={BodyTooLarge: _body_too_large},
    )
    return _HotPaths(app, SecurityHeaders(BodyLimit(_direct(site.root)), https=https),
                     SecurityHeaders(BodyLimit(_direct(site.open_link)), https=https))
