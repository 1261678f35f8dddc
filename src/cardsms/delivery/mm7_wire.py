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
multipart bodies are split by a small strict reader here (the standard library's `email` parser took 3 ms
a message; the tests read what we send with it, as the parser we did not write)."""

from __future__ import annotations

import base64
import binascii
import hmac
import quopri
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, SubElement, register_namespace, tostring
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

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

def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _address(parent: Element, ns: str, value: str) -> None:
    """An address: a number (digits, optionally +), else a short code when not an e-mail address."""
    if "@" in value:
        SubElement(parent, _q(ns, "RFC2822Address")).text = value
    elif value.lstrip("+").isdigit() and len(value.lstrip("+")) >= 7:
        SubElement(parent, _q(ns, "Number")).text = value
    else:
        SubElement(parent, _q(ns, "ShortCode")).text = value


def _stamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(ns: str, transaction_id: str) -> tuple[Element, Element]:
    register_namespace("env", ENV_NS)  # readable prefixes (ElementTree's table is process-wide)
    register_namespace("mm7", ns)
    env = Element(_q(ENV_NS, "Envelope"))
    header = SubElement(env, _q(ENV_NS, "Header"))
    tid = SubElement(header, _q(ns, "TransactionID"), {_q(ENV_NS, "mustUnderstand"): "1"})
    tid.text = transaction_id
    return env, SubElement(env, _q(ENV_NS, "Body"))


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
    submit = SubElement(body, _q(ns, "SubmitReq"))
    SubElement(submit, _q(ns, "MM7Version")).text = version or version_of(schema)
    ident = SubElement(submit, _q(ns, "SenderIdentification"))
    if req.vasp_id:
        SubElement(ident, _q(ns, "VASPID")).text = req.vasp_id
    if req.vas_id:
        SubElement(ident, _q(ns, "VASID")).text = req.vas_id
    if req.sender:
        _address(SubElement(ident, _q(ns, "SenderAddress")), ns, req.sender)
    to = SubElement(SubElement(submit, _q(ns, "Recipients")), _q(ns, "To"))
    for r in req.recipients:
        _address(to, ns, r)
    if req.service_code:
        SubElement(submit, _q(ns, "ServiceCode")).text = req.service_code
    if req.linked_id:
        SubElement(submit, _q(ns, "LinkedID")).text = req.linked_id
    SubElement(submit, _q(ns, "MessageClass")).text = "Informational"
    SubElement(submit, _q(ns, "TimeStamp")).text = _stamp(datetime.now(UTC))
    if req.expiry is not None:
        SubElement(submit, _q(ns, "ExpiryDate")).text = _stamp(req.expiry)
    SubElement(submit, _q(ns, "DeliveryReport")).text = "true" if req.delivery_report else "false"
    if req.subject:
        SubElement(submit, _q(ns, "Subject")).text = req.subject
    SubElement(submit, _q(ns, "Content"), {"href": "cid:mm7-content", "allowAdaptations": "true"})
    return _with_content(_xml(env), req.parts)


def encode_response(kind: str, transaction_id: str, status: int, schema: str = DEFAULT_SCHEMA, *,
                    text: str = "", message_id: str = "", version: str = "") -> tuple[str, bytes]:
    """SubmitRsp / DeliveryReportRsp / DeliverRsp, or RSErrorRsp / VASPErrorRsp as a SOAP Fault. (type, body)"""
    ns = namespace(schema)
    env, body = _envelope(ns, transaction_id)
    fault = kind in ("RSErrorRsp", "VASPErrorRsp")
    if fault:
        f = SubElement(body, _q(ENV_NS, "Fault"))
        SubElement(f, "faultcode").text = "env:Client" if status_class(status) == "client" else "env:Server"
        SubElement(f, "faultstring").text = text or STATUS_TEXT.get(status, "error")
        parent = SubElement(SubElement(f, "detail"), _q(ns, kind))
    else:
        parent = SubElement(body, _q(ns, kind))
    SubElement(parent, _q(ns, "MM7Version")).text = version or version_of(schema)
    st = SubElement(parent, _q(ns, "Status"))
    SubElement(st, _q(ns, "StatusCode")).text = str(status)
    SubElement(st, _q(ns, "StatusText")).text = text or STATUS_TEXT.get(status, "")
    if message_id and kind == "SubmitRsp":
        SubElement(parent, _q(ns, "MessageID")).text = message_id
    return 'text/xml; charset="utf-8"', _xml(env)


def encode_delivery_report(rep: DeliveryReportReq, schema: str = DEFAULT_SCHEMA, version: str = ""
                           ) -> tuple[str, bytes]:
    ns = namespace(schema)
    env, body = _envelope(ns, rep.transaction_id)
    req = SubElement(body, _q(ns, "DeliveryReportReq"))
    SubElement(req, _q(ns, "MM7Version")).text = version or version_of(schema)
    if rep.relay_server_id:
        SubElement(req, _q(ns, "MMSRelayServerID")).text = rep.relay_server_id
    SubElement(req, _q(ns, "MessageID")).text = rep.message_id
    _address(SubElement(req, _q(ns, "Recipient")), ns, rep.recipient)
    _address(SubElement(req, _q(ns, "Sender")), ns, rep.sender)
    SubElement(req, _q(ns, "Date")).text = _stamp(rep.date)
    SubElement(req, _q(ns, "MMStatus")).text = rep.mm_status
    if rep.status_text:
        SubElement(req, _q(ns, "StatusText")).text = rep.status_text
    return 'text/xml; charset="utf-8"', _xml(env)


def encode_deliver(req: DeliverReq, schema: str = DEFAULT_SCHEMA, version: str = "") -> tuple[str, bytes]:
    ns = namespace(schema)
    env, body = _envelope(ns, req.transaction_id)
    d = SubElement(body, _q(ns, "DeliverReq"))
    SubElement(d, _q(ns, "MM7Version")).text = version or version_of(schema)
    if req.relay_server_id:
        SubElement(d, _q(ns, "MMSRelayServerID")).text = req.relay_server_id
    if req.linked_id:
        SubElement(d, _q(ns, "LinkedID")).text = req.linked_id
    _address(SubElement(d, _q(ns, "Sender")), ns, req.sender)
    if req.recipients:
        to = SubElement(SubElement(d, _q(ns, "Recipients")), _q(ns, "To"))
        for r in req.recipients:
            _address(to, ns, r)
    SubElement(d, _q(ns, "TimeStamp")).text = _stamp(datetime.now(UTC))
    if req.subject:
        SubElement(d, _q(ns, "Subject")).text = req.subject
    if not req.parts:
        return 'text/xml; charset="utf-8"', _xml(env)
    SubElement(d, _q(ns, "Content"), {"href": "cid:mm7-content"})
    return _with_content(_xml(env), req.parts)


# --- decoding ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Decoded:
    """A parsed MM7 HTTP body: the envelope's root element, its schema, and the attachments by Content-ID."""

    kind: str  # local name of the Body's first element (or the Fault's detail element)
    schema: str
    transaction_id: str
    element: Element
    attachments: dict[str, MimePart]
    fault: bool = False


def _local(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, name = tag[1:].partition("}")
        return ns, name
    return "", tag


@dataclass(frozen=True, slots=True)
class MimePart:
    """One body part of a multipart: its headers (names in lower case) and its decoded payload."""

    headers: dict[str, str]
    payload: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "text/plain")

    @property
    def media_type(self) -> str:
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def content_id(self) -> str:
        return _cid(self.headers.get("content-id"))


def _params(content_type: str) -> dict[str, str]:
    """The parameters of a Content-Type value (quoted or not), names in lower case."""
    out = {}
    for item in _split_params(content_type)[1:]:
        key, eq, value = item.partition("=")
        if eq:
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            out[key.strip().lower()] = value
    return out


def _split_params(value: str) -> list[str]:
    items: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if ch == ";" and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    items.append("".join(current).strip())
    return items


MAX_PARTS = 64


def _read_multipart(content_type: str, body: bytes) -> list[MimePart]:
    """The parts of a multipart body (RFC 2046): split at its boundary, headers unfolded, base64 and
    quoted-printable payloads decoded. Mm7Error (2007) for a body that does not follow the rules."""
    boundary = _params(content_type).get("boundary", "")
    if not boundary or len(boundary) > 70:
        raise Mm7Error(FORMAT_CORRUPT, "a multipart body needs a boundary parameter of 1-70 characters")
    delimiter = b"--" + boundary.encode("ascii", "replace")
    start = body.find(delimiter)
    if start < 0 or (start > 0 and body[start - 2:start] != b"\r\n"):
        raise Mm7Error(FORMAT_CORRUPT, "the multipart body does not contain its boundary")
    sections = body[start + len(delimiter):].split(b"\r\n" + delimiter)
    parts: list[MimePart] = []
    for section in sections:
        if section.startswith(b"--"):  # the close delimiter
            break
        if len(parts) >= MAX_PARTS:
            raise Mm7Error(FORMAT_CORRUPT, f"a multipart body of more than {MAX_PARTS} parts")
        head, sep, payload = section.partition(b"\r\n\r\n")
        if not sep:
            if section.strip():
                raise Mm7Error(FORMAT_CORRUPT, "a body part without the blank line after its headers")
            head, payload = b"", b""
        headers: dict[str, str] = {}
        for line in head.decode("utf-8", "replace").replace("\r\n ", " ").replace("\r\n\t", " ").split("\r\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        encoding = headers.get("content-transfer-encoding", "").lower()
        try:
            if encoding == "base64":
                payload = base64.b64decode(payload)
            elif encoding == "quoted-printable":
                payload = quopri.decodestring(payload)
        except (ValueError, binascii.Error):
            raise Mm7Error(FORMAT_CORRUPT, f"a body part is not valid {encoding}") from None
        parts.append(MimePart(headers, payload))
    else:
        raise Mm7Error(FORMAT_CORRUPT, "the multipart body is not closed by its final boundary")
    return parts


def _cid(value: str | None) -> str:
    return (value or "").strip().strip("<>").strip()


def _split(content_type: str, body: bytes) -> tuple[bytes, dict[str, MimePart]]:
    """The SOAP envelope's bytes and the other parts by Content-ID."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in ("text/xml", "application/soap+xml", "application/xml"):
        return body, {}
    if ctype != "multipart/related":
        raise Mm7Error(FORMAT_CORRUPT, f"Content-Type {ctype or '(none)'} is neither text/xml nor multipart/related")
    parts = _read_multipart(content_type, body)
    if not parts:
        raise Mm7Error(FORMAT_CORRUPT, "a multipart/related body without parts")
    start = _cid(_params(content_type).get("start"))
    root = next((p for p in parts if start and p.content_id == start), parts[0])
    if not root.payload:
        raise Mm7Error(FORMAT_CORRUPT, "the SOAP part is empty")
    return root.payload, {p.content_id: p for p in parts if p is not root and p.content_id}


def decode(content_type: str, body: bytes) -> Decoded:
    """Parse an MM7 request or answer; Mm7Error (with the status to answer) when it breaks the rules."""
    envelope, attachments = _split(content_type, body)
    if len(envelope) > MAX_ENVELOPE_BYTES:
        raise Mm7Error(FORMAT_CORRUPT, f"the SOAP envelope is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        env = SafeET.fromstring(envelope, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise Mm7Error(FORMAT_CORRUPT, f"the envelope carries a DTD or entities, which MM7 never uses ({exc})") \
            from None
    except SafeET.ParseError as exc:
        raise Mm7Error(FORMAT_CORRUPT, f"the envelope is not well-formed XML ({exc})") from None
    if env.tag != _q(ENV_NS, "Envelope"):
        raise Mm7Error(FORMAT_CORRUPT, f"the root element is {_local(env.tag)[1]!r}, not a SOAP 1.1 Envelope")
    body_el = env.find(_q(ENV_NS, "Body"))
    if body_el is None or len(body_el) == 0:
        raise Mm7Error(FORMAT_CORRUPT, "the envelope has no Body element")
    first = body_el[0]
    fault = first.tag == _q(ENV_NS, "Fault")
    if fault:
        detail = first.find("detail")
        if detail is None:
            detail = first.find(_q(ENV_NS, "detail"))
        if detail is None or len(detail) == 0:
            raise Mm7Error(FORMAT_CORRUPT, "a SOAP Fault without an MM7 detail")
        first = detail[0]
    ns, kind = _local(first.tag)
    if not ns.startswith(NS_BASE) or not SCHEMA_NAME.fullmatch(ns[len(NS_BASE):]):
        raise Mm7Error(UNSUPPORTED_VERSION, f"{kind} is not in an MM7 namespace ({ns or 'none'})")
    schema = ns[len(NS_BASE):]
    tid = ""
    header = env.find(_q(ENV_NS, "Header"))
    if header is not None:
        found = header.find(_q(ns, "TransactionID"))
        tid = (found.text or "").strip() if found is not None else ""
    return Decoded(kind, schema, tid, first, attachments, fault)


def _text(el: Element, ns: str, name: str, required: bool = False) -> str:
    found = el.find(_q(ns, name))
    value = (found.text or "").strip() if found is not None else ""
    if required and not value:
        raise Mm7Error(VALIDATION_ERROR, f"{_local(el.tag)[1]}: {name} is required")
    return value


def _address_text(el: Element | None) -> str:
    if el is None:
        return ""
    for child in el:
        if _local(child.tag)[1] in ("Number", "ShortCode", "RFC2822Address"):
            return (child.text or "").strip()
    return (el.text or "").strip()


def _addresses(recipients: Element) -> tuple[str, ...]:
    """Every address under To, Cc and Bcc."""
    return tuple(value for kind in recipients for a in kind if (value := (a.text or "").strip()))


def _date(raw: str) -> datetime:
    try:
        at = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise Mm7Error(VALIDATION_ERROR, f"Date {raw[:40]!r} is not an xs:dateTime") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _media(attachments: dict[str, MimePart], element: Element, ns: str) -> tuple[Part, ...]:
    content = element.find(_q(ns, "Content"))
    if content is None:
        return ()
    cid = _cid(content.get("href", "").removeprefix("cid:"))
    part = attachments.get(cid)
    if part is None:
        raise Mm7Error(FORMAT_CORRUPT, f"Content href cid:{cid} names no attachment")
    pieces = _read_multipart(part.content_type, part.payload) if part.media_type.startswith("multipart/") else [part]
    return tuple(Part(p.content_type, p.payload, p.content_id, p.headers.get("content-location", ""))
                 for p in pieces if p.media_type != "application/smil")


def submit_req(d: Decoded) -> SubmitReq:
    ns, el = namespace(d.schema), d.element
    ident = el.find(_q(ns, "SenderIdentification"))
    recipients = el.find(_q(ns, "Recipients"))
    if recipients is None:
        raise Mm7Error(VALIDATION_ERROR, "SubmitReq: Recipients is required")
    numbers = _addresses(recipients)
    if not numbers:
        raise Mm7Error(ADDRESS_ERROR, "SubmitReq: Recipients names no address")
    expiry = _text(el, ns, "ExpiryDate")
    return SubmitReq(
        transaction_id=d.transaction_id, recipients=numbers, parts=_media(d.attachments, el, ns),
        vasp_id=_text(ident, ns, "VASPID") if ident is not None else "",
        vas_id=_text(ident, ns, "VASID") if ident is not None else "",
        sender=_address_text(ident.find(_q(ns, "SenderAddress"))) if ident is not None else "",
        service_code=_text(el, ns, "ServiceCode"), linked_id=_text(el, ns, "LinkedID"),
        expiry=_date(expiry) if expiry else None,
        delivery_report=_text(el, ns, "DeliveryReport").lower() in ("true", "1"), subject=_text(el, ns, "Subject"))


def delivery_report_req(d: Decoded) -> DeliveryReportReq:
    ns, el = namespace(d.schema), d.element
    status = _text(el, ns, "MMStatus", required=True)
    if status not in MM_STATUS_STATS:
        raise Mm7Error(VALIDATION_ERROR, f"DeliveryReportReq: MMStatus {status[:40]!r} is not one of "
                                         f"{', '.join(MM_STATUS_STATS)}")
    return DeliveryReportReq(
        transaction_id=d.transaction_id, message_id=_text(el, ns, "MessageID", required=True),
        recipient=_address_text(el.find(_q(ns, "Recipient"))), sender=_address_text(el.find(_q(ns, "Sender"))),
        date=_date(_text(el, ns, "Date", required=True)), mm_status=status, status_text=_text(el, ns, "StatusText"),
        relay_server_id=_text(el, ns, "MMSRelayServerID"))


def deliver_req(d: Decoded) -> DeliverReq:
    ns, el = namespace(d.schema), d.element
    sender = _address_text(el.find(_q(ns, "Sender")))
    if not sender:
        raise Mm7Error(VALIDATION_ERROR, "DeliverReq: Sender is required")
    recipients = el.find(_q(ns, "Recipients"))
    numbers = _addresses(recipients) if recipients is not None else ()
    return DeliverReq(transaction_id=d.transaction_id, sender=sender, recipients=numbers,
                      linked_id=_text(el, ns, "LinkedID"), subject=_text(el, ns, "Subject"),
                      relay_server_id=_text(el, ns, "MMSRelayServerID"), parts=_media(d.attachments, el, ns))


def response(d: Decoded) -> Response:
    ns, el = namespace(d.schema), d.element
    status = el.find(_q(ns, "Status"))
    if status is None:
        raise Mm7Error(VALIDATION_ERROR, f"{d.kind}: Status is required")
    raw = _text(status, ns, "StatusCode", required=True)
    if not raw.isdigit():
        raise Mm7Error(VALIDATION_ERROR, f"{d.kind}: StatusCode {raw[:20]!r} is not a number")
    return Response(d.kind, d.transaction_id, int(raw), _text(status, ns, "StatusText"),
                    _text(el, ns, "MessageID"), d.fault)
