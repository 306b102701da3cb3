"""``grenache``: the Python counterpart of grenache-cli (Grape networks, announce, lookup, RPC, DHT), plus
``grenache serve`` to answer a name from the command line on either transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import click

from . import tls
from .client import PeerRPCClient
from .errors import GrenacheError, RPCError
from .grapes import GrapeNetwork
from .link import Link
from .server import PeerRPCServer

T = TypeVar("T")
DEFAULT_GRAPE = "http://127.0.0.1:30001"


def normalize_grape(value: str) -> str:
    """``127.0.0.1:30001`` -> ``http://127.0.0.1:30001``; anything Link refuses -> a clear message."""
    url = value.strip()
    if "://" not in url:
        url = "http://" + url
    try:
        Link(url)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a Grape API address: use http://HOST:PORT or HOST:PORT, "
            "e.g. http://127.0.0.1:30001"
        ) from None
    return url.rstrip("/")


grape_option = click.option(
    "--grape",
    default=DEFAULT_GRAPE,
    show_default=True,
    envvar="GRENACHE_GRAPE",
    callback=lambda ctx, param, value: normalize_grape(value),
    help="Grape HTTP API: http://HOST:PORT or HOST:PORT.",
)
transport_option = click.option(
    "--transport",
    type=click.Choice(["http", "ws"]),
    default="http",
    show_default=True,
    help="RPC transport: grenache-nodejs-http or grenache-nodejs-ws.",
)


def _client_tls(tls_: bool, ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if not (tls_ or ca or cert or key):
        return None
    if (cert is None) != (key is None):
        raise click.BadParameter("--cert and --key go together")
    return tls.client_context(
        ca_pem=ca.read_bytes() if ca else None,
        cert_pem=cert.read_bytes() if cert else None,
        key_pem=key.read_bytes() if key else None,
    )


def _tls_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    file = click.Path(exists=True, dir_okay=False, path_type=Path)
    fn = click.option("--pin", help="Hex public key the server's certificate must carry (implies --tls).")(fn)
    fn = click.option("--key", "key_file", type=file, help="Our private key (PEM), with --cert.")(fn)
    fn = click.option("--cert", type=file, help="Our certificate (PEM), sent to the server.")(fn)
    fn = click.option("--ca", type=file, help="CA (PEM) the server's certificate must chain to.")(fn)
    return click.option("--tls", "tls_", is_flag=True, help="Use TLS (https/wss).")(fn)


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
    """Grenache tools: local Grape networks, announce/lookup, RPC requests, DHT put/get.

    \b
    Examples:
      grenache grapes up 2
      grenache lookup otc:market --grape 127.0.0.1:30001"""


@main.group()
def grapes() -> None:
    """Run local Grape DHT nodes.

    \b
    Example:
      grenache grapes up 2"""


@grapes.command("up")
@click.argument("n", type=click.IntRange(1, 64), default=2)
@click.option("--dht-port", type=int, default=20001, show_default=True, help="First DHT (UDP) port.")
@click.option("--api-port", type=int, default=30001, show_default=True, help="First HTTP API port.")
@click.option("--dpa", type=int, default=120_000, show_default=True, help="Announcement lifetime (ms).")
@click.option("--max-payload", type=int, default=8192, show_default=True, help="Grape API body cap (bytes).")
def grapes_up(n: int, dht_port: int, api_port: int, dpa: int, max_payload: int) -> None:
    """Start N Grapes on loopback, bootstrapped to each other; stop them on Ctrl-C.

    Grape i listens on DHT port DHT_PORT+i and API port API_PORT+i.

    \b
    Examples:
      grenache grapes up 2                         API 30001-30002, DHT 20001-20002
      grenache grapes up 3 --api-port 31001 --dht-port 21001
    """
    net = GrapeNetwork(
        n,
        dht_ports=[dht_port + i for i in range(n)],
        api_ports=[api_port + i for i in range(n)],
        dpa_ms=dpa,
        max_payload=max_payload,
    )
    taken = _taken_ports(net)
    if taken:
        raise click.ClickException(
            f"{taken}: is another `grenache grapes up` (or a Grape) running? Stop it, or choose other "
            "ports with --api-port and --dht-port."
        )
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    try:
        try:
            net.start()
        except (RuntimeError, TimeoutError) as exc:  # a Grape that exits at start: its port was taken
            raise click.ClickException(f"{exc} (is one of its ports in use?)") from None
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


def _taken_ports(net: GrapeNetwork) -> str | None:
    """Which port of the Grapes to start is in use already (API: TCP, DHT: UDP), said in words."""
    for i, grape in enumerate(net.grapes, 1):
        for kind, port, what in (
            (socket.SOCK_STREAM, grape.api_port, "API"),
            (socket.SOCK_DGRAM, grape.dht_port, "DHT"),
        ):
            with socket.socket(socket.AF_INET, kind) as sock:
                try:
                    sock.bind((grape.host, port))
                except OSError:
                    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
                    return f"port {port} ({what}, {proto}) of grape {i} is already in use"
    return None


@main.command()
@click.argument("name")
@grape_option
def lookup(name: str, grape: str) -> None:
    """Print the ip:port destinations announced for NAME.

    \b
    Example:
      grenache lookup otc:market --grape 127.0.0.1:30001"""
    for dest in _run(lambda link: link.lookup(name, cache=False), grape):
        click.echo(dest)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@main.command()
@click.argument("name")
@click.argument("port", type=click.IntRange(1, 65535))
@transport_option
@grape_option
def announce(name: str, port: int, transport: str, grape: str) -> None:
    """Announce NAME on PORT once (records expire unless re-announced).

    The Grape records its own address with PORT, so announce through a Grape on the service's host.

    \b
    Example:
      grenache announce rpc_test 1337
    """
    nodes = _run(lambda link: link.announce(name, port), grape)
    click.echo(
        f"announced {name!r} on port {port} through {grape}: {nodes} other Grape node"
        f"{'' if nodes == 1 else 's'} stored it. Clients reach it with --transport {transport}. "
        "Records expire 80-160 s after the last announce: `grenache serve` keeps announcing."
    )
    if not _listening(port):
        click.echo(f"warning: nothing listens on 127.0.0.1:{port} yet", err=True)


def _rpc(
    grape: str,
    key: str,
    payload: Any,
    timeout: float,
    compress: bool,
    fanout: bool,
    transport: str = "http",
    ssl_ctx: ssl.SSLContext | None = None,
    pin: str | None = None,
) -> Any:
    verify = None
    if pin is not None:
        try:
            verify = tls.pin_public_key(bytes.fromhex(pin))
        except ValueError:
            raise click.BadParameter("--pin takes a hex public key") from None
        ssl_ctx = ssl_ctx or tls.client_context()

    async def call(link: Link) -> Any:
        client = PeerRPCClient(
            link,
            timeout=timeout,
            transport=cast(Literal["http", "ws"], transport),
            ssl=ssl_ctx,
            verify_peer=verify,
        )
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
@click.option("--compress", is_flag=True, help="gzip the request (grc-compress: gzip; HTTP only).")
@transport_option
@_tls_options
@grape_option
def request(
    name: str,
    payload: Any,
    timeout: float,
    compress: bool,
    transport: str,
    tls_: bool,
    ca: Path | None,
    cert: Path | None,
    key_file: Path | None,
    pin: str | None,
    grape: str,
) -> None:
    """Send the JSON PAYLOAD to one destination of NAME and print the result.

    \b
    Example:
      grenache request rpc_test '{"msg": "hello"}'"""
    ctx = _client_tls(tls_, ca, cert, key_file)
    _print(_rpc(grape, name, payload, timeout, compress, False, transport, ctx, pin))


@main.command(name="map")
@click.argument("name")
@click.argument("payload", type=_json_arg, default="null")
@click.option("--timeout", type=float, default=10.0, show_default=True)
@click.option("--compress", is_flag=True, help="gzip the request (grc-compress: gzip; HTTP only).")
@transport_option
@_tls_options
@grape_option
def map_(
    name: str,
    payload: Any,
    timeout: float,
    compress: bool,
    transport: str,
    tls_: bool,
    ca: Path | None,
    cert: Path | None,
    key_file: Path | None,
    pin: str | None,
    grape: str,
) -> None:
    """Send the JSON PAYLOAD to every destination of NAME and print each outcome.

    \b
    Example:
      grenache map rpc_test '{"msg": "hello"}' --transport ws"""
    ctx = _client_tls(tls_, ca, cert, key_file)
    _print(_rpc(grape, name, payload, timeout, compress, True, transport, ctx, pin))


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--echo", "mode", flag_value="echo", default=True, help="Reply with the payload (default).")
@click.option("--reply", "reply_json", type=_json_arg, help="Reply with this JSON value instead.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0: any free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--no-announce", is_flag=True, help="Serve without announcing (no Grape needed).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TLS certificate.")
@click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@transport_option
@grape_option
def serve(
    names: tuple[str, ...],
    mode: str,
    reply_json: Any,
    port: int,
    host: str,
    no_announce: bool,
    cert: Path | None,
    key_file: Path | None,
    transport: str,
    grape: str,
) -> None:
    """Answer requests to NAMES (echo, or a fixed JSON reply) and keep announcing them; Ctrl-C stops.

    For tests and demos: `grenache serve rpc_test --reply '"world"' --transport ws` answers the
    grenache-nodejs-ws examples.

    \b
    Example:
      grenache serve rpc_test --reply '"world"'
    """
    if (cert is None) != (key_file is None):
        raise click.BadParameter("--cert and --key go together")
    ctx = tls.server_context(cert.read_bytes(), key_file.read_bytes()) if cert and key_file else None
    fixed = reply_json is not None

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with Link(grape) as link:
            server = PeerRPCServer(link, host=host, transport=cast(Literal["http", "ws"], transport), ssl=ctx)

            async def answer(payload: Any) -> Any:
                return reply_json if fixed else payload

            for name in names:
                server.add_handler(name, answer)
            bound = await server.listen(port)
            scheme = {"http": "https", "ws": "wss"}[transport] if ctx else transport
            where = "not announced" if no_announce else f"announced through {grape}"
            click.echo(f"serving {', '.join(names)} on {host}:{bound} over {scheme}, {where}; Ctrl-C stops")
            sys.stdout.flush()
            if not no_announce:
                for name in names:
                    outcome = await server.announce(name)
                    if isinstance(outcome, GrenacheError):
                        click.echo(f"warning: announcing {name!r} failed ({outcome}); retrying", err=True)
            try:
                await stop.wait()
            finally:
                await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    click.echo("stopped", err=True)


@main.command()
@click.argument("value")
@grape_option
def put(value: str, grape: str) -> None:
    """Store an immutable VALUE in the DHT and print its hash.

    \b
    Example:
      grenache put "hello world"        prints 6d33adc2b6b2c14c3036feefb7fedbca1a880527"""
    _print(_run(lambda link: link.put(value), grape))


@main.command()
@click.argument("hash_", metavar="HASH")
@grape_option
def get(hash_: str, grape: str) -> None:
    """Fetch the DHT item stored under HASH (what `grenache put` printed) and print it with that hash.

    The Grape also says which DHT node answered (its own id, not the item's): shown as "node".

    \b
    Example:
      grenache get 6d33adc2b6b2c14c3036feefb7fedbca1a880527"""
    item = _run(lambda link: link.get(hash_), grape)
    if item is None:
        click.echo("not found", err=True)
        sys.exit(1)
    shown = {"hash": hash_.lower()} | {
        ("node" if key == "id" else key): value
        for key, value in item.items()
        if not (key == "token" and value is None)
    }
    _print(shown)


if __name__ == "__main__":
    main()
