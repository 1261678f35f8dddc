"""MM7 to a carrier's MMSC (the VASP role): one `Mm7Link` per configured mm7:// or mm7s:// URL.

Out: SubmitReq over HTTP(S) with Basic authentication (VASPID and secret), the digital template's parts as
the content; the SubmitRsp's MessageID is the id delivery reports are matched by. Statuses (TS 23.140):
1xxx success; 2xxx the request's own fault, final; 3xxx the server's, retried with backoff; 4006 (service
unavailable), HTTP 429 and 503 slow the link down; 4001 (improper identification) and HTTP 401/403 mean
the link's credentials are refused: the link is down for a while and its messages wait; other 4xxx are
final. A timeout may have reached the MMSC: it is retried, flagged as possibly sent.

In: `inbound()` takes what the MMSC posts to `/mm7/<link name>` (DeliveryReportReq, DeliverReq), checks the
link's credentials and source networks, makes each report or reply durable before it answers (the
dispatcher's journal in a process that sends, as SMPP receipts are; the database in `cardsms api`) and
answers DeliveryReportRsp / DeliverRsp, or RSErrorRsp with the status that names what was wrong."""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import secrets
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import httpx
import structlog

from cardsms.delivery import mm7_decode
from cardsms.delivery import mm7_wire as wire
from cardsms.delivery.connector import Inbound, SubmitError, TokenBucket
from cardsms.delivery.digital import ContentLoader, DigitalMessage
from cardsms.domain.connectors import DigitalConfig
from cardsms.domain.outbound import Network, parse_networks

log = structlog.get_logger("cardsms.mm7")

DOWN_SECONDS = 5.0  # a link whose MMSC cannot be reached (or refuses our credentials) rests this long

# Whether a report's MessageID is one of ours: stored with a submit's outcome, not stored yet while a digital
# submit is still on its way (in any process: its SubmitRsp may be overtaken by the report), or neither.
Match = Literal["stored", "in_flight", "unknown"]


def mm7_number(e164: str) -> str:
    """Recipients go as international digits without '+' (8613800000000), as the mainland MMSCs take them."""
    return e164.lstrip("+")


class Mm7Link:
    protocol = "mm7"

    def __init__(self, cfg: DigitalConfig, load: ContentLoader, accept: Callable[[Inbound], Awaitable[None]],
                 match: Callable[[str, str], Awaitable[Match]] | None = None) -> None:
        self.cfg = cfg
        self.match = match  # (link, MessageID): is it ours? (None: take every report)
        self.pending: set[str] = set()  # MessageIDs answered to this process whose outcome is not stored yet
        self.name = cfg.name
        self.load = load
        self.accept = accept  # makes a report or reply durable (journal or database) before the MMSC is answered
        self.bucket = TokenBucket(cfg.tps)
        self.slots = asyncio.Semaphore(cfg.concurrency)
        self.throttled_until = 0.0
        self.throttle_backoff = 0.1
        self.down_until = 0.0
        self.reachable = True  # until an exchange fails to reach the MMSC; again once one reaches it
        self.last_error = ""
        self.allowed = parse_networks(cfg.allow)  # source networks of inbound reports, parsed once
        self.submitted = 0
        self.reports = 0
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        verify: Any = cfg.tls.context() if cfg.tls is not None else True
        self.client = httpx.AsyncClient(timeout=cfg.timeout, verify=verify, follow_redirects=False,
                                        limits=httpx.Limits(max_connections=cfg.concurrency))

    @property
    def up(self) -> bool:
        """May be tried: not resting after a failure (the router tries a rested link again)."""
        return self.down_until <= time.monotonic()

    @property
    def bound(self) -> bool:
        """What /metrics and /healthz report: the MMSC was reached by the last exchange (a link that has rested
        and not been tried since is still down, however long ago it failed)."""
        return self.up and self.reachable

    def serves(self, e164: str) -> bool:
        return self.cfg.serves(e164)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "protocol": self.cfg.scheme, "host": self.cfg.endpoint, "bound": self.bound,
                "binds": 0, "window": self.cfg.concurrency, "tps": self.cfg.tps, "last_error": self.last_error,
                "submitted": self.submitted, "reports": self.reports, "schema": self.cfg.schema}

    async def run(self) -> None:
        """MM7 keeps no session: nothing to hold up (here for the connector interface)."""

    async def stop(self) -> None:
        await self.client.aclose()

    # --- out ----------------------------------------------------------------------------------------------

    def _down(self, error: str) -> None:
        self.down_until = time.monotonic() + DOWN_SECONDS
        self.reachable = False
        self.last_error = error
        log.warning("mm7.link_down", link=self.name, error=error, retry_in=DOWN_SECONDS)

    def _throttled(self) -> None:
        self.throttled_until = time.monotonic() + self.throttle_backoff
        self.throttle_backoff = min(self.throttle_backoff * 2, 5.0)

    async def submit(self, message: DigitalMessage) -> str:
        content = await self.load(message.account_id, message.template_code)
        await self.bucket.take()
        async with self.slots:
            return await self._submit(message, content.subject, content.parts)

    async def _submit(self, message: DigitalMessage, subject: str, parts: tuple[wire.Part, ...]) -> str:
        cfg = self.cfg
        req = wire.SubmitReq(f"{self._prefix}-{next(self._ids)}", (mm7_number(message.e164),), parts,
                             vasp_id=cfg.vasp_id, vas_id=cfg.vas_id, sender=cfg.service_code,
                             service_code=cfg.service_code, expiry=message.expires_at, delivery_report=True,
                             subject=subject)
        ctype, body = wire.encode_submit(req, cfg.schema, cfg.version)
        try:
            resp = await self.client.post(cfg.endpoint, content=body, auth=(cfg.vasp_id, cfg.secret),
                                          headers={"content-type": ctype, "soapaction": '""'})
        except httpx.TimeoutException:
            self.last_error = f"no answer within {cfg.timeout:g} s"
            error = SubmitError("TIMEOUT", f"the MMSC did not answer within {cfg.timeout:g} s", True)
            error.sent_parts = 1  # it may have been taken
            raise error from None
        except httpx.HTTPError as exc:
            self._down(f"{type(exc).__name__}: {exc}"[:300])
            raise SubmitError("MM7_UNREACHABLE", f"the MMSC cannot be reached: {exc}"[:300], True, link=True) from None
        return self._outcome(resp)

    def _outcome(self, resp: httpx.Response) -> str:
        if resp.status_code in (401, 403):
            self._down(f"HTTP {resp.status_code}: the MMSC refused the VASPID and secret")
            raise SubmitError("MM7_UNAUTHORIZED", f"HTTP {resp.status_code}: the MMSC refused our credentials", True,
                              link=True)
        self.reachable = True
        if resp.status_code in (429, 503):
            self._throttled()
            raise SubmitError("MM7_THROTTLED", f"HTTP {resp.status_code}: the MMSC asks us to slow down", True,
                              throttled=True)
        try:
            answer = mm7_decode.response(mm7_decode.decode(resp.headers.get("content-type", ""), resp.content))
        except wire.Mm7Error as exc:
            if resp.status_code >= 500:
                raise SubmitError(f"HTTP{resp.status_code}", f"the MMSC failed (HTTP {resp.status_code})", True) \
                    from None
            raise SubmitError("MM7_BAD_ANSWER", f"HTTP {resp.status_code} with no MM7 answer: {exc.text}"[:300],
                              True) from None
        code, text = answer.status, f"MM7 {answer.status} {answer.status_text}".strip()
        klass = wire.status_class(code)
        if klass == "success":
            if not answer.message_id:
                raise SubmitError("MM7_BAD_ANSWER", "the SubmitRsp carries no MessageID", True)
            self.throttle_backoff = 0.1
            self.submitted += 1
            self.last_error = ""
            self.pending.add(answer.message_id)
            if len(self.pending) > 100_000:  # the dispatcher stores outcomes within seconds: an old set is stale
                self.pending.clear()
            return answer.message_id
        if code == wire.SERVICE_UNAVAILABLE:
            self._throttled()
            raise SubmitError(f"MM7:{code}", text, True, throttled=True)
        if code == wire.IMPROPER_IDENTIFICATION:
            self._down(text)
            raise SubmitError(f"MM7:{code}", text, True, link=True)
        raise SubmitError(f"MM7:{code}", text, klass == "server")

    # --- in -----------------------------------------------------------------------------------------------

    def authorized(self, header: str, client: str) -> str:
        """'' when the request may come in; otherwise why not."""
        if self.allowed and not _address_in(client, self.allowed):
            return f"{client} is not in this link's allowed networks"
        good = wire.basic_credentials_match(header, self.cfg.vasp_id, self.cfg.secret)
        if good is None:
            return "Basic authentication with the link's VASPID and secret is required"
        return "" if good else "wrong VASPID or secret"

    async def inbound(self, content_type: str, body: bytes) -> tuple[int, str, bytes]:
        """Handle one request from the MMSC: (HTTP status, content type, body) of the answer. What it reports
        is durable (accept) before this returns. A report for a MessageID this link never got is answered
        2005 and not kept; one that cannot be matched yet because digital submits are still on their way (the
        report overtook its own SubmitRsp) is answered 3000, so that the MMSC sends it again."""
        schema = self.cfg.schema
        try:
            decoded = mm7_decode.decode(content_type, body)
        except wire.Mm7Error as exc:
            return self._error(400 if exc.status < 3000 else 500, exc.status, exc.text, "", schema)
        schema, tid = decoded.schema, decoded.transaction_id
        try:
            if decoded.kind == "DeliveryReportReq":
                return await self._report(mm7_decode.delivery_report_req(decoded), tid, schema)
            if decoded.kind == "DeliverReq":
                mo = mm7_decode.deliver_req(decoded)
                to = mo.recipients[0] if mo.recipients else self.cfg.service_code
                await self.accept(Inbound(self.name, False, "+" + mo.sender.lstrip("+"), to, mo.text, "", "", "",
                                          datetime.now(UTC), self.cfg.service_code))
                ctype, out = wire.encode_response("DeliverRsp", tid, wire.SUCCESS, schema, version=self.cfg.version)
                return 200, ctype, out
        except wire.Mm7Error as exc:
            return self._error(400, exc.status, exc.text, tid, schema)
        return self._error(400, wire.UNSUPPORTED_OPERATION, f"{decoded.kind} is not an operation a VASP takes",
                           tid, schema)

    async def _report(self, rep: Any, tid: str, schema: str) -> tuple[int, str, bytes]:
        """A DeliveryReportReq: matched to its message (or refused, see `inbound`), kept, answered."""
        match = "stored" if rep.message_id in self.pending or self.match is None \
            else await self.match(self.name, rep.message_id)
        if match == "in_flight":
            return self._error(500, wire.SERVER_ERROR, f"MessageID {rep.message_id[:80]!r} is not known yet (its "
                               "submit is still being answered): send the report again", tid, schema)
        if match == "unknown":
            return self._error(400, wire.MESSAGE_ID_NOT_FOUND,
                               f"MessageID {rep.message_id[:80]!r} was not submitted on this link", tid, schema)
        stat = wire.MM_STATUS_STATS[rep.mm_status]
        if stat:  # DeferredRetrieval is not final: the handset retrieves later, and a report follows
            self.pending.discard(rep.message_id)
            await self.accept(Inbound(self.name, True, "+" + rep.recipient.lstrip("+"), rep.sender, "",
                                      rep.message_id, stat, rep.mm_status if stat != "DELIVRD" else "",
                                      rep.date.astimezone(UTC), self.cfg.service_code))
        self.reports += 1
        ctype, out = wire.encode_response("DeliveryReportRsp", tid, wire.SUCCESS, schema, version=self.cfg.version)
        return 200, ctype, out

    def _error(self, http: int, status: int, text: str, tid: str, schema: str) -> tuple[int, str, bytes]:
        ctype, out = wire.encode_response("VASPErrorRsp", tid, status, schema, text=text, version=self.cfg.version)
        return http, ctype, out


def _address_in(client: str, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    return any(address in net for net in networks)
