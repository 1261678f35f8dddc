"""The API endpoint: decode, authenticate, throttle, dispatch by action, wrap the answer."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response

from cardsms.bounds import API_BODY, MAX_URL_BYTES, URL_TOO_LONG, BodyTooLarge
from cardsms.domain.errors import CardsmsError
from cardsms.openapi import auth, ops_cards, ops_links, ops_qualifications, ops_send, ops_signs, ops_templates
from cardsms.openapi.context import Ctx, Operation
from cardsms.openapi.envelope import error_body, new_request_id, render
from cardsms.openapi.params import Params
from cardsms.services import audit, nonces
from cardsms.services.accounts import find_access_key
from cardsms.services.core import Services, storage_unavailable
from cardsms.services.hub import NO_NONCE, HubUnavailable

API_VERSION = "2017-05-25"
MAX_BODY = API_BODY  # BodyLimit (web/limits.py) stops a larger body before this endpoint reads it
OPERATIONS: dict[str, Operation] = {
    **ops_signs.OPERATIONS, **ops_templates.OPERATIONS, **ops_cards.OPERATIONS, **ops_send.OPERATIONS,
    **ops_links.OPERATIONS, **ops_qualifications.OPERATIONS,
}

log = structlog.get_logger("cardsms.api")
IDEMPOTENCY_HEADER = "x-cardsms-idempotency-key"
_IDEM_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not _IDEM_KEY.fullmatch(value):
        raise CardsmsError("InvalidParameter", f"header {IDEMPOTENCY_HEADER}: must be 1-128 printable ASCII "
                           "characters without spaces")
    return value


class ApiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter("cardsms_api_requests", "API requests by action and answer code",
                                ["action", "code"], registry=registry)
        self.latency = Histogram("cardsms_api_request_seconds", "API request latency", ["action"],
                                 registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5))


@dataclass
class _Call:
    """What one API call has told about itself so far (its answer and log line use it)."""

    request_id: str
    action: str = ""
    fmt: str = "JSON"
    account: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def _fault(call: _Call, exc: Exception) -> tuple[int, str, dict[str, Any]]:
    """The answer to an unexpected error: 503 when the database could not store the call, else 500."""
    if storage_unavailable(exc):  # the request was not stored: a retryable answer, not a fault of ours
        log.warning("api.storage_unavailable", request_id=call.request_id, action=call.action, error=str(exc)[:300])
        return 503, "ServiceUnavailable", error_body(
            call.request_id, "ServiceUnavailable", "The database cannot store the request now (disk full or database "
            f"unreachable); nothing was stored; retry later. RequestId {call.request_id} is in the log.")
    log.exception("api.fault", request_id=call.request_id, action=call.action)
    return 500, "InternalError", error_body(call.request_id, "InternalError", "The request processing has failed "
                                            f"due to some unknown error. RequestId {call.request_id} is in the server "
                                            "log.")


class ApiEndpoint:
    def __init__(self, svc: Services, metrics: ApiMetrics) -> None:
        self.svc = svc
        self.metrics = metrics
        self.nonces = auth.NonceCache()
        self.shared_nonces = svc.engine.dialect.name == "postgresql"  # every `cardsms api` process sees them
        self.limiter = auth.RateLimiter()

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        call = _Call(new_request_id())
        try:
            body = await self._answer(request, call)
            status, code = 200, "OK"
        except CardsmsError as exc:
            status, code = exc.http_status, exc.code
            if status == 200:
                body = {"RequestId": call.request_id, "Code": exc.code, "Message": exc.message}
                if call.action in OPERATIONS and OPERATIONS[call.action].card:
                    body["Success"] = False
            else:
                body = error_body(call.request_id, exc.code, exc.message)
        except Exception as exc:
            status, code, body = _fault(call, exc)
        elapsed = time.perf_counter() - started
        label = call.action if call.action in OPERATIONS else "unknown"
        self.metrics.requests.labels(label, code).inc()
        self.metrics.latency.labels(label).observe(elapsed)
        log.info("api.request", request_id=call.request_id, action=call.action, account=call.account, code=code,
                 status=status, ms=round(elapsed * 1000, 2))
        # the XML root element is named after a known operation only; a caller's Action never becomes markup
        return render(body, call.action if call.action in OPERATIONS else "", call.fmt, status, call.headers)

    async def _answer(self, request: Request, call: _Call) -> dict[str, Any]:
        """The OK answer of an authenticated, admitted call (a CardsmsError otherwise)."""
        api_request = await self._decode(request)
        params = Params(api_request.query + api_request.form)
        call.fmt = params.values.get("Format", "JSON")
        call.action = request.headers.get("x-acs-action") or params.values.get("Action", "")
        op = self._operation(call.action, request.headers.get("x-acs-version") or params.values.get("Version", ""))
        key, cred, expires_at = await self._authenticate(api_request)
        call.account = key.account_name
        audit.set_actor(f"api:{key.key_id}")
        qps = key.qps_limit or self.svc.settings.api_qps
        wait_ms = await self._admit(key, cred, expires_at, qps)
        if wait_ms:
            call.headers["x-acs-retry-after"] = str(wait_ms)
            raise CardsmsError("Throttling.User", f"Request was denied due to user flow control: account "
                               f"{call.account!r} is over {qps} requests per second; retry after {wait_ms} ms")
        idem = _idempotency_key(request.headers.get(IDEMPOTENCY_HEADER))
        result = await op.handler(Ctx(self.svc, key.account_id, call.request_id, idem), params)
        body: dict[str, Any] = {"RequestId": call.request_id, "Code": "OK", "Message": "OK", **result}
        if op.card:
            body["Success"] = True
        return body

    @staticmethod
    async def _decode(request: Request) -> auth.ApiRequest:
        if url_size := request.scope.get(URL_TOO_LONG):
            raise CardsmsError("InvalidParameter", f"request URL: {url_size:,} bytes, over the limit of "
                               f"{MAX_URL_BYTES:,}; send large parameters in the form body")
        buffer = bytearray()  # appended in place: `bytes +=` copies the whole body at every chunk
        try:
            async for chunk in request.stream():  # BodyLimit stops it past MAX_BODY (declared or streamed)
                buffer += chunk
        except BodyTooLarge:
            raise CardsmsError("InvalidParameter", f"request body: larger than {MAX_BODY:,} bytes") from None
        body = bytes(buffer)
        try:
            query = parse_qsl(request.url.query, keep_blank_values=True, strict_parsing=False, errors="strict")
            form: list[tuple[str, str]] = []
            if body and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                form = parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:
            raise CardsmsError("InvalidParameter", "request: parameters must be UTF-8 percent-encoded") from None
        return auth.ApiRequest(request.method, query, form, {k.lower(): v for k, v in request.headers.items()}, body)

    @staticmethod
    def _operation(action: str, version: str) -> Operation:
        if not action:
            raise CardsmsError("MissingAction", "Action is mandatory: send header x-acs-action or parameter Action")
        if version != API_VERSION:
            raise CardsmsError("InvalidVersion", f"Version {version!r} is not supported; use {API_VERSION}")
        if action not in OPERATIONS:
            raise CardsmsError("InvalidAction.NotFound", f"Specified api {action!r} is not found; see docs/api.md "
                               "for the operations cardsms implements")
        return OPERATIONS[action]

    async def _authenticate(self, req: auth.ApiRequest) -> tuple[Any, auth.Credential, datetime]:
        cred = auth.credential(req)
        key = await find_access_key(self.svc, cred.key_id)
        if key is None:
            raise CardsmsError("InvalidAccessKeyId.NotFound", f"Specified access key {cred.key_id!r} is not found.")
        if not key.enabled:
            raise CardsmsError("InvalidAccessKeyId.Inactive", f"Specified access key {cred.key_id!r} is disabled.")
        auth.verify(req, cred, key.secret)
        skew = timedelta(seconds=self.svc.settings.api_clock_skew_seconds)
        if abs(self.svc.now() - cred.timestamp) > skew:
            raise CardsmsError("InvalidTimeStamp.Expired", f"Specified time stamp {cred.timestamp:%Y-%m-%dT%H:%M:%SZ} "
                               f"is more than {skew.seconds // 60} minutes off the server time "
                               f"{self.svc.now():%Y-%m-%dT%H:%M:%SZ}; check the client's clock")
        if not cred.nonce:
            raise CardsmsError("IncompleteSignature", "the signature nonce is missing")
        return key, cred, cred.timestamp + skew

    async def _admit(self, key: Any, cred: auth.Credential, expires_at: datetime, qps: int) -> int:
        """Refuse a replayed nonce; then 0 when the call is within the account's QPS, else the ms to wait. With
        `serve --http-processes N` the main process answers for every process (services.hub); on PostgreSQL
        the nonces are in the database, shared with every process of any kind."""
        fresh = True
        if self.shared_nonces:
            fresh = await nonces.remember(self.svc, cred.key_id, cred.nonce, expires_at)
        if fresh and self.svc.hub is not None:
            try:
                fresh, wait_ms = await self.svc.hub.admit(
                    cred.key_id, None if self.shared_nonces else cred.nonce, expires_at.timestamp(),
                    key.account_id, qps)
            except HubUnavailable as exc:
                raise CardsmsError("ServiceUnavailable", f"this server is restarting ({exc}); retry later") from None
        elif fresh:
            if not self.shared_nonces:
                fresh = self.nonces.check_and_add(cred.key_id, cred.nonce, expires_at.timestamp(),
                                                  self.svc.now().timestamp())
            wait_ms = self.limiter.acquire(key.account_id, qps) if fresh else 0
        if not fresh:
            raise CardsmsError("SignatureNonceUsed", f"Specified signature nonce {cred.nonce!r} was used already "
                               "(replayed request)")
        return wait_ms

    def admit_for_hub(self, token: str, expires: float, account_id: int, qps: int) -> tuple[bool, int]:
        """The main process's answer to another HTTP process's call (services.hub)."""
        fresh = token == NO_NONCE or self.nonces.check_token(token, expires, self.svc.now().timestamp())
        return fresh, self.limiter.acquire(account_id, qps) if fresh else 0
