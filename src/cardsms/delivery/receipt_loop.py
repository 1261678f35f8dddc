"""The receipt loop of a dispatcher: receipts and MO messages from the connectors (and the digital channel) are
journaled as they come (`on_inbound`, before the connector acknowledges them), then applied in batches; the
early-receipt sweep runs beside it. After a crash, `replay_journal` applies what was received but not stored."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import structlog
from sqlalchemy import Select, select

from cardsms.db.schema import early_receipts
from cardsms.delivery.connector import Inbound
from cardsms.delivery.journal import Journal
from cardsms.logs import pass_failed
from cardsms.services import receipts
from cardsms.services.core import Services
from cardsms.services.idle import Every
from cardsms.services.receipts import Receipt

log = structlog.get_logger("cardsms.dispatcher")
SWEEP_SECONDS = 0.5  # the early-receipt sweep's period, and the wait for the next item (a stop is seen within it)
BATCH = 2000  # inbound items applied in one write at most
LINGER_SECONDS = 0.01  # how long a batch waits for more items once one has come


class ReceiptLoop:
    """The inbound half of a Dispatcher (delivery/dispatcher.py)."""

    svc: Services
    journal: Journal | None
    inbound: asyncio.Queue[tuple[Inbound, int]]
    receipts: int

    def on_inbound(self, item: Inbound) -> None:
        """A receipt or MO message from a connector (or the digital channel): journal it, then queue it for the
        writer. The connector acknowledges the PDU only after this returns."""
        offset = self.journal.append(item) if self.journal is not None else 0
        self.inbound.put_nowait((item, offset))

    async def replay_journal(self) -> int:
        """Apply what earlier processes received but had not stored (see delivery/journal.py)."""
        if self.journal is None:
            return 0
        done = 0
        for path, items in self.journal.leftovers():
            for i in range(0, len(items), BATCH):
                await self._apply(items[i:i + BATCH])
            done += len(items)
            self.journal.discard(path)
        if done:
            log.warning("receipts.replayed", items=done)
        return done

    async def _any(self, query: Select[Any]) -> bool:
        """Whether the query finds a row: a point read, without the write lock."""
        async with self.svc.point_read() as conn:
            return (await conn.execute(query.limit(1))).first() is not None

    async def run_receipts(self) -> None:
        """Apply inbound receipts and MO messages in batches."""
        sweep = Every(SWEEP_SECONDS)
        while True:
            if sweep.due():
                try:
                    if await self._any(select(early_receipts.c.id)):  # most of the time there is nothing to sweep
                        await self.svc.execute_write(partial(receipts.sweep_early, svc=self.svc))
                except Exception:
                    pass_failed(log, "receipts.sweep_failed")
            # asyncio.timeout, not wait_for: Python 3.11's wait_for loses a cancellation (a stop) that arrives as
            # the item does, and this loop would then run forever
            try:
                async with asyncio.timeout(SWEEP_SECONDS):
                    first = await self.inbound.get()
            except TimeoutError:
                continue
            batch = [first]
            deadline = time.monotonic() + LINGER_SECONDS
            while len(batch) < BATCH:
                try:
                    batch.append(self.inbound.get_nowait())
                except asyncio.QueueEmpty:
                    if time.monotonic() >= deadline:
                        break
                    await asyncio.sleep(0.005)
            try:
                await self._apply([item for item, _ in batch])
            except Exception:
                pass_failed(log, "receipts.apply_failed", count=len(batch))
                await asyncio.sleep(SWEEP_SECONDS)
                for entry in batch:  # nothing is dropped: try again
                    self.inbound.put_nowait(entry)
                continue
            if self.journal is not None:
                self.journal.committed(max(offset for _, offset in batch))

    async def _apply(self, batch: list[Inbound]) -> None:
        self.receipts += await apply_inbound(self.svc, batch)


async def apply_inbound(svc: Services, batch: list[Inbound]) -> int:
    """Store receipts and MO messages (receipts whose id is not known yet are kept in early_receipts); returns
    how many receipts there were."""
    found = [Receipt(i.connector, i.receipted_id, i.stat, i.err, i.at) for i in batch
             if i.is_receipt and i.receipted_id]
    if found:
        await svc.execute_write(partial(receipts.apply_receipts, svc=svc, receipts=found))
    for item in batch:
        if not item.is_receipt:
            await receipts.record_reply(svc, item.source_addr, item.destination_addr, item.text, item.local_base)
    return len(found)
