"""The object-store upload policy document (OSS's PostObject policy): a JSON object, base64-encoded, that the
server signs when it hands out upload rights (GetOSSInfoForCardTemplate) and reads back from the upload form."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any


def encode(policy: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(policy, separators=(",", ":")).encode()).decode()


def decode(encoded: str) -> dict[str, Any]:
    """The policy object; ValueError when the text is not a base64-encoded JSON object."""
    try:
        policy = json.loads(base64.b64decode(encoded, validate=False))
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(policy, dict):
        raise ValueError("the policy is not a JSON object")
    return policy
