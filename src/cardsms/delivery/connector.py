"""The connector interface: one link to an SMSC or ISMG, whatever its protocol.

The dispatcher sees only this: `submit()` sends one message (all its parts) and returns the ids the
peer gave them, or raises `SubmitError` saying whether a retry may succeed; receipts and MO messages
come in through `on_inbound` (an `Inbound`), acknowledged only after it has taken them; `up`,
`throttled_until` and `draining` steer routing and stops; `status()` feeds the console and /metrics.

`LinkConnector` is what every protocol shares: the reconnect loop with backoff, the window of
unanswered submits, the TPS limit, the back-off after the peer says "too fast", and the split of a
long message into parts. delivery/smpp.py (SMPP 3.4, in clear or over TLS) and delivery/cmpp.py
(CMPP 2.0 and 3.0) add the bind and the packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from cardsms.delivery.pdu import PduError
from cardsms.delivery.session import Session
from cardsms.domain import sms
from cardsms.domain.connectors import ConnectorConfig

log = structlog.get_logger("cardsms.connector")

RESPONSE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Inbound:
    """What a peer sends us: a delivery receipt or an MO message."""

    connector: str
    is_receipt: bool
    source_addr: str
    destination_addr: str
    text: str
    receipted_id: str
    stat: str
    err: str
    at: datetime
    local_base: str = ""  # the connector's own source address: what follows it in destination_addr is the extension


class SubmitError(Exception):
    def __init__(self, code: str, text: str, transient: bool, throttled: bool = False, link: bool = False) -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.transient = transient
        self.throttled = throttled
        self.link = link  # the connection failed, not the message: retry soon, without counting an attempt
        self.sent_parts = 0  # parts of a long message the peer had accepted before this error


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


class LinkConnector:
    """One bind. `run()` keeps it bound; `submit()` sends one message. Subclasses give `_bind`, `_parts`,
    `_write_part` and the session handler's `on_request`."""

    protocol = ""

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
        self.draining = False  # stopping: submits already written are answered, no new one is written

    @property
    def up(self) -> bool:
        return self.session is not None

    def status(self) -> dict[str, object]:
        return {"name": self.name, "protocol": self.cfg.scheme, "host": f"{self.cfg.host}:{self.cfg.port}",
                "bound": self.up, "binds": self.binds, "window": self.cfg.window, "tps": self.cfg.tps,
                "last_error": self.last_error}

    async def run(self) -> None:
        """Keep the bind up until stop()."""
        backoff = 0.2
        while not self._stopping.is_set():
            try:
                session = await self._bind()
            except (OSError, TimeoutError, PduError) as exc:  # refused, TLS failed, bind rejected, timeout
                self.last_error = f"bind failed: {exc}"
                log.warning("connector.bind_failed", connector=self.name, protocol=self.protocol, error=str(exc),
                            retry_in=backoff)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(backoff):
                        await self._stopping.wait()
                backoff = min(backoff * 2, 30.0)
                continue
            backoff = 0.2
            self.binds += 1
            self.session = session
            self.last_error = ""
            log.info("connector.bound", connector=self.name, protocol=self.cfg.scheme, host=self.cfg.host,
                     port=self.cfg.port)
            try:
                await session.closed
            finally:
                self.session = None
                if not self._stopping.is_set():
                    self.last_error = "connection lost"
                    log.warning("connector.disconnected", connector=self.name)

    async def _connect(self, session_factory: Callable[[], Session]) -> Session:
        """Open the TCP (or TLS) connection with a new session on it."""
        loop = asyncio.get_running_loop()
        tls = self.cfg.tls
        extra: dict[str, Any] = {}
        if tls is not None:
            extra = {"ssl": tls.context(), "server_hostname": tls.server_name or self.cfg.host}
        async with asyncio.timeout(5):
            _, session = await loop.create_connection(session_factory, self.cfg.host, self.cfg.port, **extra)
        return session

    async def _bind(self) -> Session:
        raise NotImplementedError

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

    def _parts(self, text: str) -> tuple[int, list[bytes]]:
        """(the coding, the payload of each part without its UDH)."""
        raise NotImplementedError

    async def _write_part(self, dest: str, body: bytes, coding: int, part: tuple[int, int], udhi: bool,
                          suffix: str, priority: int) -> str:
        """Send one part; return the peer's id for it or raise SubmitError."""
        raise NotImplementedError

    async def submit(self, e164: str, text: str, source_suffix: str = "", priority: int = 1) -> list[str]:
        """Send all parts; returns the peer's message ids. Raises SubmitError."""
        coding, parts = self._parts(text)
        ref = self._next_ref()
        ids: list[str] = []
        total = len(parts)
        for seq, payload in enumerate(parts, 1):
            body = sms.udh(ref, total, seq) + payload if total > 1 else payload
            try:
                ids.append(await self._send_part(e164, body, coding, (total, seq), total > 1, source_suffix, priority))
            except SubmitError as exc:
                exc.sent_parts = len(ids)
                raise
        return ids

    async def _send_part(self, e164: str, body: bytes, coding: int, part: tuple[int, int], udhi: bool, suffix: str,
                         priority: int) -> str:
        wait = self.throttled_until - time.monotonic()
        if wait > 0:
            raise SubmitError("THROTTLED", f"{self.name} is throttling; back off {wait:.2f}s", True, True)
        await self.bucket.take()
        async with self.window:
            if self.draining:  # checked after every wait: nothing is written once the stop began
                raise SubmitError("STOPPING", "the server is stopping; queued again", True, True)
            if self.session is None:
                raise SubmitError("NOT_BOUND", f"connector {self.name} is not bound", True, link=True)
            try:
                return await self._write_part(e164, body, coding, part, udhi, suffix, priority)
            except TimeoutError:
                raise SubmitError("TIMEOUT", f"no answer to the submit within {RESPONSE_TIMEOUT:g} s", True) from None
            except ConnectionError as exc:  # the session broke under us
                raise SubmitError("DISCONNECTED", f"submit failed: {exc}", True, link=True) from None

    def _accepted(self) -> None:
        self.throttle_backoff = 0.1

    def _too_fast(self, what: str) -> SubmitError:
        """The peer said "too fast": hold every submit for a growing pause."""
        self.throttled_until = time.monotonic() + self.throttle_backoff
        self.throttle_backoff = min(self.throttle_backoff * 2, 5.0)
        return SubmitError("THROTTLED", what, True, True)
