"""Decoding MM7 (delivery/mm7_wire.py has the format and the encoders): a request or answer's SOAP envelope
and its multimedia content, from bare XML or SOAP with attachments, read by a small strict multipart reader;
every XML document parsed with defusedxml."""

from __future__ import annotations

import base64
import binascii
import quopri
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from cardsms.delivery.mm7_wire import (
    ADDRESS_ERROR,
    ENV_NS,
    FORMAT_CORRUPT,
    MAX_ENVELOPE_BYTES,
    MM_STATUS_STATS,
    NS_BASE,
    SCHEMA_NAME,
    UNSUPPORTED_VERSION,
    VALIDATION_ERROR,
    DeliverReq,
    DeliveryReportReq,
    Mm7Error,
    Part,
    Response,
    SubmitReq,
    namespace,
    qname,
)


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
    if env.tag != qname(ENV_NS, "Envelope"):
        raise Mm7Error(FORMAT_CORRUPT, f"the root element is {_local(env.tag)[1]!r}, not a SOAP 1.1 Envelope")
    body_el = env.find(qname(ENV_NS, "Body"))
    if body_el is None or len(body_el) == 0:
        raise Mm7Error(FORMAT_CORRUPT, "the envelope has no Body element")
    first = body_el[0]
    fault = first.tag == qname(ENV_NS, "Fault")
    if fault:
        detail = first.find("detail")
        if detail is None:
            detail = first.find(qname(ENV_NS, "detail"))
        if detail is None or len(detail) == 0:
            raise Mm7Error(FORMAT_CORRUPT, "a SOAP Fault without an MM7 detail")
        first = detail[0]
    ns, kind = _local(first.tag)
    if not ns.startswith(NS_BASE) or not SCHEMA_NAME.fullmatch(ns[len(NS_BASE):]):
        raise Mm7Error(UNSUPPORTED_VERSION, f"{kind} is not in an MM7 namespace ({ns or 'none'})")
    schema = ns[len(NS_BASE):]
    tid = ""
    header = env.find(qname(ENV_NS, "Header"))
    if header is not None:
        found = header.find(qname(ns, "TransactionID"))
        tid = (found.text or "").strip() if found is not None else ""
    return Decoded(kind, schema, tid, first, attachments, fault)


def _text(el: Element, ns: str, name: str, required: bool = False) -> str:
    found = el.find(qname(ns, name))
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
    content = element.find(qname(ns, "Content"))
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
    ident = el.find(qname(ns, "SenderIdentification"))
    recipients = el.find(qname(ns, "Recipients"))
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
        sender=_address_text(ident.find(qname(ns, "SenderAddress"))) if ident is not None else "",
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
        recipient=_address_text(el.find(qname(ns, "Recipient"))), sender=_address_text(el.find(qname(ns, "Sender"))),
        date=_date(_text(el, ns, "Date", required=True)), mm_status=status, status_text=_text(el, ns, "StatusText"),
        relay_server_id=_text(el, ns, "MMSRelayServerID"))


def deliver_req(d: Decoded) -> DeliverReq:
    ns, el = namespace(d.schema), d.element
    sender = _address_text(el.find(qname(ns, "Sender")))
    if not sender:
        raise Mm7Error(VALIDATION_ERROR, "DeliverReq: Sender is required")
    recipients = el.find(qname(ns, "Recipients"))
    numbers = _addresses(recipients) if recipients is not None else ()
    return DeliverReq(transaction_id=d.transaction_id, sender=sender, recipients=numbers,
                      linked_id=_text(el, ns, "LinkedID"), subject=_text(el, ns, "Subject"),
                      relay_server_id=_text(el, ns, "MMSRelayServerID"), parts=_media(d.attachments, el, ns))


def response(d: Decoded) -> Response:
    ns, el = namespace(d.schema), d.element
    status = el.find(qname(ns, "Status"))
    if status is None:
        raise Mm7Error(VALIDATION_ERROR, f"{d.kind}: Status is required")
    raw = _text(status, ns, "StatusCode", required=True)
    if not raw.isdigit():
        raise Mm7Error(VALIDATION_ERROR, f"{d.kind}: StatusCode {raw[:20]!r} is not a number")
    return Response(d.kind, d.transaction_id, int(raw), _text(status, ns, "StatusText"),
                    _text(el, ns, "MessageID"), d.fault)
