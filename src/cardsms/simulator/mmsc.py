"""The simulated MMSC (MM7 Relay/Server role): takes SubmitReq from any VASP (or only the configured one),
answers SubmitRsp, and after `latency_ms` posts one DeliveryReportReq per recipient to the VASP's inbound URL
(`report_url`, with the VASP's Basic credentials), retrying until the VASP acknowledges it. Optionally the
recipients reply (DeliverReq with `reply_text`).

Knobs as the simulated SMSC's: latency, the share of numbers that fail (MMStatus Unrecognised), that expire
(Expired), whose handsets take no MMS (Rejected), the share of submits answered "service unavailable" (4006,
the MM7 way to say "too fast"), reports that overtake their own SubmitRsp (`report_first`), and a JSONL log
of every accepted submit with each part's type, size and SHA-256."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cardsms.delivery import mm7_decode
from cardsms.delivery import mm7_wire as wire
from cardsms.simulator.center import share_hit

log = structlog.get_logger("cardsms.simulator.mmsc")
MAX_SUBMIT_BYTES = 8 * 1024 * 1024
REPORT_CONNECTIONS = 8  # requests to the VASP on their way at once


@dataclass
class MmscOptions:
    host: str = "127.0.0.1"
    port: int = 0
    vasp_id: str = ""  # accept only this VASP (any when empty)
    secret: str = ""  # and this secret
    report_url: str = ""  # where delivery reports and replies go (the VASP's /mm7/<link>)
    report_user: str = ""  # Basic credentials for report_url
    report_secret: str = ""
    latency_ms: int = 50
    fail_share: int = 0
    expire_share: int = 0
    no_mms_share: int = 0
    throttle_share: int = 0
    reply_text: str = ""
    reply_share: int = 0
    log_path: Path | None = None
    report_log_path: Path | None = None  # every report the VASP acknowledged, as a JSON line
    report_first: bool = False  # a report's first attempt is answered before its SubmitRsp goes out


class SimulatedMmsc:
    def __init__(self, opt: MmscOptions) -> None:
        self.opt = opt
        self._ids = itertools.count(1)
        self._prefix = f"MM{secrets.token_hex(3)}-"
        self._submits = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.client = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=REPORT_CONNECTIONS))
        # reports wait here, not in httpx's pool: its queue costs time quadratic in the requests waiting
        self._report_slots = asyncio.Semaphore(REPORT_CONNECTIONS)
        self.accepted = 0
        self.reports_sent = 0
        self._log = opt.log_path.open("a", encoding="utf-8") if opt.log_path else None
        self._report_log = opt.report_log_path.open("a", encoding="utf-8") if opt.report_log_path else None

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["POST"])])

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        for f in (self._log, self._report_log):
            if f is not None:
                f.close()

    def _authorized(self, header: str) -> bool:
        return not self.opt.vasp_id or bool(wire.basic_credentials_match(header, self.opt.vasp_id, self.opt.secret))

    @staticmethod
    def _answer(kind: str, tid: str, status: int, schema: str, text: str = "", message_id: str = "",
                http: int = 200) -> Response:
        ctype, body = wire.encode_response(kind, tid, status, schema, text=text, message_id=message_id)
        return Response(body, http, headers={"content-type": ctype})

    async def handle(self, request: Request) -> Response:
        if not self._authorized(request.headers.get("authorization", "")):
            return Response("wrong VASPID or secret", 401, headers={"www-authenticate": 'Basic realm="mmsc"'})
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_SUBMIT_BYTES:
                return self._answer("RSErrorRsp", "", 2004, wire.DEFAULT_SCHEMA, http=413,
                                    text=f"the request is larger than {MAX_SUBMIT_BYTES} bytes")
        try:
            decoded = mm7_decode.decode(request.headers.get("content-type", ""), bytes(body))
            if decoded.kind != "SubmitReq":
                return self._answer("RSErrorRsp", decoded.transaction_id, wire.UNSUPPORTED_OPERATION, decoded.schema,
                                    text=f"{decoded.kind} is not taken here", http=500)
            req = mm7_decode.submit_req(decoded)
        except wire.Mm7Error as exc:
            return self._answer("RSErrorRsp", "", exc.status, wire.DEFAULT_SCHEMA, text=exc.text, http=500)
        if self.opt.vasp_id and req.vasp_id != self.opt.vasp_id:
            return self._answer("RSErrorRsp", req.transaction_id, wire.IMPROPER_IDENTIFICATION, decoded.schema,
                                text=f"VASPID {req.vasp_id!r} is not this VASP's", http=500)
        self._submits += 1
        if share_hit(str(self._submits), "mm7-throttle", self.opt.throttle_share):
            return self._answer("RSErrorRsp", req.transaction_id, wire.SERVICE_UNAVAILABLE, decoded.schema,
                                text="too many requests: slow down", http=500)
        if not req.parts:
            return self._answer("RSErrorRsp", req.transaction_id, 2004, decoded.schema,
                                text="a multimedia message needs content", http=500)
        message_id = f"{self._prefix}{next(self._ids)}"
        self.accepted += 1
        self._write_log(message_id, req, decoded.schema)
        if req.delivery_report and self.opt.report_url:
            await self._report_later(message_id, req, decoded.schema)
        return self._answer("SubmitRsp", req.transaction_id, wire.SUCCESS, decoded.schema, message_id=message_id)

    def _write_log(self, message_id: str, req: Any, schema: str) -> None:
        if self._log is None:
            return
        self._log.write(json.dumps({
            "message_id": message_id, "recipients": list(req.recipients), "subject": req.subject,
            "vasp_id": req.vasp_id, "vas_id": req.vas_id, "sender": req.sender, "schema": schema,
            "delivery_report": req.delivery_report, "expiry": req.expiry.isoformat() if req.expiry else "",
            "parts": [{"content_id": p.content_id, "type": p.content_type, "size": len(p.data),
                       "location": p.location, "sha256": hashlib.sha256(p.data).hexdigest()} for p in req.parts],
            "at": datetime.now(UTC).isoformat()}, ensure_ascii=False) + "\n")
        self._log.flush()

    async def _report_later(self, message_id: str, req: Any, schema: str) -> None:
        """Deliver the message's reports in the background; with report_first, wait (at most 5 s) for the first
        report's first try before the SubmitRsp goes out."""
        tried = asyncio.Event() if self.opt.report_first else None
        task = asyncio.create_task(self._after(message_id, req, schema, tried))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if tried is not None:  # an MMSC whose report overtakes its own answer
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await tried.wait()

    def _status(self, number: str) -> str:
        if share_hit(number, "mm7-fail", self.opt.fail_share):
            return "Unrecognised"
        if share_hit(number, "mm7-no-mms", self.opt.no_mms_share):
            return "Rejected"
        if share_hit(number, "mm7-expire", self.opt.expire_share):
            return "Expired"
        return "Retrieved"

    async def _after(self, message_id: str, req: wire.SubmitReq, schema: str, tried: asyncio.Event | None) -> None:
        await asyncio.sleep(self.opt.latency_ms / 1000)
        for number in req.recipients:
            status = self._status(number)
            rep = wire.DeliveryReportReq(f"dr-{message_id}-{number}", message_id, number, req.sender or "mmsc",
                                         datetime.now(UTC), status, status, "simulated-mmsc")
            attempts = await self._post(*wire.encode_delivery_report(rep, schema), tried)
            if attempts and self._report_log is not None:
                self._report_log.write(json.dumps({"message_id": message_id, "recipient": number,
                                                   "status": status, "attempts": attempts}) + "\n")
                self._report_log.flush()
            self.reports_sent += 1
            if status == "Retrieved" and self.opt.reply_text and share_hit(number, "mm7-reply", self.opt.reply_share):
                mo = wire.DeliverReq(f"mo-{message_id}-{number}", number, (req.sender,) if req.sender else (),
                                     linked_id=message_id, relay_server_id="simulated-mmsc",
                                     parts=(wire.Part("text/plain;charset=utf-8", self.opt.reply_text.encode(),
                                                      "reply-text", "reply.txt"),))
                await self._post(*wire.encode_deliver(mo, schema))

    async def _post(self, content_type: str, body: bytes, tried: asyncio.Event | None = None) -> int:
        """Until the VASP acknowledges with status 1000 (an MMSC keeps a report until it is taken): the attempt
        it did on (1 the first), 0 if it never did. `tried` is set once the first attempt has its answer."""
        delay = 0.2
        auth: Any = httpx.BasicAuth(self.opt.report_user, self.opt.report_secret) if self.opt.report_user \
            else httpx.USE_CLIENT_DEFAULT
        for attempt in range(60):
            try:
                async with self._report_slots:
                    resp = await self.client.post(self.opt.report_url, content=body, auth=auth,
                                                  headers={"content-type": content_type, "soapaction": '""'})
                answer = mm7_decode.response(mm7_decode.decode(resp.headers.get("content-type", ""), resp.content))
                if resp.status_code == 200 and wire.status_class(answer.status) == "success":
                    return attempt + 1
                log.warning("mmsc.report_refused", http=resp.status_code, status=answer.status,
                            text=answer.status_text)
                if wire.status_class(answer.status) == "client":
                    return 0  # the VASP will never take it
            except (httpx.HTTPError, wire.Mm7Error) as exc:
                if attempt == 0:  # once per report: a VASP that is down would otherwise fill the log
                    log.warning("mmsc.report_failed", error=str(exc)[:200], retrying=True)
            finally:
                if tried is not None:
                    tried.set()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        return 0

    def stats(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "reports_sent": self.reports_sent}
