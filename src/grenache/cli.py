"""``grenache``: the Python counterpart of grenache-cli (Grape networks, announce, lookup, RPC, DHT)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .client import PeerRPCClient
from .errors import GrenacheError, RPCError
from .grapes import GrapeNetwork
from .link import Link

T = TypeVar("T")
DEFAULT_GRAPE = "http://127.0.0.1:30001"

grape_option = click.option(
    "--grape", default=DEFAULT_GRAPE, show_default=True, envvar="GRENACHE_GRAPE", help="Grape HTTP API URL."
)


def _run(fn: Callable[[Link], Awaitable[T]], grape: str) -> T:
    async def main() -> T:
        async with Link(grape) as link:
            return await fn(link)

    try:
        return asyncio.run(main())
    except GrenacheError as exc:
        raise click.ClickException(str(exc)) from None


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}") from None


def _print(value: Any) -> None:
    if isinstance(value, str):
        click.echo(value)
        return
    click.echo(json.dumps(value, indent=None if isinstance(value, (str, int)) else 2, default=str))


@click.group()
def main() -> None:
    """Grenache tools: local Grape networks, announce/lookup, RPC requests, DHT put/get."""


@main.group()
def grapes() -> None:
    """Run local Grape DHT nodes."""


@grapes.command("up")
@click.argument("n", type=click.IntRange(1, 64), default=2)
@click.option("--dht-port", type=int, default=20001, show_default=True, help="First DHT (UDP) port.")
@click.option("--api-port", type=int, default=30001, show_default=True, help="First HTTP API port.")
@click.option("--dpa", type=int, default=120_000, show_default=True, help="Announcement lifetime (ms).")
@click.option("--max-payload", type=int, default=8192, show_default=True, help="Grape API body cap (bytes).")
def grapes_up(n: int, dht_port: int, api_port: int, dpa: int, max_payload: int) -> None:
    """Start N Grapes on loopback, bootstrapped to each other; stop them on Ctrl-C.

    Grape i listens on DHT port DHT_PORT+i and API port API_PORT+i.
    """
    net = GrapeNetwork(
        n,
        dht_ports=[dht_port + i for i in range(n)],
        api_ports=[api_port + i for i in range(n)],
        dpa_ms=dpa,
        max_payload=max_payload,
    )
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        net.start()
        for grape in net.grapes:
            click.echo(f"grape  api {grape.url}  dht 127.0.0.1:{grape.dht_port}")
        click.echo("ready; Ctrl-C stops them")
        while not stop:
            for grape in net.grapes:
                if grape.process is not None and grape.process.poll() is not None:
                    raise click.ClickException(f"grape {grape.url} exited ({grape.process.returncode})")
            time.sleep(0.5)  # supervision tick: notice a Grape that dies
    except KeyboardInterrupt:
        pass
    finally:
        net.stop()
        click.echo("grapes stopped", err=True)


@main.command()
@click.argument("name")
@grape_option
def lookup(name: str, grape: str) -> None:
    """Print the ip:port destinations announced for NAME."""
    for dest in _run(lambda link: link.lookup(name, cache=False), grape):
        click.echo(dest)


@main.command()
@click.argument("name")
@click.argument("port", type=click.IntRange(1, 65535))
@grape_option
def announce(name: str, port: int, grape: str) -> None:
    """Announce NAME on PORT once (records expire unless re-announced)."""
    _print(_run(lambda link: link.announce(name, port), grape))


def _rpc(grape: str, key: str, payload: Any, timeout: float, compress: bool, fanout: bool) -> Any:
    async def call(link: Link) -> Any:
        client = PeerRPCClient(link, timeout=timeout)
        try:
            if fanout:
                return [
                    {"error": r.code, "message": r.message, "dest": r.dest} if isinstance(r, RPCError) else r
                    for r in await client.map(key, payload, compress=compress)
                ]
            return await client.request(key, payload, compress=compress)
        finally:
            await client.stop()

    return _run(call, grape)


@main.command()
@click.argument("name")
@click.argument("payload", type=_json_arg, default="null")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("--compress", is_flag=True, help="gzip the request (grc-compress: gzip).")
@grape_option
def request(name: str, payload: Any, timeout: float, compress: bool, grape: str) -> None:
    """Send the JSON PAYLOAD to one destination of NAME and print the result."""
    _print(_rpc(grape, name, payload, timeout, compress, fanout=False))


@main.command(name="map")
@click.argument("name")
@click.argument("payload", type=_json_arg, default="null")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("--compress", is_flag=True, help="gzip the request (grc-compress: gzip).")
@grape_option
def map_(name: str, payload: Any, timeout: float, compress: bool, grape: str) -> None:
    """Send the JSON PAYLOAD to every destination of NAME and print each outcome."""
    _print(_rpc(grape, name, payload, timeout, compress, fanout=True))


@main.command()
@click.argument("value")
@grape_option
def put(value: str, grape: str) -> None:
    """Store an immutable VALUE in the DHT and print its hash."""
    _print(_run(lambda link: link.put(value), grape))


@main.command()
@click.argument("hash_", metavar="HASH")
@grape_option
def get(hash_: str, grape: str) -> None:
    """Fetch the DHT item stored under HASH."""
    item = _run(lambda link: link.get(hash_), grape)
    if item is None:
        click.echo("not found", err=True)
        sys.exit(1)
    _print(item)


if __name__ == "__main__":
    main()
