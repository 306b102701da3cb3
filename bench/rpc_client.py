"""Benchmark load generator on the Python Grenache library (uvloop).

usage: python bench/rpc_client.py GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS
Keeps INFLIGHT requests outstanding; after the warm-up, records every request started and finished inside
the measured window. Prints one JSON line: {requests, errors, seconds, rps, p50_ms, p99_ms}.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import uvloop

from grenache import Link, PeerRPCClient, RPCError


def pct(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    return sorted_ms[min(len(sorted_ms) - 1, int(p * len(sorted_ms)))]


async def main(grape: str, key: str, inflight: int, seconds: float, warmup: float) -> dict[str, object]:
    # lookups cached 10 s, as grenache-nodejs-link does, so both clients ask the Grape equally rarely
    async with Link(grape, lookup_cache_ttl=10.0) as link:
        client = PeerRPCClient(link, max_conns_per_dest=max(64, inflight))
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
    if len(sys.argv) != 6:
        sys.exit("usage: python bench/rpc_client.py GRAPE_URL KEY INFLIGHT SECONDS WARMUP_SECONDS")
    grape_url, service, n_inflight, n_seconds, n_warmup = sys.argv[1:]
    stats = uvloop.run(main(grape_url, service, int(n_inflight), float(n_seconds), float(n_warmup)))
    print(json.dumps(stats), flush=True)
