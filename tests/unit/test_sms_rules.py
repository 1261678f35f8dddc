"""SMS text rules, connector configuration, the card renderer and the inbound journal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cardsms.delivery.connector import Inbound
from cardsms.delivery.journal import Journal
from cardsms.domain import sms
from cardsms.domain.connectors import parse_connectors
from cardsms.links.render import card_view, render_card_page
from tests.integration.helpers import SAMPLE_CARD

GSM_TEXT = st.text(alphabet=st.sampled_from(list("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
                                                 "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
                                                 "^{}[]~|€\\")), max_size=700)


def test_the_gsm_alphabet_table_has_128_codes() -> None:
    assert len(sms._GSM_BASIC) == 128 and sms._GSM_BASIC[0x1B] == "\x1b"
    assert sms.encode_gsm7("@Aa€") == bytes([0x00, 0x41, 0x61, 0x1B, 0x65])


@pytest.mark.parametrize(("text", "segments", "coding"), [
    ("a" * 160, 1, sms.GSM7), ("a" * 161, 2, sms.GSM7), ("a" * 306, 2, sms.GSM7), ("a" * 307, 3, sms.GSM7),
    ("€" * 80, 1, sms.GSM7), ("€" * 81, 2, sms.GSM7),
    ("中" * 70, 1, sms.UCS2), ("中" * 71, 2, sms.UCS2), ("中" * 134, 2, sms.UCS2), ("中" * 135, 3, sms.UCS2),
    ("a" * 69 + "中", 1, sms.UCS2), ("", 1, sms.GSM7),
])
def test_segment_counts_follow_the_70_67_and_160_153_rules(text: str, segments: int, coding: int) -> None:
    encoded = sms.encode(text)
    assert encoded.segments == segments and encoded.data_coding == coding


@given(GSM_TEXT)
def test_gsm7_parts_reassemble_and_never_split_an_escape(text: str) -> None:
    encoded = sms.encode(text)
    assert all(len(p) <= (160 if encoded.segments == 1 else 153) for p in encoded.parts)
    assert all(not p.endswith(b"\x1b") for p in encoded.parts)
    assert "".join(sms.decode_payload(p, encoded.data_coding) for p in encoded.parts) == text


@given(st.text(min_size=1, max_size=400))
def test_any_text_survives_encoding_and_concatenation(text: str) -> None:
    encoded = sms.encode(text)
    payloads = [sms.udh(7, encoded.segments, i) + p for i, p in enumerate(encoded.parts, 1)]
    out = []
    for seq, payload in enumerate(payloads, 1):
        concat, body = sms.split_udh(payload)
        assert concat == (7, encoded.segments, seq)
        out.append(body)
    if encoded.data_coding == sms.UCS2:
        assert all(len(p) <= (140 if encoded.segments == 1 else 134) for p in encoded.parts)
        assert b"".join(out).decode("utf-16-be") == text  # surrogate pairs are never split
    else:
        assert "".join(sms.decode_payload(b, sms.GSM7) for b in out) == text


def test_composition_adds_signature_link_and_opt_out_line_once() -> None:
    assert sms.compose("商城", "您有一条新消息", "https://l.example/s/Ab12", opt_out=True) == \
        "【商城】您有一条新消息 https://l.example/s/Ab12 拒收请回复R"
    assert sms.compose("Shop", "You have a new message.", "1y7.cn/F4nJHhe5", opt_out=True) == \
        "【Shop】You have a new message. 1y7.cn/F4nJHhe5 To unsubscribe, reply R."
    assert sms.compose("Shop", "Sale! To unsubscribe, reply R.", opt_out=True) == \
        "【Shop】Sale! To unsubscribe, reply R."
    assert sms.compose("Shop", "Your code is 1234.") == "【Shop】Your code is 1234."


@pytest.mark.parametrize("reply", ["R", "r", " T ", "td", "TD", "退订", "stop", "STOP", "Stop."])
def test_opt_out_keywords_in_any_case(reply: str) -> None:
    assert sms.is_opt_out(reply)


@pytest.mark.parametrize("reply", ["RR", "ok", "stop it", "退订了吗", ""])
def test_other_replies_do_not_opt_out(reply: str) -> None:
    assert not sms.is_opt_out(reply)


def test_receipt_text_round_trips() -> None:
    text = sms.receipt_text("A1-2F", "2611251200", "2611251201", "UNDELIV", "001", "hello")
    parsed = sms.parse_receipt(text)
    assert parsed == sms.ReceiptText("A1-2F", "UNDELIV", "001")
    assert sms.parse_receipt("just an MO message") is None
    assert sms.FINAL_STATS["DELIVRD"] == "delivered" and sms.FINAL_STATS["REJECTD"] == "failed"


def test_connector_configuration_names_the_bad_entry() -> None:
    ok = parse_connectors(["smpp://esme:pw@127.0.0.1:2775",
                           {"url": "smpp://b:pw@h:2776", "window": 10, "tps": 100, "prefixes": ["+86"]}],
                          window=50, tps=0, system_type="")
    assert [c.name for c in ok] == ["smsc1", "smsc2"] and ok[1].serves("+8613800138000")
    assert not ok[1].serves("+14155550100") and ok[0].serves("+14155550100") and ok[0].window == 50
    for bad, rule in [("http://a:b@h:1", "scheme"), ("smpp://h:1", "SYSTEM_ID"), ("smpp://a:b@h", "port"),
                      ("smpp://a:toolongpassword@h:1", "8 characters"),
                      ({"url": "smpp://a:b@h:1", "window": 0}, "window"),
                      ({"url": "smpp://a:b@h:1", "prefixes": ["86"]}, "prefixes"),
                      ({"url": "smpp://a:b@h:1", "colour": "red"}, "unknown keys")]:
        with pytest.raises(ValueError, match=rule):
            parse_connectors([bad], window=50, tps=0, system_type="")


def test_the_card_page_escapes_card_text() -> None:
    body = {**SAMPLE_CARD, "templateContent": {"pages": [{"tmpCards": [
        {"type": "TEXT", "isTextTitle": True, "content": "<script>alert(1)</script>${name}", "positionNumber": 1},
        {"type": "BUTTON", "content": "Go", "actionType": "OPEN_BROWSER",
         "action": {"target": "javascript:alert(2)"}, "positionNumber": 2}]}]}}
    html = render_card_page(card_view(body, {"name": "<b>Li</b>"}, {}), "t")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Li&lt;/b&gt;" in html
    assert "javascript:" not in html


def test_the_journal_replays_what_was_not_committed(tmp_path: Path) -> None:
    first = Journal(tmp_path)
    items = [Inbound("sim", True, "86139", "1069", f"id:{i} stat:DELIVRD", str(i), "DELIVRD", "000",
                     datetime(2026, 11, 25, tzinfo=UTC)) for i in range(3)]
    offsets = [first.append(i) for i in items]
    first.committed(offsets[0])
    # the process dies here: no close()
    second = Journal(tmp_path)
    left = list(second.leftovers())
    assert len(left) == 1 and left[0][1] == items[1:]
    Journal.discard(left[0][0])
    second.close()
    assert list(tmp_path.iterdir()) == []


def test_link_codes_draw_every_letter_of_the_alphabet_evenly() -> None:
    from collections import Counter

    from cardsms.services.outbox import _CODE_ALPHABET, new_link_code

    codes = [new_link_code() for _ in range(50_000)]
    assert all(len(c) == 8 for c in codes) and len(set(codes)) == len(codes)
    counts = Counter("".join(codes))
    assert set(counts) == set(_CODE_ALPHABET)
    mean = 8 * len(codes) / len(_CODE_ALPHABET)
    assert all(abs(n - mean) < 0.06 * mean for n in counts.values()), counts  # modulo bias: -12% and +9%


def test_a_forked_child_draws_other_link_codes_than_its_parent() -> None:
    import os

    from cardsms.services.outbox import new_link_code

    new_link_code()  # the pool holds bytes now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, "".join(new_link_code() for _ in range(10)).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 1000).decode()
    os.close(read)
    os.close(write)
    assert len(child) == 80 and child != "".join(new_link_code() for _ in range(10))
