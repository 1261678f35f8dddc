"""HTTP load generator for the API benchmark: a separate process from the server under test.

Requests are RPC-style (Alibaba Cloud signature v1, HMAC-SHA1, the form `aliyun-python-sdk-core`
sends) and are signed before the clock starts, each with its own SignatureNonce, so the server does
all of its work (signature, nonce, rate limit, validation, the send itself) while this process only
writes bytes. Two modes:

- `max`: `--connections` keep-alive connections each send the next request as soon as the previous
  answer arrives (closed loop) for `--seconds`: the highest request rate the server sustains.
- `rate`: requests are scheduled at a fixed `--rate` (open loop); latency counts from the scheduled
  moment, so a server that falls behind is charged for the queue it builds (no coordinated omission).

Prints one JSON object: requests, ok, errors, seconds, rps, p50_ms, p99_ms, max_ms, first_error.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import quote


def _enc(value: str) -> str:
    return quote(value, safe="~")


def signed_path(params: dict[str, str], key_id: str, secret: str) -> str:
    full = {**params, "AccessKeyId": key_id, "Format": "JSON", "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0", "SignatureNonce": uuid.uuid4().hex, "Version": "2017-05-25",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    canonical = "&".join(f"{_enc(k)}={_enc(v)}" for k, v in sorted(full.items()))
    to_sign = f"GET&%2F&{_enc(canonical)}"
    sig = base64.b64encode(hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return f"/?{canonical}&Signature={_enc(sig)}"


class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await self.reader.readexactly(length)
        return status, body


def summary(latencies: list[float], errors: list[str], seconds: float) -> dict[str, object]:
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 3) if lat else 0.0

    done = len(latencies)
    return {"requests": done, "ok": done - len(errors), "errors": len(errors), "seconds": round(seconds, 3),
            "rps": round(done / seconds, 1) if seconds else 0.0, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "max_ms": pct(1.0), "first_error": errors[0] if errors else ""}


async def run(args: argparse.Namespace) -> dict[str, object]:
    params = json.loads(args.params)
    mobiles = [str(int(args.first_mobile) + i) for i in range(args.count)]
    if args.path:  # the baseline: an unsigned path driven the same way
        paths = [args.path] * args.count
    else:
        number = (lambda m: {"PhoneNumbers": m}) if params.get("Action") == "SendSms" else \
            (lambda m: {"CardObjects": json.dumps([{"mobile": m}])})
        paths = [signed_path({**params, **number(m)}, args.key, args.secret) for m in mobiles]
    conns = [Conn(args.host, args.port) for _ in range(args.connections)]
    latencies: list[float] = []
    errors: list[str] = []

    async def one(conn: Conn, path: str, scheduled: float) -> None:
        try:
            status, body = await conn.request(path)
            if status != 200 or (not args.path and b'"Code":"OK"' not in body.replace(b" ", b"")):
                errors.append(f"{status} {body[:200].decode(errors='replace')}")
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
            conn.writer = None
        latencies.append(time.perf_counter() - scheduled)

    t0 = time.perf_counter()
    end = t0 + args.seconds
    if args.mode == "max":
        it = iter(paths)

        async def loop(conn: Conn) -> None:
            for path in it:
                if time.perf_counter() >= end:
                    return
                await one(conn, path, time.perf_counter())

        await asyncio.gather(*(loop(c) for c in conns))
    else:
        queue: asyncio.Queue[tuple[str, float] | None] = asyncio.Queue()

        async def consume(conn: Conn) -> None:
            while (item := await queue.get()) is not None:
                await one(conn, *item)

        consumers = [asyncio.create_task(consume(c)) for c in conns]
        total = min(len(paths), int(args.rate * args.seconds))
        for i in range(total):
            scheduled = t0 + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait((paths[i], scheduled))
        for _ in consumers:
            queue.put_nowait(None)
        await asyncio.gather(*consumers)
    return summary(latencies, errors, time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", default="")
    ap.add_argument("--secret", default="")
    ap.add_argument("--params", default="{}", help="JSON object of request parameters besides CardObjects")
    ap.add_argument("--path", default="", help="drive this unsigned path instead (the baseline)")
    ap.add_argument("--mode", choices=("max", "rate"), required=True)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--count", type=int, default=20000, help="requests signed in advance (upper bound)")
    ap.add_argument("--first-mobile", default="13600000000")
    args = ap.parse_args()
    assert args.host == "127.0.0.1", "load only on loopback"
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency; plain asyncio works too
        pass
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
