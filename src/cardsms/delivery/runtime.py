"""Assemble and run the delivery side of one process: connectors (or the simulated SMSC and
phones when no SMSC is configured), the dispatcher, the receipt writer and the webhook sender."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, Protocol

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import select

from cardsms.db.schema import messages, smsc_ids
from cardsms.delivery.cmpp import CmppConnector
from cardsms.delivery.connector import Inbound, LinkConnector
from cardsms.delivery.digital import DigitalContent, DigitalRouter, NoDigitalChannel
from cardsms.delivery.dispatcher import Dispatcher
from cardsms.delivery.journal import Journal
from cardsms.delivery.leases import WorkerLease, listen
from cardsms.delivery.mm7 import Match, Mm7Link
from cardsms.delivery.mm7_wire import Part
from cardsms.delivery.receipt_loop import apply_inbound
from cardsms.delivery.smpp import SmppConnector
from cardsms.delivery.webhooks import WebhookSender
from cardsms.domain.connectors import ConnectorConfig, DigitalConfig, parse_connectors, parse_digital
from cardsms.logs import pass_failed
from cardsms.services import templates
from cardsms.services.core import Services

log = structlog.get_logger("cardsms.delivery")


class LocalNetwork(Protocol):
    """An SMSC, a digital channel and handsets that run inside this process when no SMSC is configured: the
    embedded default. Which one is the composition root's choice (cardsms.compose); delivery only knows this."""

    async def start(self, on_inbound: Callable[[Inbound], None]) -> tuple[ConnectorConfig, DigitalConfig]:
        """Start listening; the connector to bind to it and the MM7 link of its MMSC (whose reports come to this
        process's /mm7/<name> like a carrier's)."""

    async def close_handsets(self) -> None:
        """Stop what the handsets do (first, at a stop: the server is going away)."""

    async def stop(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


class ConnectorMetrics:
    """/metrics: each connector's state, labelled with its name and protocol (a prometheus_client collector)."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery

    def collect(self) -> Iterator[Metric]:
        labels = ["connector", "protocol"]
        bound = GaugeMetricFamily("cardsms_connector_bound", "1 while the connector is bound", labels=labels)
        binds = CounterMetricFamily("cardsms_connector_binds", "binds made since the process started",
                                    labels=labels)
        for c in self.delivery.dispatcher.connectors:
            key = [c.name, c.cfg.scheme]
            bound.add_metric(key, 1.0 if c.up else 0.0)
            binds.add_metric(key, float(c.binds))
        for link in self.delivery.digital_links:  # MM7 holds no session: "bound" while its MMSC is reachable
            bound.add_metric([link.name, link.cfg.scheme], 1.0 if link.bound else 0.0)
        yield bound
        yield binds


MEDIA_TYPES = {"txt": "text/plain;charset=utf-8", "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
               "gif": "image/gif", "mp3": "audio/mpeg", "mp4": "video/mp4"}


class DigitalContents:
    """Digital templates' content for the links, read once a minute at most per template (a mass task sends one
    template to many numbers)."""

    TTL = 60.0
    MAX = 256

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._cache: dict[tuple[int, str], tuple[float, DigitalContent]] = {}

    async def __call__(self, account_id: int, code: str) -> DigitalContent:
        loop = asyncio.get_running_loop()
        hit = self._cache.get((account_id, code))
        if hit is not None and hit[0] > loop.time():
            return hit[1]
        subject, files = await templates.digital_parts(self.svc, account_id, code)
        content = DigitalContent(subject, tuple(
            Part(MEDIA_TYPES.get(suffix, "application/octet-stream"), data, f"part{i}.{suffix}", name)
            for i, (suffix, name, data) in enumerate(files, 1)))
        if len(self._cache) >= self.MAX:
            self._cache.clear()
        self._cache[(account_id, code)] = (loop.time() + self.TTL, content)
        return content


CONNECTORS: dict[str, type[LinkConnector]] = {"smpp": SmppConnector, "cmpp": CmppConnector}


def open_connector(cfg: ConnectorConfig, source_addr: str, on_inbound: Callable[[Inbound], None]) -> LinkConnector:
    """The connector for a configured link, by its protocol (the URL's scheme)."""
    return CONNECTORS[cfg.protocol](cfg, source_addr, on_inbound)


async def report_match(svc: Services, connector: str, peer_id: str) -> Match:
    """Is this id one a submit of ours got from the link (stored with the message's outcome)? If not: is a
    digital submit on its way in any process, whose answer may still name it?

    In-flight is read first: a submit whose outcome commits between the two reads is then seen stored by
    the second (or, on one snapshot, in flight by both); read the other way round it could be seen in
    neither, and its report refused for good."""
    async with svc.point_read() as conn:
        busy = await conn.scalar(select(messages.c.id).where(
            messages.c.state == "submitting", messages.c.channel == "digital").limit(1))
        if await conn.scalar(select(smsc_ids.c.message_id).where(
                smsc_ids.c.connector == connector, smsc_ids.c.smsc_id == peer_id)) is not None:
            return "stored"
    return "unknown" if busy is None else "in_flight"


def inbound_links(svc: Services) -> list[Mm7Link]:
    """The digital links of a process that does not send (`cardsms api`): they take the MMSC's reports and
    replies and store each in the database before answering; submits are the workers'."""

    async def accept(item: Inbound) -> None:
        await apply_inbound(svc, [item])

    return [Mm7Link(cfg, DigitalContents(svc), accept, partial(report_match, svc))
            for cfg in parse_digital(svc.settings.digital)]


class Delivery:
    def __init__(self, svc: Services, local: LocalNetwork | None = None) -> None:
        self.svc = svc
        self.dispatcher = Dispatcher(svc, [], NoDigitalChannel(), Journal(svc.settings.data_dir / "journal"))
        self.sender = WebhookSender(svc)
        self.local = local  # what runs in this process when no SMSC is configured (the composition root's choice)
        self._local_started = False
        self._tasks: list[asyncio.Task[None]] = []
        # PostgreSQL may have several dispatching processes: they coordinate through leases
        self.lease = WorkerLease(svc) if not svc.settings.is_sqlite else None
        self._listener: Any = None
        # digital links (MM7); their inbound path is /mm7/<name> on this process's HTTP server
        self.digital_links = [self._digital_link(cfg) for cfg in parse_digital(svc.settings.digital)]

    def _digital_link(self, cfg: DigitalConfig) -> Mm7Link:
        async def accept(item: Inbound) -> None:
            self.dispatcher.on_inbound(item)  # journaled when this returns

        return Mm7Link(cfg, DigitalContents(self.svc), accept, partial(report_match, self.svc))

    async def start(self) -> None:
        s = self.svc.settings
        configs = parse_connectors(s.smsc, window=s.smsc_window, tps=s.smsc_tps, system_type=s.smsc_system_type)
        await self.dispatcher.replay_journal()
        if not configs:
            if self.local is None:
                raise RuntimeError("no SMSC is configured (CARDSMS_SMSC) and this process has no local one")
            config, digital = await self.local.start(self.dispatcher.on_inbound)
            self._local_started = True
            configs = [config]
            if not self.digital_links:  # configured MMSC links win over the simulated one
                self.digital_links.append(self._digital_link(digital))
        if self.digital_links:
            self.dispatcher.digital = DigitalRouter(self.digital_links)
        if self.lease is None:
            for cfg in configs:
                self._start_connector(cfg)
        else:
            await self.lease.register()
            self.dispatcher.worker_id = self.lease.worker_id
            self.dispatcher.recover_at_start = False
            await self._lease_pass(configs)
            self._tasks.append(asyncio.create_task(self._keep_leases(configs), name="leases"))
            self._listener = await listen(self.svc, self.svc.wakeup.set)
        self._tasks.append(asyncio.create_task(self.dispatcher.run_receipts(), name="receipts"))
        self._tasks.append(asyncio.create_task(self.sender.run(), name="webhooks"))
        self._dispatch = asyncio.create_task(self.dispatcher.run(), name="dispatcher")

    def _start_connector(self, cfg: ConnectorConfig) -> None:
        connector = open_connector(cfg, self.svc.settings.smsc_source_addr, self.dispatcher.on_inbound)
        self.dispatcher.connectors.append(connector)
        self._tasks.append(asyncio.create_task(connector.run(), name=f"{cfg.protocol}-{cfg.name}"))

    async def _lease_pass(self, configs: list[ConnectorConfig]) -> None:
        """Renew this worker's lease, bind the slots it can lease, and take over dead workers' messages."""
        assert self.lease is not None
        await self.lease.renew()
        running = {c.name for c in self.dispatcher.connectors}
        for cfg in configs:
            if cfg.name not in running and await self.lease.try_slot(cfg.name, cfg.binds):
                self._start_connector(cfg)
        await self.dispatcher.recover(await self.lease.live_workers())

    async def _keep_leases(self, configs: list[ConnectorConfig]) -> None:
        assert self.lease is not None
        while True:
            await asyncio.sleep(self.lease.seconds / 4)
            try:
                await self._lease_pass(configs)
                await self.lease.forget_dead()
            except Exception:
                pass_failed(log, "leases.pass_failed")

    def status(self) -> dict[str, Any]:
        statuses = [c.status() for c in self.dispatcher.connectors] + [x.status() for x in self.digital_links]
        out: dict[str, Any] = {"connectors": statuses,
                               "submitted": self.dispatcher.submitted, "receipts": self.dispatcher.receipts,
                               "webhooks_delivered": self.sender.delivered}
        if self.local is not None and self._local_started:
            out["simulator"] = self.local.stats()
        return out

    async def stop(self) -> None:
        """Stop within CARDSMS_STOP_SECONDS: claim nothing more, write no new submit_sm (a batch's messages not
        yet written go back to `queued`, unflagged), let those written get their answer and their outcome
        recorded, then unbind. What is still unanswered at the deadline stays `submitting` and is queued again
        at the next start, flagged as a possible duplicate (it may have reached the SMSC)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.svc.settings.stop_seconds
        if self.local is not None and self._local_started:  # first: its handsets' fetches would only fail now
            await self.local.close_handsets()
        await self.dispatcher.stop()
        for c in self.dispatcher.connectors:
            c.draining = True
        # two seconds kept for unbinding and the last writes
        await asyncio.wait([self._dispatch], timeout=max(0.1, deadline - loop.time() - 2))
        if not self._dispatch.done():
            log.warning("delivery.stop_deadline", detail="submits still unanswered; recovered at the next start")
        self._dispatch.cancel()
        await asyncio.gather(*(c.stop() for c in self.dispatcher.connectors),
                             *(x.stop() for x in self.digital_links), return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        _, stuck = await asyncio.wait([*self._tasks, self._dispatch], timeout=max(0.5, deadline - loop.time()))
        if stuck:  # never wait past the deadline; what they hold is recovered at the next start
            log.warning("delivery.stop_stuck", tasks=sorted(t.get_name() for t in stuck))
        await self.sender.close()
        if self._listener is not None:
            await self._listener.close()
        if self.lease is not None:
            with contextlib.suppress(Exception):
                await self.lease.release()
        if self.dispatcher.journal is not None:
            self.dispatcher.journal.close()
        if self.local is not None and self._local_started:
            await self.local.stop()
