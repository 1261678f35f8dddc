"""The SMPP 3.4 codec (delivery/pdu.py) against smpp34's, an implementation we did not write, and its
answers to PDUs that break the rules."""

from __future__ import annotations

import struct

import pytest
import smpp34
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsms.delivery import pdu
from cardsms.delivery.pdu import Bind, PduError, ShortMessage

addresses = st.text(alphabet="0123456789", min_size=1, max_size=20)
octet = st.integers(min_value=0, max_value=255)


@settings(max_examples=200, deadline=None)
@given(src=addresses, dst=addresses, body=st.binary(max_size=254), esm=octet, dc=octet, reg=octet,
       prio=st.integers(0, 3), receipted=st.text(alphabet="0123456789ABCDEF-", max_size=30))
def test_submit_sm_bytes_equal_smpp34s_and_decode_back(src: str, dst: str, body: bytes, esm: int, dc: int,
                                                        reg: int, prio: int, receipted: str) -> None:
    ours = ShortMessage(src, dst, body, source_addr_ton=1, source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1,
                        esm_class=esm, data_coding=dc, registered_delivery=reg, priority_flag=prio,
                        tlvs=[(pdu.TLV_RECEIPTED_MESSAGE_ID, receipted.encode() + b"\x00")])
    wire = pdu.pack(pdu.SUBMIT_SM, 0, 7, ours.encode())
    theirs = smpp34.SubmitSm(src, dst, body, source_addr_ton=1, source_addr_npi=1, dest_addr_ton=1, dest_addr_npi=1,
                             esm_class=esm, data_coding=dc, registered_delivery=reg, priority_flag=prio,
                             tlvs=[smpp34.Tlv(pdu.TLV_RECEIPTED_MESSAGE_ID, receipted.encode() + b"\x00")],
                             sequence_number=7)
    assert wire == theirs.encode()
    decoded = smpp34.decode(wire)
    assert (decoded.source_addr, decoded.destination_addr, decoded.short_message, decoded.esm_class) == (
        src, dst, body, esm)
    assert ShortMessage.decode(wire[pdu.HEADER_LEN:]) == ours


def test_deliver_sm_from_smpp34_decodes() -> None:
    wire = smpp34.DeliverSm("1069", "8613900000001", b"id:1 stat:DELIVRD", esm_class=4,
                            tlvs=[smpp34.Tlv(pdu.TLV_MESSAGE_STATE, b"\x02")]).encode()
    length, command_id, _, _ = pdu.HEADER.unpack_from(wire)
    assert (length, command_id) == (len(wire), pdu.DELIVER_SM)
    sm = ShortMessage.decode(wire[pdu.HEADER_LEN:])
    assert (sm.source_addr, sm.destination_addr, sm.short_message) == ("1069", "8613900000001", b"id:1 stat:DELIVRD")
    assert sm.tlv(pdu.TLV_MESSAGE_STATE) == b"\x02" and sm.tlv(pdu.TLV_MESSAGE_PAYLOAD) is None


def test_bind_round_trip() -> None:
    bind = Bind("cardsms", "secret", "CMT", 0x34, 1, 1, "")
    assert Bind.decode(bind.encode()) == bind


def _body(**fields: object) -> bytes:
    return ShortMessage("1069", "8613900000001", b"hi", **fields).encode()  # type: ignore[arg-type]


@pytest.mark.parametrize(("body", "field", "status"), [
    (b"", "service_type", pdu.ESME_RINVPARLEN),
    (b"\x00\x01\x01" + b"1" * 30, "source_addr", pdu.ESME_RINVSRCADR),
    (_body()[:-1], "short_message", pdu.ESME_RINVMSGLEN),  # sm_length 2, one octet left
    (_body()[:12], "destination_addr", pdu.ESME_RINVDSTADR),
    (_body() + b"\x00\x1e\x00\x09abc", "TLV 0x001e", pdu.ESME_RINVPARLEN),
    (_body() + b"\x00", "optional parameters", pdu.ESME_RINVOPTPARSTREAM),
])
def test_bad_bodies_name_the_field_and_the_status(body: bytes, field: str, status: int) -> None:
    with pytest.raises(PduError) as caught:
        ShortMessage.decode(body)
    assert caught.value.field == field and caught.value.status == status, str(caught.value)


def test_encoding_refuses_what_smpp_cannot_carry() -> None:
    with pytest.raises(PduError, match="destination_addr: at most 20 octets"):
        ShortMessage("1069", "8" * 21).encode()
    with pytest.raises(PduError, match="short_message: at most 254 octets"):
        ShortMessage("1069", "86139", b"x" * 255).encode()
    with pytest.raises(PduError, match="password: at most 8 octets"):
        Bind("cardsms", "123456789").encode()


def test_header_layout() -> None:
    assert pdu.pack(pdu.ENQUIRE_LINK, 0, 3) == struct.pack(">IIII", 16, 0x15, 0, 3)
    assert pdu.status_name(pdu.ESME_RTHROTTLED) == "ESME_RTHROTTLED (0x00000058)"
