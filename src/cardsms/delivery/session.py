"""One SMPP 3.4 or CMPP connection on the event loop, for either side: the gateway's bind to an SMSC or
ISMG, or a bind to the simulated one. What differs between the protocols (the header, the keep-alive
and close commands, how a bad packet is answered) is the session's `Wire`.

The session frames PDUs, numbers requests and matches their responses, answers enquire_link and
unbind itself, probes an idle link with enquire_link, times out requests the peer never answers,
and writes everything produced in one loop turn with one `write`. Every other request goes to the
handler, which answers it with `respond` when it is ready: the gateway acknowledges a deliver_sm
only after the receipt is journaled, so a receipt is never acknowledged and then lost.

A PDU that breaks the rules is answered with the command_status its `PduError` names
(generic_nack for an unknown command or a bad length) and logged with the field and the rule; a
command_length outside 16..64 KiB cannot be framed, so the connection is closed after the nack.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Protocol, cast

import structlog

from cardsms.delivery import pdu
from cardsms.delivery.pdu import PduError

log = structlog.get_logger("cardsms.smpp")

Response = tuple[int, int, bytes]  # (command_id, command_status, body); CMPP's status is 0, its result in the body


class Wire:
    """SMPP 3.4 framing: a 16-octet header with command_status; enquire_link, unbind, generic_nack."""

    name = "smpp"
    header_len = pdu.HEADER_LEN
    max_len = pdu.MAX_PDU
    enquire = pdu.ENQUIRE_LINK
    close_command = pdu.UNBIND
    silent: tuple[int, ...] = (pdu.ALERT_NOTIFICATION,)  # requests that have no response
    bad_length_status = pdu.ESME_RINVCMDLEN
    system_error_status = pdu.ESME_RSYSERR

    def unpack(self, buf: bytearray, pos: int) -> tuple[int, int, int, int]:
        """(length, command_id, status, sequence) of the header at pos."""
        return pdu.HEADER.unpack_from(buf, pos)

    def pack(self, command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
        return pdu.pack(command_id, status, sequence, body)

    def keepalive_answer(self) -> bytes:
        return b""

    def reject(self, command_id: int, sequence: int, exc: PduError) -> bytes:
        nack = exc.status in (pdu.ESME_RINVCMDID, pdu.ESME_RINVCMDLEN)
        return pdu.pack(pdu.GENERIC_NACK if nack else command_id | pdu.RESP, exc.status, sequence)

    def status_name(self, status: int) -> str:
        return pdu.status_name(status)


SMPP = Wire()


class Handler(Protocol):
    def on_request(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        """Answer (now or later) with session.respond; raise PduError to answer with its status."""

    def on_closed(self, session: Session) -> None: ...


def _retrieve(fut: asyncio.Future[Response]) -> None:
    if not fut.cancelled():
        fut.exception()  # nobody may await a probe; retrieving keeps asyncio from logging it


class Session(asyncio.Protocol):
    def __init__(self, handler: Handler, *, timeout: float = 30.0, enquire_every: float = 30.0,
                 wire: Wire = SMPP) -> None:
        self.handler = handler
        self.wire = wire
        self.timeout = timeout
        self.enquire_every = enquire_every
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.pending: dict[int, tuple[asyncio.Future[Response], float]] = {}
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._seq = itertools.count(1)
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._last_rx = time.monotonic()
        self._probe: asyncio.Future[Response] | None = None
        self._tick: asyncio.TimerHandle | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # a stream transport (uvloop's does not subclass asyncio.Transport, so no isinstance check)
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else ""
        self._tick = self.loop.call_later(1.0, self._on_tick)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._tick is not None:
            self._tick.cancel()
        pending, self.pending = self.pending, {}
        for fut, _ in pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(f"the {self.wire.name.upper()} connection was lost"))
        if not self.closed.done():
            self.closed.set_result(None)
        self.handler.on_closed(self)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos, size = 0, len(buf)
        wire = self.wire
        header_len = wire.header_len
        try:
            while size - pos >= header_len:
                length, command_id, status, sequence = wire.unpack(buf, pos)
                if not header_len <= length <= wire.max_len:
                    self._reject(command_id, sequence, PduError(
                        wire.bad_length_status, "length", f"{length} is outside {header_len}..{wire.max_len}"))
                    self.close()
                    pos = size
                    return
                if size - pos < length:
                    break
                body = bytes(buf[pos + header_len:pos + length])
                pos += length
                self._dispatch(command_id, status, sequence, body)
        finally:
            del buf[:pos]
        self._last_rx = time.monotonic()

    # --- requests and responses -----------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def request(self, command_id: int, body: bytes = b"") -> asyncio.Future[Response]:
        """Send a request; the future gets the response, TimeoutError, or ConnectionError."""
        fut: asyncio.Future[Response] = self.loop.create_future()
        if not self.is_open:
            fut.set_exception(ConnectionError(f"the {self.wire.name.upper()} connection is closed"))
            return fut
        sequence = next(self._seq)
        if sequence > 0x7FFFFFFF:
            self._seq = itertools.count(2)
            sequence = 1
        self.pending[sequence] = (fut, time.monotonic() + self.timeout)
        self._send(self.wire.pack(command_id, 0, sequence, body))
        return fut

    def respond(self, command_id: int, sequence: int, status: int = 0, body: bytes = b"") -> None:
        self._send(self.wire.pack(command_id, status, sequence, body))

    def _dispatch(self, command_id: int, status: int, sequence: int, body: bytes) -> None:
        if command_id & pdu.RESP:
            entry = self.pending.pop(sequence, None)
            if entry is not None and not entry[0].done():
                entry[0].set_result((command_id, status, body))
            return
        wire = self.wire
        if command_id == wire.enquire:
            self.respond(command_id | pdu.RESP, sequence, body=wire.keepalive_answer())
        elif command_id == wire.close_command:
            self.respond(command_id | pdu.RESP, sequence)
            self.close()
        elif command_id in wire.silent:
            pass  # informational; SMPP 3.4 gives alert_notification no response
        else:
            try:
                self.handler.on_request(self, command_id, sequence, body)
            except PduError as exc:
                self._reject(command_id, sequence, exc)
            except Exception as exc:  # nothing a peer sends may end the session unanswered
                log.exception(f"{wire.name}.request_failed", peer=self.peer, command_id=f"{command_id:#010x}")
                self._reject(command_id, sequence, PduError(wire.system_error_status, "PDU",
                                                            f"could not be handled: {exc!r}"))

    def _reject(self, command_id: int, sequence: int, exc: PduError) -> None:
        log.warning(f"{self.wire.name}.bad_pdu", peer=self.peer, command_id=f"{command_id:#010x}", field=exc.field,
                    rule=str(exc), status=self.wire.status_name(exc.status))
        self._send(self.wire.reject(command_id, sequence, exc))

    # --- writing, closing, timers ---------------------------------------------------------------

    def _send(self, data: bytes) -> None:
        self._out.append(data)
        if len(self._out) == 1:
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.is_open:
            assert self.transport is not None
            self.transport.write(b"".join(out))

    def close(self) -> None:
        """Close after what is queued has been written."""
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection at once, like a network failure."""
        self._out.clear()
        if self.transport is not None:
            self.transport.abort()

    async def unbind(self, wait: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(wait):
                await self.request(self.wire.close_command)
        self.close()

    def _on_tick(self) -> None:
        now = time.monotonic()
        late = [seq for seq, (_, deadline) in self.pending.items() if deadline <= now]
        for seq in late:
            fut, _ = self.pending.pop(seq)
            if not fut.done():
                fut.set_exception(TimeoutError(f"no response to sequence {seq} within {self.timeout:g} s"))
        if self._probe is not None and self._probe.done():
            if self._probe.exception() is not None:
                log.warning(f"{self.wire.name}.link_dead", peer=self.peer, reason="keep-alive unanswered")
                self.abort()
                return
            self._probe = None
        if self._probe is None and self.enquire_every and now - self._last_rx >= self.enquire_every:
            self._probe = self.request(self.wire.enquire)
            self._probe.add_done_callback(_retrieve)
        self._tick = self.loop.call_later(1.0, self._on_tick)
