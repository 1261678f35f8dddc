"""CMPP 2.0 and 3.0 connectors: the SP side of a link to an ISMG (China Mobile's gateway, or an
aggregator that speaks its protocol), on the same session as SMPP (delivery/session.py) with CMPP's wire.

The bind is CMPP_CONNECT with the MD5 authenticator and a timestamp; the ISMG's authenticator in the
answer is checked too (a wrong shared secret on either side fails the bind, naming it; sixteen zero
octets, which some gateways send, are accepted as "not given"). A message goes
as one CMPP_SUBMIT per part (UCS-2, GBK or ASCII; long messages with TP_udhi and the concatenation UDH,
Pk_total and Pk_number), registered delivery on. The SUBMIT_RESP result is mapped to our message states
(`RESULT_OUTCOMES`, documented in docs/sending.md). Status reports and MO messages arrive in
CMPP_DELIVER and are acknowledged only after `on_inbound` has taken them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import structlog

from cardsms.delivery import cmpp_pdu as cp
from cardsms.delivery.connector import RESPONSE_TIMEOUT, Inbound, LinkConnector, SubmitError
from cardsms.delivery.pdu import PduError
from cardsms.delivery.session import Session, Wire

log = structlog.get_logger("cardsms.cmpp")
CHINA = ZoneInfo("Asia/Shanghai")

# SUBMIT_RESP result -> (transient: a retry may succeed, what it means). 8 (flow control) holds the connector
# back like SMPP's ESME_RTHROTTLED; results above 13 are "other errors" and retried up to the attempt limit.
RESULT_OUTCOMES: dict[int, bool] = {
    cp.BAD_STRUCTURE: False, cp.BAD_COMMAND: False, cp.DUPLICATE_SEQUENCE: True, cp.BAD_LENGTH: False,
    cp.BAD_FEE_CODE: False, cp.TOO_LONG: False, cp.BAD_SERVICE_ID: False, cp.NOT_OUR_FEE_NUMBER: False,
    cp.BAD_SRC_ID: False, cp.BAD_MSG_SRC: False, cp.BAD_FEE_TERMINAL: False, cp.BAD_DEST_TERMINAL: False,
}
NO_AUTHENTICATOR = b"\x00" * 16  # some ISMGs (and the simulator without --secret) do not prove they know the secret
# status report Stat values our receipts know; any other (MA:0001, MK:0005, ...: the carriers' own codes) is a
# failure whose code is kept as the error
KNOWN_STATS = {"DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "REJECTD", "UNKNOWN", "ACCEPTD"}


class CmppWire(Wire):
    """CMPP framing: a 12-octet header without status; ACTIVE_TEST and TERMINATE; a bad packet is answered
    with the response of its command carrying the result that names the rule (CMPP has no generic nack)."""

    name = "cmpp"
    header_len = cp.HEADER_LEN
    max_len = cp.MAX_PACKET
    enquire = cp.ACTIVE_TEST
    close_command = cp.TERMINATE
    silent = ()
    bad_length_status = cp.BAD_LENGTH
    system_error_status = cp.OTHER

    def __init__(self, version: int = cp.V30) -> None:
        self.version = version  # the ISMG side learns it from CMPP_CONNECT

    def unpack(self, buf: bytearray, pos: int) -> tuple[int, int, int, int]:
        length, command_id, sequence = cp.HEADER.unpack_from(buf, pos)
        return length, command_id, 0, sequence

    def pack(self, command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
        return cp.pack(command_id, sequence, body)

    def keepalive_answer(self) -> bytes:
        return b"\x00"  # ACTIVE_TEST_RESP's Reserved octet

    def reject(self, command_id: int, sequence: int, exc: PduError) -> bytes:
        base = command_id & ~cp.RESP
        if base == cp.CONNECT:
            body = cp.ConnectResp(min(exc.status, cp.CONNECT_OTHER) or cp.CONNECT_OTHER, b"", self.version).encode()
        elif base in (cp.SUBMIT, cp.DELIVER):
            body = cp.msg_id_and_result(0, exc.status, self.version)
        elif base == cp.ACTIVE_TEST:
            body = b"\x00"
        elif base == cp.TERMINATE:
            body = b""
        else:
            body = cp.result_bytes(self.version, exc.status)
        return cp.pack(base | cp.RESP, sequence, body)

    def status_name(self, status: int) -> str:
        return cp.result_name(status)


def terminal_id(e164: str) -> str:
    """Mainland numbers as the ISMG expects them: 11 digits; others in international form without '+'."""
    return e164[3:] if e164.startswith("+86") else e164.lstrip("+")


def number_from_terminal(raw: str) -> str:
    """A Src_terminal_Id back in the form our SMPP side reports numbers (country code, no '+')."""
    if len(raw) == 11 and raw.startswith("1"):
        return "86" + raw
    return raw.lstrip("+")


class CmppConnector(LinkConnector):
    """One CMPP connection (CMPP has no bind types: a connection both submits and receives)."""

    protocol = "cmpp"

    def _src_id(self) -> str:
        return self.cfg.src_id or self.source_addr

    async def _bind(self) -> Session:
        cfg = self.cfg
        wire = CmppWire(cfg.version)
        session = await self._connect(lambda: Session(self, timeout=RESPONSE_TIMEOUT, wire=wire))
        connect = cp.Connect.create(cfg.system_id, cfg.password, cfg.version, datetime.now(CHINA))
        try:
            async with asyncio.timeout(5):
                command_id, _, body = await session.request(cp.CONNECT, connect.encode())
            answer = cp.ConnectResp.decode(body, cfg.version)
        except BaseException:
            session.abort()
            raise
        if command_id != cp.CONNECT | cp.RESP or answer.status != cp.OK:
            session.abort()
            raise PduError(answer.status, "CMPP_CONNECT",
                           f"refused by the ISMG with status {answer.status}: "
                           f"{cp.CONNECT_STATUS.get(answer.status, cp.CONNECT_STATUS[cp.CONNECT_OTHER])}")
        expected = cp.authenticator_ismg(cfg.version, answer.status, connect.authenticator, cfg.password)
        if answer.authenticator not in (expected, NO_AUTHENTICATOR):
            session.abort()
            raise PduError(cp.CONNECT_BAD_AUTH, "AuthenticatorISMG",
                           "does not match our shared secret: this is not the ISMG we share it with")
        if answer.version < cp.V30 <= cfg.version:
            log.warning("cmpp.version_lower", connector=self.name, asked=hex(cfg.version), got=hex(answer.version))
        return session

    # --- the session's handler: what the ISMG sends us -----------------------------------------

    def on_request(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        version = self.cfg.version
        if command_id != cp.DELIVER:
            raise PduError(cp.BAD_COMMAND, "Command_Id", f"{command_id:#010x} is not a request an SP takes")
        deliver = cp.Deliver.decode(body, version)
        try:
            item = self._inbound(deliver)
        except PduError:
            raise
        except Exception as exc:  # undecodable: refuse it for good rather than have it sent forever
            log.warning("cmpp.inbound_undecodable", connector=self.name, error=repr(exc))
            session.respond(cp.DELIVER | cp.RESP, sequence, body=cp.msg_id_and_result(
                deliver.msg_id, cp.BAD_STRUCTURE, version))
            return
        try:
            self.on_inbound(item)
        except Exception:  # not journaled (disk full?): the ISMG keeps it and sends it again
            log.exception("cmpp.inbound_not_taken", connector=self.name)
            session.respond(cp.DELIVER | cp.RESP, sequence, body=cp.msg_id_and_result(deliver.msg_id, cp.OTHER,
                                                                                      version))
            return
        session.respond(cp.DELIVER | cp.RESP, sequence, body=cp.msg_id_and_result(deliver.msg_id, cp.OK, version))

    def _inbound(self, d: cp.Deliver) -> Inbound:
        now = datetime.now(UTC)
        if d.registered_delivery == 1:
            report = cp.Report.decode(d.msg_content, d.version)
            stat, err = report.stat, ""
            if stat not in KNOWN_STATS:  # a carrier's code: a failure, the code kept as the error
                stat, err = "UNDELIV", report.stat
            return Inbound(self.name, True, number_from_terminal(report.dest_terminal_id), d.dest_id,
                           f"Stat:{report.stat}", str(report.msg_id), stat, err, now, self._src_id())
        content = d.msg_content
        if d.tp_udhi and content:
            content = content[1 + content[0]:]
        text = cp.decode_text(content, d.msg_fmt)
        return Inbound(self.name, False, number_from_terminal(d.src_terminal_id), d.dest_id, text, "", "", "", now,
                       self._src_id())

    # --- submitting -----------------------------------------------------------------------------

    def _parts(self, text: str) -> tuple[int, list[bytes]]:
        return cp.encode_text(text, self.cfg.encoding)

    async def _write_part(self, e164: str, body: bytes, coding: int, part: tuple[int, int], udhi: bool,
                          suffix: str, priority: int) -> str:
        cfg = self.cfg
        try:
            request = cp.Submit(cfg.version, cfg.system_id, self._src_id() + suffix, (terminal_id(e164),), body,
                                coding, pk_total=part[0], pk_number=part[1], registered_delivery=1,
                                msg_level=max(0, 2 - priority), service_id=cfg.service_id, tp_udhi=int(udhi),
                                fee_user_type=2).encode()
        except PduError as exc:
            raise SubmitError("INVALID_PDU", f"CMPP_SUBMIT cannot be built: {exc}", False) from None
        assert self.session is not None
        command_id, _, answer = await self.session.request(cp.SUBMIT, request)
        try:
            msg_id, result = cp.decode_msg_id_and_result(answer, cfg.version)
        except PduError as exc:
            raise SubmitError("CMPP_BAD_ANSWER", f"CMPP_SUBMIT_RESP cannot be read: {exc}", True) from None
        if command_id == cp.SUBMIT | cp.RESP and result == cp.OK:
            self._accepted()
            return str(msg_id)
        if result == cp.FLOW_CONTROL:
            raise self._too_fast("CMPP result 8 (流量控制错: too fast) from the ISMG")
        raise SubmitError(f"CMPP_{result}", f"CMPP_SUBMIT refused with result {cp.result_name(result)}",
                          RESULT_OUTCOMES.get(result, True))
