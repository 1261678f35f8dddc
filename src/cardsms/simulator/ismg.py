"""The simulated ISMG (a China Mobile gateway speaking CMPP 2.0 and 3.0), standalone as
`cardsms simulator ismg` and embedded in `cardsms serve` when CARDSMS_SIM_PROTOCOL is cmpp2 or cmpp3.

It accepts CMPP_CONNECT from any SP id and secret, or only the `sp_id` and `secret` it was given (the
MD5 authenticator is checked, and its own AuthenticatorISMG is computed with that secret; with no
secret it cannot compute one and sends zeros). The version is the client's: 2.0 (0x20, and 0x21 as some
clients send) or 3.0; higher is refused with status 4. SUBMIT is checked field by field (a bad one is
answered with the result that names the rule: 1 structure, 4 length, 11 Msg_src, 13 Dest_terminal_Id),
answered with a Msg_Id in the ISMG's 64-bit layout, and followed by a status report in CMPP_DELIVER
for every destination when Registered_Delivery asks for one. Too fast (the bind TPS or the throttled
share) is result 8. Replies from the simulated phones arrive as MO CMPP_DELIVER. Receipts, failures
and disconnects are the message centre's (simulator/center.py), shared with the SMSC.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import cast
from zoneinfo import ZoneInfo

from cardsms.delivery import cmpp_pdu as cp
from cardsms.delivery.cmpp import CmppWire, number_from_terminal, terminal_id
from cardsms.delivery.pdu import PduError
from cardsms.delivery.session import Response, Session
from cardsms.simulator.center import Bound, DeliveredHook, Receipt, SimulatedCenter, SmscOptions

CHINA = ZoneInfo("Asia/Shanghai")
SUPPORTED = {0x20: cp.V20, 0x21: cp.V20, 0x30: cp.V30}


class SimulatedIsmg(SimulatedCenter):
    kind = "ismg"

    def __init__(self, options: SmscOptions, on_delivered: DeliveredHook | None = None) -> None:
        super().__init__(options, on_delivered)
        self.gateway = secrets.randbits(22)  # the Msg_Id's gateway code: ids stay unique across restarts

    def _new_session(self) -> Session:
        return Session(self, timeout=5.0, wire=CmppWire(cp.V30))  # a wire per session: it learns the version

    # --- requests from SPs --------------------------------------------------------------------

    def on_request(self, session: Session, command_id: int, sequence: int, body: bytes) -> None:
        if command_id == cp.CONNECT:
            self._on_connect(session, sequence, body)
        elif command_id == cp.SUBMIT:
            bound = self.bound.get(session)
            if bound is None:
                raise PduError(cp.BAD_STRUCTURE, "CMPP_SUBMIT", "the connection is not authenticated (CONNECT first)")
            self._on_submit(session, sequence, bound, cp.Submit.decode(body, bound.version))
        else:
            raise PduError(cp.BAD_COMMAND, "Command_Id", f"{command_id:#010x} is not a request this ISMG takes")

    def _on_connect(self, session: Session, sequence: int, body: bytes) -> None:
        wire = cast(CmppWire, session.wire)
        if len(body) >= 23:  # answer in the client's version whatever else is wrong
            wire.version = cp.V30 if body[22] >= cp.V30 else cp.V20
        connect = cp.Connect.decode(body)
        status = cp.OK
        if session in self.bound:
            status = cp.CONNECT_OTHER
        elif connect.version not in SUPPORTED:
            status = cp.CONNECT_VERSION_TOO_HIGH if connect.version > cp.V30 else cp.CONNECT_OTHER
        elif not connect.sp_id or (self.opt.sp_id and connect.sp_id != self.opt.sp_id):
            status = cp.CONNECT_BAD_SOURCE
        elif self.opt.secret and connect.authenticator != cp.authenticator_source(
                connect.sp_id, self.opt.secret, connect.timestamp):
            status = cp.CONNECT_BAD_AUTH
        version = SUPPORTED.get(connect.version, wire.version)
        wire.version = version
        auth = cp.authenticator_ismg(version, status, connect.authenticator, self.opt.secret) if self.opt.secret \
            else b""
        session.respond(cp.CONNECT | cp.RESP, sequence, body=cp.ConnectResp(status, auth, version).encode())
        if status == cp.OK:
            self._bound(session, Bound(connect.sp_id, True, True, version))

    def _on_submit(self, session: Session, sequence: int, bound: Bound, submit: cp.Submit) -> None:
        def answer(msg_id: int, result: int) -> None:
            session.respond(cp.SUBMIT | cp.RESP, sequence, body=cp.msg_id_and_result(msg_id, result, bound.version))

        if self._too_fast(bound):
            answer(0, cp.FLOW_CONTROL)
            return
        if submit.msg_src != bound.client:
            raise PduError(cp.BAD_MSG_SRC, "Msg_src", f"{submit.msg_src!r} is not the SP id of this connection")
        if not all(d.isdigit() for d in submit.dest_terminal_ids):
            raise PduError(cp.BAD_DEST_TERMINAL, "Dest_terminal_Id", "numbers are digits only")
        if not 1 <= submit.pk_number <= submit.pk_total:
            raise PduError(cp.BAD_STRUCTURE, "Pk_number", f"must be 1..Pk_total ({submit.pk_total})")
        content, concat = submit.msg_content, None
        if submit.tp_udhi:
            if not content or len(content) < 1 + content[0]:
                raise PduError(cp.BAD_STRUCTURE, "Msg_Content", "TP_udhi announces a UDH, but the UDH is cut short")
            header, content = content[1:1 + content[0]], content[1 + content[0]:]
            if len(header) >= 5 and header[0] == 0x00 and header[1] == 3:
                concat = (header[2], header[3], header[4])
        if submit.msg_fmt not in (cp.FMT_ASCII, cp.FMT_BINARY, cp.FMT_UCS2, cp.FMT_GBK):
            raise PduError(cp.BAD_STRUCTURE, "Msg_Fmt", f"{submit.msg_fmt} is not 0, 4, 8 or 15")
        if submit.msg_fmt == cp.FMT_UCS2 and len(content) % 2:
            raise PduError(cp.BAD_LENGTH, "Msg_Content", "UCS-2 text has an even number of octets")
        text = cp.decode_text(content, submit.msg_fmt)
        msg_id = cp.make_msg_id(datetime.now(CHINA), self.gateway, next(self.counter))
        answer(msg_id, cp.OK)
        for dest in submit.dest_terminal_ids:
            self._accepted(bound, str(msg_id), number_from_terminal(dest), submit.src_id, text, concat,
                           {"fmt": submit.msg_fmt, "udhi": submit.tp_udhi, "content": submit.msg_content.hex(),
                            "terminal": dest, "version": hex(bound.version), "service_id": submit.service_id},
                           receipt=submit.registered_delivery == 1)

    # --- what goes back -------------------------------------------------------------------------

    def _deliver_request(self, bound: Bound, receipt: Receipt) -> tuple[int, bytes]:
        stamp = datetime.fromtimestamp(receipt.submitted, CHINA).strftime("%y%m%d%H%M")
        report = cp.Report(int(receipt.msg_id), receipt.stat, stamp, stamp, terminal_id("+" + receipt.dest),
                           next(self.counter) & 0xFFFFFFFF)
        return cp.DELIVER, cp.Deliver(bound.version, self._deliver_id(), receipt.src,
                                      terminal_id("+" + receipt.dest), report.encode(bound.version),
                                      registered_delivery=1).encode()

    def _deliver_id(self) -> int:
        return cp.make_msg_id(datetime.now(CHINA), self.gateway, next(self.counter))

    def _answer_ok(self, response: Response) -> bool:
        try:
            return cp.decode_msg_id_and_result(response[2], cp.V30)[1] == cp.OK
        except PduError:
            return False

    def _mo_request(self, bound: Bound, source: str, dest: str, text: str) -> tuple[int, bytes]:
        fmt, parts = cp.encode_text(text)
        return cp.DELIVER, cp.Deliver(bound.version, self._deliver_id(), dest, terminal_id("+" + source), parts[0],
                                      msg_fmt=fmt).encode()
