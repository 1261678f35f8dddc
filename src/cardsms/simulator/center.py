"""What the simulated SMSC (SMPP) and the simulated ISMG (CMPP) share: one message centre that accepts
submits, returns a receipt for each after a latency, hands complete messages to the simulated phones
and carries their replies back.

The knobs are the same for both: receipt latency, a deterministic share of numbers that fail
(UNDELIV), a share of submits answered "too fast", a per-bind TPS limit, disconnects after every N
submits (an abort, what a network failure looks like), and TLS. At most `window` receipts are
unanswered per session; a receipt counts as delivered only when the client acknowledges it: the ones
unanswered when a session ends, or refused, are sent again, on the next bind of that client if no
other session of it is up. The protocol (smsc.py, ismg.py) gives the session's wire, the answers and
the packets.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import json
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

import structlog

from cardsms.delivery.session import Response, Session

log = structlog.get_logger("cardsms.simulator")

DeliveredHook = Callable[[str, str, str], Awaitable[None]]  # (destination, source, full text)
RETRY_REFUSED = 0.2  # seconds before a receipt the client refused is offered again


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def share_hit(key: str, salt: str, share: int) -> bool:
    """Deterministic: the same key always lands in or out of the share."""
    if share <= 0:
        return False
    return int(hashlib.sha1(f"{salt}:{key}".encode()).hexdigest()[:8], 16) % 100 < share


@dataclass
class SmscOptions:
    host: str = "127.0.0.1"
    port: int = 0
    latency_ms: int = 50
    fail_share: int = 0
    throttle_share: int = 0
    disconnect_every: int = 0
    system_id: str = "CARDSMS-SIM"
    log_path: Path | None = None
    window: int = 100  # receipts unanswered per session
    bind_tps: int = 0  # submits per second and bind, as a contract sets it (0 = no limit); more: too fast
    tls_cert: Path | None = None  # serve TLS with this certificate chain and key
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # and require a client certificate signed by this CA
    sp_id: str = ""  # ISMG: accept only this SP id (any when empty)
    secret: str = ""  # ISMG: check the authenticator with this shared secret (any when empty)
    receipt_parts: str = "all"  # long messages: a receipt for every part, or for the first or the last only


@dataclass(slots=True)
class Receipt:
    """A receipt waiting for its client: built into a packet when it is offered (the session's version)."""

    client: str
    msg_id: str
    dest: str
    src: str
    stat: str
    text: str
    submitted: float


@dataclass(slots=True)
class Bound:
    client: str  # SMPP system_id or CMPP SP id
    receives: bool
    transmits: bool
    version: int = 0
    in_flight: int = 0
    tokens: float = 0.0  # the bind's submit allowance (bind_tps), refilled by time
    stamp: float = 0.0


class SimulatedCenter:
    """The protocol-independent part; subclasses give `_new_session`, `on_request`, `_deliver_request`,
    `_answer_ok` and `_mo_request`."""

    kind = "centre"

    def __init__(self, options: SmscOptions, on_delivered: DeliveredHook | None = None) -> None:
        self.opt = options
        self.on_delivered = on_delivered
        self.port = options.port or free_port()
        self.sessions: set[Session] = set()
        self.bound: dict[Session, Bound] = {}
        self.ready: dict[str, deque[Receipt]] = {}  # receipts due, waiting for a session's window, by client
        self.later: list[tuple[float, int, Receipt | tuple[str, str, str]]] = []  # heap: receipts, phone hand-overs
        self._order = itertools.count()
        self.parts: dict[tuple[str, int], dict[int, str]] = {}
        self.counter = itertools.count(1)
        self.submits = 0
        self.accepted = 0
        self.throttled = 0
        self.drops = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        # the release of `later`, and when it is due (uvloop's call_at answers a due time already past with a plain
        # Handle, which has no when())
        self._timer: asyncio.Handle | None = None
        self._timer_due = 0.0
        self._log: IO[str] | None = None

    def _tls(self) -> ssl.SSLContext | None:
        if self.opt.tls_cert is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.opt.tls_cert, self.opt.tls_key)
        if self.opt.tls_client_ca is not None:
            ctx.load_verify_locations(self.opt.tls_client_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self) -> None:
        if self.opt.log_path:
            self._log = self.opt.log_path.open("a", encoding="utf-8")
        self._server = await asyncio.get_running_loop().create_server(self._session, self.opt.host, self.port,
                                                                      ssl=self._tls())
        log.info(f"sim{self.kind}.started", port=self.port, tls=self.opt.tls_cert is not None)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._timer is not None:
            self._timer.cancel()
        for session in list(self.sessions):
            session.abort()
        for t in list(self._tasks):
            t.cancel()
        if self._log:
            self._log.close()

    def _session(self) -> Session:
        session = self._new_session()
        self.sessions.add(session)
        return session

    def _new_session(self) -> Session:
        raise NotImplementedError

    def _cut(self) -> None:
        """Drop every connection at once, like a network failure (no unbind)."""
        live = [s for s in self.sessions if s.is_open]
        if live:
            self.drops += 1
        for session in live:
            session.abort()

    def on_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        bound = self.bound.pop(session, None)
        if bound is not None:  # its unanswered receipts come back through _answered with ConnectionError
            self._pump(bound.client)

    def _bound(self, session: Session, bound: Bound) -> None:
        self.bound[session] = bound
        self._pump(bound.client)

    # --- submits ------------------------------------------------------------------------------

    def _too_fast(self, bound: Bound) -> bool:
        """Whether this submit is refused as too fast: over the bind's TPS (a token bucket, bursts of up to a
        second's worth, the shape of a connector's own limit) or in the throttled share."""
        self.submits += 1
        if self.opt.bind_tps:
            now = time.monotonic()
            rate = self.opt.bind_tps
            bound.tokens = min(float(rate), bound.tokens + (now - bound.stamp) * rate)
            bound.stamp = now
            if bound.tokens < 1:
                self.throttled += 1
                return True
            bound.tokens -= 1
        if self.opt.throttle_share and share_hit(str(self.submits), "throttle", self.opt.throttle_share):
            self.throttled += 1
            return True
        return False

    def _accepted(self, bound: Bound, msg_id: str, dest: str, src: str, text: str,
                  concat: tuple[int, int, int] | None, logged: dict[str, Any], receipt: bool = True) -> None:
        """A submit was answered with msg_id: log it, schedule its receipt (when asked for) and the phone's
        hand-over (`dest` as country code and number, no '+'), and drop the connections if it is time to."""
        self.accepted += 1
        if self._log:
            self._log.write(json.dumps({"id": msg_id, "dest": dest, "src": src, "client": bound.client,
                                        "at": round(time.time(), 4), **logged}) + "\n")
            self._log.flush()
        stat = "UNDELIV" if share_hit(dest, "fail", self.opt.fail_share) else "DELIVRD"
        due = time.monotonic() + self.opt.latency_ms / 1000
        if receipt and self._reports(concat):
            self._later(due, Receipt(bound.client, msg_id, dest, src, stat, text, time.time()))
        full = self._assemble(dest, concat, text)
        if full is not None and stat == "DELIVRD" and self.on_delivered is not None:
            self._later(due, (dest, src, full))
        if self.opt.disconnect_every and self.submits % self.opt.disconnect_every == 0:
            asyncio.get_running_loop().call_soon(self._cut)  # after the answers queued so far are written

    def _reports(self, concat: tuple[int, int, int] | None) -> bool:
        """Whether this part gets a receipt (many SMSCs report only the first or the last part)."""
        if concat is None or self.opt.receipt_parts == "all":
            return True
        _, total, seq = concat
        return seq == (1 if self.opt.receipt_parts == "first" else total)

    def _assemble(self, dest: str, concat: tuple[int, int, int] | None, text: str) -> str | None:
        if concat is None:
            return text
        ref, total, seq = concat
        parts = self.parts.setdefault((dest, ref), {})
        parts[seq] = text
        if len(parts) < total:
            return None
        del self.parts[(dest, ref)]
        return "".join(parts[i] for i in sorted(parts))

    # --- receipts and phones, after the latency -----------------------------------------------

    def _later(self, due: float, item: Receipt | tuple[str, str, str]) -> None:
        heapq.heappush(self.later, (due, next(self._order), item))
        if self._timer is not None and due < self._timer_due:
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._timer_due = self.later[0][0]
        self._timer = asyncio.get_running_loop().call_at(self._timer_due, self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        touched = set()
        while self.later and self.later[0][0] <= now:
            _, _, item = heapq.heappop(self.later)
            if isinstance(item, Receipt):
                self.ready.setdefault(item.client, deque()).append(item)
                touched.add(item.client)
            else:
                self._spawn(self._deliver_to_phone(*item))
        for client in touched:
            self._pump(client)
        if self.later:
            self._arm()

    def _pump(self, client: str) -> None:
        """Offer the ready receipts of a client to its receiving sessions, up to each one's window."""
        queue = self.ready.get(client)
        if not queue:
            return
        for session, bound in self.bound.items():
            if bound.client != client or not bound.receives or not session.is_open:
                continue
            while queue and bound.in_flight < self.opt.window:
                receipt = queue.popleft()
                bound.in_flight += 1
                command_id, body = self._deliver_request(bound, receipt)
                session.request(command_id, body).add_done_callback(partial(self._answered, bound, receipt))
            if not queue:
                return

    def _deliver_request(self, bound: Bound, receipt: Receipt) -> tuple[int, bytes]:
        raise NotImplementedError

    def _answer_ok(self, response: Response) -> bool:
        raise NotImplementedError

    def _answered(self, bound: Bound, receipt: Receipt, fut: asyncio.Future[Response]) -> None:
        bound.in_flight -= 1
        exc = fut.exception()
        if exc is None and self._answer_ok(fut.result()):
            self._pump(receipt.client)
            return
        if exc is None:  # refused: offer it again shortly
            log.debug(f"sim{self.kind}.receipt_refused", answer=repr(fut.result())[:80])
            self._later(time.monotonic() + RETRY_REFUSED, receipt)
        else:  # the session is gone or never answered: the receipt waits for the next session
            self.ready.setdefault(receipt.client, deque()).appendleft(receipt)
        self._pump(receipt.client)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_to_phone(self, dest: str, src: str, text: str) -> None:
        try:
            assert self.on_delivered is not None
            await self.on_delivered(dest, src, text)
        except Exception:
            log.exception(f"sim{self.kind}.phone_failed", dest=dest)

    def _mo_request(self, bound: Bound, source: str, dest: str, text: str) -> tuple[int, bytes]:
        raise NotImplementedError

    async def send_mo(self, source: str, dest: str, text: str) -> bool:
        """An MO message (a reply) from a phone (country code and number) to a client's address."""
        found = next(((s, b) for s, b in self.bound.items() if b.receives and s.is_open), None)
        if found is None:
            return False
        session, bound = found
        command_id, body = self._mo_request(bound, source, dest, text)
        try:
            return self._answer_ok(await session.request(command_id, body))
        except Exception:
            return False

    def stats(self) -> dict[str, int]:
        return {"submits": self.submits, "accepted": self.accepted, "throttled": self.throttled,
                "drops": self.drops, "pending_receipts": sum(len(q) for q in self.ready.values())}
