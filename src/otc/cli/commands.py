"""``otc``: run a peer (``otc peer``) and trade through a running peer's control API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from rich.console import Console, Group
from rich.text import Text

from .. import home
from ..core.errors import OTCError
from ..core.money import DEFAULT_PAIR, PAIRS
from . import render
from . import rfq as rfq_cli
from .client import DEFAULT_API, APIError, Client, ClientError, PeerUnreachable
from .target import Target, TargetError, resolve


@click.group()
@click.version_option(package_name="grenache-otc")
@click.option(
    "--as",
    "as_name",
    envvar="OTC_AS",
    metavar="NAME",
    help="Act as the peer called NAME running on this machine (env OTC_AS; see `otc peers --local`).",
)
@click.option(
    "--api",
    envvar="OTC_API",
    metavar="URL",
    help=f"Control API of the peer to act as (env OTC_API; default: the only local peer, or {DEFAULT_API}).",
)
@click.option(
    "--token",
    envvar="OTC_TOKEN",
    metavar="TOKEN",
    help="The peer's API token (env OTC_TOKEN; default: read from the local peer's data directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON (for scripts).")
@click.pass_context
def main(ctx: click.Context, as_name: str | None, api: str | None, token: str | None, as_json: bool) -> None:
    """Grenache OTC: a peer-to-peer OTC desk on the Grenache DHT.

    `otc peer --name alice` runs a peer (its data in ~/.local/share/otc/alice); every other command talks
    to a running peer's control API: `otc --as alice book`. Exit codes: 0 done, 1 refused by the peer
    (ERR_CODE: message on stderr), 2 usage error or no peer at the API address."""
    ctx.obj = {"as_name": as_name, "api": api, "token": token, "json": as_json}


def ip_address_arg(value: str, name: str) -> str:
    """An IP address as the Grape records it (a host name would never match what a Grape lists)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address (e.g. 10.0.0.1)", param_hint=name) from None


@main.command()
@click.option("--grape", default="http://127.0.0.1:30001", show_default=True, envvar="OTC_GRAPE")
@click.option("--api-port", type=click.IntRange(0, 65535), default=8001, show_default=True)
@click.option("--rpc-port", type=click.IntRange(0, 65535), default=0, help="Grenache RPC port (0 = any).")
@click.option(
    "--bind",
    callback=lambda ctx, param, value: ip_address_arg(value, "--bind"),
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address the RPC server listens on (0.0.0.0: every interface; for a market across machines).",
)
@click.option(
    "--announce",
    callback=lambda ctx, param, value: value and ip_address_arg(value, "--announce"),
    metavar="ADDR",
    help="Address other peers should dial (default: --bind, or with 0.0.0.0 the Grape's address). "
    "Run a Grape on this host, bound to this address: a Grape records the address it sees.",
)
@click.option(
    "--name",
    default="anon",
    show_default=True,
    help="A label shown to others (not an identity), and the name of the peer's data directory.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Key, offers, trades and chat (default: $XDG_DATA_HOME/otc/NAME, i.e. ~/.local/share/otc/NAME).",
)
@click.option(
    "--ephemeral", is_flag=True, help="Keep nothing: a new identity in a temporary directory, gone at stop."
)
@click.option("--pair", type=click.Choice(list(PAIRS)), default=DEFAULT_PAIR, show_default=True)
@click.option("--log-level", default="info", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--grapevine",
    is_flag=True,
    help="Also answer Grapevine (Node chat) clients under --name; their messages arrive unsigned.",
)
@click.option(
    "--notify-url", "notify_urls", multiple=True, metavar="URL",
    help="POST every notification (fills, RFQs, quotes, settlement, messages) here, HMAC-signed. Repeatable.",
)  # fmt: skip
@click.option(
    "--settlement-deadline", "deadlines", multiple=True, metavar="STATE=SECONDS",
    help="Time allowed in a settlement state before the trade is flagged overdue. Repeatable.",
)  # fmt: skip
@click.option(
    "--recover",
    is_flag=True,
    help="Rebuild this identity's history (seq, receipts) from what other peers hold before trading; "
    "cancels the offers that may still be open. Needed when the store was lost, damaged or restored "
    "from an older copy.",
)
def peer(
    grape: str,
    api_port: int,
    rpc_port: int,
    bind: str,
    announce: str | None,
    name: str,
    data_dir: Path | None,
    ephemeral: bool,
    pair: str,
    log_level: str,
    grapevine: bool,
    notify_urls: tuple[str, ...],
    deadlines: tuple[str, ...],
    recover: bool,
) -> None:
    """Run a peer: join the market through GRAPE and serve the control API on 127.0.0.1:API_PORT.

    Its identity, offers, trades and chat are kept in its data directory and survive restarts. At start
    it writes a new API token to DATA_DIR/api.token (mode 0600): every API request needs it, and the
    `otc` command finds it by itself (`otc --as NAME ...`).

    Exit codes: 0 stopped, 1 could not start (a port in use, a data directory in use), 3 the store
    (peer.sqlite) is damaged: nothing was changed; --recover moves it aside and rebuilds.

    Example: otc peer --name alice --api-port 8001"""
    from ..api import API
    from ..node.config import PeerConfig
    from ..node.peer import Peer
    from ..node.resources import raise_fd_limit
    from ..node.store import StoreDamaged

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 1 <= len(name) <= 32 or not name.isprintable():
        raise click.BadParameter("a name is 1 to 32 printable characters", param_hint="--name")
    from .rfq import parse_deadlines

    deadline_ms = parse_deadlines(deadlines)  # before anything is made: a bad value changes nothing
    if ephemeral and data_dir is not None:
        raise click.UsageError("--ephemeral keeps nothing, --data-dir keeps everything: give one of them")
    if not ephemeral:
        try:
            data_dir = data_dir or home.default_data_dir(name)
        except home.HomeError as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    raise_fd_limit()

    async def run() -> None:
        config = PeerConfig(
            grape=grape,
            name=name,
            data_dir=data_dir,
            rpc_host=bind,
            rpc_port=rpc_port,
            announce_host=announce,
            default_pair=pair,
            grapevine=grapevine,
            notify_urls=list(notify_urls),
            settlement_deadlines_ms=deadline_ms,
            recover=recover,
        )
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
        url = f"http://127.0.0.1:{port}"
        try:
            with contextlib.ExitStack() as registration:
                try:
                    registration.enter_context(home.registered(name, node.peer_id, url, node.data_dir))
                except (OSError, home.HomeError) as exc:
                    click.echo(f"warning: `otc --as {name}` will not find this peer: {exc}", err=True)
                where = "a temporary directory (--ephemeral)" if ephemeral else str(node.data_dir)
                click.echo(
                    f"peer {name} {node.peer_id} ready: api {url} rpc {node.addr} grape {grape}\n"
                    f"data in {where}; API token in {node.data_dir / home.TOKEN_FILE}; "
                    f"use it with: otc --as {name} book",
                    err=True,
                )
                if (blocked := node.recovery.blocked()) is not None:
                    click.echo(f"trading refused: {blocked}", err=True)
                await stop.wait()
        finally:
            await api.stop()
            await node.stop()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:  # pragma: no cover - uvloop is a dependency on every supported platform
        asyncio.run(run())
    except StoreDamaged as exc:
        click.echo(
            f"error: {exc}\nNothing was changed. Restore peer.sqlite from a backup, or start with --recover "
            "to move it aside and rebuild this identity's history from the network.",
            err=True,
        )
        sys.exit(EXIT_STORE_DAMAGED)
    except (OSError, RuntimeError, OTCError) as exc:  # a port or data directory in use, a bad --notify-url
        hint = ""
        if "another peer is running" in str(exc):
            hint = "\n(`otc peers --local` lists it; give another --name, --data-dir or --ephemeral)"
        click.echo(f"error: {exc}{hint}", err=True)
        sys.exit(1)


# --- commands that talk to a running peer's control API ----------------------------------------------
# Exit codes: 0 done; 1 refused by the peer (``ERR_CODE: message`` on stderr); 2 usage error, or no peer
# answering at the API address.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_STORE_DAMAGED = 3  # `otc peer`: peer.sqlite cannot be used (see --recover)
OFFER_ID = re.compile(r"[0-9a-f]{4,32}")
F = TypeVar("F", bound=Callable[..., None])


class Out:
    """What a command needs: the client (made on first use, so commands that need none never look for a
    peer), and where and how to print."""

    def __init__(self, select: Callable[[], Target], as_json: bool) -> None:
        self._select = select
        self._client: Client | None = None
        self.target: Target | None = None
        self.as_json = as_json
        self.console = console()

    @property
    def client(self) -> Client:
        if self._client is None:
            self.target = self._select()
            self._client = Client(self.target.url, token=self.target.token)
        return self._client

    def show(self, raw: bytes, draw: Callable[[], Any]) -> None:
        """The API's JSON with ``--json``, else the rich rendering."""
        if self.as_json:
            self.json(raw)
        else:
            self.console.print(draw())

    def json(self, raw: bytes) -> None:
        click.echo(msgspec.json.format(raw, indent=2).decode())


def console() -> Console:
    """Rich output; into a pipe or file it is not cut to 80 columns (``COLUMNS`` still rules)."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=True, width=200 if wide else None)


def select_peer(ctx: click.Context, as_name: str | None, api: str | None, token: str | None) -> Target:
    """The peer a command acts as: options given after the command, else before it, else from the
    environment (``OTC_AS``, ``OTC_API``); the first of these that names a peer decides."""
    root = ctx.find_root()
    obj = root.obj or {}
    token = token or obj.get("token")
    if not (as_name or api):
        explicit = {
            key: obj.get(key)
            for key in ("as_name", "api")
            if root.get_parameter_source(key) == click.core.ParameterSource.COMMANDLINE
        }
        if any(explicit.values()):
            as_name, api = explicit.get("as_name"), explicit.get("api")
        else:
            as_name, api = obj.get("as_name"), obj.get("api")
    return resolve(as_name, api, token)


def fail(exc: ClientError, target: Target | None) -> NoReturn:
    if isinstance(exc, APIError):
        click.echo(f"{exc.code}: {exc.message}", err=True)
        sys.exit(EXIT_REFUSED)
    if isinstance(exc, TargetError):
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if isinstance(exc, PeerUnreachable):
        if exc.reason == "connection refused" or exc.reason.startswith("unknown host"):
            port = urllib.parse.urlsplit(exc.url).port or 8001
            click.echo(
                f"error: no otc peer is running at {exc.url} ({exc.reason}).\n"
                f"Start one with:  otc peer --grape http://127.0.0.1:30001 --api-port {port} --name NAME\n"
                "or point --as NAME (or --api URL) at a running peer (`otc peers --local` lists them).",
                err=True,
            )
        else:
            click.echo(f"error: the peer at {exc.url} did not answer: {exc.reason}", err=True)
        sys.exit(EXIT_USAGE)
    where = target.url if target is not None else "the API"
    click.echo(f"error: {exc} (is {where} an otc peer's control API?)", err=True)
    sys.exit(EXIT_USAGE)


def api_command(
    group: click.Group, name: str | None = None, *, json_option: bool = True
) -> Callable[[F], click.Command]:
    """A command that talks to a peer: adds ``--as``, ``--api``, ``--token`` (and ``--json``), also
    accepted before the command, and maps failures to exit codes. The decorated function gets an
    ``Out`` first, then its own parameters."""

    def decorate(f: F) -> click.Command:
        def run(
            as_name: str | None, api: str | None, token: str | None, as_json: bool = False, **params: Any
        ) -> None:
            ctx = click.get_current_context()
            root = ctx.find_root().obj or {}
            out = Out(lambda: select_peer(ctx, as_name, api, token), as_json or bool(root.get("json")))
            try:
                f(out, **params)
            except ClientError as exc:
                fail(exc, out.target)

        run.__doc__ = f.__doc__
        setattr(run, "__click_params__", list(getattr(f, "__click_params__", [])))  # noqa: B010
        cmd: Any = run
        if json_option:
            cmd = click.option("--json", "as_json", is_flag=True, help="Print the API's JSON.")(cmd)
        cmd = click.option("--token", metavar="TOKEN", help="The peer's API token (env OTC_TOKEN).")(cmd)
        cmd = click.option(
            "--api", metavar="URL", help=f"Control API of the peer (env OTC_API; default {DEFAULT_API})."
        )(cmd)
        cmd = click.option("--as", "as_name", metavar="NAME", help="Act as the local peer called NAME.")(cmd)
        return group.command(name or f.__name__)(cmd)

    return decorate


def offer_id_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip().lower()
    if not OFFER_ID.fullmatch(value):
        raise click.BadParameter("an offer id, or a prefix of it of at least 4 hex characters")
    return value


pair_option = click.option(
    "--pair",
    type=click.Choice(list(PAIRS)),
    help="Trading pair (default: the peer's, see `otc peer --pair`).",
)


@main.group(cls=rfq_cli.DefaultGroup, default="post")
def offer() -> None:
    """Post an offer (`otc offer sell 100 8000`), post one again (`again`), or amend one (`amend`)."""


@api_command(offer, "post")
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.argument("amount")
@click.argument("price")
@pair_option
@click.option("--min-fill", metavar="AMOUNT", help="Refuse takes smaller than this (but the last remainder).")
@click.option("--ttl", type=click.IntRange(1, 30 * 24 * 3600), metavar="SECONDS", help="Expire after.")
def offer_post(
    out: Out, side: str, amount: str, price: str, pair: str | None, min_fill: str | None, ttl: int | None
) -> None:
    """Post an offer to buy or sell AMOUNT of the base currency at PRICE (quote currency per unit)."""
    body: dict[str, Any] = {"side": side, "amount": amount, "price": price}
    for key, value in (("pair", pair), ("min_fill", min_fill), ("ttl_s", ttl)):
        if value is not None:
            body[key] = value
    data, raw = out.client.call("POST", "/api/offers", body)
    out.show(raw, lambda: render.offer_line(data))


@api_command(main)
@pair_option
@click.option(
    "--depth", type=click.IntRange(0), default=25, show_default=True, help="Offers per side (0: all)."
)
def book(out: Out, pair: str | None, depth: int) -> None:
    """Show the order book: asks above the spread, bids below, your offers marked *. (--json: all.)"""
    data, raw = out.client.call("GET", "/api/book", query={"pair": pair})
    out.show(raw, lambda: render.book_table(data, depth=depth or None))


@api_command(main)
@click.argument("offer_id", callback=offer_id_arg)
@click.argument("amount", required=False)
def take(out: Out, offer_id: str, amount: str | None) -> None:
    """Take AMOUNT (default: all that remains) of an offer; OFFER_ID may be a unique prefix."""
    body: dict[str, Any] = {"offer_id": offer_id}
    if amount is not None:
        body["amount"] = amount
    data, raw = out.client.call("POST", "/api/trades", body)
    out.show(raw, lambda: render.receipt_line(data))


@api_command(main)
@click.argument("offer_id", callback=offer_id_arg)
def cancel(out: Out, offer_id: str) -> None:
    """Cancel one of your offers; OFFER_ID may be a unique prefix."""
    if len(offer_id) < 32:  # say which offers an ambiguous prefix matches
        mine = out.client.get("/api/offers", all="1")
        matches = [o["id"] for o in mine if o["id"].startswith(offer_id)]
        if len(matches) > 1:
            listed = ", ".join(m[:12] for m in matches[:5])
            raise APIError(
                400, "ERR_AMBIGUOUS_ID", f"offer id prefix {offer_id!r} is ambiguous: {listed}; give more"
            )
        if matches:
            offer_id = matches[0]
    data, raw = out.client.call("DELETE", f"/api/offers/{offer_id}")
    out.show(raw, lambda: render.offer_line(data, "Cancelled"))


@api_command(main)
def trades(out: Out) -> None:
    """Your trades, as maker and as taker, oldest first."""
    data, raw = out.client.call("GET", "/api/trades")
    out.show(raw, lambda: render.trades_table(data))


@api_command(main)
@click.option("--local", is_flag=True, help="The peers running on this machine instead (no API needed).")
def peers(out: Out, local: bool) -> None:
    """The live peers of the market this peer knows; with --local, the peers running on this machine
    (name, id, API, pid, data directory), whose API the `otc` command can use with --as NAME."""
    if local:
        records = [dataclasses.asdict(r) for r in home.running()]
        out.show(msgspec.json.encode(records), lambda: render.local_peers_table(records))
        return
    data, raw = out.client.call("GET", "/api/peers")
    out.show(raw, lambda: render.peers_table(data))


def sweep(out: Out, side: str, amount: str, limit: str, pair: str | None, post: bool) -> None:
    body: dict[str, Any] = {"side": side, "amount": amount, "limit": limit, "post": post}
    if pair is not None:
        body["pair"] = pair
    data, raw = out.client.call("POST", "/api/sweep", body, timeout=600)
    out.show(raw, lambda: render.sweep_summary(data))


sweep_options: list[Callable[[F], F]] = [
    click.argument("amount"),
    click.option("--limit", required=True, metavar="PRICE", help="Worst price accepted."),
    pair_option,
    click.option("--post", is_flag=True, help="Rest any unfilled remainder as an offer at the limit price."),
]


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


@api_command(main, "buy")
@with_options(sweep_options)
def buy(out: Out, amount: str, limit: str, pair: str | None, post: bool) -> None:
    """Buy up to AMOUNT from the best asks across makers, lowest price first, none above --limit."""
    sweep(out, "buy", amount, limit, pair, post)


@api_command(main, "sell")
@with_options(sweep_options)
def sell(out: Out, amount: str, limit: str, pair: str | None, post: bool) -> None:
    """Sell up to AMOUNT to the best bids across makers, highest price first, none below --limit."""
    sweep(out, "sell", amount, limit, pair, post)


@main.group()
def chat() -> None:
    """Signed direct messages to other peers."""


@api_command(chat, "send")
@click.argument("to", metavar="NAME_OR_ID")
@click.argument("text", nargs=-1, required=True)
@click.option(
    "--grapevine",
    is_flag=True,
    help="Send to a Grapevine (Node chat) peer by name instead: unsigned, and anyone may hold the name.",
)
def chat_send(out: Out, to: str, text: tuple[str, ...], grapevine: bool) -> None:
    """Send TEXT to a live peer, by name (if unique) or id (a prefix of 4+ characters will do)."""
    body = {"to": to, "text": " ".join(text)} | ({"via": "grapevine"} if grapevine else {})
    data, raw = out.client.call("POST", "/api/messages", body)
    if out.as_json:
        out.json(raw)
        return
    if grapevine:
        out.console.print(f"Sent to Grapevine peer {to} (unsigned): {data['text']}\nReply: {data['reply']}")
        return
    names = {p["id"]: p["name"] for p in out.client.get("/api/peers")}
    out.console.print(f"Sent to {names.get(data['to'], '?')} ({data['to'][:16]}): {data['text']}")


@api_command(chat, "inbox")
@click.option("--all", "everything", is_flag=True, help="Include the messages you sent.")
def chat_inbox(out: Out, everything: bool) -> None:
    """Messages received (with --all: and sent), oldest first, with the sender's name and id."""
    data = out.client.get("/api/messages")
    messages = [m for m in data if everything or m["direction"] == "in"]
    if out.as_json:
        out.json(msgspec.json.encode(messages))
        return
    names = {p["id"]: p["name"] for p in out.client.get("/api/peers")} if everything else {}
    out.console.print(render.messages_table(messages, names))


@api_command(main, json_option=False)
@pair_option
@click.option("--depth", type=click.IntRange(1, 200), default=10, show_default=True, help="Offers per side.")
@click.option(
    "--interval",
    type=click.FloatRange(0.2, 3600),
    default=3.0,
    show_default=True,
    metavar="SECONDS",
    help="Refresh at least this often (changes show at once anyway).",
)
def watch(out: Out, pair: str | None, depth: int, interval: float) -> None:
    """A live view of the book (depth, spread), your last trades and your offers, until Ctrl-C."""
    from rich.live import Live

    client = out.client
    client.get("/api/health")  # no peer there: exit now, with the hint
    changed = threading.Event()
    stream = {"status": "connecting"}

    def connected() -> None:
        stream["status"] = "live"
        changed.set()  # show it, and whatever changed before we listened

    def listen() -> None:  # a daemon thread: subscribes to the peer's events, reconnects when lost
        while True:
            with contextlib.suppress(ClientError):
                for event in client.events(on_open=connected):
                    if "data" in event:  # a notification: a summary line, and the bell
                        last["note"] = f"{time.strftime('%H:%M:%S')}  {rfq_cli.note_line(event)}"
                        if out.console.is_terminal:
                            out.console.bell()
                    changed.set()
            stream["status"] = f"event stream lost: polling every {interval:g} s, reconnecting"
            changed.set()
            time.sleep(1.0)

    last: dict[str, Any] = {"health": None, "book": None, "trades": [], "mine": [], "note": None}

    def screen() -> Any:
        status = stream["status"]
        try:
            last["health"] = client.get("/api/health")
            last["book"] = client.get("/api/book", pair=pair)
            last["trades"] = client.get("/api/trades")
            last["mine"] = client.get("/api/offers")
        except PeerUnreachable as exc:
            status = f"disconnected ({exc.reason}): showing the last data; retrying"
        except ClientError as exc:
            status = f"error: {exc}"
        screen = render.watch_screen(
            last["health"], last["book"], last["trades"], last["mine"], api=client.base, depth=depth,
            status=status,
        )  # fmt: skip
        return screen if last["note"] is None else Group(Text(last["note"], style="bold yellow"), screen)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        first = screen()
        threading.Thread(target=listen, name="otc-watch-events", daemon=True).start()
        with Live(first, console=out.console, auto_refresh=False) as live:
            if not out.console.is_terminal:
                click.echo(
                    f"watching {client.base}: not a terminal, the last screen is printed on exit", err=True
                )
            while True:
                if changed.wait(interval):
                    time.sleep(0.1)  # debounce: one refresh for a burst of events
                changed.clear()
                live.update(screen(), refresh=True)
    except KeyboardInterrupt:
        pass


# requests for quote, quoting rules, settlement, notify, webhooks, offer again/amend (cli/rfq.py)
rfq_cli.register(main, api_command)
