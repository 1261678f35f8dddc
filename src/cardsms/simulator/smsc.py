"""The simulated SMSC (smpp34 server side), embedded in `cardsms serve` and standalone as
`cardsms simulator smsc`.

It answers binds, submit_sm and enquire_link; returns delivery receipts (receipt text plus the
receipted_message_id and message_state TLVs) after a latency; fails a deterministic share of
numbers (UNDELIV); answers a share of submit_sm with ESME_RTHROTTLED; and, when told to, drops
every connection after each N submit_sm (the ESMEs then talk to it through a TCP front that
can cut the sockets, which is what a real network failure looks like). Receipts for a session
that is gone are kept and sent when the ESME binds again. Complete messages (concatenated
parts joined) are handed to the simulated phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import secrets
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import smpp34
import structlog

from cardsms.domain import sms

log = structlog.get_logger("cardsms.simulator.smsc")

DeliveredHook = Callable[[str, str, str], Awaitable[None]]  # (destination, source, full text)


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


@dataclass
class _Pending:
    system_id: str
    items: list[dict[str, Any]] = field(default_factory=list)


class SimulatedSmsc:
    def __init__(self, options: SmscOptions, on_delivered: DeliveredHook | None = None) -> None:
        self.opt = options
        self.on_delivered = on_delivered
        self.port = options.port or free_port()
        self.inner_port = free_port() if options.disconnect_every else self.port
        self.server = smpp34.Server(host=options.host, port=self.inner_port, system_id=options.system_id,
                                    inbound_capacity=65536)
        self.sessions: dict[str, smpp34.Esme] = {}
        self.system_ids: dict[str, str] = {}
        self.pending: dict[str, list[dict[str, Any]]] = {}  # receipts waiting for a bind, by system_id
        self.parts: dict[tuple[str, int], dict[int, str]] = {}
        self.counter = itertools.count(1)
        self.id_prefix = secrets.token_hex(3).upper() + "-"  # message ids stay unique across restarts
        self.submits = 0
        self.accepted = 0
        self.throttled = 0
        self.drops = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._front: asyncio.AbstractServer | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._log: IO[str] | None = None
        self._loop_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.opt.log_path:
            self._log = self.opt.log_path.open("a", encoding="utf-8")
        await self.server.start()
        if self.opt.disconnect_every:
            self._front = await asyncio.start_server(self._proxy, self.opt.host, self.port)
        self._loop_task = asyncio.create_task(self._serve())
        log.info("simsmsc.started", port=self.port)

    async def stop(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loop_task
        for t in list(self._tasks):
            t.cancel()
        if self._front:
            self._front.close()
        self._cut()
        with contextlib.suppress(Exception):
            await self.server.stop()
        if self._log:
            self._log.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the TCP front used for connection drops ------------------------------------------------

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.opt.host, self.inner_port)
        except OSError:
            writer.close()
            return
        self._links.update((writer, up_writer))

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()
            self._links.discard(writer)
            self._links.discard(up_writer)

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))

    def _cut(self) -> None:
        """Drop every connection at once, like a network failure (no unbind)."""
        for w in list(self._links):
            transport = w.transport
            if transport is not None:
                transport.abort()
        self._links.clear()
        self.drops += 1

    # --- SMPP ---------------------------------------------------------------------------------

    async def _serve(self) -> None:
        while True:
            ev = await self.server.next()
            if isinstance(ev, smpp34.Esme):
                self.sessions[ev.session_id] = ev
                self.system_ids[ev.session_id] = ev.system_id
                waiting = self.pending.pop(ev.system_id, [])
                for item in waiting:
                    self._spawn(self._send_receipt(ev.system_id, item, 0))
            elif isinstance(ev, smpp34.SubmitSmEvent):
                self._on_submit(ev)
            elif isinstance(ev, smpp34.Unbound):
                self.sessions.pop(ev.session_id, None)

    def _on_submit(self, ev: smpp34.SubmitSmEvent) -> None:
        self.submits += 1
        if self.opt.throttle_share and share_hit(str(self.submits), "throttle", self.opt.throttle_share):
            self.throttled += 1
            ev.reject(smpp34.ESME_RTHROTTLED)  # type: ignore[attr-defined]
            return
        msg_id = f"{self.id_prefix}{next(self.counter):X}"
        payload = ev.short_message
        concat = None
        if ev.esm_class & 0x40:
            concat, payload = sms.split_udh(payload)
        text = sms.decode_payload(payload, ev.data_coding)
        ev.accept(message_id=msg_id)
        self.accepted += 1
        system_id = self.system_ids.get(ev.session_id, "")
        if self._log:
            self._log.write(json.dumps({"id": msg_id, "dest": ev.destination_addr, "src": ev.source_addr,
                                        "dc": ev.data_coding, "esm": ev.esm_class, "sm": ev.short_message.hex(),
                                        "system_id": system_id}) + "\n")
            self._log.flush()
        stat = "UNDELIV" if share_hit(ev.destination_addr, "fail", self.opt.fail_share) else "DELIVRD"
        now = datetime.now(UTC).strftime("%y%m%d%H%M")
        item = {"id": msg_id, "dest": ev.destination_addr, "src": ev.source_addr, "stat": stat,
                "text": sms.receipt_text(msg_id, now, now, stat, "000" if stat == "DELIVRD" else "001", text)}
        self._spawn(self._send_receipt(system_id, item, self.opt.latency_ms / 1000))
        full = self._assemble(ev.destination_addr, concat, text)
        if full is not None and stat == "DELIVRD" and self.on_delivered is not None:
            self._spawn(self._deliver_to_phone(ev.destination_addr, ev.source_addr, full))
        if self.opt.disconnect_every and self.submits % self.opt.disconnect_every == 0:
            asyncio.get_running_loop().call_later(0.01, self._cut)

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

    async def _deliver_to_phone(self, dest: str, src: str, text: str) -> None:
        await asyncio.sleep(self.opt.latency_ms / 1000)
        try:
            assert self.on_delivered is not None
            await self.on_delivered(dest, src, text)
        except Exception:
            log.exception("simsmsc.phone_failed", dest=dest)

    def _session_for(self, system_id: str) -> smpp34.Esme | None:
        for sid, esme in self.sessions.items():
            if self.system_ids.get(sid) == system_id and esme.can_receive:
                return esme
        return None

    async def _send_receipt(self, system_id: str, item: dict[str, Any], delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        esme = self._session_for(system_id)
        if esme is not None:
            try:
                resp = await asyncio.wait_for(esme.deliver_sm(
                    item["src"], item["text"].encode("ascii", "replace"), source_addr=item["dest"], esm_class=0x04,
                    source_addr_ton=1, source_addr_npi=1,
                    tlvs=[smpp34.Tlv(smpp34.TLV_RECEIPTED_MESSAGE_ID, item["id"].encode() + b"\x00"),  # type: ignore[attr-defined]
                          smpp34.Tlv(smpp34.TLV_MESSAGE_STATE, bytes([2 if item["stat"] == "DELIVRD" else 5]))],  # type: ignore[attr-defined]
                ), 5)  # a session that died under us never answers
                if resp.is_success:
                    return
            except smpp34.SmppError as exc:
                if not str(exc).startswith("ESME_"):  # not a NAK: the session is gone
                    self.sessions.pop(esme.session_id, None)
                    esme = None
                log.debug("simsmsc.receipt_deferred", error=str(exc))
            except Exception as exc:  # the session never answers: forget it
                log.debug("simsmsc.receipt_session_lost", error=str(exc))
                self.sessions.pop(esme.session_id, None)
                esme = None
        live = self._session_for(system_id)
        if live is not None and live is not esme:
            self._spawn(self._send_receipt(system_id, item, 0.05))  # another session of that ESME is up
            return
        if live is not None:
            await asyncio.sleep(0.2)  # the live session refused it (backpressure): try again shortly
            self._spawn(self._send_receipt(system_id, item, 0))
            return
        self.pending.setdefault(system_id, []).append(item)  # the SMSC keeps it until the ESME binds again

    async def send_mo(self, source: str, dest: str, text: str) -> bool:
        """An MO message (a reply) from a phone to an ESME address."""
        esme = next((e for e in self.sessions.values() if e.can_receive), None)
        if esme is None:
            return False
        body, dc = (text.encode("utf-16-be"), 8) if not sms.is_gsm7(text) else (sms.encode_gsm7(text), 0)
        with contextlib.suppress(Exception):
            resp = await esme.deliver_sm(dest, body, source_addr=source, data_coding=dc, source_addr_ton=1,
                                         source_addr_npi=1)
            return resp.is_success
        return False

    def stats(self) -> dict[str, int]:
        return {"submits": self.submits, "accepted": self.accepted, "throttled": self.throttled,
                "drops": self.drops, "pending_receipts": sum(len(v) for v in self.pending.values())}
