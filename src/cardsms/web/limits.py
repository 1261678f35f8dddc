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
from typing import TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:  # python-multipart defines its callback types for type checkers only
    from python_multipart.multipart import MultipartCallbacks

from cardsms.bounds import (  # noqa: F401  (the route sizes, re-exported for web/)
    API_BODY,
    CONSOLE_BODY,
    KB,
    LOGIN_BODY,
    MB,
    MM7_BODY,
    OTHER_BODY,
    UPLOAD_BODY,
    UPLOAD_FIELD_BYTES,
    UPLOAD_FIELDS,
    BodyTooLarge,
    route_limit,
)


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

    def __init__(self, app: ASGIApp, limit: Callable[[str], int] = route_limit) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class UploadFormError(ValueError):
    """The upload form is malformed (`InvalidArgument`) or too large (`EntityTooLarge`); the message names the
    field."""

    def __init__(self, message: str, code: str = "InvalidArgument") -> None:
        super().__init__(message)
        self.code = code


def _too_large(message: str) -> UploadFormError:
    return UploadFormError(message, "EntityTooLarge")


class _UploadForm:
    """python-multipart's callbacks for one upload: text fields until the file part, then the file."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.file: bytes | None = None  # set when the file part is complete
        self.check_due = False  # the file part began: the caller checks the fields before more is read
        self.max_file = 0  # what the check allows
        self._headers: dict[bytes, bytes] = {}
        self._name, self._value = b"", b""
        self._part_name, self._is_file, self._data = "", False, bytearray()
        self._done = False  # what follows the file is ignored, as OSS does

    def callbacks(self) -> MultipartCallbacks:
        return {"on_part_begin": self._begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end}

    def _begin(self) -> None:
        self._headers, self._data = {}, bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._name.lower()] = self._value
        self._name, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, disposition = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part_name = disposition.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = b"filename" in disposition
        if self._is_file and self._part_name == "file" and not self._done:
            self.check_due = True

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._done:
            return
        self._data += data[start:end]
        if self._is_file:
            if not self.check_due:  # until the check decides, at most the chunk that began the part is kept
                self.check_size(len(self._data))
        elif len(self._data) > UPLOAD_FIELD_BYTES:
            raise UploadFormError(f"field {self._part_name}: a form field may be at most {UPLOAD_FIELD_BYTES:,} "
                                  "bytes")

    def check_size(self, size: int) -> None:
        if size > self.max_file:
            raise _too_large(f"field {self._part_name or 'file'}: larger than {self.max_file:,} bytes")

    def pending_size(self) -> int:
        return len(self._data) if self._is_file else 0

    def _part_end(self) -> None:
        if self._done:
            return
        if self._is_file and self._part_name == "file":
            self.file, self._done = bytes(self._data), True
        elif not self._is_file:
            if len(self.fields) >= UPLOAD_FIELDS:
                raise UploadFormError(f"the form has more than {UPLOAD_FIELDS} fields")
            self.fields[self._part_name] = self._data.decode("utf-8", "replace")

    @property
    def done(self) -> bool:
        return self._done

    @property
    def inside_file(self) -> bool:
        return self._is_file and not self._done


async def read_policy_upload(request: Request, check: Callable[[dict[str, str]], Awaitable[int]]
                             ) -> tuple[dict[str, str], bytes | None]:
    """(text fields, the file's bytes or None) of a POST-policy upload, streamed.

    `check(fields)` runs when the file part begins, with every field before it; it raises to refuse the
    upload (nothing more of the body is read then) or returns the most bytes the file may have."""
    ctype, options = parse_options_header(request.headers.get("content-type", ""))
    if ctype != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadFormError("the body must be multipart/form-data with a boundary")
    form = _UploadForm()
    parser = MultipartParser(options[b"boundary"], form.callbacks())
    async for chunk in request.stream():
        try:
            parser.write(chunk)
        except UploadFormError:
            raise
        except Exception as exc:  # python-multipart's own errors for malformed bodies
            raise UploadFormError(f"the body is not a valid multipart form: {exc}") from None
        if form.check_due:
            form.max_file = await check(dict(form.fields))
            form.check_due = False
            form.check_size(len(form.file) if form.file is not None else form.pending_size())
        if form.done:
            break
    if form.inside_file:
        raise UploadFormError("the body ends inside the file part")
    return form.fields, form.file
