"""A load generator run as a separate process: GET the given URLs round-robin at a fixed rate (or
as fast as possible with rate 0) for a fixed time; prints JSON with req/s and latency percentiles.

    python bench/load.py --seconds 10 --concurrency 64 --rate 0 --header 'X-Card-Parser: HuaWei' URL...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import httpx


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--rate", type=float, default=0, help="requests per second in all; 0 = as fast as possible")
    ap.add_argument("--header", action="append", default=[])
    args = ap.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    for u in args.urls:
        assert u.startswith("http://127.0.0.1"), "load only on loopback"
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + args.seconds
    interval = args.concurrency / args.rate if args.rate else 0.0
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)

    async def user(i: int, client: httpx.AsyncClient) -> None:
        nonlocal errors
        n = i
        next_at = time.monotonic() + (interval * i / args.concurrency if interval else 0)
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            url = args.urls[n % len(args.urls)]
            n += args.concurrency
            t0 = time.perf_counter()
            try:
                r = await client.get(url, headers=headers)
                if r.status_code >= 400:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    started = time.monotonic()
    async with httpx.AsyncClient(limits=limits, timeout=10, follow_redirects=False) as client:
        await asyncio.gather(*(user(i, client) for i in range(args.concurrency)))
    elapsed = time.monotonic() - started
    lat = sorted(latencies)
    pick = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: 0.0)
    print(json.dumps({"requests": len(lat), "errors": errors, "seconds": round(elapsed, 2),
                      "rps": round(len(lat) / elapsed, 1), "p50_ms": round(pick(0.5), 2),
                      "p99_ms": round(pick(0.99), 2),
                      "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else 0.0}))


if __name__ == "__main__":
    asyncio.run(main())
