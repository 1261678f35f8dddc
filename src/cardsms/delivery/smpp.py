"""SMPP connectors on smpp34: one transceiver bind per connector.

The smpp34 core does framing, sequence windowing and the SMPP timers (enquire_link every 30 s,
response timeouts); this module adds what a gateway needs around it: reconnect with backoff,
our own window and TPS limit, ESME_RTHROTTLED handling, GSM-7/UCS-2 encoding, concatenated
long messages with a UDH, and the inbound side (delivery receipts and MO messages).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import smpp34
import structlog

from cardsms.delivery.config import ConnectorConfig
from cardsms.domain import sms

log = structlog.get_logger("cardsms.smpp")

THROTTLED = int(smpp34.ESME_RTHROTTLED)  # type: ignore[attr-defined]
# command_status values after which a retry may succeed (queue full, system error, throttling, timeout)
TRANSIENT_STATUS = {int(smpp34.ESME_RMSGQFUL), int(smpp34.ESME_RSYSERR), THROTTLED, 0x00000064, 0x00000065}  # type: ignore[attr-defined]
# deliver_sm PDUs the smpp34 core may read (and acknowledge) ahead of us. The I/O thread drains and
# journals them at once, so the buffer stays nearly empty; a small capacity is not used because
# smpp34's backpressure path (NAKs) stalled the session in our tests.
INBOUND_CAPACITY = 65536
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04


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


def _tlv_text(tlvs: list[smpp34.Tlv], tag: int) -> str:
    for t in tlvs:
        if t.tag == tag:
            return t.value.rstrip(b"\x00").decode("latin-1")
    return ""


def decode_inbound(connector: str, ev: smpp34.DeliverSmEvent) -> Inbound:
    payload = ev.short_message or b""
    if not payload:
        for t in ev.tlvs:
            if t.tag == smpp34.TLV_MESSAGE_PAYLOAD:  # type: ignore[attr-defined]
                payload = t.value
    if ev.esm_class & ESM_UDHI:
        _, payload = sms.split_udh(payload)
    text = sms.decode_payload(payload, ev.data_coding)
    now = datetime.now(UTC)
    if ev.esm_class & ESM_RECEIPT:
        parsed = sms.parse_receipt(text)
        receipted = _tlv_text(ev.tlvs, smpp34.TLV_RECEIPTED_MESSAGE_ID) or (parsed.message_id if parsed else "")  # type: ignore[attr-defined]
        stat = parsed.stat if parsed else ""
        if not stat:
            state = next((t.as_int() for t in ev.tlvs if t.tag == smpp34.TLV_MESSAGE_STATE), None)  # type: ignore[attr-defined]
            stat = {2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 8: "REJECTD"}.get(state or 0, "UNKNOWN")
        return Inbound(connector, True, ev.source_addr, ev.destination_addr, text, receipted, stat,
                       parsed.err if parsed else "", now)
    return Inbound(connector, False, ev.source_addr, ev.destination_addr, text, "", "", "", now)


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class SmppConnector:
    """One bind. `run()` keeps it bound; `submit()` sends one message (all its parts)."""

    def __init__(self, cfg: ConnectorConfig, source_addr: str, on_inbound: Callable[[Inbound], None]) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.source_addr = source_addr
        self.on_inbound = on_inbound
        self.smsc: smpp34.Smsc | None = None
        self.window = asyncio.Semaphore(cfg.window)
        self.bucket = TokenBucket(cfg.tps)
        self.throttled_until = 0.0
        self.throttle_backoff = 0.1
        self.binds = 0
        self.last_error = ""
        self._ref = 0
        self._stopping = False

    @property
    def up(self) -> bool:
        return self.smsc is not None

    def status(self) -> dict[str, object]:
        return {"name": self.name, "host": f"{self.cfg.host}:{self.cfg.port}", "bound": self.up,
                "binds": self.binds, "window": self.cfg.window, "tps": self.cfg.tps, "last_error": self.last_error}

    async def run(self) -> None:
        """Run the bind on its own I/O thread until stop()."""
        self.io_loop = asyncio.new_event_loop()
        done = asyncio.get_running_loop().create_future()
        main = asyncio.get_running_loop()

        def io_thread() -> None:
            asyncio.set_event_loop(self.io_loop)
            try:
                self.io_loop.run_until_complete(self._io_main())
            finally:
                self.io_loop.close()
                main.call_soon_threadsafe(_finish, done)

        # The I/O thread must get the GIL often even while the main loop is busy: every deliver_sm the
        # core has acknowledged but this thread has not journaled yet is lost if the process dies.
        sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
        self._thread = threading.Thread(target=io_thread, name=f"smpp-{self.name}", daemon=True)
        self._thread.start()
        await done

    async def _io_main(self) -> None:
        """The bind loop, on the I/O thread: inbound PDUs are handed on (and journaled) the moment they arrive,
        however busy the main event loop is."""
        backoff = 0.2
        while not self._stopping:
            client = smpp34.Client(
                host=self.cfg.host, port=self.cfg.port, system_id=self.cfg.system_id, password=self.cfg.password,
                bind_type="TRX", system_type=self.cfg.system_type, window_size=self.cfg.window,
                connect_timeout_ms=5000, inbound_capacity=INBOUND_CAPACITY,
            )
            try:
                smsc = await client.connect()
            except Exception as exc:  # refused, bind rejected, timeout
                self.last_error = f"bind failed: {exc}"
                log.warning("smpp.bind_failed", connector=self.name, error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.2
            self.binds += 1
            self.smsc = smsc
            log.info("smpp.bound", connector=self.name, host=self.cfg.host, port=self.cfg.port)
            try:
                while not self._stopping:
                    ev = await smsc.next()
                    if isinstance(ev, smpp34.Disconnected):
                        break
                    try:
                        self.on_inbound(decode_inbound(self.name, ev))
                    except Exception:
                        log.exception("smpp.inbound_undecodable", connector=self.name)
            finally:
                self.smsc = None
                self.last_error = "connection lost"
                if not self._stopping:
                    log.warning("smpp.disconnected", connector=self.name)
                with contextlib.suppress(Exception):
                    await client.stop()

    async def _unbind(self) -> None:
        smsc = self.smsc
        if smsc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(smsc.unbind(), 2)

    async def stop(self) -> None:
        self._stopping = True
        loop = getattr(self, "io_loop", None)
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._unbind(), loop))

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
        await self.bucket.take()
        async with self.window:
            smsc = self.smsc
            if smsc is None:
                raise SubmitError("NOT_BOUND", f"connector {self.name} is not bound", True, link=True)
            async def on_io_thread() -> smpp34.SubmitSmResp:
                return await smsc.submit_sm(
                    dest, body, source_addr=self.source_addr + suffix, source_addr_ton=0, source_addr_npi=1,
                    dest_addr_ton=1, dest_addr_npi=1, esm_class=esm, data_coding=data_coding,
                    registered_delivery=1, priority_flag=max(0, 2 - priority),
                )

            try:
                resp = await asyncio.wait_for(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                    on_io_thread(), self.io_loop)), 30)
            except TimeoutError:
                raise SubmitError("TIMEOUT", "no submit_sm_resp within 30 s", True) from None
            except Exception as exc:  # the session broke under us
                raise SubmitError("DISCONNECTED", f"submit failed: {exc}", True, link=True) from None
        if resp.is_success and resp.message_id:
            self.throttle_backoff = 0.1
            return resp.message_id
        status = resp.command_status
        if status == THROTTLED:
            self.throttled_until = time.monotonic() + self.throttle_backoff
            self.throttle_backoff = min(self.throttle_backoff * 2, 5.0)
            raise SubmitError("THROTTLED", "ESME_RTHROTTLED from the SMSC", True, True)
        code = f"SMPP_{status:#010x}"
        return_text = f"submit_sm rejected with command_status {status:#010x}"
        raise SubmitError(code, return_text, status in TRANSIENT_STATUS)
