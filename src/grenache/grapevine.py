"""Grapevine for Python: the peer-to-peer chat on Grape that this project grew from, wire-compatible both
ways with the Node original (ismaelpamplona/grapevine-p2p-chat, on grenache-nodejs-ws).

On the wire: a peer is a WebSocket RPC server announced under its *name* (the service key is the
name); a message is the request payload ``{"message": m}``; the reply is a string (the Node server
answers ``"Echo: m"``). Clients look the name up and send with a 10 s timeout.

* :class:`Grapevine`: an endpoint answering under a name; the reply comes from the application's
  ``on_message`` (default: the Node server's echo). An application (e.g. a trading peer) can run one
  beside its own services so Grapevine clients can reach it by its name.
* :func:`send`: the client side.
* ``grapevine`` command: ``grapevine serve NAME PORT`` is the Node server; ``grapevine`` (or
  ``grapevine chat``) the interactive client; ``grapevine send NAME MESSAGE`` one message.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl as _ssl
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import click
import msgspec

from .client import PeerRPCClient
from .errors import GrenacheError
from .link import Link
from .server import PeerRPCServer, Request

TIMEOUT = 10.0  # seconds, as the Node client waits
MAX_MESSAGE = 64 * 1024  # characters of one chat message


class Message(msgspec.Struct):
    """The Grapevine payload. Other fields are ignored, as Node ignores them."""

    message: Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE)]


OnMessage = Callable[[str, Request], Awaitable[str]]


async def echo(message: str, request: Request) -> str:
    """The Node Grapevine server's answer."""
    return f"Echo: {message}"


class Grapevine:
    """A Grapevine endpoint: a grenache WebSocket server announced under ``name``.

    ``on_message(message, request)`` returns the reply string (``request.peer`` is the caller's address,
    ``request.cert`` its certificate with TLS). Raise ``RPCError`` to answer an error.
    """

    def __init__(
        self,
        link: Link,
        name: str,
        on_message: OnMessage = echo,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        if not name:
            raise ValueError("a Grapevine name must not be empty")
        self.name = name
        self.port = port
        self.on_message = on_message
        self.server = PeerRPCServer(link, host=host, transport="ws", ssl=ssl)
        self.server.add_handler(name, self._handle, Message)

    async def _handle(self, payload: Message, request: Request) -> str:
        return await self.on_message(payload.message, request)

    async def start(self) -> int:
        """Listen and keep announcing the name; returns the port."""
        self.port = await self.server.listen(self.port)
        await self.server.announce(self.name)
        return self.port

    async def stop(self) -> None:
        await self.server.stop()


async def send(
    link: Link, name: str, message: str, *, timeout: float = TIMEOUT, client: PeerRPCClient | None = None
) -> Any:
    """Send ``message`` to the peer announced as ``name``; its reply (a string from Grapevine peers)."""
    own = client is None
    rpc = client or PeerRPCClient(link, transport="ws", timeout=timeout)
    try:
        return await rpc.request(name, {"message": message}, timeout=timeout)
    finally:
        if own:
            await rpc.stop()


# the command line ----------------------------------------------------------------------------------------
DEFAULT_GRAPE = "http://127.0.0.1:30001"


def _grape(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from .cli import normalize_grape

    return None if value is None else normalize_grape(value)


grape_option = click.option(
    "--grape",
    default=None,
    envvar="GRENACHE_GRAPE",
    callback=_grape,
    help=f"Grape HTTP API: http://HOST:PORT or HOST:PORT [default: {DEFAULT_GRAPE}].",
)


def _grape_of(grape: str | None) -> str:
    """The command's --grape, else the group's, else the default."""
    ctx = click.get_current_context()
    return grape or (ctx.find_root().obj if isinstance(ctx.find_root().obj, str) else None) or DEFAULT_GRAPE


@click.group(invoke_without_command=True)
@grape_option
@click.pass_context
def main(ctx: click.Context, grape: str | None) -> None:
    """Grapevine: peer-to-peer chat on Grape, compatible with the Node Grapevine. Without a command: chat.

    \b
    Examples:
      grapevine serve alice 1337
      grapevine send alice hi"""
    ctx.obj = grape
    if ctx.invoked_subcommand is None:
        ctx.invoke(chat, grape=None)


@main.command()
@click.argument("name")
@click.argument("port", type=click.IntRange(0, 65535))
@grape_option
def serve(name: str, port: int, grape: str | None) -> None:
    """Answer Grapevine messages to NAME on PORT with "Echo: <message>" (as the Node server does).

    \b
    Example:
      grapevine serve alice 1337"""
    grape = _grape_of(grape)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        async def on_message(message: str, request: Request) -> str:
            click.echo(f"{name} received: {message}")
            return await echo(message, request)

        async with Link(grape) as link:
            peer = Grapevine(link, name, on_message, port=port)
            bound = await peer.start()
            click.echo(f"Grapevine server {name} listening on port {bound}")
            try:
                await stop.wait()
            finally:
                await peer.stop()

    try:
        asyncio.run(run())
    except OSError as exc:
        raise click.ClickException(f"cannot listen on port {port}: {exc.strerror or exc}") from None


@main.command(name="send")
@click.argument("name")
@click.argument("message")
@click.option("--timeout", type=float, default=TIMEOUT, show_default=True)
@grape_option
def send_(name: str, message: str, timeout: float, grape: str | None) -> None:
    """Send MESSAGE to the peer NAME and print its reply.

    \b
    Example:
      grapevine send alice hello"""
    url = _grape_of(grape)

    async def run() -> Any:
        async with Link(url) as link:
            return await send(link, name, message, timeout=timeout)

    try:
        click.echo(asyncio.run(run()))
    except GrenacheError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@grape_option
def chat(grape: str | None) -> None:
    """Ask for a peer name and a message, send it, print the reply; again, until end of input.

    \b
    Example:
      grapevine chat --grape 127.0.0.1:30001"""
    url = _grape_of(grape)

    async def run() -> None:
        loop = asyncio.get_running_loop()

        async def ask(question: str) -> str | None:
            click.echo(question, nl=False)
            line = await loop.run_in_executor(None, sys.stdin.readline)
            return line.strip() if line else None

        async with Link(url) as link:
            client = PeerRPCClient(link, transport="ws", timeout=TIMEOUT)
            try:
                while (name := await ask("Enter peer name: ")) is not None:
                    message = await ask("Enter message: ")
                    if message is None:
                        break
                    if not name:
                        click.echo("Error: a peer name is needed")
                        continue
                    try:
                        reply = await send(link, name, message, client=client)
                        click.echo(f"Response from {name}: {reply}")
                    except GrenacheError as exc:
                        click.echo(f"Error: {exc}")
            finally:
                await client.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
