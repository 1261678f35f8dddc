"""SMPP connectors: one transceiver bind per connector, on the event loop (delivery/session.py).

This module adds what a gateway needs around the session: reconnect with backoff, our own window
and TPS limit, ESME_RTHROTTLED handling, GSM-7/UCS-2 encoding, concatenated long messages with a
UDH, and the inbound side (delivery receipts and MO messages), each acknowledged only after
`on_inbound` has taken it (the dispatcher journals it first).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from cardsms.delivery import pdu
from cardsms.delivery.config import ConnectorConfig
from cardsms.delivery.pdu import PduError, ShortMessage
from cardsms.delivery.session import Session
from cardsms.domain import sms

log = structlog.get_logger("cardsms.smpp")

# command_status values after which a retry may succeed (queue full, system error, throttling, application errors)
TRANSIENT_STATUS = {pdu.ESME_RMSGQFUL, pdu.ESME_RSYSERR, pdu.ESME_RTHROTTLED, pdu.ESME_RX_T_APPN, pdu.ESME_RX_P_APPN}
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04
RESPONSE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Inbound:
    """A deliver_sm from the SMSC: a delivery receipt or an MO message."""

    connector: str
    is_receipt: bool
    source_addr: str
    destination_addr: str
    text: str
    receipted_id: str
    stat: str
    err: str
    at: datetime


class SubmitError(Exception):
    def __init__(self, code: str, text: str, transient: bool, throttled: bool = False, link: bool = False) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.transient = transient
        self.throttled = throttled
        self.link = link  # the connection failed, not the message: retry soon, without counting an attempt
        self.sent_parts = 0  # parts of a long message the SMSC had accepted before this error


class TokenBucket:
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    async def take(self) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self.tokens = min(float(self.rate), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            await asyncio.sleep((1 - self.tokens) / self.rate)


def decode_inbound(connector: str, sm: ShortMessage) -> Inbound:
    payload = sm.short_message or sm.tlv(pdu.TLV_MESSAGE_PAYLOAD) or b""
    if sm.esm_class & ESM_UDHI:
        _, payload = sms.split_udh(payload)
    text = sms.decode_payload(payload, sm.data_coding)
    now = datetime.now(UTC)
    if sm.esm_class & ESM_RECEIPT:
        parsed = sms.parse_receipt(text)
        receipted = (sm.tlv(pdu.TLV_RECEIPTED_MESSAGE_ID) or b"").rstrip(b"\x00").decode("latin-1")
        receipted = receipted or (parsed.message_id if parsed else "")
        stat = parsed.stat if parsed else ""
        if not stat:
            state = sm.tlv(pdu.TLV_MESSAGE_STATE)
            stat = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 8: "REJECTD"}.get(
                state[0] if state else 0, "UNKNOWN")
        return Inbound(connector, True, sm.source_addr, sm.destination_addr, text, receipted, stat,
                       parsed.err if parsed else "", now)
    return Inbound(connector, False, sm.source_addr, sm.destination_addr, text, "", "", "", now)


class SmppConnector:
    """One bind. `run()` keeps it bound; `submit()` sends one message (all its parts)."""

    def __init__(self, cfg: ConnectorConfig, source_addr: str, on_inbound: Callable[[Inbound], None]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.source_addr = source_addr
        self.on_inbound = on_inbound
        self.session: Session | None = None
        self.window = asyncio.Semaphore(cfg.window)
        self.bucket = TokenBucket(cfg.tps)
        self.throttled_until = 0.0
        self.throttle_backoff = 0.1
        self.binds = 0
        self.last_error = ""
        self._ref = 0
        self._stopping = asyncio.Event()
        self.draining = False  # stopping: submit_sm already written are answered, no new one is written

    @property
    def up(self) -> bool:
        return self.session is not None

    def status(self) -> dict[str, object]:
        return {"name": self.name, "host": f"{self.cfg.host}:{self.cfg.port}", "bound": self.up,
                "binds": self.binds, "window": self.cfg.window, "tps": self.cfg.tps, "last_error": self.last_error}

    async def run(self) -> None:
        """Keep the bind up until stop()."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                session = await self._bind()
            except (OSError, TimeoutError, PduError) as exc:  # refused, bind rejected, timeout
                self.last_error = f"bind failed: {exc}"
                log.warning("smpp.bind_failed", connector=self.name, error=str(exc), retry_in=backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.2
            self.binds += 1
            self.session = session
            log.info("smpp.bound", connector=self.name, host=self.cfg.host, port=self.cfg.port)
            try:
                await session.closed
            finally:
                self.session = None
                if not self._stopping.is_set():
                    self.last_error = "connection lost"
                    log.warning("smpp.disconnected", connector=self.name)

    async def _bind(self) -> Session:
        loop = asyncio.get_running_loop()
        _, session = await asyncio.wait_for(loop.create_connection(
            lambda: Session(self, timeout=RESPONSE_TIMEOUT), self.cfg.host, self.cfg.port), 5)
        bind = pdu.Bind(self.cfg.system_id, self.cfg.password, self.cfg.system_type)
        try:
            command_id, status, _ = await asyncio.wait_for(session.request(pdu.BIND_TRANSCEIVER, bind.encode()), 5)
        except BaseException:
            session.abort()
            raise
        if status != pdu.ESME_ROK or command_id != pdu.BIND_TRANSCEIVER | pdu.RESP:
            session.abort()
            raise PduError(status, "bind_transceiver", f"rejected by the SMSC with {pdu.status_name(status)}")
        return session

    # --- the session's handler: what the SMSC sends us ----------------------------------------

    def on_request(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        if command_id != pdu.DELIVER_SM:
            raise PduError(pdu.ESME_RINVCMDID, "command_id", f"{command_id:#010x} is not a request an ESME takes")
        sm = ShortMessage.decode(body)
        try:
            item = decode_inbound(self.name, sm)
        except Exception as exc:  # undecodable text: refuse it for good rather than have it sent forever
            log.warning("smpp.inbound_undecodable", connector=self.name, error=repr(exc))
            session.respond(pdu.DELIVER_SM | pdu.RESP, sequence, pdu.ESME_RX_P_APPN, b"\x00")
            return
        try:
            self.on_inbound(item)
        except Exception:  # not journaled (disk full?): the SMSC keeps it and sends it again
            log.exception("smpp.inbound_not_taken", connector=self.name)
            session.respond(pdu.DELIVER_SM | pdu.RESP, sequence, pdu.ESME_RX_T_APPN, b"\x00")
            return
        session.respond(pdu.DELIVER_SM | pdu.RESP, sequence, pdu.ESME_ROK, b"\x00")

    def on_closed(self, session: Session) -> None:
        pass  # run() notices through session.closed

    async def stop(self) -> None:
        self._stopping.set()
        session = self.session
        if session is not None:
            await session.unbind()

    def _next_ref(self) -> int:
        self._ref = (self._ref + 1) % 256
        return self._ref

    async def submit(self, e164: str, text: str, source_suffix: str = "", priority: int = 1) -> list[str]:
        """Send all parts; returns the SMSC message ids. Raises SubmitError."""
        encoded = sms.encode(text)
        dest = e164.lstrip("+")
        parts = encoded.parts
        ref = self._next_ref()
        ids = []
        for seq, payload in enumerate(parts, 1):
            esm, body = (ESM_UDHI, sms.udh(ref, len(parts), seq) + payload) if len(parts) > 1 else (0, payload)
            try:
                ids.append(await self._submit_one(dest, body, encoded.data_coding, esm, source_suffix, priority))
            except SubmitError as exc:
                exc.sent_parts = len(ids)
                raise
        return ids

    async def _submit_one(self, dest: str, body: bytes, data_coding: int, esm: int, suffix: str, priority: int) -> str:
        wait = self.throttled_until - time.monotonic()
        if wait > 0:
            raise SubmitError("THROTTLED", f"{self.name} is throttling; back off {wait:.2f}s", True, True)
        try:
            request = ShortMessage(
                self.source_addr + suffix, dest, body, source_addr_ton=0, source_addr_npi=1, dest_addr_ton=1,
                dest_addr_npi=1, esm_class=esm, data_coding=data_coding, registered_delivery=1,
                priority_flag=max(0, 2 - priority)).encode()
        except PduError as exc:
            raise SubmitError("INVALID_PDU", f"submit_sm cannot be built: {exc}", False) from None
        await self.bucket.take()
        async with self.window:
            session = self.session
            if self.draining:  # checked after every wait: nothing is written once the stop began
                raise SubmitError("STOPPING", "the server is stopping; queued again", True, True)
            if session is None:
                raise SubmitError("NOT_BOUND", f"connector {self.name} is not bound", True, link=True)
            try:
                command_id, status, answer = await session.request(pdu.SUBMIT_SM, request)
            except TimeoutError:
                raise SubmitError("TIMEOUT", f"no submit_sm_resp within {RESPONSE_TIMEOUT:g} s", True) from None
            except ConnectionError as exc:  # the session broke under us
                raise SubmitError("DISCONNECTED", f"submit failed: {exc}", True, link=True) from None
        if status == pdu.ESME_ROK and command_id == pdu.SUBMIT_SM | pdu.RESP:
            message_id = answer.split(b"\x00", 1)[0].decode("latin-1")
            if message_id:
                self.throttle_backoff = 0.1
                return message_id
        if status == pdu.ESME_RTHROTTLED:
            self.throttled_until = time.monotonic() + self.throttle_backoff
            self.throttle_backoff = min(self.throttle_backoff * 2, 5.0)
            raise SubmitError("THROTTLED", "ESME_RTHROTTLED from the SMSC", True, True)
        code = f"SMPP_{status:#010x}"
        return_text = f"submit_sm rejected with command_status {status:#010x}"
        if status == pdu.ESME_ROK:
            return_text = "submit_sm_resp carried no message_id"
        raise SubmitError(code, return_text, status in TRANSIENT_STATUS)
