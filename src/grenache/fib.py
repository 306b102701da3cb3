"""The Python counterpart of Bitfinex's grenache-nodejs-example-fib-server / -client, the "hello world"
of Grenache: the service ``fibonacci_worker`` answers ``{"number": n}`` with the n-th Fibonacci number
(``fib(0) = fib(1) = 1``, as the Node example computes it).

    python -m grenache.fib serve [--transport http|ws] [--grape URL] [--port P]
    python -m grenache.fib ask N [--transport http|ws] [--grape URL]
"""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Literal, cast

import click
import msgspec

from .cli import grape_option, transport_option
from .client import PeerRPCClient
from .errors import GrenacheError
from .link import Link
from .server import PeerRPCServer

SERVICE = "fibonacci_worker"
MAX_N = 1000  # the Node example recurses (exponential time); we iterate, but keep numbers sane


class FibRequest(msgspec.Struct):
    number: Annotated[int, msgspec.Meta(ge=0, le=MAX_N)]


def fibonacci(n: int) -> int:
    a, b = 1, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def fib_server(link: Link, *, transport: Literal["http", "ws"] = "http") -> PeerRPCServer:
    server = PeerRPCServer(link, transport=transport)

    @server.handle(SERVICE, FibRequest)
    async def answer(payload: FibRequest) -> int:
        return fibonacci(payload.number)

    return server


@click.group()
def main() -> None:
    """Bitfinex's Grenache Fibonacci example, in Python."""


@main.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True)
@transport_option
@grape_option
def serve(port: int, transport: str, grape: str) -> None:
    """Serve fibonacci_worker until Ctrl-C."""

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Link(grape) as link:
            server = fib_server(link, transport=cast(Literal["http", "ws"], transport))
            bound = await server.listen(port)
            await server.announce(SERVICE)
            click.echo(f"READY {bound}")
            try:
                await stop.wait()
            finally:
                await server.stop()

    asyncio.run(run())


@main.command()
@click.argument("n", type=click.IntRange(0, MAX_N))
@transport_option
@grape_option
def ask(n: int, transport: str, grape: str) -> None:
    """Ask fibonacci_worker for the N-th Fibonacci number."""

    async def run() -> object:
        async with Link(grape) as link:
            client = PeerRPCClient(link, transport=cast(Literal["http", "ws"], transport))
            try:
                return await client.request(SERVICE, {"number": n}, timeout=10)
            finally:
                await client.stop()

    try:
        result = asyncio.run(run())
    except GrenacheError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Fibonacci number at place {n} in the sequence: {result}")


if __name__ == "__main__":
    main()
