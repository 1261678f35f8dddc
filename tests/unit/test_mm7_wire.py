"""MM7 (3GPP TS 23.140) encodings, read back with parsers we did not write.

3GPP's published XML schema (REL-6-MM7-1-4.xsd) could not be had on this machine: no registry we reach
ships it. So the element order and cardinality that schema gives SubmitReqType, DeliveryReportReqType,
DeliverReqType and the responses are written out here from TS 23.140 (Release 6, clause 8.7 and the
schema's sequences), and every envelope we send is held against them. The MIME structure is read back by
the standard library's `email` parser and every attachment compared byte for byte."""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import xml.etree.ElementTree as StdET
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cardsms.delivery import mm7_decode
from cardsms.delivery import mm7_wire as w
from cardsms.delivery.connector import SubmitError
from cardsms.delivery.digital import DigitalContent
from cardsms.delivery.mm7 import Mm7Link
from cardsms.domain.connectors import parse_digital

ENV = "{http://schemas.xmlsoap.org/soap/envelope/}"

# TS 23.140 (REL-6-MM7-1-4): each type's child elements in schema order, with (min, max) occurrences.
# GenericVASPRequestType and GenericRSReqType bring MM7Version (and SenderIdentification / MMSRelayServerID).
SEQUENCES: dict[str, list[tuple[str, int, int]]] = {
    "SubmitReq": [("MM7Version", 1, 1), ("SenderIdentification", 1, 1), ("Recipients", 1, 1),
                  ("PreferredChannels", 0, 1), ("ServiceCode", 0, 1), ("LinkedID", 0, 1), ("MessageClass", 0, 1),
                  ("TimeStamp", 0, 1), ("ReplyCharging", 0, 1), ("EarliestDeliveryTime", 0, 1),
                  ("ExpiryDate", 0, 1), ("DeliveryReport", 0, 1), ("ReadReply", 0, 1), ("Priority", 0, 1),
                  ("Subject", 0, 1), ("ChargedParty", 0, 1), ("ChargedPartyID", 0, 1),
                  ("DistributionIndicator", 0, 1), ("DeliveryCondition", 0, 1), ("ApplicID", 0, 1),
                  ("ReplyApplicID", 0, 1), ("AuxApplicInfo", 0, 1), ("ContentClass", 0, 1), ("DRMContent", 0, 1),
                  ("Content", 0, 1)],
    "SenderIdentification": [("VASPID", 0, 1), ("VASID", 0, 1), ("SenderAddress", 0, 1)],
    "SubmitRsp": [("MM7Version", 1, 1), ("Status", 1, 1), ("MessageID", 0, 1)],
    "DeliveryReportReq": [("MM7Version", 1, 1), ("MMSRelayServerID", 0, 1), ("MessageID", 1, 1),
                          ("Recipient", 1, 1), ("Sender", 1, 1), ("Date", 1, 1), ("MMStatus", 1, 1),
                          ("MMStatusExtension", 0, 1), ("StatusText", 0, 1), ("ApplicID", 0, 1),
                          ("ReplyApplicID", 0, 1), ("AuxApplicInfo", 0, 1)],
    "DeliveryReportRsp": [("MM7Version", 1, 1), ("Status", 1, 1)],
    "DeliverReq": [("MM7Version", 1, 1), ("MMSRelayServerID", 0, 1), ("VASPID", 0, 1), ("VASID", 0, 1),
                   ("LinkedID", 0, 1), ("Sender", 1, 1), ("Recipients", 0, 1), ("Previouslysentby", 0, 1),
                   ("Previouslysentdateandtime", 0, 1), ("SenderSPI", 0, 1), ("RecipientSPI", 0, 1),
                   ("TimeStamp", 0, 1), ("ReplyChargingID", 0, 1), ("Priority", 0, 1), ("Subject", 0, 1),
                   ("ApplicID", 0, 1), ("ReplyApplicID", 0, 1), ("AuxApplicInfo", 0, 1), ("UACapabilities", 0, 1),
                   ("Content", 0, 1)],
    "DeliverRsp": [("MM7Version", 1, 1), ("Status", 1, 1), ("ServiceCode", 0, 1)],
    "RSErrorRsp": [("MM7Version", 1, 1), ("Status", 1, 1)],
    "VASPErrorRsp": [("MM7Version", 1, 1), ("Status", 1, 1)],
    "Status": [("StatusCode", 1, 1), ("StatusText", 0, 1), ("Details", 0, 1)],
}
ADDRESS_CHOICE = {"Number", "ShortCode", "RFC2822Address"}
MM_STATUS = {"Expired", "Retrieved", "Rejected", "Indeterminate", "Forwarded", "Unrecognised", "DeferredRetrieval"}


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def conforms(el: StdET.Element, schema: str) -> None:
    """Hold `el` (and its typed children) against SEQUENCES: order, cardinality, namespace."""
    ns = "{" + w.namespace(schema) + "}"
    name = local(el.tag)
    assert el.tag == ns + name, f"{name} is not in {schema}'s namespace"
    rules = SEQUENCES[name]
    order = [n for n, _, _ in rules]
    children = [local(c.tag) for c in el]
    assert all(c in order for c in children), f"{name}: elements outside its type: {set(children) - set(order)}"
    assert children == sorted(children, key=order.index), f"{name}: out of schema order: {children}"
    for n, low, high in rules:
        assert low <= children.count(n) <= high, f"{name}: {n} occurs {children.count(n)} times"
    for c in el:
        cname = local(c.tag)
        assert c.tag == ns + cname, f"{name}/{cname} is not in the MM7 namespace"
        if cname in SEQUENCES:
            conforms(c, schema)
        if cname in ("SenderAddress", "Recipient", "Sender"):
            assert [local(x.tag) for x in c] and {local(x.tag) for x in c} <= ADDRESS_CHOICE
        if cname == "Recipients":
            assert {local(x.tag) for x in c} <= {"To", "Cc", "Bcc"} and len(c) >= 1
            for kind in c:
                assert len(kind) >= 1 and {local(x.tag) for x in kind} <= ADDRESS_CHOICE
        if cname in ("TimeStamp", "ExpiryDate", "Date"):
            datetime.fromisoformat((c.text or "").replace("Z", "+00:00"))
        if cname == "DeliveryReport":
            assert c.text in ("true", "false")
        if cname == "MMStatus":
            assert c.text in MM_STATUS
        if cname == "Content":
            assert c.get("href", "").startswith("cid:") and not len(c)


def envelope_of(content_type: str, body: bytes) -> tuple[StdET.Element, dict[str, email.message.Message]]:
    """SOAP envelope and attachments, split by the standard library's MIME parser (not ours)."""
    if content_type.startswith("text/xml"):
        return StdET.fromstring(body), {}
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    assert msg.get_content_type() == "multipart/related"
    start = msg.get_param("start")
    parts = list(msg.iter_parts())  # type: ignore[attr-defined]
    root = next(p for p in parts if p["Content-ID"] == start)
    assert root.get_content_type() == "text/xml"
    return StdET.fromstring(root.get_payload(decode=True)), {p["Content-ID"]: p for p in parts if p is not root}


def body_element(env: StdET.Element) -> StdET.Element:
    assert env.tag == ENV + "Envelope"
    header, body = env.find(ENV + "Header"), env.find(ENV + "Body")
    assert header is not None and body is not None and len(body) == 1
    assert local(header[0].tag) == "TransactionID" and header[0].get(ENV + "mustUnderstand") == "1"
    return body[0]


PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40
MP4 = b"\x00\x00\x00\x18ftypmp42" + b"\r\n--not-a-boundary\r\n" * 50


def sample_parts() -> tuple[w.Part, ...]:
    return (w.Part("text/plain;charset=utf-8", "您的订单已发货。\r\n第二行".encode(), "p1", "1.txt"),
            w.Part("image/png", PNG, "p2", "2.png"), w.Part("audio/mpeg", b"ID3" + bytes(500), "p3", "3.mp3"),
            w.Part("video/mp4", MP4, "p4", "4.mp4"))


@pytest.mark.parametrize("schema", ["REL-6-MM7-1-4", "REL-5-MM7-1-0"])
def test_a_submit_conforms_and_every_attachment_arrives_byte_equal(schema: str) -> None:
    parts = sample_parts()
    req = w.SubmitReq("tx-1", ("8613800000001",), parts, vasp_id="SP01", vas_id="VAS01", sender="106900001",
                      service_code="SVC", linked_id="", expiry=datetime(2026, 12, 6, 8, tzinfo=UTC), subject="订单")
    ctype, body = w.encode_submit(req, schema)
    env, attachments = envelope_of(ctype, body)
    submit = body_element(env)
    conforms(submit, schema)
    ns = "{" + w.namespace(schema) + "}"
    assert submit.findtext(ns + "MM7Version") == w.VERSIONS[schema]
    assert submit.findtext(f"{ns}ExpiryDate") == "2026-12-06T08:00:00Z"
    assert submit.findtext(f"{ns}DeliveryReport") == "true"
    href = submit.find(ns + "Content").get("href")  # type: ignore[union-attr]
    content = attachments["<" + href.removeprefix("cid:") + ">"]
    assert content.get_content_type() == "multipart/related" and content.get_param("type") == "application/smil"
    media = list(content.iter_parts())  # type: ignore[attr-defined]
    smil = media[0]
    assert smil.get_content_type() == "application/smil" and smil["Content-ID"] == content.get_param("start")
    presentation = StdET.fromstring(smil.get_payload(decode=True))
    srcs = [el.get("src") for el in presentation.iter() if el.get("src")]
    assert srcs == [f"cid:{p.content_id}" for p in parts]  # the template's order
    for sent, got in zip(parts, media[1:], strict=True):
        assert got["Content-ID"] == f"<{sent.content_id}>" and got["Content-Location"] == sent.location
        assert got.get_payload(decode=True) == sent.data
    back = mm7_decode.submit_req(mm7_decode.decode(ctype, body))  # our own reader agrees
    assert back.recipients == req.recipients and back.subject == "订单" and back.sender == "106900001"
    assert [hashlib.sha256(p.data).hexdigest() for p in back.parts] == [hashlib.sha256(p.data).hexdigest()
                                                                       for p in parts]


@pytest.mark.parametrize("kind", ["SubmitRsp", "DeliveryReportRsp", "DeliverRsp"])
def test_responses_conform(kind: str) -> None:
    ctype, body = w.encode_response(kind, "tx-9", 1000, message_id="MID-1")
    answer = body_element(envelope_of(ctype, body)[0])
    conforms(answer, w.DEFAULT_SCHEMA)
    got = mm7_decode.response(mm7_decode.decode(ctype, body))
    assert (got.kind, got.status, got.transaction_id) == (kind, 1000, "tx-9")
    assert got.message_id == ("MID-1" if kind == "SubmitRsp" else "")


@pytest.mark.parametrize("kind", ["RSErrorRsp", "VASPErrorRsp"])
def test_error_responses_are_soap_faults_with_the_mm7_status_in_their_detail(kind: str) -> None:
    ctype, body = w.encode_response(kind, "tx-2", 2007, text="Message format corrupt: no Body")
    fault = body_element(envelope_of(ctype, body)[0])
    assert fault.tag == ENV + "Fault" and fault.findtext("faultcode") == "env:Client"
    detail = fault.find("detail")
    assert detail is not None
    conforms(detail[0], w.DEFAULT_SCHEMA)
    got = mm7_decode.response(mm7_decode.decode(ctype, body))
    assert got.fault and got.status == 2007 and got.kind == kind


def test_a_delivery_report_and_a_reply_conform_and_read_back() -> None:
    rep = w.DeliveryReportReq("tx-3", "MID-7", "8613800000001", "106900001", datetime(2026, 12, 4, tzinfo=UTC),
                              "Retrieved", "ok", "mmsc-1")
    ctype, body = w.encode_delivery_report(rep)
    conforms(body_element(envelope_of(ctype, body)[0]), w.DEFAULT_SCHEMA)
    assert mm7_decode.delivery_report_req(mm7_decode.decode(ctype, body)) == rep
    mo = w.DeliverReq("tx-4", "8613800000001", ("106900001",), "LNK", "re",
                      parts=(w.Part("text/plain;charset=utf-8", b"R", "t1", "reply.txt"),))
    ctype, body = w.encode_deliver(mo)
    env, attachments = envelope_of(ctype, body)
    conforms(body_element(env), w.DEFAULT_SCHEMA)
    assert [p.get_payload(decode=True) for p in attachments["<mm7-content>"].iter_parts()][1:] == [b"R"]
    back = mm7_decode.deliver_req(mm7_decode.decode(ctype, body))
    assert back.text == "R" and back.sender == "8613800000001" and back.linked_id == "LNK"


@pytest.mark.parametrize(("code", "klass"), [(1000, "success"), (1100, "success"), (2002, "client"),
                                            (3000, "server"), (3001, "server"), (4006, "service"), (9999, "server")])
def test_status_classes(code: int, klass: str) -> None:
    assert w.status_class(code) == klass


HOSTILE = {
    "not xml": b"<<<",
    "external entity": b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                       b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>&x;</e:Body>'
                       b"</e:Envelope>",
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
                      b'&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><l>&c;</l>',
    "not soap": b"<html><body/></html>",
    "empty body": b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body/></e:Envelope>',
    "foreign namespace": b'<e:Envelope xmlns:e="http://schemas.xmlsoap.org/soap/envelope/"><e:Body>'
                         b'<SubmitReq xmlns="urn:other"/></e:Body></e:Envelope>',
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_envelopes_are_refused_with_an_mm7_status(name: str) -> None:
    with pytest.raises(w.Mm7Error) as caught:
        mm7_decode.decode("text/xml", HOSTILE[name])
    assert caught.value.status in (w.FORMAT_CORRUPT, w.UNSUPPORTED_VERSION)


def test_a_delivery_report_with_an_unknown_status_or_no_message_id_is_a_validation_error() -> None:
    rep = w.DeliveryReportReq("t", "M", "8613800000001", "1069", datetime(2026, 1, 1, tzinfo=UTC), "Retrieved")
    ctype, body = w.encode_delivery_report(rep)
    for bad in (body.replace(b">Retrieved<", b">Gone<"), body.replace(b">M<", b"><")):
        with pytest.raises(w.Mm7Error) as caught:
            mm7_decode.delivery_report_req(mm7_decode.decode(ctype, bad))
        assert caught.value.status == w.VALIDATION_ERROR


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.sampled_from(["text/xml", 'multipart/related; boundary="b"; start="<a>"',
                                                 "multipart/related", "application/json"]))
def test_any_bytes_decode_or_raise_a_named_mm7_error(data: bytes, ctype: str) -> None:
    try:
        got = mm7_decode.decode(ctype, data)
    except w.Mm7Error as exc:
        assert exc.status in w.STATUS_TEXT and exc.text
    else:
        assert got.kind


# --- the link: URLs, and what each answer of an MMSC means -----------------------------------------------

def test_digital_link_urls_take_every_option_and_refuse_bad_ones_naming_them(tmp_path: Path) -> None:
    secret = tmp_path / "mm7.secret"
    secret.write_text("from-file\n")
    (link,) = parse_digital([{"url": f"mm7://VASP01@mmsc.example:8080/mm7/vas?vasid=V1&service_code=10690123"
                                     f"&schema=REL-5-MM7-1-0&version=5.3.0&tps=50&concurrency=4&timeout=12"
                                     f"&allow=10.0.0.0/8,127.0.0.1&secret_file={secret}",
                              "name": "cmcc", "prefixes": ["+86"]}])
    assert (link.name, link.endpoint, link.vasp_id, link.secret) == ("cmcc", "http://mmsc.example:8080/mm7/vas",
                                                                     "VASP01", "from-file")
    assert (link.vas_id, link.service_code, link.schema, link.version) == ("V1", "10690123", "REL-5-MM7-1-0", "5.3.0")
    assert (link.tps, link.concurrency, link.timeout, link.prefixes) == (50, 4, 12.0, ("+86",))
    assert link.allow == ("10.0.0.0/8", "127.0.0.1/32") and link.tls is None and link.scheme == "mm7"
    (tls,) = parse_digital(["mm7s://V:S@h:443/?verify=false"])
    assert tls.endpoint == "https://h:443/" and tls.tls is not None and not tls.tls.verify and tls.scheme == "mm7s"
    bad = {
        "smpp://V:S@h:1": "scheme", "mm7://V:S@h/": "port", "mm7://:S@h:1/": "VASPID",
        "mm7://V:S@h:1/?schema=REL-9": "schema", "mm7://V:S@h:1/?version=x": "version",
        "mm7://V:S@h:1/?service_code=abc": "service_code", "mm7://V:S@h:1/?tps=-1": "tps",
        "mm7://V:S@h:1/?concurrency=0": "concurrency", "mm7://V:S@h:1/?timeout=0": "timeout",
        "mm7://V:S@h:1/?allow=nowhere": "allow", "mm7://V:S@h:1/?bogus=1": "unknown URL options",
        f"mm7://V:S@h:1/?secret_file={secret}": "not both", "mm7://V:S@h:1/?ca=x": "unknown URL options",
        "mm7s://V:S@h:1/?cert=x": "cert",
    }
    for url, named in bad.items():
        with pytest.raises(ValueError, match=named):
            parse_digital([url])
    with pytest.raises(ValueError, match="used twice"):
        parse_digital(["mm7://V:S@h:1/", {"url": "mm7://V:S@h:2/", "name": "mm7-1"}])
    with pytest.raises(ValueError, match="inbound path"):
        parse_digital([{"url": "mm7://V:S@h:1/", "name": "a/b"}])


def _answer(status: int, kind: str = "SubmitRsp", http: int = 200, message_id: str = "MID") -> httpx.Response:
    ctype, body = w.encode_response(kind, "t", status, message_id=message_id)
    return httpx.Response(http, headers={"content-type": ctype}, content=body)


async def _content(account: int, code: str) -> DigitalContent:
    return DigitalContent("s", ())


@pytest.mark.asyncio
async def test_every_status_class_of_an_mmsc_answer_maps_to_an_outcome() -> None:
    (cfg,) = parse_digital(["mm7://V:S@127.0.0.1:9/"])
    link = Mm7Link(cfg, _content, lambda item: None)
    try:
        assert link._outcome(_answer(1000)) == "MID" and link._outcome(_answer(1100)) == "MID"
        cases = [  # (answer, code, transient, throttled, link error)
            (_answer(2002, "RSErrorRsp", 500), "MM7:2002", False, False, False),
            (_answer(3000, "RSErrorRsp", 500), "MM7:3000", True, False, False),
            (_answer(4004, "RSErrorRsp", 500), "MM7:4004", False, False, False),
            (_answer(4006, "RSErrorRsp", 500), "MM7:4006", True, True, False),
            (_answer(4001, "RSErrorRsp", 500), "MM7:4001", True, False, True),
            (_answer(1000, message_id=""), "MM7_BAD_ANSWER", True, False, False),
            (httpx.Response(503), "MM7_THROTTLED", True, True, False),
            (httpx.Response(429), "MM7_THROTTLED", True, True, False),
            (httpx.Response(401), "MM7_UNAUTHORIZED", True, False, True),
            (httpx.Response(502, content=b"bad gateway"), "HTTP502", True, False, False),
            (httpx.Response(200, content=b"<html/>", headers={"content-type": "text/html"}), "MM7_BAD_ANSWER",
             True, False, False),
        ]
        for resp, code, transient, throttled, link_error in cases:
            with pytest.raises(SubmitError) as caught:
                link._outcome(resp)
            got = caught.value
            assert (got.code, got.transient, got.throttled, got.link) == (code, transient, throttled, link_error)
        assert not link.up  # the last link error (401) rests the link
    finally:
        await link.stop()


def test_what_the_standard_librarys_mime_writer_makes_reads_back_byte_equal() -> None:
    """A SubmitReq written by another MIME writer (the standard library's: base64 parts, its own boundaries and
    folded headers): our reader gets every part byte for byte."""
    from email.mime.application import MIMEApplication
    from email.mime.image import MIMEImage
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText

    ours_type, ours = w.encode_submit(w.SubmitReq("tx-7", ("8613800000009",), ()))
    envelope = envelope_of(ours_type, ours)[0]
    content = MIMEMultipart("related", type="application/smil", start="<smil>")
    smil = MIMEApplication(w.smil_for(()), "smil")
    smil.add_header("Content-ID", "<smil>")
    text = MIMEText("第一行\n第二行 " * 20, "plain", "utf-8")  # base64 by the library's choice
    text.add_header("Content-ID", "<t1>")
    image = MIMEImage(PNG, "png")
    image.add_header("Content-ID", "<i1>")
    image.add_header("Content-Location", "photo.png")
    for part in (smil, text, image):
        content.attach(part)
    content.add_header("Content-ID", "<mm7-content>")
    soap = MIMEText(StdET.tostring(envelope, encoding="unicode"), "xml", "utf-8")
    soap.add_header("Content-ID", "<env>")
    outer = MIMEMultipart("related", type="text/xml", start="<env>")
    outer.attach(soap)
    outer.attach(content)
    raw = outer.as_bytes(policy=email.policy.HTTP)
    head, _, body = raw.partition(b"\r\n\r\n")
    ctype = next(line.split(b":", 1)[1].strip().decode() for line in head.replace(b"\r\n\t", b" ").replace(
        b"\r\n ", b" ").split(b"\r\n") if line.lower().startswith(b"content-type"))
    got = mm7_decode.submit_req(mm7_decode.decode(ctype, body))
    assert got.recipients == ("8613800000009",)
    assert [(p.content_id, p.location, p.data) for p in got.parts] == [
        ("t1", "", ("第一行\n第二行 " * 20).encode()), ("i1", "photo.png", PNG)]


@pytest.mark.parametrize("body", [b"no boundary here", b"--b\r\nContent-ID: <a>\r\n\r\nunclosed",
                                  b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!\r\n--b--\r\n",
                                  b"".join(b"--b\r\n\r\nx\r\n" for _ in range(100)) + b"--b--\r\n"])
def test_a_multipart_that_breaks_the_rules_is_a_format_error(body: bytes) -> None:
    with pytest.raises(w.Mm7Error) as caught:
        mm7_decode.decode('multipart/related; boundary="b"', body)
    assert caught.value.status == w.FORMAT_CORRUPT
