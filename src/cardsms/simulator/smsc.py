"""The simulated SMSC, embedded in `cardsms serve` and standalone as `cardsms simulator smsc`.

It speaks SMPP 3.4 through delivery/session.py (the server side of the same session the gateway
uses), in clear text or over TLS: it answers binds, submit_sm and enquire_link; returns delivery
receipts (receipt text plus the receipted_message_id and message_state TLVs) in deliver_sm; answers
submits over the limit or in the throttled share with ESME_RTHROTTLED. Receipts, failures,
disconnects and the phones are the message centre's (simulator/center.py), shared with the ISMG.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from cardsms.delivery import pdu
from cardsms.delivery.pdu import PduError, ShortMessage
from cardsms.delivery.session import Response, Session
from cardsms.domain import sms
from cardsms.simulator.center import (
    Bound,
    DeliveredHook,
    Receipt,
    SimulatedCenter,
    SmscOptions,
    free_port,
    share_hit,
)

__all__ = ["SimulatedSmsc", "SmscOptions", "free_port", "share_hit"]


class SimulatedSmsc(SimulatedCenter):
    kind = "smsc"

    def __init__(self, options: SmscOptions, on_delivered: DeliveredHook | None = None) -> None:
        super().__init__(options, on_delivered)
        self.id_prefix = secrets.token_hex(3).upper() + "-"  # message ids stay unique across restarts

    def _new_session(self) -> Session:
        return Session(self, timeout=5.0)

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
        session.respond(command_id | pdu.RESP, sequence, pdu.ESME_ROK, pdu.cstr(self.opt.system_id, 16, "system_id"))
        self._bound(session, Bound(bind.system_id, kind in ("RX", "TRX"), kind in ("TX", "TRX")))

    def _on_submit(self, session: Session, sequence: int, bound: Bound, sm: ShortMessage) -> None:
        if self._too_fast(bound):
            session.respond(pdu.SUBMIT_SM | pdu.RESP, sequence, pdu.ESME_RTHROTTLED)
            return
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
        msg_id = f"{self.id_prefix}{next(self.counter):X}"
        session.respond(pdu.SUBMIT_SM | pdu.RESP, sequence, pdu.ESME_ROK, msg_id.encode() + b"\x00")
        self._accepted(bound, msg_id, sm.destination_addr, sm.source_addr, text, concat,
                       {"dc": sm.data_coding, "esm": sm.esm_class, "sm": sm.short_message.hex(),
                        "system_id": bound.client})

    # --- what goes back -------------------------------------------------------------------------

    def _deliver_request(self, bound: Bound, receipt: Receipt) -> tuple[int, bytes]:
        stamp = datetime.fromtimestamp(receipt.submitted, UTC).strftime("%y%m%d%H%M")
        delivered = receipt.stat == "DELIVRD"
        text = sms.receipt_text(receipt.msg_id, stamp, stamp, receipt.stat, "000" if delivered else "001",
                                receipt.text)
        return pdu.DELIVER_SM, ShortMessage(
            receipt.dest, receipt.src, text.encode("ascii", "replace")[:254], source_addr_ton=1, source_addr_npi=1,
            esm_class=0x04, tlvs=[(pdu.TLV_RECEIPTED_MESSAGE_ID, receipt.msg_id.encode() + b"\x00"),
                                  (pdu.TLV_MESSAGE_STATE, bytes([2 if delivered else 5]))]).encode()

    def _answer_ok(self, response: Response) -> bool:
        return response[1] == pdu.ESME_ROK

    def _mo_request(self, bound: Bound, source: str, dest: str, text: str) -> tuple[int, bytes]:
        body, dc = (text.encode("utf-16-be"), 8) if not sms.is_gsm7(text) else (sms.encode_gsm7(text), 0)
        return pdu.DELIVER_SM, ShortMessage(source, dest, body, data_coding=dc, source_addr_ton=1,
                                            source_addr_npi=1).encode()
