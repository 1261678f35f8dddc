"""Request bodies, bounded before anything reads them.

`BodyLimit` sits in front of every route: a request whose declared `Content-Length` is over its route's
limit is answered 413 before the application runs, and a chunked body is counted as it streams and stops
at the limit (`BodyTooLarge`), so no route ever holds more than its limit in memory, login or not.

`read_policy_upload` parses the object-store upload form (multipart) as a stream: the text fields come
first (as OSS requires), the policy they carry is checked by the caller before one byte of the file is
read, and the file is then read up to the size that policy allows.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

KB, MB = 1024, 1024 * 1024
API_BODY = 16 * MB  # the API's largest form body (openapi/dispatch.MAX_BODY)
UPLOAD_BODY = 64 * MB  # the object-store upload: the largest policy's file plus its form fields
CONSOLE_BODY = 32 * MB  # console forms with files (imports are 3 MB, images and qualification scans 10 MB each)
LOGIN_BODY = 16 * KB
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
    if path.startswith("/console/"):
        return CONSOLE_BODY
    return OTHER_BODY


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body: larger than {limit:,} bytes, the limit of this path")
        self.limit = limit


def _too_large_answer(path: str, limit: int) -> tuple[bytes, bytes]:
    message = f"request body: larger than {limit:,} bytes, the limit of this path"
    if path == "/":
        body = json.dumps({"Code": "InvalidParameter", "Message": message}).encode()
        return body, b"application/json"
    if path.startswith("/oss/"):
        return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>EntityTooLarge</Code><Message>{message}"
                "</Message></Error>").encode(), b"application/xml"
    return message.encode(), b"text/plain; charset=utf-8"


class BodyLimit:
    """Pure ASGI middleware: refuses a declared oversize body up front and stops a streamed one at the limit."""

    def __init__(self, app: Any, limit: Callable[[str], int] = route_limit) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            body, content_type = _too_large_answer(scope["path"], limit)
            await send({"type": "http.response.start", "status": 413, "headers": [
                (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class UploadFormError(ValueError):
    """The upload form is malformed or breaks a limit; the message names the field."""


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    is_file: bool = False
    data: bytearray = field(default_factory=bytearray)


async def read_policy_upload(request: Request, check: Callable[[dict[str, str]], Awaitable[int]]
                             ) -> tuple[dict[str, str], bytes | None]:
    """(text fields, the file's bytes or None) of a POST-policy upload, streamed.

    `check(fields)` runs when the file part begins, with every field before it; it raises to refuse the
    upload (nothing of the file is read then) or returns the most bytes the file may have."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadFormError("the body must be multipart/form-data with a boundary")
    fields: dict[str, str] = {}
    file_data: bytearray | None = None
    state: dict[str, Any] = {"part": None, "hname": b"", "hvalue": b"", "max": 0, "done": False}
    pending_check: list[bool] = []

    def on_part_begin() -> None:
        state["part"] = _Part()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["hname"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["hvalue"] += data[start:end]

    def on_header_end() -> None:
        state["part"].headers[state["hname"].lower()] = state["hvalue"]
        state["hname"], state["hvalue"] = b"", b""

    def on_headers_finished() -> None:
        part: _Part = state["part"]
        _, disposition = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = disposition.get(b"name", b"").decode("utf-8", "replace")
        part.is_file = b"filename" in disposition
        if part.is_file and part.name == "file":
            pending_check.append(True)  # checked between chunks: the policy decides before file bytes are kept

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part: _Part = state["part"]
        if state["done"]:
            return
        part.data += data[start:end]
        limit = state["max"] if part.is_file else UPLOAD_FIELD_BYTES
        if part.is_file and pending_check:
            return  # kept until the check decides (at most one chunk of the request)
        if len(part.data) > limit:
            what = f"field {part.name or 'file'}"
            raise UploadFormError(f"{what}: larger than {limit:,} bytes" if part.is_file else
                                  f"{what}: a form field may be at most {UPLOAD_FIELD_BYTES:,} bytes")

    def on_part_end() -> None:
        nonlocal file_data
        part: _Part = state["part"]
        if state["done"]:
            return
        if part.is_file and part.name == "file":
            file_data = part.data
            state["done"] = True  # OSS ignores what follows the file
        elif not part.is_file:
            if len(fields) >= UPLOAD_FIELDS:
                raise UploadFormError(f"the form has more than {UPLOAD_FIELDS} fields")
            fields[part.name] = part.data.decode("utf-8", "replace")

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end})
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except UploadFormError:
            raise
        except Exception as exc:  # python-multipart's own errors for malformed bodies
            raise UploadFormError(f"the body is not a valid multipart form: {exc}") from None
        if pending_check:
            pending_check.clear()
            state["max"] = await check(dict(fields))
            part = state["part"]
            if part is not None and part.is_file and len(part.data) > state["max"]:
                raise UploadFormError(f"field file: larger than {state['max']:,} bytes, the policy's limit")
            if file_data is not None and len(file_data) > state["max"]:
                raise UploadFormError(f"field file: larger than {state['max']:,} bytes, the policy's limit")
        if state["done"]:
            break
    if file_data is None and state["part"] is not None and state["part"].is_file and not state["done"]:
        raise UploadFormError("the body ends inside the file part")
    return fields, bytes(file_data) if file_data is not None else None
