"""SMPP 3.4 connectors: one transceiver bind per connector, on the event loop (delivery/session.py),
in clear text (smpp://) or over TLS (smpps://).

delivery/connector.py gives what every protocol shares (reconnect with backoff, window, TPS limit,
long messages in parts); this module adds the bind, GSM-7/UCS-2 encoding, submit_sm with its answers
(ESME_RTHROTTLED holds the connector back), and the inbound side: delivery receipts and MO messages in
deliver_sm, each acknowledged only after `on_inbound` has taken it (the dispatcher journals it first).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from cardsms.delivery import pdu
from cardsms.delivery.connector import RESPONSE_TIMEOUT, Inbound, LinkConnector, SubmitError
from cardsms.delivery.pdu import PduError, ShortMessage
from cardsms.delivery.session import Session
from cardsms.domain import sms

log = structlog.get_logger("cardsms.smpp")

# command_status values after which a retry may succeed (queue full, system error, throttling, application errors)
TRANSIENT_STATUS = {pdu.ESME_RMSGQFUL, pdu.ESME_RSYSERR, pdu.ESME_RTHROTTLED, pdu.ESME_RX_T_APPN, pdu.ESME_RX_P_APPN}
ESM_UDHI = 0x40
ESM_RECEIPT = 0x04


def decode_inbound(connector: str, sm: ShortMessage, local_base: str = "") -> Inbound:
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
                       parsed.err if parsed else "", now, local_base)
    return Inbound(connector, False, sm.source_addr, sm.destination_addr, text, "", "", "", now, local_base)


class SmppConnector(LinkConnector):
    """One SMPP transceiver bind."""

    protocol = "smpp"

    async def _bind(self) -> Session:
        session = await self._connect(lambda: Session(self, timeout=RESPONSE_TIMEOUT))
        bind = pdu.Bind(self.cfg.system_id, self.cfg.password, self.cfg.system_type)
        try:
            async with asyncio.timeout(5):
                command_id, status, _ = await session.request(pdu.BIND_TRANSCEIVER, bind.encode())
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
            item = decode_inbound(self.name, sm, self.source_addr)
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

    # --- submitting -----------------------------------------------------------------------------

    def _parts(self, text: str) -> tuple[int, list[bytes]]:
        encoded = sms.encode(text)
        return encoded.data_coding, list(encoded.parts)

    async def _write_part(self, e164: str, body: bytes, coding: int, part: tuple[int, int], udhi: bool,
                          suffix: str, priority: int) -> str:
        try:
            request = ShortMessage(
                self.source_addr + suffix, e164.lstrip("+"), body, source_addr_ton=0, source_addr_npi=1,
                dest_addr_ton=1, dest_addr_npi=1, esm_class=ESM_UDHI if udhi else 0, data_coding=coding,
                registered_delivery=1, priority_flag=max(0, 2 - priority)).encode()
        except PduError as exc:
            raise SubmitError("INVALID_PDU", f"submit_sm cannot be built: {exc}", False) from None
        assert self.session is not None
        command_id, status, answer = await self.session.request(pdu.SUBMIT_SM, request)
        if status == pdu.ESME_ROK and command_id == pdu.SUBMIT_SM | pdu.RESP:
            message_id = answer.split(b"\x00", 1)[0].decode("latin-1")
            if message_id:
                self._accepted()
                return message_id
        if status == pdu.ESME_RTHROTTLED:
            raise self._too_fast("ESME_RTHROTTLED from the SMSC")
        code = f"SMPP_{status:#010x}"
        return_text = f"submit_sm rejected with command_status {status:#010x}"
        if status == pdu.ESME_ROK:
            return_text = "submit_sm_resp carried no message_id"
        raise SubmitError(code, return_text, status in TRANSIENT_STATUS)
