"""CMPP 2.0 and 3.0: the codec (delivery/cmpp_pdu.py) against two implementations we did not write (pycmpp,
a CMPP 2.0 client, and cmppy, a CMPP 3.0 client, both from PyPI), the simulated ISMG's answers to packets
that break the rules, and the connector against the simulated ISMG over real loopback sockets."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from datetime import datetime

import cmppy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycmpp.request import ConnectRequestInstance, SubmitRequestInstance

from cardsms.delivery import cmpp_pdu as cp
from cardsms.delivery.cmpp import CmppConnector
from cardsms.delivery.connector import Inbound, SubmitError
from cardsms.domain.connectors import ConnectorConfig
from cardsms.simulator.ismg import SimulatedIsmg
from cardsms.simulator.smsc import SmscOptions

digits = st.text(alphabet="0123456789", min_size=1, max_size=20)
sp_ids = st.text(alphabet="0123456789ABCDEF", min_size=6, max_size=6)
ascii_words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=10)
# pycmpp and cmppy send UCS-2 of fewer than 70 characters in the Basic Multilingual Plane
ucs2_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xD7FF), max_size=69)


def header(wire: bytes) -> tuple[int, int, int]:
    length, command_id, sequence = cp.HEADER.unpack_from(wire)
    return length, command_id, sequence


@settings(max_examples=200, deadline=None)
@given(sp_id=sp_ids, dests=st.lists(digits, min_size=1, max_size=5), text=ucs2_text, reg=st.integers(0, 1),
       level=st.integers(0, 9), service_id=ascii_words, src_id=digits)
def test_submit_2_0_bytes_equal_pycmpps_and_decode_back(sp_id: str, dests: list[str], text: str, reg: int,
                                                         level: int, service_id: str, src_id: str) -> None:
    theirs = SubmitRequestInstance().create(msg_src=sp_id, msg_content=text, dest_terminal_id=dests,
                                            registered_delivery=reg, msg_level=level, service_id=service_id,
                                            src_id=src_id)
    _, command_id, sequence = header(theirs)
    ours = cp.Submit(cp.V20, sp_id, src_id, tuple(dests), text.encode("utf-16-be"), cp.FMT_UCS2,
                     registered_delivery=reg, msg_level=level, service_id=service_id)
    assert cp.pack(cp.SUBMIT, sequence, ours.encode()) == theirs and command_id == cp.SUBMIT
    assert cp.Submit.decode(theirs[cp.HEADER_LEN:], cp.V20) == ours


@settings(max_examples=200, deadline=None)
@given(sp_id=sp_ids, dests=st.lists(digits, min_size=1, max_size=5), text=ucs2_text, reg=st.integers(0, 1),
       service_id=ascii_words, src_id=digits, fee_code=st.text(alphabet="0123456789", min_size=6, max_size=6),
       link_id=ascii_words, pk=st.integers(1, 9))
def test_submit_3_0_bytes_equal_cmppys_and_decode_back(sp_id: str, dests: list[str], text: str, reg: int,
                                                        service_id: str, src_id: str, fee_code: str, link_id: str,
                                                        pk: int) -> None:
    theirs = cmppy.SubmitReq(sp_id, text, src_id=src_id, dest_terminal_id=dests, registered_delivery=reg,
                             service_id=service_id, feecode=fee_code, linkid=link_id, pk_total=pk, pk_number=pk,
                             tp_udhi=int(pk > 1)).message
    _, _, sequence = header(theirs)
    ours = cp.Submit(cp.V30, sp_id, src_id, tuple(dests), text.encode("utf-16-be"), cp.FMT_UCS2, pk_total=pk,
                     pk_number=pk, registered_delivery=reg, service_id=service_id, fee_code=fee_code,
                     link_id=link_id, tp_udhi=int(pk > 1))
    assert cp.pack(cp.SUBMIT, sequence, ours.encode()) == theirs
    assert cp.Submit.decode(theirs[cp.HEADER_LEN:], cp.V30) == ours


@settings(max_examples=100, deadline=None)
@given(sp_id=sp_ids, secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", max_size=20))
def test_connect_bytes_and_authenticator_equal_pycmpps_and_cmppys(sp_id: str, secret: str) -> None:
    for theirs, version in ((ConnectRequestInstance().create(sp_id, secret), 0x21),
                            (cmppy.ConnectReq(sp_id, secret).message, 0x30)):
        _, command_id, sequence = header(theirs)
        stamp = struct.unpack_from(">I", theirs, cp.HEADER_LEN + 23)[0]
        ours = cp.Connect(sp_id, cp.authenticator_source(sp_id, secret, stamp), version, stamp)
        assert cp.pack(cp.CONNECT, sequence, ours.encode()) == theirs and command_id == cp.CONNECT
        assert cp.Connect.decode(theirs[cp.HEADER_LEN:]) == ours


@pytest.mark.parametrize("version", [cp.V20, cp.V30])
def test_deliver_and_report_round_trip(version: int) -> None:
    report = cp.Report(cp.make_msg_id(datetime(2026, 11, 29, 8, 30, 5), 77, 9), "MA:0001", "2611290830",
                       "2611290831", "13800138000", 42)
    deliver = cp.Deliver(version, 5, "1069012345", "13800138000", report.encode(version), registered_delivery=1)
    again = cp.Deliver.decode(deliver.encode(), version)
    assert again == deliver and cp.Report.decode(again.msg_content, version) == report
    assert len(report.encode(version)) == (71 if version == cp.V30 else 60)
    assert report.msg_id >> 60 == 11 and (report.msg_id >> 16) & 0x3FFFFF == 77


def test_text_is_split_as_the_carriers_count_it() -> None:
    assert cp.encode_text("hello") == (cp.FMT_ASCII, [b"hello"])
    fmt, parts = cp.encode_text("汉" * 71)
    assert fmt == cp.FMT_UCS2 and [len(p) for p in parts] == [134, 8]
    fmt, parts = cp.encode_text("汉" * 70, "gbk")
    assert fmt == cp.FMT_GBK and [len(p) for p in parts] == [140]
    fmt, parts = cp.encode_text("a" + "汉" * 70, "gbk")  # never half a character
    assert fmt == cp.FMT_GBK and [len(p) for p in parts] == [133, 8]
    assert cp.decode_text(b"".join(parts), cp.FMT_GBK) == "a" + "汉" * 70
    assert cp.encode_text("😀", "gbk")[0] == cp.FMT_UCS2  # no GBK code: UCS-2


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, int, bytes]:
    length, command_id, sequence = cp.HEADER.unpack(await asyncio.wait_for(reader.readexactly(cp.HEADER_LEN), 5))
    return command_id, sequence, await reader.readexactly(length - cp.HEADER_LEN)


def with_ismg(options: SmscOptions, body: Callable[[SimulatedIsmg], Awaitable[None]]) -> None:
    async def main() -> None:
        ismg = SimulatedIsmg(options)
        await ismg.start()
        try:
            await body(ismg)
        finally:
            await ismg.stop()

    asyncio.run(main())


@pytest.mark.parametrize("version", [cp.V20, cp.V30])
def test_the_simulated_ismg_answers_bad_packets_with_the_result_that_names_the_rule(version: int) -> None:
    async def body(ismg: SimulatedIsmg) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", ismg.port)

        async def ask(command_id: int, sequence: int, payload: bytes = b"") -> tuple[int, int, bytes]:
            writer.write(cp.pack(command_id, sequence, payload))
            return await read_packet(reader)

        def result(answer: bytes) -> int:
            return cp.decode_msg_id_and_result(answer, version)[1]

        submit = cp.Submit(version, "901234", "1069", ("13800138000",), "你好".encode("utf-16-be"))
        assert result((await ask(cp.SUBMIT, 1, submit.encode()))[2]) == cp.BAD_STRUCTURE  # not connected yet
        wrong = cp.Connect.create("901234", "wrong", version, datetime.now())
        command_id, _, answer = await ask(cp.CONNECT, 2, wrong.encode())
        assert command_id == cp.CONNECT | cp.RESP
        assert cp.ConnectResp.decode(answer, version).status == cp.CONNECT_BAD_AUTH
        other = cp.Connect.create("777777", "s3cret", version, datetime.now())
        assert cp.ConnectResp.decode((await ask(cp.CONNECT, 3, other.encode()))[2], version).status == \
            cp.CONNECT_BAD_SOURCE
        good = cp.Connect.create("901234", "s3cret", version, datetime.now())
        resp = cp.ConnectResp.decode((await ask(cp.CONNECT, 4, good.encode()))[2], version)
        assert resp.status == cp.OK and resp.version == version
        assert resp.authenticator == cp.authenticator_ismg(version, 0, good.authenticator, "s3cret")
        assert (await ask(0x00000099, 5))[:2] == (0x80000099, 5)  # an unknown command: answered, result 2
        assert result((await ask(cp.SUBMIT, 6, submit.encode()[:30]))[2]) == cp.BAD_STRUCTURE  # cut short
        bad_src = cp.Submit(version, "999999", "1069", ("13800138000",), b"hi", cp.FMT_ASCII)
        assert result((await ask(cp.SUBMIT, 7, bad_src.encode()))[2]) == cp.BAD_MSG_SRC
        bad_dest = cp.Submit(version, "901234", "1069", ("1380013800x",), b"hi", cp.FMT_ASCII)
        assert result((await ask(cp.SUBMIT, 8, bad_dest.encode()))[2]) == cp.BAD_DEST_TERMINAL
        odd = cp.Submit(version, "901234", "1069", ("13800138000",), b"\x4f\x60\x59", cp.FMT_UCS2)
        assert result((await ask(cp.SUBMIT, 9, odd.encode()))[2]) == cp.BAD_LENGTH
        assert await ask(cp.ACTIVE_TEST, 10) == (cp.ACTIVE_TEST | cp.RESP, 10, b"\x00")
        command_id, _, answer = await ask(cp.SUBMIT, 11, submit.encode())  # the session survived all of it
        msg_id, res = cp.decode_msg_id_and_result(answer, version)
        assert (command_id, res) == (cp.SUBMIT | cp.RESP, cp.OK) and msg_id > 0
        command_id, sequence, payload = await read_packet(reader)  # its status report
        deliver = cp.Deliver.decode(payload, version)
        report = cp.Report.decode(deliver.msg_content, version)
        assert command_id == cp.DELIVER and deliver.registered_delivery == 1
        assert (report.msg_id, report.stat, report.dest_terminal_id) == (msg_id, "DELIVRD", "13800138000")
        writer.write(cp.pack(cp.DELIVER | cp.RESP, sequence, cp.msg_id_and_result(deliver.msg_id, 0, version)))
        writer.write(struct.pack(">III", 8, cp.SUBMIT, 12))  # a Total_Length that cannot be framed
        command_id, sequence, answer = await read_packet(reader)
        assert (command_id, sequence, result(answer)) == (cp.SUBMIT | cp.RESP, 12, cp.BAD_LENGTH)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the ISMG hangs up
        writer.close()

    with_ismg(SmscOptions(latency_ms=0, sp_id="901234", secret="s3cret"), body)


def connector_for(port: int, version: int, got: list[Inbound], secret: str = "s3cret",
                  encoding: str = "ucs2") -> CmppConnector:
    return CmppConnector(ConnectorConfig(name="ismg", host="127.0.0.1", port=port, system_id="901234",
                                         password=secret, window=16, protocol="cmpp", version=version,
                                         src_id="1069012345", encoding=encoding), "1069", got.append)


async def bound(connector: CmppConnector) -> asyncio.Task[None]:
    runner = asyncio.create_task(connector.run())
    for _ in range(300):
        if connector.up or connector.last_error:
            break
        await asyncio.sleep(0.01)
    return runner


@pytest.mark.parametrize(("version", "encoding"), [(cp.V20, "ucs2"), (cp.V30, "ucs2"), (cp.V30, "gbk")])
def test_the_connector_sends_long_messages_and_matches_reports_and_replies(version: int, encoding: str) -> None:
    async def body(ismg: SimulatedIsmg) -> None:
        got: list[Inbound] = []
        delivered: list[tuple[str, str, str]] = []

        async def phone(dest: str, src: str, text: str) -> None:
            delivered.append((dest, src, text))

        ismg.on_delivered = phone
        connector = connector_for(ismg.port, version, got, encoding=encoding)
        runner = await bound(connector)
        assert connector.up, connector.last_error
        long_text = "【卡片】尊敬的客户，您的订单已经发货，" * 8
        short_ids = await connector.submit("+8613800138000", "你好 hello", "77")
        long_ids = await connector.submit("+8613800138001", long_text)
        assert len(short_ids) == 1 and len(long_ids) == 3
        for _ in range(300):
            if len(got) >= 4 and len(delivered) >= 2:
                break
            await asyncio.sleep(0.01)
        assert sorted(i.receipted_id for i in got) == sorted(short_ids + long_ids)
        assert all(i.is_receipt and i.stat == "DELIVRD" and i.local_base == "1069012345" for i in got)
        assert {i.source_addr for i in got} == {"8613800138000", "8613800138001"}
        assert sorted(delivered) == [("8613800138000", "106901234577", "你好 hello"),
                                     ("8613800138001", "1069012345", long_text)]
        assert await ismg.send_mo("8613800138000", "106901234577", "R")
        for _ in range(200):
            if len(got) >= 5:
                break
            await asyncio.sleep(0.01)
        reply = got[-1]
        assert (reply.is_receipt, reply.source_addr, reply.destination_addr, reply.text) == (
            False, "8613800138000", "106901234577", "R")
        await connector.stop()
        await asyncio.wait_for(runner, 5)

    with_ismg(SmscOptions(latency_ms=0, sp_id="901234", secret="s3cret"), body)


def test_a_wrong_secret_fails_the_bind_naming_it_and_too_fast_holds_the_connector() -> None:
    async def body(ismg: SimulatedIsmg) -> None:
        refused = connector_for(ismg.port, cp.V30, [], secret="wrong")
        runner = await bound(refused)
        assert not refused.up and "认证错 (authentication failed)" in refused.last_error
        await refused.stop()
        await asyncio.wait_for(runner, 5)

        connector = connector_for(ismg.port, cp.V30, [])
        runner = await bound(connector)
        ismg.opt.bind_tps = 1
        results = await asyncio.gather(*(connector.submit(f"+86138001380{i:02d}", "hi") for i in range(5)),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, SubmitError)]
        assert errors and all(e.throttled and e.code == "THROTTLED" for e in errors)
        assert connector.throttled_until > 0 and ismg.stats()["throttled"] >= 1
        await connector.stop()
        await asyncio.wait_for(runner, 5)

    with_ismg(SmscOptions(latency_ms=0, sp_id="901234", secret="s3cret"), body)


def test_an_ismg_that_proves_the_wrong_secret_is_refused() -> None:
    async def ismg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, sequence, _ = await read_packet(reader)
        writer.write(cp.pack(cp.CONNECT | cp.RESP, sequence, cp.ConnectResp(0, b"\x01" * 16, cp.V30).encode()))

    async def main() -> None:
        server = await asyncio.start_server(ismg, "127.0.0.1", 0)
        connector = connector_for(server.sockets[0].getsockname()[1], cp.V30, [])
        runner = await bound(connector)
        assert not connector.up and "AuthenticatorISMG" in connector.last_error
        await connector.stop()
        await asyncio.wait_for(runner, 5)
        server.close()

    asyncio.run(main())


@pytest.mark.parametrize("version", [cp.V20, cp.V30])
def test_the_connector_answers_a_malformed_deliver_and_stays_connected(version: int) -> None:
    answers: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()

    async def ismg(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, sequence, body = await read_packet(reader)
        connect = cp.Connect.decode(body)
        auth = cp.authenticator_ismg(version, 0, connect.authenticator, "s3cret")
        writer.write(cp.pack(cp.CONNECT | cp.RESP, sequence, cp.ConnectResp(0, auth, version).encode()))
        report = cp.Report(77, "MA:0001", "2611290830", "2611290831", "13800138000").encode(version)
        good = cp.Deliver(version, 9, "1069012345", "13800138000", report, registered_delivery=1).encode()
        writer.write(cp.pack(cp.DELIVER, 100, good[:20]))  # cut inside Dest_Id
        writer.write(cp.pack(0x00000099, 101))  # a command an SP does not take
        writer.write(cp.pack(cp.DELIVER, 102, good))
        for _ in range(3):
            command_id, sequence, body = await read_packet(reader)
            answers.put_nowait((command_id, sequence, cp.decode_msg_id_and_result(body, version)[1]
                                if command_id == cp.DELIVER | cp.RESP else int.from_bytes(body, "big")))

    async def main() -> None:
        server = await asyncio.start_server(ismg, "127.0.0.1", 0)
        got: list[Inbound] = []
        connector = connector_for(server.sockets[0].getsockname()[1], version, got)
        runner = await bound(connector)
        seen = [await asyncio.wait_for(answers.get(), 5) for _ in range(3)]
        assert seen == [(cp.DELIVER | cp.RESP, 100, cp.BAD_STRUCTURE), (0x80000099, 101, cp.BAD_COMMAND),
                        (cp.DELIVER | cp.RESP, 102, cp.OK)]
        # a carrier's own code is a failure, the code kept as the error
        assert [(i.receipted_id, i.stat, i.err, i.source_addr) for i in got] == [
            ("77", "UNDELIV", "MA:0001", "8613800138000")]
        assert connector.up and connector.binds == 1
        await connector.stop()
        await asyncio.wait_for(runner, 5)
        server.close()

    asyncio.run(main())


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=400), version=st.sampled_from([cp.V20, cp.V30]))
def test_any_bytes_decode_or_raise_a_pdu_error_naming_the_field(body: bytes, version: int) -> None:
    from cardsms.delivery.pdu import PduError

    for decode in (lambda b: cp.Submit.decode(b, version), lambda b: cp.Deliver.decode(b, version),
                   cp.Connect.decode, lambda b: cp.Report.decode(b, version),
                   lambda b: cp.ConnectResp.decode(b, version), lambda b: cp.decode_msg_id_and_result(b, version)):
        try:
            decode(body)
        except PduError as exc:
            assert exc.field and str(exc)


def test_reports_unanswered_when_the_ismg_drops_the_connection_come_after_the_reconnect() -> None:
    async def body(ismg: SimulatedIsmg) -> None:
        got: list[Inbound] = []
        connector = connector_for(ismg.port, cp.V30, got)
        runner = await bound(connector)
        ids: list[str] = []
        for i in range(12):  # the ISMG aborts every connection after each 4th submit
            for _ in range(200):
                try:
                    ids += await connector.submit(f"+86138001380{i:02d}", f"第{i}条")
                    break
                except SubmitError as exc:
                    assert exc.link or exc.code == "NOT_BOUND", exc
                    await asyncio.sleep(0.02)
        for _ in range(500):
            if {i.receipted_id for i in got} >= set(ids):
                break
            await asyncio.sleep(0.01)
        assert len(set(ids)) == 12 and {i.receipted_id for i in got} >= set(ids)
        assert ismg.stats()["drops"] >= 2 and connector.binds >= 3
        await connector.stop()
        await asyncio.wait_for(runner, 5)

    with_ismg(SmscOptions(latency_ms=30, sp_id="901234", secret="s3cret", disconnect_every=4), body)
