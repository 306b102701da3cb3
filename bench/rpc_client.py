"""Benchmark load generator on the Python Grenache library (uvloop).

usage: python bench/rpc_client.py GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS [http|ws]
Keeps INFLIGHT requests outstanding; after the warm-up, records every request started and finished inside
the measured window. Prints one JSON line: {requests, errors, seconds, rps, p50_ms, p99_ms}.
With GRENACHE_TLS_DIR (key.pem, cert.pem, ca.pem) it uses TLS, verifying the server against that CA.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Literal

import uvloop

from grenache import Link, PeerRPCClient, RPCError, tls


def pct(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))]


async def main(
    grape: str, key: str, inflight: int, seconds: float, warmup: float, transport: Literal["http", "ws"]
) -> dict[str, object]:
    folder = os.environ.get("GRENACHE_TLS_DIR")
    ctx = None
    if folder:
        pem = {name: (Path(folder) / f"{name}.pem").read_bytes() for name in ("cert", "key", "ca")}
        ctx = tls.client_context(cert_pem=pem["cert"], key_pem=pem["key"], ca_pem=pem["ca"])
    # lookups cached 10 s, as grenache-nodejs-link does, so both clients ask the Grape equally rarely
    async with Link(grape, lookup_cache_ttl=10.0) as link:
        client = PeerRPCClient(link, transport=transport, ssl=ctx, max_conns_per_dest=max(64, inflight))
        t0 = time.perf_counter()
        measure_from = t0 + warmup
        measure_to = measure_from + seconds
        latencies: list[float] = []
        errors = 0
        first_error: str | None = None
        counter = 0

        async def worker() -> None:
            nonlocal counter, errors, first_error
            while (start := time.perf_counter()) < measure_to:
                n = counter
                counter += 1
                try:
                    await client.request(key, {"msg": "hello", "n": n}, timeout=10)
                    failed: str | None = None
                except RPCError as exc:
                    failed = str(exc)
                end = time.perf_counter()
                if start >= measure_from and end <= measure_to:
                    if failed is None:
                        latencies.append((end - start) * 1000)
                    else:
                        errors += 1
                        first_error = first_error or failed

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(inflight):
                    group.create_task(worker())
        finally:
            await client.stop()
    latencies.sort()
    return {
        "requests": len(latencies),
        "errors": errors,
        "first_error": first_error,
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": pct(latencies, 0.5),
        "p99_ms": pct(latencies, 0.99),
    }


if __name__ == "__main__":
    if len(sys.argv) not in (6, 7):
        sys.exit("usage: python bench/rpc_client.py GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS [http|ws]")
    grape_url, service, n_inflight, n_seconds, n_warmup = sys.argv[1:6]
    mode: Literal["http", "ws"] = "ws" if sys.argv[6:] == ["ws"] else "http"
    stats = uvloop.run(main(grape_url, service, int(n_inflight), float(n_seconds), float(n_warmup), mode))
    print(json.dumps(stats), flush=True)
