"""``otc``: run a peer (``otc peer``) and trade through a running peer's control API.

Conventions every command follows (new ones too): ``--as``, ``--api``, ``--token`` and ``--json`` before
or after the command; ``--json`` prints the API's exact JSON and nothing else on stdout; human output
fits the terminal (render.py, fit.py); sides, pairs and names in any case; amounts and prices never
negative, and in scientific notation or far from the market only with a confirmation or ``--yes``
(guard.py); a refusal is ``ERR_CODE: plain words`` on stderr (words.py), and a failed take or sweep
says whether a trade was made. Exit codes: 0 done; 1 refused by the peer (or declined); 2 usage
error, or no peer at the API address.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import msgspec
from rich.console import Console

from .. import home
from ..core.money import DEFAULT_PAIR, PAIRS
from . import guard, render, words
from . import rfq as rfq_cli
from .client import DEFAULT_API, APIError, Client, ClientError, PeerUnreachable
from .target import Target, TargetError, resolve

EXIT_REFUSED = 1
EXIT_USAGE = 2
OFFER_ID = re.compile(r"[0-9a-f]{4,32}")
NEGATIVE = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
F = TypeVar("F", bound=Callable[..., None])


class Command(click.Command):
    """A command whose positional numbers may not be negative: ``otc offer sell -1 8000`` gets a
    sentence, not click's ``No such option '-1'``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        takes_value = {
            name
            for p in self.params
            if isinstance(p, click.Option) and not p.is_flag
            for name in (*p.opts, *p.secondary_opts)
        }
        previous = ""
        for arg in args:
            if arg == "--":
                break
            if NEGATIVE.match(arg) and previous not in takes_value:
                raise click.UsageError(
                    f"{arg}: amounts and prices are positive numbers (the side says buy or sell)", ctx
                )
            previous = arg
        return super().parse_args(ctx, args)


class Group(click.Group):
    command_class = Command


@click.group(cls=Group)
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
    help="Control API of the peer to act as: a URL, HOST:PORT or a port on this machine (env OTC_API; "
    f"default: the only local peer, or {DEFAULT_API}).",
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
    (ERR_CODE: message on stderr), 2 usage error or no peer at the API address.

    \b
    Examples:
      otc peer --name alice                  run a peer (Ctrl-C stops it)
      otc --as alice offer sell 1.5 8000     post an offer as alice
      otc book --as bob --json               bob's book, as JSON"""
    ctx.obj = {"as_name": as_name, "api": api, "token": token, "json": as_json}


def ip_address_arg(value: str, name: str) -> str:
    """An IP address as the Grape records it (a host name would never match what a Grape lists)."""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address (e.g. 10.0.0.1)", param_hint=name) from None


def grape_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from grenache.cli import normalize_grape  # accepts HOST:PORT as the grenache command does

    return normalize_grape(value)


pair_choice = click.Choice(list(PAIRS), case_sensitive=False)


@main.command()
@click.option(
    "--grape",
    default="http://127.0.0.1:30001",
    show_default=True,
    envvar="OTC_GRAPE",
    callback=grape_arg,
    help="The Grape to join the market through: http://HOST:PORT or HOST:PORT (env OTC_GRAPE).",
)
@click.option(
    "--api-port",
    type=click.IntRange(0, 65535),
    help="Control API port on 127.0.0.1 (default: the first free one from 8001; 0: any).",
)
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
@click.option("--pair", type=pair_choice, default=DEFAULT_PAIR, show_default=True)
@click.option(
    "--log-level",
    default="info",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
)
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
    api_port: int | None,
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
    """Run a peer: join the market through GRAPE and serve the control API on 127.0.0.1, until Ctrl-C.

    Its identity, offers, trades and chat are kept in its data directory and survive restarts. At start
    it writes a new API token to DATA_DIR/api.token (mode 0600): every API request needs it, and the
    `otc` command finds it by itself (`otc --as NAME ...`). Stopped with Ctrl-C (or SIGTERM), it tells
    the market its offers are gone for now; they come back when it starts again.

    \b
    Exit codes: 0 stopped, 1 could not start (a port in use, a data directory in use), 3 the store
    (peer.sqlite) is damaged: nothing was changed; --recover moves it aside and rebuilds.

    \b
    Examples:
      otc peer --name alice
      otc peer --name bob --grape 127.0.0.1:30002 --api-port 8002"""
    import logging

    from ..node.config import PeerConfig
    from ..node.resources import raise_fd_limit
    from .peer import run_peer

    log_level = log_level.lower()
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 1 <= len(name) <= 32 or not name.isprintable():
        raise click.BadParameter("a name is 1 to 32 printable characters", param_hint="--name")
    deadline_ms = rfq_cli.parse_deadlines(deadlines)  # before anything is made: a bad value changes nothing
    if ephemeral and data_dir is not None:
        raise click.UsageError("--ephemeral keeps nothing, --data-dir keeps everything: give one of them")
    if not ephemeral:
        try:
            data_dir = data_dir or home.default_data_dir(name)
        except home.HomeError as exc:
            raise click.BadParameter(str(exc), param_hint="--name") from None
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    raise_fd_limit()
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
    run_peer(config, api_port=api_port, name=name, ephemeral=ephemeral, log_level=log_level)


# --- commands that talk to a running peer's control API ----------------------------------------------
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

    @property
    def width(self) -> int:
        return self.console.width

    @property
    def who(self) -> str:
        """How to name the peer in a hint: ``--as alice`` when known."""
        name = self.target.name if self.target is not None else None
        return f"--as {name} " if name else ""

    def show(self, raw: bytes, draw: Callable[[], Any]) -> None:
        """The API's JSON with ``--json``, else the rich rendering."""
        if self.as_json:
            self.json(raw)
        else:
            self.console.print(draw())

    def json(self, raw: bytes) -> None:
        click.echo(msgspec.json.format(raw, indent=2).decode())

    def warn(self, text: str) -> None:
        click.echo(f"warning: {text}", err=True)

    def grape_warning(self, what: str) -> None:
        """Say so when the peer cannot reach its Grape: then ``what`` is not what it seems."""
        try:
            health = self.client.get("/api/health")
        except ClientError:
            return
        if not health.get("grape_ok", True):
            self.warn(
                f"{health['name']} cannot reach its Grape at {health.get('grape')} "
                f"({health.get('grape_error')}): {what}. Start the Grape, or restart the peer with the right "
                "--grape."
            )


def console() -> Console:
    """Rich output; into a pipe or file it is not cut to 80 columns (``COLUMNS`` still rules)."""
    import os

    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(highlight=False, soft_wrap=True, width=render.WIDE if wide else None)


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


class Refused(ClientError):
    """A refusal already put in plain words by the command (``ERR_CODE: words``, exit 1)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def fail(exc: ClientError, target: Target | None) -> NoReturn:
    if isinstance(exc, Refused):
        click.echo(f"{exc.code}: {exc.message}", err=True)
        sys.exit(EXIT_REFUSED)
    if isinstance(exc, APIError):
        click.echo(f"{exc.code}: {words.general(exc.code, exc.message)}", err=True)
        sys.exit(EXIT_REFUSED)
    if isinstance(exc, TargetError):
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    if isinstance(exc, PeerUnreachable):
        if exc.reason == "connection refused" or exc.reason.startswith("unknown host"):
            port = urllib.parse.urlsplit(exc.url).port or 8001
            click.echo(
                f"error: no otc peer is running at {exc.url} ({exc.reason}).\n"
                f"Start one with:  otc peer --name NAME --api-port {port}\n"
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
        return group.command(name or f.__name__, cls=Command)(cmd)

    return decorate


def offer_id_arg(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip().lower()
    if not OFFER_ID.fullmatch(value):
        raise click.BadParameter("an offer id, or a prefix of it of at least 4 hex characters")
    return value


pair_option = click.option(
    "--pair",
    type=pair_choice,
    help="Trading pair, any case (default: the peer's, see `otc peer --pair`).",
)
yes_option = click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Do not ask for confirmation (scientific notation, far from the market).",
)
side_choice = click.Choice(["buy", "sell"], case_sensitive=False)


# --- offers -------------------------------------------------------------------------------------------
@main.group(cls=rfq_cli.DefaultGroup, default="post")
def offer() -> None:
    """Post an offer (`otc offer sell 100 8000`), post one again (`again`), or amend one (`amend`).

    \b
    Examples:
      otc offer sell 1.5 8000
      otc offer again 9b5e46ed"""


@api_command(offer, "post")
@click.argument("side", type=side_choice)
@click.argument("amount")
@click.argument("price")
@pair_option
@click.option("--min-fill", metavar="AMOUNT", help="Refuse takes smaller than this (but the last remainder).")
@click.option("--ttl", type=click.IntRange(1, 30 * 24 * 3600), metavar="SECONDS", help="Expire after.")
@yes_option
def offer_post(
    out: Out,
    side: str,
    amount: str,
    price: str,
    pair: str | None,
    min_fill: str | None,
    ttl: int | None,
    yes: bool,
) -> None:
    """Post an offer to buy or sell AMOUNT of the base currency at PRICE (quote currency per unit).

    It rests in every peer's book until taken, cancelled or expired; nothing is matched automatically,
    so an offer that crosses the book (a bid at or above the best ask) is warned about: to take the
    other side up to a price, sweep it with `otc buy AMOUNT --limit PRICE --post`.

    \b
    Examples:
      otc offer sell 1.5 8000                 sell 1.5 BTC at 8,000 USD each
      otc offer buy 10 0.05 --pair eth/btc    buy 10 ETH at 0.05 BTC each"""
    book = out.client.get("/api/book", pair=pair)
    plan = guard.Order(side, amount, price, book["pair"])
    guard.check(out, plan.concerns(book), f"post {plan.describe()}", yes)
    body: dict[str, Any] = {"side": side, "amount": plan.amount, "price": plan.price, "pair": book["pair"]}
    for key, value in (("min_fill", min_fill), ("ttl_s", ttl)):
        if value is not None:
            body[key] = value
    try:
        data, raw = out.client.call("POST", "/api/offers", body)
    except APIError as exc:
        raise Refused(exc.code, words.general(exc.code, exc.message, book["pair"])) from None
    out.show(raw, lambda: render.offer_line(data))
    crossing = plan.crosses(book)
    if crossing:
        out.warn(crossing)
    out.grape_warning("the offer is saved, but no other peer sees it until then")


@api_command(main)
@pair_option
@click.option(
    "--depth", type=click.IntRange(0), default=25, show_default=True, help="Offers per side (0: all)."
)
def book(out: Out, pair: str | None, depth: int) -> None:
    """Show the order book: asks above the spread, bids below, your offers marked *. (--json: all.)

    \b
    Examples:
      otc book
      otc book --pair eth/btc --depth 5"""
    data, raw = out.client.call("GET", "/api/book", query={"pair": pair})
    out.show(raw, lambda: render.book_table(data, depth=depth or None, width=out.width))
    out.grape_warning("this book holds only what the peer heard before, if anything")


@api_command(main)
@click.option("--all", "everything", is_flag=True, help="Include closed offers (filled, cancelled, expired).")
def offers(out: Out, everything: bool) -> None:
    """Your own offers: those open (with --all, every one you ever posted), oldest first.

    \b
    Examples:
      otc offers
      otc offers --all --json"""
    data, raw = out.client.call("GET", "/api/offers", query={"all": "1" if everything else None})
    title = "my offers" if everything else "my open offers"
    out.show(raw, lambda: render.offers_table(data, title=f"{title} ({len(data)})", width=out.width))


@api_command(main)
@click.argument("offer_id", callback=offer_id_arg)
def cancel(out: Out, offer_id: str) -> None:
    """Cancel one of your offers; OFFER_ID may be a unique prefix.

    \b
    Example:
      otc cancel 9b5e46ed"""
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


# --- taking -------------------------------------------------------------------------------------------
def find_offer(client: Client, prefix: str) -> dict[str, Any] | None:
    """The offer an id prefix names in the peer's book (any pair, shown or not), if exactly one."""
    found = client.get("/api/book", id=prefix)
    offers = found["bids"] + found["asks"]
    return offers[0] if len(offers) == 1 else None


def unknown_outcome(out: Out, exc: PeerUnreachable, what: str, offer_id: str, since_ms: int) -> NoReturn:
    """The peer went away while a take or sweep was in flight: say what is known, and how to learn the
    rest. Sent nothing (connection refused): nothing happened."""
    if exc.reason == "connection refused" or exc.reason.startswith("unknown host"):
        raise exc
    try:  # the peer may still be there (only the connection was lost): ask it
        takes = [
            t
            for t in out.client.get("/api/takes", limit="20")
            if t["updated_at"] >= since_ms and (not offer_id or t["offer_id"].startswith(offer_id))
        ]
    except ClientError:
        takes = None
    if takes is not None:
        done = [t for t in takes if t["state"] == "done"]
        open_ = [t for t in takes if t["state"] in ("requested", "reserved")]
        if done:
            state = f"{len(done)} trade(s) were made: `otc {out.who}trades` has the receipts."
        elif open_:
            state = f"{words.UNKNOWN}: the peer is still settling it; `otc {out.who}takes` shows the outcome."
        else:
            state = words.NO_TRADE
        click.echo(
            f"error: lost the connection to the peer during the {what} ({exc.reason}). {state}", err=True
        )
        sys.exit(EXIT_USAGE)
    click.echo(
        f"error: the peer at {exc.url} stopped before it answered the {what} ({exc.reason}).\n"
        f"{words.UNKNOWN}. No trade is made unless the peer confirmed it to the maker: when the peer "
        "starts again, a take it had not confirmed is closed with no trade, and one it had confirmed is "
        f"settled with the maker.\nStart it again, then `otc {out.who}takes` shows what came of "
        f"{'this take' if offer_id else 'each take'}" + (f" (offer {offer_id[:8]})." if offer_id else "."),
        err=True,
    )
    sys.exit(EXIT_USAGE)


@api_command(main)
@click.argument("offer_id", callback=offer_id_arg)
@click.argument("amount", required=False)
@yes_option
def take(out: Out, offer_id: str, amount: str | None, yes: bool) -> None:
    """Take AMOUNT (default: all that is available) of an offer; OFFER_ID may be a unique prefix.

    The maker alone decides; on a refusal you read why, in plain words, and that no trade was made.

    \b
    Examples:
      otc take 9b5e46ed 30
      otc take 9b5e46ed            all that is available"""
    body: dict[str, Any] = {"offer_id": offer_id}
    if amount is not None:
        plain = guard.plain_number(out, amount, "amount", yes)
        body["amount"] = plain
    known = find_offer(out.client, offer_id)  # now: the maker may be gone by the time it refuses
    started = time.time_ns() // 1_000_000
    try:
        data, raw = out.client.call("POST", "/api/trades", body, timeout=120)
    except APIError as exc:
        raise Refused(
            exc.code,
            words.take_refusal(
                exc.code, exc.message, offer=known, amount=body.get("amount"), available=exc.available,
                offer_id=offer_id,
            ),
        ) from None  # fmt: skip
    except PeerUnreachable as exc:
        unknown_outcome(out, exc, "take", offer_id, started)
    out.show(raw, lambda: render.receipt_line(data))


@api_command(main)
@click.option("--limit", "count", type=click.IntRange(1, 1000), default=20, show_default=True)
def takes(out: Out, count: int) -> None:
    """Your latest takes, newest first, and what came of each: done, no trade (and why), or still
    being settled with the maker.

    \b
    Example:
      otc takes --limit 5"""
    data, raw = out.client.call("GET", "/api/takes", query={"limit": str(count)})
    out.show(raw, lambda: render.takes_table(data, width=out.width))


@api_command(main)
def trades(out: Out) -> None:
    """Your trades (done, signed by both sides), as maker and as taker, oldest first.

    \b
    Example:
      otc trades --json"""
    data, raw = out.client.call("GET", "/api/trades")
    out.show(raw, lambda: render.trades_table(data, width=out.width))


def sweep(out: Out, side: str, amount: str, limit: str, pair: str | None, post: bool, yes: bool) -> None:
    book = out.client.get("/api/book", pair=pair)
    plan = guard.Order(side, amount, limit, book["pair"], sweep=True)
    guard.check(out, plan.concerns(book), plan.describe(), yes)
    body: dict[str, Any] = {
        "side": side, "amount": plan.amount, "limit": plan.price, "post": post, "pair": book["pair"],
    }  # fmt: skip
    started = time.time_ns() // 1_000_000
    try:
        data, raw = out.client.call("POST", "/api/sweep", body, timeout=600)
    except APIError as exc:
        raise Refused(exc.code, words.take_refusal(exc.code, exc.message, amount=plan.amount)) from None
    except PeerUnreachable as exc:
        unknown_outcome(out, exc, "sweep", "", started)
    out.show(raw, lambda: render.sweep_summary(data, width=out.width))


sweep_options: list[Callable[[F], F]] = [
    click.argument("amount"),
    click.option("--limit", required=True, metavar="PRICE", help="Worst price accepted."),
    pair_option,
    click.option("--post", is_flag=True, help="Rest any unfilled remainder as an offer at the limit price."),
    yes_option,
]


def with_options(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


@api_command(main, "buy")
@with_options(sweep_options)
def buy(out: Out, amount: str, limit: str, pair: str | None, post: bool, yes: bool) -> None:
    """Buy up to AMOUNT from the best asks across makers, lowest price first, none above --limit.

    \b
    Examples:
      otc buy 10 --limit 8050
      otc buy 10 --limit 8050 --post     rest what is not filled as a bid at 8050"""
    sweep(out, "buy", amount, limit, pair, post, yes)


@api_command(main, "sell")
@with_options(sweep_options)
def sell(out: Out, amount: str, limit: str, pair: str | None, post: bool, yes: bool) -> None:
    """Sell up to AMOUNT to the best bids across makers, highest price first, none below --limit.

    \b
    Example:
      otc sell 2 --limit 7990"""
    sweep(out, "sell", amount, limit, pair, post, yes)


# --- peers and chat ---------------------------------------------------------------------------------
@api_command(main)
@click.option("--local", is_flag=True, help="The peers running on this machine instead (no API needed).")
def peers(out: Out, local: bool) -> None:
    """The live peers of the market this peer knows; with --local, the peers running on this machine
    (name, id, API, pid, data directory), whose API the `otc` command can use with --as NAME.

    \b
    Examples:
      otc peers
      otc peers --local"""
    if local:
        records = [dataclasses.asdict(r) for r in home.running()]
        out.show(msgspec.json.encode(records), lambda: render.local_peers_table(records, width=out.width))
        return
    data, raw = out.client.call("GET", "/api/peers")
    out.show(raw, lambda: render.peers_table(data, width=out.width))


@main.group(cls=Group)
def chat() -> None:
    """Signed direct messages to other peers.

    \b
    Examples:
      otc chat send bob "50 more at 7995?"
      otc chat inbox"""


CHAT_MAX = 2000


@api_command(chat, "send")
@click.argument("to", metavar="NAME_OR_ID")
@click.argument("text", nargs=-1, required=True)
@click.option(
    "--grapevine",
    is_flag=True,
    help="Send to a Grapevine (Node chat) peer by name instead: unsigned, and anyone may hold the name.",
)
def chat_send(out: Out, to: str, text: tuple[str, ...], grapevine: bool) -> None:
    """Send TEXT to a live peer, by name (any case, if unique) or id (a prefix of 4+ characters will do).

    \b
    Example:
      otc chat send alice 50 more at 7995?"""
    message = " ".join(text)
    if not message.strip():
        raise click.BadParameter("a message needs some text", param_hint="TEXT")
    if len(message) > CHAT_MAX:
        raise click.BadParameter(f"a message is at most {CHAT_MAX:,} characters", param_hint="TEXT")
    body = {"to": to, "text": message} | ({"via": "grapevine"} if grapevine else {})
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
    """Messages received (with --all: and sent), oldest first, with the sender's name and id.

    \b
    Example:
      otc chat inbox --all"""
    data = out.client.get("/api/messages")
    messages = [m for m in data if everything or m["direction"] == "in"]
    if out.as_json:
        out.json(msgspec.json.encode(messages))
        return
    names = {p["id"]: p["name"] for p in out.client.get("/api/peers")} if everything else {}
    out.console.print(render.messages_table(messages, names))


# --- the live view ------------------------------------------------------------------------------------
@api_command(main)
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
    """A live view of the book (depth, spread), your offers, your last trades, and fills, takes and
    messages as they come, until Ctrl-C. It fits the terminal and redraws when it is resized.
    With --json: the peer's events instead, one JSON object per line, as they come.

    \b
    Examples:
      otc watch
      otc watch --json | jq -c 'select(.type == "trade")'"""
    from . import watch as live

    if out.as_json:
        live.stream_json(out.client)
        return
    live.watch(out.client, out.console, pair, depth, interval, lambda text: click.echo(text, err=True))


# requests for quote, quoting rules, settlement, notify, webhooks, offer again/amend (cli/rfq.py)
rfq_cli.register(main, api_command)
