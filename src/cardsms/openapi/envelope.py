"""Response envelopes: JSON by default, XML when Format=XML; key casing exactly as the SDK models."""

from __future__ import annotations

import json
import socket
import uuid
from typing import Any
from xml.sax.saxutils import escape

from starlette.responses import Response

HOST_ID = socket.gethostname() or "cardsms"


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def _xml(name: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"<{name}>" + "".join(_xml(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list):
        return "".join(_xml(name, v) for v in value) if value else f"<{name}/>"
    if isinstance(value, bool):
        value = "true" if value else "false"
    return f"<{name}>{escape('' if value is None else str(value))}</{name}>"


def render(body: dict[str, Any], action: str, fmt: str, status: int = 200,
           headers: dict[str, str] | None = None) -> Response:
    """The answer in the caller's format. `action` must be a known operation's name or empty: it names the
    XML root element, so a caller's value never reaches our markup (the dispatcher passes "" otherwise)."""
    if fmt.upper() == "XML":
        text = "<?xml version='1.0' encoding='UTF-8'?>" + _xml(f"{action or 'Error'}Response", body)
        return Response(text, status, headers=headers, media_type="application/xml")
    return Response(json.dumps(body, ensure_ascii=False, separators=(",", ":")), status, headers=headers,
                    media_type="application/json")


def error_body(request_id: str, code: str, message: str) -> dict[str, Any]:
    return {"RequestId": request_id, "HostId": HOST_ID, "Code": code, "Message": message,
            "Recommend": f"See docs/errors.md for {code}."}
