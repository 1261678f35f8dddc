"""The simulated digital (multimedia) message channel: accepts every message and reports a
delivery receipt after the simulated SMSC's latency, through the same inbound path as SMPP."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import UTC, datetime

from cardsms.delivery.connector import Inbound
from cardsms.delivery.digital import DigitalMessage


class SimulatedDigitalChannel:
    name = "digital"

    def __init__(self, latency_ms: int, on_inbound: Callable[[Inbound], None]) -> None:
        self.latency = latency_ms / 1000
        self.on_inbound = on_inbound
        self.counter = itertools.count(1)
        self.prefix = f"D{int(datetime.now(UTC).timestamp()):x}-"  # ids stay unique across restarts
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, message: DigitalMessage) -> tuple[str, str]:
        ident = f"{self.prefix}{next(self.counter)}"
        task = asyncio.create_task(self._receipt(ident, message.e164))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return self.name, ident

    async def _receipt(self, ident: str, e164: str) -> None:
        await asyncio.sleep(self.latency)
        self.on_inbound(Inbound(self.name, True, e164, "", "", ident, "DELIVRD", "", datetime.now(UTC)))
