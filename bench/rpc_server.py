"""Benchmark RPC server on the Python Grenache library (uvloop).

usage: python bench/rpc_server.py GRAPE_URL KEY
Replies ``{"from": "python", "got": payload}``; prints ``READY <port>`` once listening and announced.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import uvloop

from grenache import Link, PeerRPCServer


async def main(grape: str, key: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Link(grape) as link:
        server = PeerRPCServer(link)

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
    if len(sys.argv) != 3:
        sys.exit("usage: python bench/rpc_server.py GRAPE_URL KEY")
    uvloop.run(main(sys.argv[1], sys.argv[2]))
