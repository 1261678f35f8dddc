"""The ASGI application of `cardsms serve`/`cardsms api`: API at the root path, object-store upload,
media downloads, /healthz, /metrics, and (for now) a start page where the console will live."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from html import escape
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cardsms import __version__
from cardsms.console.app import Console
from cardsms.delivery.runtime import ConnectorMetrics, Delivery
from cardsms.links.resolver import resolver
from cardsms.logs import pass_failed
from cardsms.media.sniff import sniff
from cardsms.openapi.dispatch import ApiEndpoint, ApiMetrics
from cardsms.services import media, public, tasks
from cardsms.services.core import Services
from cardsms.services.review import run_due_reviews
from cardsms.web.http import URL_TOO_LONG

log = structlog.get_logger("cardsms.web")
MAX_UPLOAD = 64 * 1024 * 1024


# Every answer: no MIME sniffing, no referrer beyond this origin. Pages (console, card pages): a CSP without
# inline script (the console's one script is a file; inline styles only), never framed (clickjacking).
_BASE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin")]
_PAGE_HEADERS = [*_BASE_HEADERS, (b"x-frame-options", b"DENY"), (b"content-security-policy", (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: http: https:; "
    b"media-src 'self' http: https:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    b"frame-ancestors 'none'"))]


class SecurityHeaders:
    """Pure ASGI middleware (no per-request objects beyond a closure): adds the headers above."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _PAGE_HEADERS if scope["path"].startswith(("/console", "/s/")) else _BASE_HEADERS

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _upload_error(code: str, message: str, status: int) -> Response:
    xml = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{escape(code)}</Code>"
           f"<Message>{escape(message)}</Message></Error>")
    return Response(xml, status, media_type="application/xml")


def create_app(svc: Services, delivery: Delivery | None, run_reviewer: bool = True) -> Starlette:
    """The ASGI app; `delivery` (cardsms.compose.build_delivery) also dispatches in this process, None: API only."""
    registry = CollectorRegistry()
    api = ApiEndpoint(svc, ApiMetrics(registry))
    reviews_done = Gauge("cardsms_reviews_decided", "reviews decided by this process", registry=registry)
    if delivery is not None:
        registry.register(ConnectorMetrics(delivery))
    state = {"ready": False}

    async def root(request: Request) -> Response:
        if (request.headers.get("x-acs-action") or "Action" in request.query_params or request.method == "POST"
                or URL_TOO_LONG in request.scope):
            return await api(request)
        return RedirectResponse("/console/", 303)

    async def healthz(request: Request) -> Response:
        if not state["ready"]:
            return JSONResponse({"status": "starting"}, 503)
        body: dict[str, Any] = {"status": "ok", "version": __version__}
        if delivery is not None:
            body["delivery"] = delivery.status()
        if svc.writer is not None:  # SQLite: how the one writer thread is doing (db/writer.py)
            body["writer"] = dataclasses.asdict(svc.writer.stats)
        return JSONResponse(body)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def upload(request: Request) -> Response:
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD:
            return _upload_error("EntityTooLarge", f"the request is larger than {MAX_UPLOAD} bytes", 400)
        try:
            form = await request.form(max_files=1, max_fields=20, max_part_size=MAX_UPLOAD)
        except Exception as exc:  # malformed multipart of any kind
            return _upload_error("InvalidArgument", f"the body is not a valid multipart form: {exc}", 400)
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        file = form.get("file")
        data = await file.read() if file is not None and not isinstance(file, str) else None
        try:
            up = await media.accept_upload(svc, fields, data)
        except media.UploadError as exc:
            return _upload_error(exc.code, exc.message, exc.status)
        status = int(fields.get("success_action_status") or 204)
        status = status if status in (200, 201, 204) else 204
        if status == 204:
            return Response(status_code=204, headers={"ETag": f'"{up.key}"'})
        return JSONResponse({"key": up.key, "size": up.size, "contentType": up.content_type}, status)

    async def download(request: Request) -> Response:
        key = request.path_params["key"]
        if not media.verify_download(svc, key, request.query_params.get("token", "")):
            return _upload_error("AccessDenied", "query token: missing or wrong download token", 403)
        data = svc.media_store.get(key)
        if data is None:
            return _upload_error("NoSuchKey", f"object {key!r} does not exist", 404)
        return Response(data, media_type=sniff(data) or "application/octet-stream")

    async def reviewer() -> None:
        while True:
            try:
                reviews_done.inc(await run_due_reviews(svc))
            except Exception:
                pass_failed(log, "reviewer.pass_failed")
            await asyncio.sleep(svc.settings.review_poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await public.ensure_public_templates(svc)
        background = [asyncio.create_task(reviewer())] if run_reviewer else []
        if delivery is not None:
            await delivery.start()
            background.append(asyncio.create_task(tasks.run_forever(svc)))
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if delivery is not None:
                await delivery.stop()
            await svc.close()

    return Starlette(
        routes=[
            Route("/", root, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route(f"/oss/{media.BUCKET}", upload, methods=["POST"]),
            Route("/media/{key:path}", download),
            Route("/s/{code}", resolver(svc)),
            *Console(svc, delivery).routes(),
        ],
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeaders)],
    )

