"""``otc``: run a peer (``otc peer``) and trade through a running peer's control API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

import click

from .money import DEFAULT_PAIR, PAIRS

DEFAULT_API = "http://127.0.0.1:8001"


@click.group()
@click.version_option(package_name="grenache-otc")
def main() -> None:
    """Grenache OTC: a peer-to-peer OTC desk on the Grenache DHT."""


@main.command()
@click.option("--grape", default="http://127.0.0.1:30001", show_default=True, envvar="OTC_GRAPE")
@click.option("--api-port", type=click.IntRange(0, 65535), default=8001, show_default=True)
@click.option("--rpc-port", type=click.IntRange(0, 65535), default=0, help="Grenache RPC port (0 = any).")
@click.option("--name", default="anon", show_default=True, help="A label shown to others, not an identity.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keeps the key, offers and trades across restarts (default: a temporary directory).",
)
@click.option("--pair", type=click.Choice(list(PAIRS)), default=DEFAULT_PAIR, show_default=True)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
def peer(
    grape: str, api_port: int, rpc_port: int, name: str, data_dir: Path | None, pair: str, log_level: str
) -> None:
    """Run a peer: join the market through GRAPE and serve the control API on 127.0.0.1:API_PORT."""
    from .api import API
    from .peer import Peer, PeerConfig

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if len(name) > 32 or not name.isprintable():
        raise click.BadParameter("a name is 1 to 32 printable characters", param_hint="--name")

    async def run() -> None:
        config = PeerConfig(grape=grape, name=name, data_dir=data_dir, rpc_port=rpc_port, default_pair=pair)
        node = Peer(config)
        api = API(node)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await node.start()
            port = await api.start(api_port)
        except BaseException:
            await node.stop()
            raise
        click.echo(
            f"peer {name} {node.peer_id} ready: api http://127.0.0.1:{port} rpc {node.addr} grape {grape}",
            err=True,
        )
        try:
            await stop.wait()
        finally:
            await api.stop()
            await node.stop()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(run())
    except OSError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
