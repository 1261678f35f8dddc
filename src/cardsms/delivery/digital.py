"""The digital (multimedia) connector interface, beside the SMS links' `LinkConnector`.

The dispatcher sees a `DigitalChannel`: `submit()` sends one digital message and returns the link that took
it and the id the peer gave it, or raises `SubmitError` (transient or not, throttled, link down). Delivery
reports and replies come back as `Inbound` items through the dispatcher's `on_inbound`, like SMS receipts:
journaled before they are acknowledged. A `DigitalLink` is one configured link (MM7 to an MMSC in
delivery/mm7.py); `DigitalRouter` tries the links serving a number in order (failover). The embedded
default's simulated MMSC is spoken to through an MM7 link too."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cardsms.delivery.connector import SubmitError
from cardsms.delivery.mm7_wire import Part


@dataclass(frozen=True, slots=True)
class DigitalMessage:
    """One digital message to send: whose, to whom, which approved digital template, valid until when."""

    e164: str
    account_id: int
    template_code: str
    text: str  # the template's text parts, joined (what the simulator and logs show)
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DigitalContent:
    """A digital template's multimedia content: its subject and its parts in their order."""

    subject: str
    parts: tuple[Part, ...]


ContentLoader = Callable[[int, str], Awaitable[DigitalContent]]  # (account id, template code)


class DigitalChannel(Protocol):
    async def submit(self, message: DigitalMessage) -> tuple[str, str]:
        """Send one digital message: (the link that took it, the peer's id for it). Raises SubmitError."""


class DigitalLink(Protocol):
    name: str

    @property
    def up(self) -> bool: ...

    throttled_until: float

    def serves(self, e164: str) -> bool: ...

    async def submit(self, message: DigitalMessage) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


class NoDigitalChannel:
    """With real SMSCs and no digital link configured (CARDSMS_DIGITAL), digital messages cannot leave."""

    async def submit(self, message: DigitalMessage) -> tuple[str, str]:
        raise SubmitError("NO_DIGITAL_CHANNEL", "no digital message link (MM7, CARDSMS_DIGITAL) is configured", False)


class DigitalRouter:
    """The configured links in order: the first that serves the number, is up and is not throttled takes the
    message; then any that is up; a link error moves on to the next (failover)."""

    def __init__(self, links: Sequence[DigitalLink]) -> None:
        self.links = list(links)

    async def submit(self, message: DigitalMessage) -> tuple[str, str]:
        serving = [link for link in self.links if link.serves(message.e164)]
        if not serving:
            raise SubmitError("NO_ROUTE", f"no digital link serves {message.e164}", False)
        now = time.monotonic()
        ordered = [x for x in serving if x.up and x.throttled_until <= now] + [x for x in serving if x.up
                                                                                and x.throttled_until > now]
        if not ordered:
            raise SubmitError("NOT_BOUND", "no digital link is reachable", True, link=True)
        last: SubmitError | None = None
        for link in ordered:
            try:
                return link.name, await link.submit(message)
            except SubmitError as exc:
                if not exc.link:
                    raise
                last = exc  # this link is down: the next one may take it
        assert last is not None
        raise last
