"""The HTTP/1.1 protocol of our servers: uvicorn's httptools protocol, with request URLs of any size up to
MAX_URL_BYTES.

The official Alibaba SDKs put every RPC parameter in the query string, also for POST: a SendCardSms with
1,000 CardObjects or a GetCardSmsLink with 10,000 numbers makes a request line of several hundred KB.
httptools' URL parser keeps offsets in 16 bits and fails on URLs over 64 KB, and uvicorn then answers a
plain-text 400 that the SDK cannot read. Here the query is split off before that parser sees the URL,
and a URL longer than MAX_URL_BYTES is not buffered: the rest of it is dropped (memory stays bounded)
and the request reaches the application marked with `scope[URL_TOO_LONG]`, which answers in its own
format (the API: the Alibaba JSON envelope)."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cardsms.bounds import MAX_URL_BYTES, URL_TOO_LONG

HEADER_SECONDS = 15.0  # default of CARDSMS_HTTP_HEADER_SECONDS: a request's line and headers must arrive within it
_PARSER_URL_LIMIT = 0xFFFF  # httptools.parse_url: 16-bit offsets


class HttpProtocol(HttpToolsProtocol):
    header_seconds = HEADER_SECONDS  # `with_header_timeout` makes a class with another
    _url_size = 0
    _url_parts: list[bytes]
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_timer()  # a connection that never sends a request is closed too

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_size = 0
        self._url_parts = []
        self._arm_header_timer()

    def on_url(self, url: bytes) -> None:  # a long URL comes in many pieces: joined once, not appended
        self._url_size += len(url)
        if self._url_size <= MAX_URL_BYTES:
            self._url_parts.append(url)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        url = b"".join(self._url_parts)
        path, _, query = url.partition(b"?")
        if self._url_size > MAX_URL_BYTES or len(path) > _PARSER_URL_LIMIT:
            self.url = b"/"
            super().on_headers_complete()
            self.scope[URL_TOO_LONG] = self._url_size  # type: ignore[literal-required]
        elif len(url) > _PARSER_URL_LIMIT:
            self.url = path
            super().on_headers_complete()
            self.scope["query_string"] = query  # the scope its request cycle holds: the task has not run yet
        else:
            self.url = url
            super().on_headers_complete()


def with_header_timeout(seconds: float) -> type[HttpProtocol]:
    """The protocol class for a server whose clients must send a request's line and headers within `seconds`."""
    return type("HttpProtocol", (HttpProtocol,), {"header_seconds": seconds})
