"""Request signatures of the Alibaba Cloud API: ACS3-HMAC-SHA256, ACS3-HMAC-SM3 and v2 (HMAC-SHA1).

Parameters are decoded first and re-encoded canonically (RFC 3986, space as %20), because
clients differ in how they percent-encode (`+` vs `%20`, `~`, `*`).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from cardsms.domain.errors import CardsmsError
from cardsms.services.hub import nonce_token

ACS3_ALGORITHMS = {"ACS3-HMAC-SHA256": "sha256", "ACS3-HMAC-SM3": "sm3"}
_AUTH_HEADER = re.compile(
    r"(?P<alg>ACS3-[A-Z0-9-]+)\s+Credential=(?P<cred>[^,\s]+)\s*,\s*SignedHeaders=(?P<headers>[^,\s]*)\s*,"
    r"\s*Signature=(?P<sig>[0-9a-fA-F]+)\s*$"
)


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    query: list[tuple[str, str]]  # decoded, in arrival order
    form: list[tuple[str, str]]
    headers: Mapping[str, str]  # lower-case names
    body: bytes


@dataclass(frozen=True, slots=True)
class Credential:
    scheme: str  # ACS3-HMAC-SHA256 | ACS3-HMAC-SM3 | v2
    key_id: str
    nonce: str
    timestamp: datetime


def _enc(value: str) -> str:
    return quote(value, safe="~", encoding="utf-8")


def _hash(algorithm: str, data: bytes) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def credential(req: ApiRequest) -> Credential:
    """Who signed the request and when (not yet verified)."""
    auth = req.headers.get("authorization", "")
    if auth.startswith("ACS3-"):
        m = _AUTH_HEADER.match(auth)
        if not m:
            raise CardsmsError("IncompleteSignature", "the Authorization header is not "
                               "'<algorithm> Credential=<id>,SignedHeaders=<h1;h2>,Signature=<hex>'")
        if m["alg"] not in ACS3_ALGORITHMS:
            raise CardsmsError("IncompleteSignature", f"signature algorithm {m['alg']} is not supported "
                               f"(use {' or '.join(ACS3_ALGORITHMS)})")
        date = req.headers.get("x-acs-date", "")
        nonce = req.headers.get("x-acs-signature-nonce", "")
        return Credential(m["alg"], m["cred"], nonce, _parse_time(date, "x-acs-date"))
    params = dict(req.query + req.form)
    if "Signature" in params or "AccessKeyId" in params:
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise CardsmsError("IncompleteSignature", f"parameter {name} is required for signature v2")
        method = params.get("SignatureMethod", "HMAC-SHA1")
        if method != "HMAC-SHA1":
            raise CardsmsError("IncompleteSignature", f"SignatureMethod {method} is not supported (use HMAC-SHA1)")
        return Credential("v2", params["AccessKeyId"], params["SignatureNonce"],
                          _parse_time(params["Timestamp"], "Timestamp"))
    raise CardsmsError("MissingAccessKeyId", "the request is not signed: send an ACS3 Authorization header "
                       "or signature v2 parameters (AccessKeyId, Signature, ...)")


def _parse_time(value: str, name: str) -> datetime:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise CardsmsError("IncompleteSignature", f"{name} {value!r} is not an ISO 8601 UTC time like 2026-01-02T03:04:05Z")


def acs3_string_to_sign(req: ApiRequest, algorithm: str, signed_headers: list[str]) -> str:
    query = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(req.query))
    headers = "".join(f"{h}:{req.headers.get(h, '').strip()}\n" for h in signed_headers)
    payload = req.headers.get("x-acs-content-sha256") or _hash(ACS3_ALGORITHMS[algorithm], req.body)
    canonical = f"{req.method}\n/\n{query}\n{headers}\n{';'.join(signed_headers)}\n{payload}"
    return f"{algorithm}\n{_hash(ACS3_ALGORITHMS[algorithm], canonical.encode())}"


def v2_string_to_sign(req: ApiRequest) -> str:
    params = sorted((k, v) for k, v in req.query + req.form if k != "Signature")
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in params)
    return f"{req.method}&%2F&{_enc(canonical)}"


def verify(req: ApiRequest, cred: Credential, secret: str) -> None:
    """Raise SignatureDoesNotMatch (with the server's string to sign) unless the signature is right."""
    if cred.scheme == "v2":
        to_sign = v2_string_to_sign(req)
        expected = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        given = dict(req.query + req.form)["Signature"]
    else:
        m = _AUTH_HEADER.match(req.headers["authorization"])
        assert m is not None
        signed = [h.strip().lower() for h in m["headers"].split(";") if h.strip()]
        for required in ("host", "x-acs-date", "x-acs-signature-nonce"):
            if required not in signed:
                raise CardsmsError("IncompleteSignature", f"SignedHeaders must include {required}")
        # a captured request cannot be re-pointed at another action or version: every x-acs-* header is signed
        unsigned = sorted(h for h in req.headers if h.startswith("x-acs-") and h not in signed)
        if unsigned:
            raise CardsmsError("IncompleteSignature", f"SignedHeaders must include every x-acs-* header; "
                               f"{', '.join(unsigned)[:200]} is not signed")
        body_hash = _hash(ACS3_ALGORITHMS[cred.scheme], req.body)
        claimed = req.headers.get("x-acs-content-sha256")
        if claimed is not None and claimed.lower() != body_hash:
            raise CardsmsError("SignatureDoesNotMatch", "x-acs-content-sha256 does not match the hash of the body")
        to_sign = acs3_string_to_sign(req, cred.scheme, signed)
        digest = ACS3_ALGORITHMS[cred.scheme]
        expected = hmac.new(secret.encode(), to_sign.encode(), digest).hexdigest()
        given = m["sig"].lower()
    if not hmac.compare_digest(expected, given):
        raise CardsmsError(
            "SignatureDoesNotMatch",
            f"Specified signature does not match our calculation. server string to sign is:{to_sign}",
        )


class NonceCache:
    """Nonces of this process (SQLite: one serving process), each kept until its request's timestamp plus the
    allowed skew: a request stamped up to `skew` ahead stays refusable for as long as its stamp is accepted.
    At `max_entries` the soonest-expiring nonces make room (docs/api.md)."""

    def __init__(self, max_entries: int = 1_000_000) -> None:
        self.max_entries = max_entries
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def check_and_add(self, key_id: str, nonce: str, expires_at: float, now: float) -> bool:
        """True when the nonce is fresh (and records it until `expires_at`, epoch seconds); False on replay."""
        return self.check_token(nonce_token(key_id, nonce), expires_at, now)

    def check_token(self, token: str, expires_at: float, now: float) -> bool:
        """The same for a nonce named by `services.hub.nonce_token` (the hub's HTTP processes send that)."""
        heap = self._heap
        while heap and (heap[0][0] <= now or len(heap) >= self.max_entries):
            _, old = heapq.heappop(heap)
            self._expires.pop(old, None)
        if token in self._expires:
            return False
        self._expires[token] = expires_at
        heapq.heappush(heap, (expires_at, token))
        return True


class RateLimiter:
    """A token bucket per account: `qps` requests per second, bursts up to `qps`."""

    def __init__(self) -> None:
        self._buckets: dict[int, tuple[float, float]] = {}

    def acquire(self, account_id: int, qps: int) -> int:
        """0 when admitted, else the milliseconds to wait before retrying."""
        now = time.monotonic()
        tokens, last = self._buckets.get(account_id, (float(qps), now))
        tokens = min(float(qps), tokens + (now - last) * qps)
        if tokens >= 1:
            self._buckets[account_id] = (tokens - 1, now)
            return 0
        self._buckets[account_id] = (tokens, now)
        return max(1, int((1 - tokens) / qps * 1000) + 1)
