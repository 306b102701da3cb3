"""``otc peer``: run one peer until Ctrl-C or SIGTERM, telling the trader what it is doing.

The order matters. The control API's port is bound first: a port that is taken fails the start before
the peer announces itself anywhere (otherwise others would list a peer that never ran). The API answers
503 ERR_NOT_READY until the join is done. On Ctrl-C or SIGTERM the peer says goodbye to the market (its
offers leave every book at once), gives takes in flight a moment to be answered, and stops; a second
Ctrl-C stops it at once.

What the trader reads on stderr: one "ready" line with where everything is; whether the Grape can be
reached, once when that changes (not one warning per failed announce); and at stop, what became of takes
left in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import sys
from typing import Any

import click

from .. import home
from ..core.errors import OTCError

API_PORTS = range(8001, 8100)  # where a peer's API goes when --api-port is not given: the first free one
EXIT_STORE_DAMAGED = 3  # peer.sqlite cannot be used (see --recover)
DRAIN_S = 3.0  # how long a stopping peer waits for its takes in flight to be answered


class QuietGrapeFailures(logging.Filter):
    """The Grape library warns at every failed announce; the peer says once that the Grape cannot be
    reached (grapestatus.py), so those warnings are noise unless debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("failed: ERR_GRAPE_UNREACHABLE" in text or "failed: ERR_GRAPE_TIMEOUT" in text)


async def bind_api(api: Any, port: int | None) -> int:
    """Start the API on ``port``; without one, on the first free port from 8001 (so that
    `otc peer --name bob` next to alice just works), or any port if all of those are taken."""
    if port is not None:
        return int(await api.start(port))
    for candidate in API_PORTS:
        try:
            return int(await api.start(candidate))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    return int(await api.start(0))


def say(text: str) -> None:
    click.echo(text, err=True)


def run_peer(
    config: Any,
    *,
    api_port: int | None,
    name: str,
    ephemeral: bool,
    log_level: str,
) -> None:
    from ..api import API
    from ..node.peer import Peer
    from ..node.store import StoreDamaged

    if log_level != "debug":
        logging.getLogger("grenache.link").addFilter(QuietGrapeFailures())

    async def run() -> None:
        node = Peer(config)
        api = API(node)
        stop, hurry = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                hurry.set()  # a second Ctrl-C: stop now, whatever is in flight
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal)
        try:
            port = await bind_api(api, api_port)
        except OSError as exc:
            await node.stop()
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"the API port {api_port} is in use (another peer? `otc peers --local` lists them): "
                    "give another --api-port, or 0 for any free port"
                ) from None
            raise
        news = GrapeNews(config.grape)
        node.events.callbacks.append(news)
        try:
            await node.start()
        except BaseException:
            await api.stop()
            await node.stop()
            raise
        url = f"http://127.0.0.1:{port}"
        try:
            with contextlib.ExitStack() as registration:
                try:
                    registration.enter_context(home.registered(name, node.peer_id, url, node.data_dir))
                except (OSError, home.HomeError) as exc:
                    say(f"warning: `otc --as {name}` will not find this peer: {exc}")
                where = "a temporary directory (--ephemeral)" if ephemeral else str(node.data_dir)
                say(
                    f"peer {name} {node.peer_id} ready: api {url} rpc {node.addr} grape {config.grape}\n"
                    f"data in {where}; API token in {node.data_dir / home.TOKEN_FILE}; "
                    f"use it with: otc --as {name} book"
                )
                if node.grape.ok is False:
                    say(cut_off(config.grape, node.grape.error))
                if (blocked := node.recovery.blocked()) is not None:
                    say(f"trading refused: {blocked}")
                news.ready = True
                await stop.wait()
                say(f"peer {name} stopping: saying goodbye to the market")
                leaving = asyncio.ensure_future(node.leave(DRAIN_S))
                hurrying = asyncio.ensure_future(hurry.wait())
                await asyncio.wait([leaving, hurrying], return_when=asyncio.FIRST_COMPLETED)
                hurrying.cancel()
                if not leaving.done():
                    leaving.cancel()
                    say("stopping at once (second Ctrl-C)")
                for trade in node.trading.pending_trades():
                    say(in_flight(trade))
        finally:
            await api.stop()
            await node.stop()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(run())
    except PortTaken as exc:
        say(f"error: {exc}")
        sys.exit(1)
    except StoreDamaged as exc:
        say(
            f"error: {exc}\nNothing was changed. Restore peer.sqlite from a backup, or start with --recover "
            "to move it aside and rebuild this identity's history from the network."
        )
        sys.exit(EXIT_STORE_DAMAGED)
    except (OSError, RuntimeError, OTCError) as exc:  # a data directory held by another peer, a bad URL
        hint = ""
        if "another peer is running" in str(exc):
            hint = "\n(`otc peers --local` lists it; give another --name, --data-dir or --ephemeral)"
        say(f"error: {exc}{hint}")
        sys.exit(1)


class PortTaken(Exception):
    pass


def cut_off(grape: str, error: str | None) -> str:
    return (
        f"warning: cannot reach the Grape at {grape} ({error}).\n"
        "This peer is out of the market until it can: no other peer can find it, it finds none, and its "
        "offers reach nobody. Start a Grape there (`grenache grapes up`) or restart with the right "
        "--grape; it keeps trying meanwhile."
    )


class GrapeNews:
    """Says it when the Grape is lost, and when it is reached again (at start, the ready line does)."""

    def __init__(self, grape: str) -> None:
        self.grape = grape
        self.ready = False
        self.lost = False

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("type") != "grape":
            return
        if event["ok"]:
            if self.lost:
                say(f"reached the Grape at {self.grape}: in the market")
            self.lost = False
        else:
            if self.ready:
                say(cut_off(self.grape, event.get("error")))
            self.lost = True


def in_flight(trade: Any) -> str:
    tid = trade.take.trade_id[:8]
    if trade.state.value == "requested":
        return (
            f"take {tid} was not answered by its maker before the stop: nothing was confirmed, so no trade "
            "(it is closed as such at the next start)"
        )
    return (
        f"take {tid} was confirmed but its maker has not answered yet: it is settled at the next start "
        "(`otc takes` then shows the outcome)"
    )


__all__ = ["run_peer"]
