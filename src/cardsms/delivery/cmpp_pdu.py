"""CMPP 2.0 and 3.0 packets (China Mobile Peer to Peer, the protocol of mainland ISMGs and aggregators).

The header is Total_Length, Command_Id and Sequence_Id (12 octets); responses set bit 31 of the command
id, as in SMPP. Unlike SMPP, a response carries no status in its header: the result is in its body
(one octet in 2.0, four in 3.0). Strings are fixed-length Octet Strings padded with NUL. Only what an
SP and its ISMG exchange for sending is encoded here: CONNECT, SUBMIT, DELIVER (MO messages and status
reports), ACTIVE_TEST and TERMINATE, with their responses. A packet that breaks the rules raises
`PduError` naming the field and the rule, with the result code to answer it with.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime

from cardsms.delivery.pdu import PduError

HEADER = struct.Struct(">III")
HEADER_LEN = 12
MAX_PACKET = 4096  # a SUBMIT to 100 numbers is under 3.5 KiB; a bigger Total_Length is garbage

RESP = 0x80000000
CONNECT = 0x00000001
TERMINATE = 0x00000002
SUBMIT = 0x00000004
DELIVER = 0x00000005
ACTIVE_TEST = 0x00000008
COMMAND_NAMES = {CONNECT: "CMPP_CONNECT", TERMINATE: "CMPP_TERMINATE", SUBMIT: "CMPP_SUBMIT",
                 DELIVER: "CMPP_DELIVER", ACTIVE_TEST: "CMPP_ACTIVE_TEST"}

V20 = 0x20
V30 = 0x30

# CMPP_SUBMIT_RESP / CMPP_DELIVER_RESP results (CMPP 3.0 section 7.4.3.2; 2.0 has 0-8, then "other")
OK = 0
BAD_STRUCTURE = 1
BAD_COMMAND = 2
DUPLICATE_SEQUENCE = 3
BAD_LENGTH = 4
BAD_FEE_CODE = 5
TOO_LONG = 6
BAD_SERVICE_ID = 7
FLOW_CONTROL = 8
NOT_OUR_FEE_NUMBER = 9
BAD_SRC_ID = 10
BAD_MSG_SRC = 11
BAD_FEE_TERMINAL = 12
BAD_DEST_TERMINAL = 13
OTHER = 9  # 2.0's "其他错误", and what 3.0 uses when no code fits
RESULTS = {
    OK: "正确 (accepted)", BAD_STRUCTURE: "消息结构错 (bad packet structure)", BAD_COMMAND: "命令字错 (bad command id)",
    DUPLICATE_SEQUENCE: "消息序号重复 (duplicate sequence id)", BAD_LENGTH: "消息长度错 (bad length)",
    BAD_FEE_CODE: "资费代码错 (bad fee code)", TOO_LONG: "超过最大信息长 (message too long)",
    BAD_SERVICE_ID: "业务代码错 (bad service id)", FLOW_CONTROL: "流量控制错 (too fast: flow control)",
    NOT_OUR_FEE_NUMBER: "本网关不负责服务此计费号码 (fee number not served here)",
    BAD_SRC_ID: "Src_Id错误 (bad source id)", BAD_MSG_SRC: "Msg_src错误 (bad Msg_src)",
    BAD_FEE_TERMINAL: "Fee_terminal_Id错误 (bad fee terminal)",
    BAD_DEST_TERMINAL: "Dest_terminal_Id错误 (bad destination)",
}
# CMPP_CONNECT_RESP status
CONNECT_BAD_STRUCTURE = 1
CONNECT_BAD_SOURCE = 2
CONNECT_BAD_AUTH = 3
CONNECT_VERSION_TOO_HIGH = 4
CONNECT_OTHER = 5
CONNECT_STATUS = {OK: "正确 (accepted)", CONNECT_BAD_STRUCTURE: "消息结构错 (bad packet structure)",
                  CONNECT_BAD_SOURCE: "非法源地址 (unknown SP id)", CONNECT_BAD_AUTH: "认证错 (authentication failed)",
                  CONNECT_VERSION_TOO_HIGH: "版本太高 (version too high)", CONNECT_OTHER: "其他错误 (other error)"}

# Msg_Fmt
FMT_ASCII = 0
FMT_BINARY = 4
FMT_UCS2 = 8
FMT_GBK = 15


def result_name(result: int) -> str:
    return f"{RESULTS.get(result, '其他错误 (other error)')} ({result})"


def pack(command_id: int, sequence: int, body: bytes = b"") -> bytes:
    return HEADER.pack(HEADER_LEN + len(body), command_id, sequence) + body


def result_bytes(version: int, result: int) -> bytes:
    return struct.pack(">I", result) if version >= V30 else bytes((min(result, 255),))


def is_v3(version: int) -> bool:
    return version >= V30


def fixed(value: str | bytes, size: int, field_name: str, encoding: str = "ascii") -> bytes:
    """An Octet String of exactly `size` octets, NUL-padded."""
    raw = value if isinstance(value, bytes) else value.encode(encoding, "replace")
    if len(raw) > size:
        raise PduError(BAD_STRUCTURE, field_name, f"at most {size} octets, got {len(raw)}")
    return raw + b"\x00" * (size - len(raw))


class Reader:
    """Reads a packet body field by field; a short body is a PduError naming the field (result 1)."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def octets(self, n: int, field_name: str) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError(BAD_STRUCTURE, field_name,
                           f"{n} octets expected, {len(self.data) - self.pos} left in the packet")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def text(self, n: int, field_name: str) -> str:
        return self.octets(n, field_name).split(b"\x00", 1)[0].decode("latin-1")

    def u8(self, field_name: str) -> int:
        return self.octets(1, field_name)[0]

    def u32(self, field_name: str) -> int:
        return int.from_bytes(self.octets(4, field_name), "big")

    def u64(self, field_name: str) -> int:
        return int.from_bytes(self.octets(8, field_name), "big")

    def result(self, version: int, field_name: str) -> int:
        return self.u32(field_name) if is_v3(version) else self.u8(field_name)


def _skip(r: Reader, n: int, field_name: str) -> str:
    r.octets(n, field_name)
    return ""


# --- CONNECT ---------------------------------------------------------------------------------------

def timestamp(at: datetime) -> int:
    """MMDDHHMMSS as an integer (the client's local time: Asia/Shanghai for a mainland gateway)."""
    return int(at.strftime("%m%d%H%M%S"))


def authenticator_source(sp_id: str, secret: str, stamp: int) -> bytes:
    """MD5(Source_Addr + 9 octets of 0 + shared secret + timestamp as 10 digits)."""
    return hashlib.md5(sp_id.encode("ascii", "replace") + b"\x00" * 9 + secret.encode("utf-8")
                       + f"{stamp:010d}".encode()).digest()


def authenticator_ismg(version: int, status: int, auth_source: bytes, secret: str) -> bytes:
    """MD5(Status + AuthenticatorSource + shared secret), Status as it is on the wire."""
    return hashlib.md5(result_bytes(version, status) + auth_source + secret.encode("utf-8")).digest()


@dataclass(slots=True)
class Connect:
    sp_id: str  # Source_Addr: the SP's enterprise code, 6 octets
    authenticator: bytes
    version: int
    timestamp: int

    @classmethod
    def create(cls, sp_id: str, secret: str, version: int, at: datetime) -> Connect:
        stamp = timestamp(at)
        return cls(sp_id, authenticator_source(sp_id, secret, stamp), version, stamp)

    def encode(self) -> bytes:
        return (fixed(self.sp_id, 6, "Source_Addr") + fixed(self.authenticator, 16, "AuthenticatorSource")
                + bytes((self.version,)) + struct.pack(">I", self.timestamp))

    @classmethod
    def decode(cls, body: bytes) -> Connect:
        r = Reader(body)
        return cls(r.text(6, "Source_Addr"), r.octets(16, "AuthenticatorSource"), r.u8("Version"),
                   r.u32("Timestamp"))


@dataclass(slots=True)
class ConnectResp:
    status: int
    authenticator: bytes
    version: int

    def encode(self) -> bytes:
        return result_bytes(self.version, self.status) + fixed(self.authenticator, 16, "AuthenticatorISMG") + bytes(
            (self.version,))

    @classmethod
    def decode(cls, body: bytes, version: int) -> ConnectResp:
        # a 3.0 answer is 21 octets, a 2.0 one 18: the length tells which, whatever was asked
        v = V30 if len(body) >= 21 else V20 if len(body) == 18 else version
        r = Reader(body)
        status = r.result(v, "Status")
        return cls(status, r.octets(16, "AuthenticatorISMG"), r.u8("Version"))


# --- SUBMIT ----------------------------------------------------------------------------------------

@dataclass(slots=True)
class Submit:
    """CMPP_SUBMIT (2.0 section 7.4.3.1, 3.0 section 7.4.3.1); 3.0 widens terminal ids to 32 octets and adds
    the terminal types and LinkID."""

    version: int
    msg_src: str  # the SP id
    src_id: str  # the SP's access number (plus an extension)
    dest_terminal_ids: tuple[str, ...]
    msg_content: bytes
    msg_fmt: int = FMT_UCS2
    pk_total: int = 1
    pk_number: int = 1
    registered_delivery: int = 1
    msg_level: int = 0
    service_id: str = ""
    fee_user_type: int = 2
    fee_terminal_id: str = ""
    fee_terminal_type: int = 0
    tp_pid: int = 0
    tp_udhi: int = 0
    fee_type: str = "01"
    fee_code: str = "000000"
    valid_time: str = ""
    at_time: str = ""
    dest_terminal_type: int = 0
    link_id: str = ""
    msg_id: int = 0

    def encode(self) -> bytes:
        v3 = is_v3(self.version)
        terminal = 32 if v3 else 21
        if not 1 <= len(self.dest_terminal_ids) <= 100:
            raise PduError(BAD_STRUCTURE, "DestUsr_tl", "1-100 destination numbers")
        if len(self.msg_content) > 255:
            raise PduError(TOO_LONG, "Msg_Content", "at most 255 octets (Msg_Length is one octet)")
        out = [struct.pack(">QBBBB", self.msg_id, self.pk_total, self.pk_number, self.registered_delivery,
                           self.msg_level),
               fixed(self.service_id, 10, "Service_Id"), bytes((self.fee_user_type,)),
               fixed(self.fee_terminal_id, terminal, "Fee_terminal_Id")]
        if v3:
            out.append(bytes((self.fee_terminal_type,)))
        out += [bytes((self.tp_pid, self.tp_udhi, self.msg_fmt)), fixed(self.msg_src, 6, "Msg_src"),
                fixed(self.fee_type, 2, "FeeType"), fixed(self.fee_code, 6, "FeeCode"),
                fixed(self.valid_time, 17, "ValId_Time"), fixed(self.at_time, 17, "At_Time"),
                fixed(self.src_id, 21, "Src_Id"), bytes((len(self.dest_terminal_ids),))]
        out += [fixed(d, terminal, "Dest_terminal_Id") for d in self.dest_terminal_ids]
        if v3:
            out.append(bytes((self.dest_terminal_type,)))
        out += [bytes((len(self.msg_content),)), self.msg_content,
                fixed(self.link_id, 20, "LinkID") if v3 else b"\x00" * 8]
        return b"".join(out)

    @classmethod
    def decode(cls, body: bytes, version: int) -> Submit:
        v3 = is_v3(version)
        terminal = 32 if v3 else 21
        r = Reader(body)
        msg_id, pk_total, pk_number = r.u64("Msg_Id"), r.u8("Pk_total"), r.u8("Pk_number")
        reg, level, service_id = r.u8("Registered_Delivery"), r.u8("Msg_level"), r.text(10, "Service_Id")
        fee_user_type, fee_terminal = r.u8("Fee_UserType"), r.text(terminal, "Fee_terminal_Id")
        fee_terminal_type = r.u8("Fee_terminal_type") if v3 else 0
        tp_pid, tp_udhi, msg_fmt = r.u8("TP_pId"), r.u8("TP_udhi"), r.u8("Msg_Fmt")
        msg_src, fee_type, fee_code = r.text(6, "Msg_src"), r.text(2, "FeeType"), r.text(6, "FeeCode")
        valid_time, at_time, src_id = r.text(17, "ValId_Time"), r.text(17, "At_Time"), r.text(21, "Src_Id")
        count = r.u8("DestUsr_tl")
        if not 1 <= count <= 100:
            raise PduError(BAD_STRUCTURE, "DestUsr_tl", f"1-100 destination numbers, got {count}")
        dests = tuple(r.text(terminal, "Dest_terminal_Id") for _ in range(count))
        dest_type = r.u8("Dest_terminal_type") if v3 else 0
        content = r.octets(r.u8("Msg_Length"), "Msg_Content")
        link_id = r.text(20, "LinkID") if v3 else _skip(r, 8, "Reserve")
        if r.pos != len(body):
            raise PduError(BAD_LENGTH, "Total_Length", f"{len(body) - r.pos} octets after the last field")
        return cls(version, msg_src, src_id, dests, content, msg_fmt, pk_total, pk_number, reg, level, service_id,
                   fee_user_type, fee_terminal, fee_terminal_type, tp_pid, tp_udhi, fee_type, fee_code, valid_time,
                   at_time, dest_type, link_id, msg_id)


def msg_id_and_result(msg_id: int, result: int, version: int) -> bytes:
    """The body of CMPP_SUBMIT_RESP and CMPP_DELIVER_RESP."""
    return struct.pack(">Q", msg_id) + result_bytes(version, result)


def decode_msg_id_and_result(body: bytes, version: int) -> tuple[int, int]:
    v = V30 if len(body) >= 12 else V20 if len(body) == 9 else version
    r = Reader(body)
    return r.u64("Msg_Id"), r.result(v, "Result")


def make_msg_id(at: datetime, gateway: int, sequence: int) -> int:
    """The ISMG's 64-bit Msg_Id: month, day, hour, minute, second, gateway code (22 bits), sequence (16)."""
    return ((at.month << 60) | (at.day << 55) | (at.hour << 50) | (at.minute << 44) | (at.second << 38)
            | ((gateway & 0x3FFFFF) << 16) | (sequence & 0xFFFF))


# --- DELIVER: MO messages and status reports -------------------------------------------------------

@dataclass(slots=True)
class Report:
    """A status report, the Msg_Content of a CMPP_DELIVER with Registered_Delivery 1."""

    msg_id: int
    stat: str  # DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, or a carrier code like MA:0001
    submit_time: str  # YYMMDDHHMM
    done_time: str
    dest_terminal_id: str
    smsc_sequence: int = 0

    def encode(self, version: int) -> bytes:
        return (struct.pack(">Q", self.msg_id) + fixed(self.stat, 7, "Stat")
                + fixed(self.submit_time, 10, "Submit_time") + fixed(self.done_time, 10, "Done_time")
                + fixed(self.dest_terminal_id, 32 if is_v3(version) else 21, "Dest_terminal_Id")
                + struct.pack(">I", self.smsc_sequence))

    @classmethod
    def decode(cls, content: bytes, version: int) -> Report:
        r = Reader(content)
        return cls(r.u64("Msg_Id"), r.text(7, "Stat"), r.text(10, "Submit_time"), r.text(10, "Done_time"),
                   r.text(32 if is_v3(version) else 21, "Dest_terminal_Id"), r.u32("SMSC_sequence"))


@dataclass(slots=True)
class Deliver:
    version: int
    msg_id: int
    dest_id: str  # the SP's number the message went to (MO) or came from (report)
    src_terminal_id: str
    msg_content: bytes
    registered_delivery: int = 0  # 1: msg_content is a status report
    msg_fmt: int = FMT_ASCII
    service_id: str = ""
    tp_pid: int = 0
    tp_udhi: int = 0
    src_terminal_type: int = 0
    link_id: str = ""

    def encode(self) -> bytes:
        v3 = is_v3(self.version)
        if len(self.msg_content) > 255:
            raise PduError(TOO_LONG, "Msg_Content", "at most 255 octets")
        out = [struct.pack(">Q", self.msg_id), fixed(self.dest_id, 21, "Dest_Id"),
               fixed(self.service_id, 10, "Service_Id"),
               bytes((self.tp_pid, self.tp_udhi, self.msg_fmt)),
               fixed(self.src_terminal_id, 32 if v3 else 21, "Src_terminal_Id")]
        if v3:
            out.append(bytes((self.src_terminal_type,)))
        out += [bytes((self.registered_delivery, len(self.msg_content))), self.msg_content,
                fixed(self.link_id, 20, "LinkID") if v3 else b"\x00" * 8]
        return b"".join(out)

    @classmethod
    def decode(cls, body: bytes, version: int) -> Deliver:
        v3 = is_v3(version)
        r = Reader(body)
        msg_id, dest_id, service_id = r.u64("Msg_Id"), r.text(21, "Dest_Id"), r.text(10, "Service_Id")
        tp_pid, tp_udhi, msg_fmt = r.u8("TP_pid"), r.u8("TP_udhi"), r.u8("Msg_Fmt")
        src = r.text(32 if v3 else 21, "Src_terminal_Id")
        src_type = r.u8("Src_terminal_type") if v3 else 0
        reg = r.u8("Registered_Delivery")
        content = r.octets(r.u8("Msg_Length"), "Msg_Content")
        link_id = r.text(20, "LinkID") if v3 else _skip(r, 8, "Reserved")
        if r.pos != len(body):
            raise PduError(BAD_LENGTH, "Total_Length", f"{len(body) - r.pos} octets after the last field")
        return cls(version, msg_id, dest_id, src, content, reg, msg_fmt, service_id, tp_pid, tp_udhi, src_type, link_id)


# --- text ------------------------------------------------------------------------------------------

def encode_text(text: str, encoding: str = "ucs2") -> tuple[int, list[bytes]]:
    """(Msg_Fmt, parts without UDH): ASCII when the text is ASCII (140 octets, 134 per part), else UCS-2 (70
    characters, 67 per part) or GBK (140 octets, 134 per part, never splitting a character)."""
    if text.isascii():
        raw = text.encode("ascii")
        return FMT_ASCII, [raw] if len(raw) <= 140 else [raw[i:i + 134] for i in range(0, len(raw), 134)]
    if encoding == "gbk":
        try:
            chars = [ch.encode("gbk") for ch in text]
        except UnicodeEncodeError:
            pass  # not every character has a GBK code: UCS-2 carries them all
        else:
            if sum(map(len, chars)) <= 140:
                return FMT_GBK, [b"".join(chars)]
            parts: list[bytes] = []
            current = b""
            for ch in chars:
                if len(current) + len(ch) > 134:
                    parts.append(current)
                    current = b""
                current += ch
            return FMT_GBK, [*parts, current]
    units = text.encode("utf-16-be")
    if len(units) <= 140:
        return FMT_UCS2, [units]
    out, start = [], 0
    while start < len(units):
        end = min(start + 134, len(units))
        if end < len(units) and 0xD8 <= units[end - 2] <= 0xDB:  # not between a surrogate pair
            end -= 2
        out.append(units[start:end])
        start = end
    return FMT_UCS2, out


def decode_text(data: bytes, msg_fmt: int) -> str:
    if msg_fmt == FMT_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if msg_fmt == FMT_GBK:
        return data.decode("gbk", errors="replace")
    return data.decode("latin-1")
