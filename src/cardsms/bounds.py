"""The sizes a request may have, shared by the HTTP front (web/) and the handlers behind it (openapi/):
one module below both, so that neither imports the other for a number."""

from __future__ import annotations

MAX_URL_BYTES = 4 * 1024 * 1024
"""The SDKs' largest documented requests (SendCardSms with 1,000 CardObjects, GetCardSmsLink with 10,000 numbers)
make request lines of a few hundred KB; 4 MB leaves room for long parameters without letting each connection
buffer 16 MB before it is even authenticated."""
URL_TOO_LONG = "cardsms.url_too_long"  # scope key: the size of the URL that was refused, in bytes

KB, MB = 1024, 1024 * 1024
API_BODY = 16 * MB  # the API's largest form body (openapi/dispatch.MAX_BODY)
UPLOAD_BODY = 64 * MB  # the object-store upload: the largest policy's file plus its form fields
CONSOLE_BODY = 32 * MB  # console forms with files (imports are 3 MB, images and qualification scans 10 MB each)
LOGIN_BODY = 16 * KB
MM7_BODY = 4 * MB  # an MMSC's delivery reports and replies (a reply may carry a picture)
OTHER_BODY = 64 * KB  # routes that take no body worth the name (GET pages, card links, downloads)
UPLOAD_FIELD_BYTES = 8 * KB
UPLOAD_FIELDS = 20


def route_limit(path: str) -> int:
    """The largest body the route at `path` takes, in bytes."""
    if path == "/":
        return API_BODY
    if path.startswith("/oss/"):
        return UPLOAD_BODY
    if path == "/console/login":
        return LOGIN_BODY
    if path.startswith("/mm7/"):
        return MM7_BODY
    if path.startswith("/console/"):
        return CONSOLE_BODY
    return OTHER_BODY


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body: larger than {limit:,} bytes, the limit of this path")
        self.limit = limit
