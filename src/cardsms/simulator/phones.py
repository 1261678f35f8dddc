"""Simulated phones: what happens on the handset after the SMSC delivers a message.

- A card-capable phone whose message carries a short link of this server lets its vendor's
  parser fetch the card over HTTP (`X-Card-Parser: <vendor>`, `X-Card-Mobile: <number>`): the
  resolver records that fetch as the render receipt.
- A deterministic share of recipients (`CARDSMS_SIM_OPEN_SHARE`) opens the link in a browser.
- A deterministic share (`CARDSMS_SIM_REPLY_SHARE`) of those who got an opt-out line replies R.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import structlog

from cardsms.domain.numbers import InvalidNumber, normalise_number
from cardsms.links.parsers import parser_key, parser_signature
from cardsms.simulator.center import share_hit
from cardsms.vendors.gateway import HandsetDirectory

log = structlog.get_logger("cardsms.simulator.phones")
BROWSER_UA = "Mozilla/5.0 (Linux; Android 14; cardsms-sim) AppleWebKit/537.36 Mobile Safari/537.36"

Reply = Callable[[str, str, str], Awaitable[bool]]  # (from phone, to address, text)
WORKERS = 8  # phones act through a small pool, so a 500,000-message task does not storm the server


class SimulatedPhones:
    def __init__(self, handsets: HandsetDirectory, link_base: str, open_share: int, reply_share: int,
                 reply: Reply | None = None, parser_secret: str = "") -> None:
        self.handsets = handsets
        self.parser_secret = parser_secret  # the vendors' parsers sign their fetches (links/parsers.py)
        # a link on any host with the server's link path: an account's own link domains point at the server too
        self.link = re.compile(r"https?://([^/\s]+)" + re.escape(urlsplit(link_base).path) + r"/([A-Za-z0-9]{4,16})")
        self.link_base = link_base
        self.open_share = open_share
        self.reply_share = reply_share
        self.reply = reply
        self.client = httpx.AsyncClient(timeout=10)
        self.rendered = 0
        self.opened = 0
        self.replied = 0
        self.queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.workers: list[asyncio.Task[None]] = []

    async def close(self) -> None:
        for w in self.workers:
            w.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await w
        await self.client.aclose()

    async def on_delivered(self, dest: str, source: str, text: str) -> None:
        """A message reached a phone: queue what the handset does with it."""
        if not self.workers:
            self.workers = [asyncio.create_task(self._work(), name=f"sim-phone-{i}") for i in range(WORKERS)]
        self.queue.put_nowait((dest, source, text))

    async def _work(self) -> None:
        while True:
            dest, source, text = await self.queue.get()
            try:
                await self.handle(dest, source, text)
            except httpx.HTTPError as exc:
                log.warning("simphone.fetch_failed", dest=dest, error=repr(exc))
            finally:
                self.queue.task_done()

    async def handle(self, dest: str, source: str, text: str) -> None:
        try:
            number = normalise_number("+" + dest if not dest.startswith("+") else dest)
        except InvalidNumber:
            return
        found = self.link.search(text)
        if found:
            host, code = found.group(1), found.group(2)
            url = f"{self.link_base}/{code}"  # as DNS would: the link's host is served by the server
            handset = self.handsets.lookup(number.sha1)
            if handset.card_capable and handset.vendor is not None:
                vendor = handset.vendor.value
                signature = parser_signature(parser_key(self.parser_secret, vendor), code, number.national)
                r = await self.client.get(url, headers={"X-Card-Parser": vendor, "X-Card-Mobile": number.national,
                                                        "X-Card-Parser-Signature": signature, "Host": host,
                                                        "Accept": "application/json"})
                if r.status_code == 200:
                    self.rendered += 1
            if share_hit(number.national, "open", self.open_share):
                r = await self.client.get(url, headers={"User-Agent": BROWSER_UA, "Host": host},
                                          follow_redirects=False)
                if r.status_code in (200, 302):
                    self.opened += 1
        opt_out_line = "回复R" in text or "reply R" in text
        wants_out = opt_out_line and self.reply and share_hit(number.national, "reply", self.reply_share)
        if wants_out and self.reply is not None and await self.reply(dest, source, "R"):
            self.replied += 1
