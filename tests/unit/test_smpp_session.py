"""SMPP sessions over real loopback sockets: the simulated SMSC and the gateway's connector answer
PDUs that break the rules with the status that names the rule and keep the session; a receipt is
acknowledged only once it was taken, and a refused one comes again."""

from __future__ import annotations

import asyncio
import struct

from cardsms.delivery import pdu
from cardsms.delivery.connector import Inbound
from cardsms.delivery.pdu import Bind, ShortMessage
from cardsms.delivery.smpp import SmppConnector
from cardsms.domain.connectors import ConnectorConfig
from cardsms.simulator.smsc import SimulatedSmsc, SmscOptions


async def read_pdu(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    header = await asyncio.wait_for(reader.readexactly(pdu.HEADER_LEN), 5)
    length, command_id, status, sequence = pdu.HEADER.unpack(header)
    return command_id, status, sequence, await reader.readexactly(length - pdu.HEADER_LEN)


def test_the_simulated_smsc_answers_bad_pdus_and_keeps_the_session() -> None:
    async def main() -> None:
        sim = SimulatedSmsc(SmscOptions(latency_ms=0))
        await sim.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
        submit = ShortMessage("1069", "8613900000001", b"hello", registered_delivery=1).encode()

        async def ask(command_id: int, sequence: int, body: bytes = b"") -> tuple[int, int, int, bytes]:
            writer.write(pdu.pack(command_id, 0, sequence, body))
            return await read_pdu(reader)

        assert (await ask(pdu.SUBMIT_SM, 1, submit))[:3] == (pdu.SUBMIT_SM | pdu.RESP, pdu.ESME_RINVBNDSTS, 1)
        command_id, status, _, body = await ask(pdu.BIND_TRANSCEIVER, 2, Bind("bank", "pw").encode())
        assert (command_id, status, body) == (pdu.BIND_TRANSCEIVER | pdu.RESP, 0, b"CARDSMS-SIM\x00")
        assert (await ask(pdu.BIND_TRANSCEIVER, 3, Bind("bank", "pw").encode()))[1] == pdu.ESME_RALYBND
        assert (await ask(0x00000099, 4))[:3] == (pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, 4)
        assert (await ask(pdu.SUBMIT_SM, 5, submit[:12]))[:3] == (pdu.SUBMIT_SM | pdu.RESP, pdu.ESME_RINVDSTADR, 5)
        assert (await ask(pdu.ENQUIRE_LINK, 6))[:3] == (pdu.ENQUIRE_LINK | pdu.RESP, 0, 6)
        cut_udh = ShortMessage("1069", "8613900000001", b"\x05\x00\x03", esm_class=0x40).encode()
        assert (await ask(pdu.SUBMIT_SM, 9, cut_udh))[:3] == (pdu.SUBMIT_SM | pdu.RESP, pdu.ESME_RINVESMCLASS, 9)
        command_id, status, _, body = await ask(pdu.SUBMIT_SM, 7, submit)  # the session survived all of it
        assert (command_id, status) == (pdu.SUBMIT_SM | pdu.RESP, 0)
        message_id = body.rstrip(b"\x00")
        command_id, _, sequence, body = await read_pdu(reader)  # its receipt
        receipt = ShortMessage.decode(body)
        assert command_id == pdu.DELIVER_SM and receipt.tlv(pdu.TLV_RECEIPTED_MESSAGE_ID) == message_id + b"\x00"
        writer.write(pdu.pack(pdu.DELIVER_SM | pdu.RESP, 0, sequence, b"\x00"))
        writer.write(struct.pack(">IIII", 8, pdu.SUBMIT_SM, 0, 8))  # a command_length that cannot be framed
        assert (await read_pdu(reader))[:3] == (pdu.GENERIC_NACK, pdu.ESME_RINVCMDLEN, 8)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the SMSC hangs up
        writer.close()
        await sim.stop()

    asyncio.run(main())


def test_the_connector_refuses_a_malformed_deliver_sm_and_stays_bound() -> None:
    async def main() -> None:
        answers: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()

        async def smsc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            command_id, _, sequence, _ = await read_pdu(reader)
            assert command_id == pdu.BIND_TRANSCEIVER
            writer.write(pdu.pack(pdu.BIND_TRANSCEIVER | pdu.RESP, 0, sequence, b"RAW\x00"))
            good = ShortMessage("8613900000001", "1069", b"id:X1 sub:001 dlvrd:001 submit date:2611250000 done "
                                b"date:2611250000 stat:DELIVRD err:000 text:", esm_class=4).encode()
            writer.write(pdu.pack(pdu.DELIVER_SM, 0, 100, good[:9]))  # cut inside source_addr
            writer.write(pdu.pack(0x00000099, 0, 101))
            writer.write(pdu.pack(pdu.DELIVER_SM, 0, 102, good))
            for _ in range(3):
                command_id, status, sequence, _ = await read_pdu(reader)
                answers.put_nowait((command_id, status, sequence))

        server = await asyncio.start_server(smsc, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        got: list[Inbound] = []
        connector = SmppConnector(ConnectorConfig(name="raw", host="127.0.0.1", port=port, system_id="cardsms",
                                                  password="pw", window=10, tps=0), "1069", got.append)
        runner = asyncio.create_task(connector.run())
        seen = [await asyncio.wait_for(answers.get(), 5) for _ in range(3)]
        assert seen == [(pdu.DELIVER_SM | pdu.RESP, pdu.ESME_RINVSRCADR, 100),
                        (pdu.GENERIC_NACK, pdu.ESME_RINVCMDID, 101),
                        (pdu.DELIVER_SM | pdu.RESP, pdu.ESME_ROK, 102)]
        assert [(i.receipted_id, i.stat) for i in got] == [("X1", "DELIVRD")]
        assert connector.up and connector.binds == 1
        await connector.stop()
        await asyncio.wait_for(runner, 5)
        server.close()

    asyncio.run(main())


def test_a_receipt_is_acknowledged_only_once_taken_and_a_refused_one_comes_again() -> None:
    async def main() -> None:
        sim = SimulatedSmsc(SmscOptions(latency_ms=0))
        await sim.start()
        offered: list[str] = []

        def take(item: Inbound) -> None:
            offered.append(item.receipted_id)
            if len(offered) == 1:
                raise OSError("journal disk full")  # not taken: answered ESME_RX_T_APPN, the SMSC keeps it

        connector = SmppConnector(ConnectorConfig(name="sim", host="127.0.0.1", port=sim.port, system_id="cardsms",
                                                  password="pw", window=10, tps=0), "1069", take)
        runner = asyncio.create_task(connector.run())
        while not connector.up:
            await asyncio.sleep(0.01)
        [message_id] = await connector.submit("+8613900000001", "hello")
        for _ in range(200):
            if len(offered) >= 2:
                break
            await asyncio.sleep(0.02)
        assert offered == [message_id, message_id]
        assert sim.stats()["pending_receipts"] == 0
        await connector.stop()
        await asyncio.wait_for(runner, 5)
        await sim.stop()

    asyncio.run(main())


def test_receipts_due_at_once_under_uvloop_are_released_in_order() -> None:
    """uvloop's call_at answers a moment already past with a plain Handle (no when()): the simulator's release
    timer must not ask it when it is due (a busy loop, e.g. under Jasmin's bursts, made every submit fail)."""
    import time

    import uvloop

    from cardsms.simulator.center import Receipt

    async def main() -> list[str]:
        smsc = SimulatedSmsc(SmscOptions())
        past = time.monotonic() - 1
        for i, due in enumerate([past, past - 0.5, time.monotonic() + 0.01]):
            smsc._later(due, Receipt("c", f"m{i}", "8613800000000", "1069", "DELIVRD", "", time.time()))
        await asyncio.sleep(0.05)
        return [r.msg_id for r in smsc.ready["c"]]

    assert uvloop.run(main()) == ["m1", "m0", "m2"]
