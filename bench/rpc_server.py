"""Benchmark RPC server on the Python Grenache library (uvloop).

usage: python bench/rpc_server.py GRAPE_URL KEY [http|ws]
Replies ``{"from": "python", "got": payload}``; prints ``READY <port>`` once listening and announced.
With GRENACHE_TLS_DIR (key.pem, cert.pem, ca.pem) it serves HTTPS / WSS, asking for client certificates
from that CA (as the Node servers of the benchmark do).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import uvloop

from grenache import Link, PeerRPCServer, tls


async def main(grape: str, key: str, transport: Literal["http", "ws"]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Link(grape) as link:
        folder = os.environ.get("GRENACHE_TLS_DIR")
        ctx = None
        if folder:
            pem = {name: (Path(folder) / f"{name}.pem").read_bytes() for name in ("cert", "key", "ca")}
            ctx = tls.server_context(pem["cert"], pem["key"], ca_pem=pem["ca"])
        server = PeerRPCServer(link, transport=transport, ssl=ctx)

        @server.handle(key)
        async def reply(payload: Any) -> Any:
            return {"from": "python", "got": payload}

        await server.listen(0)
        await server.announce(key)
        print(f"READY {server.port}", flush=True)
        try:
            await stop.wait()
        finally:
            await server.stop()


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["http"], ["ws"]):
        sys.exit("usage: python bench/rpc_server.py GRAPE_URL KEY [http|ws]")
    uvloop.run(main(sys.argv[1], sys.argv[2], "ws" if sys.argv[3:] == ["ws"] else "http"))
