"""The simulated SMSC, embedded in `cardsms serve` and standalone as `cardsms simulator smsc`.

It speaks SMPP 3.4 through delivery/session.py (the server side of the same session the gateway
uses): it answers binds, submit_sm and enquire_link; returns delivery receipts (receipt text plus
the receipted_message_id and message_state TLVs) after a latency, at most `window` unanswered per
session; fails a deterministic share of numbers (UNDELIV); answers a share of submit_sm with
ESME_RTHROTTLED; and, when told to, drops every connection after each N submit_sm (an abort, no
unbind: what a network failure looks like). A receipt counts as delivered only when the ESME
acknowledges it: the ones unanswered when a session ends, or refused with an error, are sent again,
on the next bind of that system_id if no other session of it is up. Complete messages
(concatenated parts joined) are handed to the simulated phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import json
import secrets
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import IO, Any

import structlog

from cardsms.delivery import pdu
from cardsms.delivery.pdu import PduError, ShortMessage
from cardsms.delivery.session import Response, Session
from cardsms.domain import sms

log = structlog.get_logger("cardsms.simulator.smsc")

DeliveredHook = Callable[[str, str, str], Awaitable[None]]  # (destination, source, full text)
RETRY_REFUSED = 0.2  # seconds before a receipt the ESME refused is offered again


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
    window: int = 100  # deliver_sm unanswered per session
    bind_tps: int = 0  # submit_sm per second and bind, as an SMSC's contract sets it (0 = no limit); more: throttled


@dataclass(slots=True)
class _Receipt:
    system_id: str
    body: bytes  # the deliver_sm


@dataclass(slots=True)
class _Bound:
    system_id: str
    receives: bool
    transmits: bool
    in_flight: int = 0
    tokens: float = 0.0  # the bind's submit allowance (bind_tps), refilled by time
    stamp: float = 0.0


class SimulatedSmsc:
    def __init__(self, options: SmscOptions, on_delivered: DeliveredHook | None = None) -> None:
        self.opt = options
        self.on_delivered = on_delivered
        self.port = options.port or free_port()
        self.sessions: set[Session] = set()
        self.bound: dict[Session, _Bound] = {}
        self.ready: dict[str, deque[_Receipt]] = {}  # receipts due, waiting for a session's window, by system_id
        self.later: list[tuple[float, int, _Receipt | tuple[str, str, str]]] = []  # heap: receipts and phone hand-overs
        self._order = itertools.count()
        self.parts: dict[tuple[str, int], dict[int, str]] = {}
        self.counter = itertools.count(1)
        self.id_prefix = secrets.token_hex(3).upper() + "-"  # message ids stay unique across restarts
        self.submits = 0
        self.accepted = 0
        self.throttled = 0
        self.drops = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._log: IO[str] | None = None

    async def start(self) -> None:
        if self.opt.log_path:
            self._log = self.opt.log_path.open("a", encoding="utf-8")
        self._server = await asyncio.get_running_loop().create_server(self._new_session, self.opt.host, self.port)
        log.info("simsmsc.started", port=self.port)

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

    def _new_session(self) -> Session:
        session = Session(self, timeout=5.0)
        self.sessions.add(session)
        return session

    def _cut(self) -> None:
        """Drop every connection at once, like a network failure (no unbind)."""
        live = [s for s in self.sessions if s.is_open]
        if live:
            self.drops += 1
        for session in live:
            session.abort()

    # --- requests from ESMEs ------------------------------------------------------------------

    def on_request(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        if command_id in pdu.BINDS:
            self._on_bind(session, command_id, sequence, body)
        elif command_id == pdu.SUBMIT_SM:
            bound = self.bound.get(session)
            if bound is None or not bound.transmits:
                raise PduError(pdu.ESME_RINVBNDSTS, "bind", "submit_sm needs a transmitter or transceiver bind")
            self._on_submit(session, sequence, bound, ShortMessage.decode(body))
        else:
            raise PduError(pdu.ESME_RINVCMDID, "command_id", f"{command_id:#010x} is not a request this SMSC takes")

    def _on_bind(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        if session in self.bound:
            raise PduError(pdu.ESME_RALYBND, "bind", "this session is already bound")
        bind = pdu.Bind.decode(body)
        if not bind.system_id:
            raise PduError(pdu.ESME_RINVSYSID, "system_id", "must not be empty")
        kind = pdu.BINDS[command_id]
        self.bound[session] = _Bound(bind.system_id, kind in ("RX", "TRX"), kind in ("TX", "TRX"))
        session.respond(command_id | pdu.RESP, sequence, pdu.ESME_ROK, pdu.cstr(self.opt.system_id, 16, "system_id"))
        self._pump(bind.system_id)

    def on_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        bound = self.bound.pop(session, None)
        if bound is not None:  # its unanswered receipts come back through _answered with ConnectionError
            self._pump(bound.system_id)

    def _over_limit(self, bound: _Bound) -> bool:
        """A token bucket per bind: bind_tps a second, bursts of up to a second's worth (the shape of a
        connector's own TPS limit, so an ESME configured to the contract is not throttled)."""
        now = time.monotonic()
        rate = self.opt.bind_tps
        bound.tokens = min(float(rate), bound.tokens + (now - bound.stamp) * rate)
        bound.stamp = now
        if bound.tokens < 1:
            return True
        bound.tokens -= 1
        return False

    def _on_submit(self, session: Session, sequence: int, bound: _Bound, sm: ShortMessage) -> None:
        self.submits += 1
        system_id = bound.system_id
        if self.opt.bind_tps and self._over_limit(bound):
            self.throttled += 1
            session.respond(pdu.SUBMIT_SM | pdu.RESP, sequence, pdu.ESME_RTHROTTLED)
            return
        if self.opt.throttle_share and share_hit(str(self.submits), "throttle", self.opt.throttle_share):
            self.throttled += 1
            session.respond(pdu.SUBMIT_SM | pdu.RESP, sequence, pdu.ESME_RTHROTTLED)
            return
        msg_id = f"{self.id_prefix}{next(self.counter):X}"
        payload = sm.short_message
        concat = None
        if sm.esm_class & 0x40:
            try:
                concat, payload = sms.split_udh(payload)
            except IndexError:
                raise PduError(pdu.ESME_RINVESMCLASS, "short_message",
                               "esm_class announces a UDH, but the UDH is cut short") from None
        try:
            text = sms.decode_payload(payload, sm.data_coding)
        except (UnicodeDecodeError, ValueError):
            raise PduError(pdu.ESME_RINVMSGLEN, "short_message",
                           f"not decodable with data_coding {sm.data_coding}") from None
        session.respond(pdu.SUBMIT_SM | pdu.RESP, sequence, pdu.ESME_ROK, msg_id.encode() + b"\x00")
        self.accepted += 1
        if self._log:
            self._log.write(json.dumps({"id": msg_id, "dest": sm.destination_addr, "src": sm.source_addr,
                                        "dc": sm.data_coding, "esm": sm.esm_class, "sm": sm.short_message.hex(),
                                        "system_id": system_id}) + "\n")
            self._log.flush()
        stat = "UNDELIV" if share_hit(sm.destination_addr, "fail", self.opt.fail_share) else "DELIVRD"
        now = datetime.now(UTC).strftime("%y%m%d%H%M")
        receipt = sms.receipt_text(msg_id, now, now, stat, "000" if stat == "DELIVRD" else "001", text)
        body = ShortMessage(sm.destination_addr, sm.source_addr, receipt.encode("ascii", "replace")[:254],
                            source_addr_ton=1, source_addr_npi=1, esm_class=0x04, tlvs=[
                                (pdu.TLV_RECEIPTED_MESSAGE_ID, msg_id.encode() + b"\x00"),
                                (pdu.TLV_MESSAGE_STATE, bytes([2 if stat == "DELIVRD" else 5]))]).encode()
        due = time.monotonic() + self.opt.latency_ms / 1000
        self._later(due, _Receipt(system_id, body))
        full = self._assemble(sm.destination_addr, concat, text)
        if full is not None and stat == "DELIVRD" and self.on_delivered is not None:
            self._later(due, (sm.destination_addr, sm.source_addr, full))
        if self.opt.disconnect_every and self.submits % self.opt.disconnect_every == 0:
            asyncio.get_running_loop().call_soon(self._cut)  # after the answers queued so far are written

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

    def _later(self, due: float, item: _Receipt | tuple[str, str, str]) -> None:
        heapq.heappush(self.later, (due, next(self._order), item))
        if self._timer is not None and due < self._timer.when():
            self._timer.cancel()
            self._timer = None
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(self.later[0][0], self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        touched = set()
        while self.later and self.later[0][0] <= now:
            _, _, item = heapq.heappop(self.later)
            if isinstance(item, _Receipt):
                self.ready.setdefault(item.system_id, deque()).append(item)
                touched.add(item.system_id)
            else:
                self._spawn(self._deliver_to_phone(*item))
        for system_id in touched:
            self._pump(system_id)
        if self.later:
            self._timer = asyncio.get_running_loop().call_at(self.later[0][0], self._release)

    def _pump(self, system_id: str) -> None:
        """Offer the ready receipts of system_id to its receiving sessions, up to each one's window."""
        queue = self.ready.get(system_id)
        if not queue:
            return
        for session, bound in self.bound.items():
            if bound.system_id != system_id or not bound.receives or not session.is_open:
                continue
            while queue and bound.in_flight < self.opt.window:
                receipt = queue.popleft()
                bound.in_flight += 1
                session.request(pdu.DELIVER_SM, receipt.body).add_done_callback(
                    partial(self._answered, bound, receipt))
            if not queue:
                return

    def _answered(self, bound: _Bound, receipt: _Receipt, fut: asyncio.Future[Response]) -> None:
        bound.in_flight -= 1
        exc = fut.exception()
        if exc is None and fut.result()[1] == pdu.ESME_ROK:
            self._pump(receipt.system_id)
            return
        if exc is None:  # refused (a NAK): offer it again shortly
            log.debug("simsmsc.receipt_refused", status=pdu.status_name(fut.result()[1]))
            self._later(time.monotonic() + RETRY_REFUSED, receipt)
        else:  # the session is gone or never answered: the receipt waits for the next session
            self.ready.setdefault(receipt.system_id, deque()).appendleft(receipt)
        self._pump(receipt.system_id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_to_phone(self, dest: str, src: str, text: str) -> None:
        try:
            assert self.on_delivered is not None
            await self.on_delivered(dest, src, text)
        except Exception:
            log.exception("simsmsc.phone_failed", dest=dest)

    async def send_mo(self, source: str, dest: str, text: str) -> bool:
        """An MO message (a reply) from a phone to an ESME address."""
        session = next((s for s, b in self.bound.items() if b.receives and s.is_open), None)
        if session is None:
            return False
        body, dc = (text.encode("utf-16-be"), 8) if not sms.is_gsm7(text) else (sms.encode_gsm7(text), 0)
        request = ShortMessage(source, dest, body, data_coding=dc, source_addr_ton=1, source_addr_npi=1).encode()
        with contextlib.suppress(Exception):
            _, status, _ = await session.request(pdu.DELIVER_SM, request)
            return status == pdu.ESME_ROK
        return False

    def stats(self) -> dict[str, int]:
        return {"submits": self.submits, "accepted": self.accepted, "throttled": self.throttled,
                "drops": self.drops, "pending_receipts": sum(len(q) for q in self.ready.values())}
