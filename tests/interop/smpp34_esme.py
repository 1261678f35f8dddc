"""An ESME written with smpp34 (Rust core, not ours), used by the interop test against cardsms's SMSC.

Usage: python smpp34_esme.py PORT COUNT -> binds as a transceiver, submits COUNT messages, waits for
their delivery receipts, unbinds, and prints {"ids": [...], "receipts": {receipted_id: stat}} as JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import smpp34


async def main(port: int, count: int) -> None:
    client = smpp34.Client(host="127.0.0.1", port=port, system_id="interop", password="pw", bind_type="TRX",
                           window_size=10, connect_timeout_ms=5000)
    smsc = await client.connect()
    ids = []
    for i in range(count):
        resp = await smsc.submit_sm(f"86137{i:08d}", f"interop message {i}".encode(), source_addr="1069",
                                    registered_delivery=1)
        assert resp.is_success, resp.command_status
        ids.append(resp.message_id)
    receipts: dict[str, str] = {}
    while len(receipts) < count:
        ev = await asyncio.wait_for(smsc.next(), 20)
        assert not isinstance(ev, smpp34.Disconnected), "the SMSC hung up"
        tags = {t.tag: t.value for t in ev.tlvs}
        receipted = tags[smpp34.TLV_RECEIPTED_MESSAGE_ID].rstrip(b"\x00").decode()  # type: ignore[attr-defined]
        receipts[receipted] = ev.short_message.decode().split("stat:")[1][:7]
    await smsc.unbind()
    await client.stop()
    print(json.dumps({"ids": ids, "receipts": receipts}), flush=True)
    # smpp34's tokio runtime crashed once in CI (SIGSEGV) while the loop and the interpreter were torn down,
    # after the work was done and this line printed: leave without that teardown.
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
