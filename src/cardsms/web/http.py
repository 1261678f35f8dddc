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

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_URL_BYTES = 16 * 1024 * 1024  # as the largest request body the API takes (openapi.dispatch.MAX_BODY)
URL_TOO_LONG = "cardsms.url_too_long"  # scope key: the size of the URL that was refused, in bytes
_PARSER_URL_LIMIT = 0xFFFF  # httptools.parse_url: 16-bit offsets


class HttpProtocol(HttpToolsProtocol):
    _url_size = 0
    _url_parts: list[bytes]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_size = 0
        self._url_parts = []

    def on_url(self, url: bytes) -> None:  # a long URL comes in many pieces: joined once, not appended
        self._url_size += len(url)
        if self._url_size <= MAX_URL_BYTES:
            self._url_parts.append(url)

    def on_headers_complete(self) -> None:
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
