"""MM7 (3GPP TS 23.140, the VASP <-> MMS Relay/Server interface): SOAP 1.1 over HTTP, both roles.

A request is either a bare SOAP envelope (`text/xml`) or SOAP with attachments (`multipart/related`,
`start` naming the envelope's Content-ID, the multimedia content as a second part referenced from the
envelope's `<Content href="cid:...">`). The multimedia content is itself `multipart/related` with a SMIL
presentation first (`start`), then every media part with its Content-ID and Content-Location.

Supported messages:
- SubmitReq / SubmitRsp (VASP -> MMSC: one multimedia message to one or more recipients)
- DeliveryReportReq / DeliveryReportRsp (MMSC -> VASP: MMStatus of one recipient, matched by MessageID)
- DeliverReq / DeliverRsp (MMSC -> VASP: a reply from a handset, MO)
- RSErrorRsp / VASPErrorRsp (either side: a SOAP Fault whose detail carries the MM7 Status)

Schemas: the namespace is http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/<schema>, with
<schema> one of the REL-5-MM7-1-x or REL-6-MM7-1-x names; MM7Version follows the schema (REL-5-MM7-1-0:
5.3.0, the profile the mainland carriers' MM7 gateways speak; REL-6-MM7-1-4: 6.8.0) unless set.

Every XML document is parsed with defusedxml (no DTD at all: no external entity, no entity expansion);
multipart bodies are split by a small strict reader (delivery/mm7_decode.py; the standard library's `email`
parser took 3 ms a message; the tests read what we send with it, as the parser we did not write)."""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, register_namespace, tostring
from xml.sax.saxutils import escape

ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
NS_BASE = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/"
SCHEMA_NAME = re.compile(r"REL-[56]-MM7-1-[0-9]")
VERSIONS = {"REL-5-MM7-1-0": "5.3.0", "REL-6-MM7-1-4": "6.8.0"}
DEFAULT_SCHEMA = "REL-6-MM7-1-4"
MAX_ENVELOPE_BYTES = 256 * 1024

# TS 23.140 clause 8.7.4 (request status codes): the class is the first digit
STATUS_TEXT = {
    1000: "Success", 1100: "Partial success",
    2000: "Client error", 2001: "Operation restricted", 2002: "Address Error", 2003: "Address Not Found",
    2004: "Multimedia content refused", 2005: "Message ID Not found", 2006: "LinkedID not found",
    2007: "Message format corrupt", 2008: "Application ID not found", 2009: "Reply Application ID not found",
    3000: "Server Error", 3001: "Not Possible", 3002: "Message rejected", 3003: "Multiple addresses not supported",
    3004: "Application Addressing not supported",
    4000: "General service error", 4001: "Improper identification", 4002: "Unsupported version",
    4003: "Unsupported Operation", 4004: "Validation error", 4005: "Service error", 4006: "Service unavailable",
    4007: "Service denied", 4008: "Application denied",
}
SUCCESS, PARTIAL = 1000, 1100
CLIENT_ERROR, ADDRESS_ERROR, MESSAGE_ID_NOT_FOUND, FORMAT_CORRUPT = 2000, 2002, 2005, 2007
SERVER_ERROR = 3000
IMPROPER_IDENTIFICATION, UNSUPPORTED_VERSION, UNSUPPORTED_OPERATION, VALIDATION_ERROR = 4001, 4002, 4003, 4004
SERVICE_UNAVAILABLE = 4006

# MMStatus of a DeliveryReportReq -> the receipt stat our receipt writer knows (domain/sms.FINAL_STATS);
# "" = not final (the recipient's handset was told, and retrieves later)
MM_STATUS_STATS = {"Retrieved": "DELIVRD", "Forwarded": "DELIVRD", "Expired": "EXPIRED", "Rejected": "REJECTD",
                   "Unrecognised": "UNDELIV", "Indeterminate": "UNKNOWN", "DeferredRetrieval": ""}


class Mm7Error(Exception):
    """A message that breaks MM7's rules: `status` is the MM7 status code to answer it with."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def basic_credentials_match(header: str, user: str, secret: str) -> bool | None:
    """An Authorization header against MM7's HTTP Basic credentials: True or False, None when it is not Basic
    credentials at all. Compared in constant time."""
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "basic" or not raw.strip():
        return None
    try:
        given_user, _, given_secret = base64.b64decode(raw.strip(), validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return hmac.compare_digest(given_user.encode(), user.encode()) & \
        hmac.compare_digest(given_secret.encode(), secret.encode())


def namespace(schema: str) -> str:
    return NS_BASE + schema


def version_of(schema: str) -> str:
    return VERSIONS.get(schema, "6.8.0" if schema.startswith("REL-6") else "5.3.0")


def status_class(code: int) -> str:
    """success, client, server or service (TS 23.140's classes 1xxx-4xxx); unknown codes count by first digit."""
    return {1: "success", 2: "client", 3: "server", 4: "service"}.get(code // 1000, "server")


@dataclass(frozen=True, slots=True)
class Part:
    """One media object of a multimedia message."""

    content_type: str  # e.g. "image/jpeg", "text/plain;charset=utf-8"
    data: bytes
    content_id: str  # without the angle brackets
    location: str = ""  # a file name


@dataclass(frozen=True, slots=True)
class SubmitReq:
    transaction_id: str
    recipients: tuple[str, ...]
    parts: tuple[Part, ...]
    vasp_id: str = ""
    vas_id: str = ""
    sender: str = ""  # the service code the message is from (a short code)
    service_code: str = ""
    linked_id: str = ""
    expiry: datetime | None = None
    delivery_report: bool = True
    subject: str = ""


@dataclass(frozen=True, slots=True)
class DeliveryReportReq:
    transaction_id: str
    message_id: str
    recipient: str
    sender: str
    date: datetime
    mm_status: str
    status_text: str = ""
    relay_server_id: str = ""


@dataclass(frozen=True, slots=True)
class DeliverReq:
    transaction_id: str
    sender: str
    recipients: tuple[str, ...]
    linked_id: str = ""
    subject: str = ""
    relay_server_id: str = ""
    parts: tuple[Part, ...] = ()

    @property
    def text(self) -> str:
        return "\n".join(p.data.decode("utf-8", "replace") for p in self.parts
                         if p.content_type.startswith("text/plain"))


@dataclass(frozen=True, slots=True)
class Response:
    """Any MM7 answer: SubmitRsp, DeliveryReportRsp, DeliverRsp, or (fault=True) RSErrorRsp / VASPErrorRsp."""

    kind: str  # the element's local name
    transaction_id: str
    status: int
    status_text: str = ""
    message_id: str = ""
    fault: bool = False


# --- encoding ---------------------------------------------------------------------------------------------

def qname(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _address(parent: Element, ns: str, value: str) -> None:
    """An address: a number (digits, optionally +), else a short code when not an e-mail address."""
    if "@" in value:
        SubElement(parent, qname(ns, "RFC2822Address")).text = value
    elif value.lstrip("+").isdigit() and len(value.lstrip("+")) >= 7:
        SubElement(parent, qname(ns, "Number")).text = value
    else:
        SubElement(parent, qname(ns, "ShortCode")).text = value


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(ns: str, transaction_id: str) -> tuple[Element, Element]:
    register_namespace("env", ENV_NS)  # readable prefixes (ElementTree's table is process-wide)
    register_namespace("mm7", ns)
    env = Element(qname(ENV_NS, "Envelope"))
    header = SubElement(env, qname(ENV_NS, "Header"))
    tid = SubElement(header, qname(ns, "TransactionID"), {qname(ENV_NS, "mustUnderstand"): "1"})
    tid.text = transaction_id
    return env, SubElement(env, qname(ENV_NS, "Body"))


def _xml(env: Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(env, encoding="unicode").encode()


def smil_for(parts: Iterable[Part]) -> bytes:
    """A SMIL presentation showing the parts in their order: a slide per image or video (with the text that
    follows it), audio with the slide it follows, text alone when nothing comes before it."""
    slides: list[list[str]] = []
    for p in parts:
        major = p.content_type.split("/", 1)[0]
        src = escape(f"cid:{p.content_id}", {'"': "&quot;"})
        if major == "image":
            slides.append([f'<img src="{src}" region="Image"/>'])
        elif major == "video":
            slides.append([f'<video src="{src}" region="Image"/>'])
        elif major == "audio":
            if not slides:
                slides.append([])
            slides[-1].append(f'<audio src="{src}"/>')
        else:
            if not slides or any(x.startswith("<text") for x in slides[-1]):
                slides.append([])
            slides[-1].append(f'<text src="{src}" region="Text"/>')
    body = "".join(f'<par dur="5000ms">{"".join(items)}</par>' for items in slides)
    return ('<smil><head><layout><root-layout width="100%" height="100%"/>'
            '<region id="Image" top="0" left="0" width="100%" height="70%" fit="meet"/>'
            '<region id="Text" top="70%" left="0" width="100%" height="30%" fit="scroll"/>'
            f"</layout></head><body>{body}</body></smil>").encode()


def _boundary() -> str:
    return "----=_MM7_" + secrets.token_hex(12)


def _multipart(parts: list[tuple[dict[str, str], bytes]], boundary: str) -> bytes:
    out = bytearray()
    for headers, data in parts:
        out += f"--{boundary}\r\n".encode()
        for k, v in headers.items():
            out += f"{k}: {v}\r\n".encode()
        out += b"\r\n" + data + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def _media_headers(p: Part) -> dict[str, str]:
    headers = {"Content-Type": p.content_type, "Content-ID": f"<{p.content_id}>"}
    if p.location:
        headers["Content-Location"] = p.location
    if not p.content_type.startswith("text/"):
        headers["Content-Transfer-Encoding"] = "binary"
    return headers


def encode_content(parts: tuple[Part, ...]) -> tuple[str, bytes]:
    """The multimedia content: multipart/related with the SMIL first. (content type, body)"""
    boundary = _boundary()
    smil = Part("application/smil", smil_for(parts), "smil", "presentation.smil")
    body = _multipart([(_media_headers(p), p.data) for p in (smil, *parts)], boundary)
    return f'multipart/related; boundary="{boundary}"; type="application/smil"; start="<smil>"', body


def _with_content(envelope: bytes, parts: tuple[Part, ...]) -> tuple[str, bytes]:
    inner_type, inner = encode_content(parts)
    boundary = _boundary()
    body = _multipart([({"Content-Type": 'text/xml; charset="utf-8"', "Content-ID": "<mm7-envelope>"}, envelope),
                       ({"Content-Type": inner_type, "Content-ID": "<mm7-content>"}, inner)], boundary)
    return f'multipart/related; boundary="{boundary}"; type="text/xml"; start="<mm7-envelope>"', body


def encode_submit(req: SubmitReq, schema: str = DEFAULT_SCHEMA, version: str = "") -> tuple[str, bytes]:
    """A SubmitReq with its content as an attachment. (HTTP Content-Type, body)"""
    ns = namespace(schema)
    env, body = _envelope(ns, req.transaction_id)
    submit = SubElement(body, qname(ns, "SubmitReq"))
    SubElement(submit, qname(ns, "MM7Version")).text = version or version_of(schema)
    ident = SubElement(submit, qname(ns, "SenderIdentification"))
    if req.vasp_id:
        SubElement(ident, qname(ns, "VASPID")).text = req.vasp_id
    if req.vas_id:
        SubElement(ident, qname(ns, "VASID")).text = req.vas_id
    if req.sender:
        _address(SubElement(ident, qname(ns, "SenderAddress")), ns, req.sender)
    to = SubElement(SubElement(submit, qname(ns, "Recipients")), qname(ns, "To"))
    for r in req.recipients:
        _address(to, ns, r)
    if req.service_code:
        SubElement(submit, qname(ns, "ServiceCode")).text = req.service_code
    if req.linked_id:
        SubElement(submit, qname(ns, "LinkedID")).text = req.linked_id
    SubElement(submit, qname(ns, "MessageClass")).text = "Informational"
    SubElement(submit, qname(ns, "TimeStamp")).text = _stamp(datetime.now(UTC))
    if req.expiry is not None:
        SubElement(submit, qname(ns, "ExpiryDate")).text = _stamp(req.expiry)
    SubElement(submit, qname(ns, "DeliveryReport")).text = "true" if req.delivery_report else "false"
    if req.subject:
        SubElement(submit, qname(ns, "Subject")).text = req.subject
    SubElement(submit, qname(ns, "Content"), {"href": "cid:mm7-content", "allowAdaptations": "true"})
    return _with_content(_xml(env), req.parts)


def encode_response(kind: str, transaction_id: str, status: int, schema: str = DEFAULT_SCHEMA, *,
                    text: str = "", message_id: str = "", version: str = "") -> tuple[str, bytes]:
    """SubmitRsp / DeliveryReportRsp / DeliverRsp, or RSErrorRsp / VASPErrorRsp as a SOAP Fault. (type, body)"""
    ns = namespace(schema)
    env, body = _envelope(ns, transaction_id)
    fault = kind in ("RSErrorRsp", "VASPErrorRsp")
    if fault:
        f = SubElement(body, qname(ENV_NS, "Fault"))
        SubElement(f, "faultcode").text = "env:Client" if status_class(status) == "client" else "env:Server"
        SubElement(f, "faultstring").text = text or STATUS_TEXT.get(status, "error")
        parent = SubElement(SubElement(f, "detail"), qname(ns, kind))
    else:
        parent = SubElement(body, qname(ns, kind))
    SubElement(parent, qname(ns, "MM7Version")).text = version or version_of(schema)
    st = SubElement(parent, qname(ns, "Status"))
    SubElement(st, qname(ns, "StatusCode")).text = str(status)
    SubElement(st, qname(ns, "StatusText")).text = text or STATUS_TEXT.get(status, "")
    if message_id and kind == "SubmitRsp":
        SubElement(parent, qname(ns, "MessageID")).text = message_id
    return 'text/xml; charset="utf-8"', _xml(env)


def encode_delivery_report(rep: DeliveryReportReq, schema: str = DEFAULT_SCHEMA, version: str = ""
                           ) -> tuple[str, bytes]:
    ns = namespace(schema)
    env, body = _envelope(ns, rep.transaction_id)
    req = SubElement(body, qname(ns, "DeliveryReportReq"))
    SubElement(req, qname(ns, "MM7Version")).text = version or version_of(schema)
    if rep.relay_server_id:
        SubElement(req, qname(ns, "MMSRelayServerID")).text = rep.relay_server_id
    SubElement(req, qname(ns, "MessageID")).text = rep.message_id
    _address(SubElement(req, qname(ns, "Recipient")), ns, rep.recipient)
    _address(SubElement(req, qname(ns, "Sender")), ns, rep.sender)
    SubElement(req, qname(ns, "Date")).text = _stamp(rep.date)
    SubElement(req, qname(ns, "MMStatus")).text = rep.mm_status
    if rep.status_text:
        SubElement(req, qname(ns, "StatusText")).text = rep.status_text
    return 'text/xml; charset="utf-8"', _xml(env)


def encode_deliver(req: DeliverReq, schema: str = DEFAULT_SCHEMA, version: str = "") -> tuple[str, bytes]:
    ns = namespace(schema)
    env, body = _envelope(ns, req.transaction_id)
    d = SubElement(body, qname(ns, "DeliverReq"))
    SubElement(d, qname(ns, "MM7Version")).text = version or version_of(schema)
    if req.relay_server_id:
        SubElement(d, qname(ns, "MMSRelayServerID")).text = req.relay_server_id
    if req.linked_id:
        SubElement(d, qname(ns, "LinkedID")).text = req.linked_id
    _address(SubElement(d, qname(ns, "Sender")), ns, req.sender)
    if req.recipients:
        to = SubElement(SubElement(d, qname(ns, "Recipients")), qname(ns, "To"))
        for r in req.recipients:
            _address(to, ns, r)
    SubElement(d, qname(ns, "TimeStamp")).text = _stamp(datetime.now(UTC))
    if req.subject:
        SubElement(d, qname(ns, "Subject")).text = req.subject
    if not req.parts:
        return 'text/xml; charset="utf-8"', _xml(env)
    SubElement(d, qname(ns, "Content"), {"href": "cid:mm7-content"})
    return _with_content(_xml(env), req.parts)
