"""SMPP 3.4 PDUs: the header, the bodies cardsms sends and reads, and the errors for bad ones.

Only what a gateway and its simulated SMSC exchange is encoded here: binds, submit_sm and deliver_sm
(same body layout), their responses, enquire_link, unbind and generic_nack. A PDU that breaks the
rules raises `PduError` naming the field and the rule, with the command_status to answer it with.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER = struct.Struct(">IIII")
HEADER_LEN = 16
MAX_PDU = 64 * 1024  # far above any legal submit_sm/deliver_sm; a bigger command_length is garbage

RESP = 0x80000000
GENERIC_NACK = 0x80000000
BIND_RECEIVER = 0x00000001
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
BIND_TRANSCEIVER = 0x00000009
ENQUIRE_LINK = 0x00000015
ALERT_NOTIFICATION = 0x00000102  # the one request that has no response
BINDS = {BIND_RECEIVER: "RX", BIND_TRANSMITTER: "TX", BIND_TRANSCEIVER: "TRX"}

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDLEN = 0x02
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RINVSRCADR = 0x0A
ESME_RINVDSTADR = 0x0B
ESME_RINVESMCLASS = 0x43
ESME_RINVMSGID = 0x0C
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RTHROTTLED = 0x58
ESME_RINVOPTPARSTREAM = 0xC0
ESME_RINVPARLEN = 0xC2
ESME_RX_T_APPN = 0x64  # temporary application error: the peer should try again later
ESME_RX_P_APPN = 0x65  # permanent application error: do not send this PDU again
ESME_RUNKNOWNERR = 0xFF

STATUS_NAMES = {v: k for k, v in globals().items() if k.startswith("ESME_R") and isinstance(v, int)}

TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427
TLV_SC_INTERFACE_VERSION = 0x0210


def status_name(status: int) -> str:
    return f"{STATUS_NAMES.get(status, 'ESME status')} ({status:#010x})"


class PduError(Exception):
    """A PDU that breaks SMPP 3.4: `status` is the command_status the answer carries."""

    def __init__(self, status: int, field_name: str, rule: str) -> None:
        super().__init__(f"{field_name}: {rule}")
        self.status = status
        self.field = field_name


def pack(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, status, sequence) + body


def cstr(value: str, size: int, field_name: str, status: int = ESME_RINVPARLEN) -> bytes:
    """A C-Octet String of at most `size` octets including its NUL."""
    raw = value.encode("latin-1", "replace")
    if len(raw) >= size or b"\x00" in raw:
        raise PduError(status, field_name, f"at most {size - 1} octets without NUL, got {len(raw)}")
    return raw + b"\x00"


class Reader:
    """Reads a PDU body field by field; every overrun is a PduError naming the field."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def cstr(self, size: int, field_name: str, status: int = ESME_RINVPARLEN) -> str:
        end = self.data.find(b"\x00", self.pos, self.pos + size)
        if end < 0:
            raise PduError(status, field_name, f"a C-Octet String of at most {size} octets ending in NUL")
        value = self.data[self.pos:end].decode("latin-1")
        self.pos = end + 1
        return value

    def u8(self, field_name: str) -> int:
        if self.pos >= len(self.data):
            raise PduError(ESME_RINVCMDLEN, field_name, "the PDU ends before this field")
        self.pos += 1
        return self.data[self.pos - 1]

    def octets(self, n: int, field_name: str, status: int = ESME_RINVMSGLEN) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError(status, field_name, f"{n} octets announced, {len(self.data) - self.pos} left in the PDU")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def tlvs(self) -> list[tuple[int, bytes]]:
        out = []
        data, pos, end = self.data, self.pos, len(self.data)
        while pos < end:
            if pos + 4 > end:
                raise PduError(ESME_RINVOPTPARSTREAM, "optional parameters", "a TLV needs a 4-octet tag and length")
            tag, length = struct.unpack_from(">HH", data, pos)
            if pos + 4 + length > end:
                raise PduError(ESME_RINVPARLEN, f"TLV {tag:#06x}", f"length {length} runs past the end of the PDU")
            out.append((tag, data[pos + 4:pos + 4 + length]))
            pos += 4 + length
        self.pos = pos
        return out


def encode_tlvs(tlvs: list[tuple[int, bytes]]) -> bytes:
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs)


@dataclass(slots=True)
class Bind:
    system_id: str
    password: str = ""
    system_type: str = ""
    interface_version: int = 0x34
    addr_ton: int = 0
    addr_npi: int = 0
    address_range: str = ""

    def encode(self) -> bytes:
        return b"".join((cstr(self.system_id, 16, "system_id", ESME_RINVSYSID),
                         cstr(self.password, 9, "password", ESME_RINVPASWD),
                         cstr(self.system_type, 13, "system_type"),
                         bytes((self.interface_version, self.addr_ton, self.addr_npi)),
                         cstr(self.address_range, 41, "address_range")))

    @classmethod
    def decode(cls, body: bytes) -> Bind:
        r = Reader(body)
        return cls(r.cstr(16, "system_id", ESME_RINVSYSID), r.cstr(9, "password", ESME_RINVPASWD),
                   r.cstr(13, "system_type"), r.u8("interface_version"), r.u8("addr_ton"), r.u8("addr_npi"),
                   r.cstr(41, "address_range"))


@dataclass(slots=True)
class ShortMessage:
    """The body of submit_sm and deliver_sm (SMPP 3.4 section 4.4.1 and 4.6.1 share it)."""

    source_addr: str
    destination_addr: str
    short_message: bytes = b""
    service_type: str = ""
    source_addr_ton: int = 0
    source_addr_npi: int = 0
    dest_addr_ton: int = 0
    dest_addr_npi: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    replace_if_present_flag: int = 0
    data_coding: int = 0
    sm_default_msg_id: int = 0
    tlvs: list[tuple[int, bytes]] = field(default_factory=list)

    def tlv(self, tag: int) -> bytes | None:
        for t, value in self.tlvs:
            if t == tag:
                return value
        return None

    def encode(self) -> bytes:
        if len(self.short_message) > 254:
            raise PduError(ESME_RINVMSGLEN, "short_message", "at most 254 octets (longer text goes in parts)")
        return b"".join((
            cstr(self.service_type, 6, "service_type"),
            bytes((self.source_addr_ton, self.source_addr_npi)),
            cstr(self.source_addr, 21, "source_addr", ESME_RINVSRCADR),
            bytes((self.dest_addr_ton, self.dest_addr_npi)),
            cstr(self.destination_addr, 21, "destination_addr", ESME_RINVDSTADR),
            bytes((self.esm_class, self.protocol_id, self.priority_flag)),
            cstr(self.schedule_delivery_time, 17, "schedule_delivery_time"),
            cstr(self.validity_period, 17, "validity_period"),
            bytes((self.registered_delivery, self.replace_if_present_flag, self.data_coding, self.sm_default_msg_id,
                   len(self.short_message))),
            self.short_message,
            encode_tlvs(self.tlvs),
        ))

    @classmethod
    def decode(cls, body: bytes) -> ShortMessage:
        r = Reader(body)
        service_type = r.cstr(6, "service_type")
        src_ton, src_npi = r.u8("source_addr_ton"), r.u8("source_addr_npi")
        src = r.cstr(21, "source_addr", ESME_RINVSRCADR)
        dst_ton, dst_npi = r.u8("dest_addr_ton"), r.u8("dest_addr_npi")
        dst = r.cstr(21, "destination_addr", ESME_RINVDSTADR)
        esm, pid, prio = r.u8("esm_class"), r.u8("protocol_id"), r.u8("priority_flag")
        schedule = r.cstr(17, "schedule_delivery_time")
        validity = r.cstr(17, "validity_period")
        reg, rep, dc, default_id = (r.u8("registered_delivery"), r.u8("replace_if_present_flag"),
                                    r.u8("data_coding"), r.u8("sm_default_msg_id"))
        sm = r.octets(r.u8("sm_length"), "short_message")
        return cls(src, dst, sm, service_type, src_ton, src_npi, dst_ton, dst_npi, esm, pid, prio, schedule,
                   validity, reg, rep, dc, default_id, r.tlvs())
