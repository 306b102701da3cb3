"""``otc watch``: a live view of the book, your offers, your trades and what happens to them.

It redraws when the peer says something changed (its event stream), when the terminal is resized, and at
least every ``--interval`` seconds. In a terminal it takes the whole screen (htop-style, restored on
exit) and fits it: narrower, tables drop their less important columns; shorter, panels shrink and go,
the book last. Fills of your offers, your takes and incoming messages scroll in an activity panel as
they come. Into a pipe it prints the last screen on exit. ``--json`` prints the event stream instead, one
JSON object per line, as it comes.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import io
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from . import numbers, render
from .client import Client, ClientError, PeerUnreachable

Json = dict[str, Any]
FEED_KEEP = 100


@contextlib.contextmanager
def until_interrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM end the view quietly."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- --json: the event stream, line by line -------------------------------------------------------------
def stream_json(client: Client, retry_s: float = 1.0) -> None:
    """Every event of the peer as one JSON line; a ``connected`` line (who) first and after each
    reconnection, a ``disconnected`` line when the stream is lost."""

    def line(obj: Json) -> None:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        sys.stdout.flush()

    with until_interrupted():
        while True:
            try:
                health = client.get("/api/health")
                hello = {"type": "connected", "peer_id": health["peer_id"], "name": health["name"]}
                for event in client.events(on_open=functools.partial(line, hello)):
                    line(event)
                reason = "the event stream ended"
            except PeerUnreachable as exc:
                reason = exc.reason
            except ClientError as exc:
                reason = str(exc)
            line({"type": "disconnected", "reason": reason})
            time.sleep(retry_s)


# --- the screen ---------------------------------------------------------------------------------------
def activity(event: Json) -> Text | None:
    """One line for the activity panel, or None for events that only change the book."""
    when = time.strftime("%H:%M:%S")
    kind = event.get("type")
    if "data" in event and kind not in ("trade", "message"):  # requests for quote, quotes, settlement
        from .rfq import note_line

        return Text.assemble((f"{when} ", "dim"), (note_line(event), "bold yellow"))
    if kind == "trade" and "pair" in event:  # a receipt, as GET /api/trades shows it
        r = event
        base, quote = render.units(r["pair"])
        side = render.my_side(r)
        text = Text(f"{when} ", style="dim")
        if r["role"] == "maker":
            text.append("filled ", style="bold")
            text.append("your offer: ")
        text.append("bought" if side == "buy" else "sold", style=render.SIDE_STYLE[side])
        price = numbers.price(r["price"], r["pair"])
        text.append(f" {numbers.amount(r['amount'])} {base} at {price} {quote} ")
        text.append(f"{'from' if side == 'buy' else 'to'} {render.counterparty(r)}")
        return text
    if kind == "message" and event.get("direction") == "in" and event.get("via") == "grapevine":
        return Text.assemble(
            (f"{when} ", "dim"), ("message ", "bold cyan"), "from a Grapevine peer (unsigned)"
        )
    if kind == "message" and event.get("direction") == "in":  # as GET /api/messages shows it
        m = event
        text = Text(f"{when} ", style="dim")
        text.append("message ", style="bold cyan")
        text.append(f'from "{m["sender_name"]}" ')
        text.append(m["sender"][:8], style="dim")
        text.append(f": {m['text']}")
        return text
    if kind == "grape":
        if event.get("ok"):
            return Text.assemble(
                (f"{when} ", "dim"), ("reached the Grape again: back in the market", "green")
            )
        return Text.assemble(
            (f"{when} ", "dim"), (f"cannot reach the Grape ({event.get('error')}): out of the market", "red")
        )
    return None


class Screen:
    """What the view shows, kept between refreshes (the last data stays up while the peer is away)."""

    def __init__(self, client: Client, pair: str | None, depth: int) -> None:
        self.client = client
        self.pair = pair
        self.depth = depth
        self.status = "connecting"
        self.health: Json | None = None
        self.book: Json | None = None
        self.trades: list[Json] = []
        self.mine: list[Json] = []
        self.feed: collections.deque[Text] = collections.deque(maxlen=FEED_KEEP)

    def fetch(self) -> str:
        """Fresh data from the peer; returns the status line's text."""
        status = self.status
        try:
            self.health = self.client.get("/api/health")
            self.book = self.client.get("/api/book", pair=self.pair)
            self.trades = self.client.get("/api/trades")
            self.mine = self.client.get("/api/offers")
        except PeerUnreachable as exc:
            status = f"disconnected ({exc.reason}): showing the last data; retrying"
        except ClientError as exc:
            status = f"error: {exc}"
        return status

    def compose(self, status: str, width: int, height: int | None) -> RenderableType:
        """The screen for a terminal of ``width`` x ``height`` (None: any height): the book gets the
        room it needs first, then the activity, your offers and your trades, whatever still fits."""
        sizes = {"depth": self.depth, "feed": 8, "mine": 8, "trades": 8}
        shrink: list[tuple[str, int]] = [
            ("trades", 3), ("mine", 3), ("feed", 3), ("trades", 0), ("mine", 0), ("depth", 3),
            ("feed", 1), ("depth", 1), ("feed", 0),
        ]  # fmt: skip
        screen = self._screen(status, width, sizes)
        if height is None:
            return screen
        console = Console(width=width, height=height, file=io.StringIO(), color_system=None)
        for key, floor in shrink:
            while self._height(console, screen, width) > height and sizes[key] > floor:
                sizes[key] = max(floor, sizes[key] - (1 if key in ("depth", "feed") else 2))
                screen = self._screen(status, width, sizes)
            if self._height(console, screen, width) <= height:
                break
        return screen

    @staticmethod
    def _height(console: Console, renderable: RenderableType, width: int) -> int:
        return len(console.render_lines(renderable, console.options.update_width(width), pad=False))

    def _screen(self, status: str, width: int, sizes: dict[str, int]) -> RenderableType:
        health, book = self.health, self.book
        head = Text(no_wrap=False)
        if health is not None:
            head.append(f"{health['name']} ", style="bold")
            head.append(f"{health['peer_id'][:8]}  ", style="dim")
            head.append(f"{health['peers']} peers  ")
            if not health.get("grape_ok", True):
                head.append("no Grape!  ", style="bold red")
        head.append(f"{self.client.base}  ", style="dim")
        head.append(status, style="green" if status.startswith("live") else "yellow")
        head.append(f"  {time.strftime('%H:%M:%S')}", style="dim")
        parts: list[RenderableType] = [head]
        if book is not None:
            pair = book["pair"]
            gap = render.spread(book)
            line = Text()
            if book["bids"]:
                line.append("bid ", style="dim")
                line.append(numbers.price(book["bids"][0]["price"], pair), style="green")
            if book["asks"]:
                line.append("  ask ", style="dim")
                line.append(numbers.price(book["asks"][0]["price"], pair), style="red")
            if gap:
                line.append(f"  spread {numbers.price(gap[0], pair)} ({gap[1]})", style="bold")
            parts += [
                line,
                render.book_table(
                    book, depth=max(1, sizes["depth"]), cumulative=True, width=width, compact=True
                ),
            ]
        if sizes["feed"]:
            recent = list(self.feed)[-sizes["feed"] :]
            parts.append(Text("activity", style="italic"))
            parts += recent or [Text("  (fills, takes and messages show here as they come)", style="dim")]
        if sizes["mine"]:
            mine = self.mine[-sizes["mine"] :]
            parts.append(
                render.offers_table(mine, title=f"my offers ({len(self.mine)})", width=width, compact=True)
            )
        if sizes["trades"]:
            recent_trades = list(reversed(self.trades[-sizes["trades"] :]))
            parts.append(
                render.trades_table(
                    recent_trades, title=f"last trades ({len(self.trades)})", width=width, compact=True
                )
            )
        parts.append(Text("Ctrl-C to leave", style="dim"))
        return Group(*parts)


def watch(
    client: Client,
    console: Console,
    pair: str | None,
    depth: int,
    interval: float,
    err: Callable[[str], None],
) -> None:
    client.get("/api/health")  # no peer there: exit now, with the hint
    screen = Screen(client, pair, depth)
    changed = threading.Event()
    terminal = console.is_terminal
    if terminal:  # lines wrap at the terminal's width (the CLI's console leaves that to the terminal)
        console = Console(highlight=False)

    def connected() -> None:
        screen.status = "live"
        changed.set()  # show it, and whatever changed before we listened

    def listen() -> None:  # a daemon thread: subscribes to the peer's events, reconnects when lost
        while True:
            with contextlib.suppress(ClientError):
                for event in client.events(on_open=connected):
                    line = activity(event)
                    if line is not None:
                        screen.feed.append(line)
                    # a notification: the bell too (not for what we sent ourselves)
                    if "data" in event and event.get("direction") != "out" and terminal:
                        console.bell()
                    changed.set()
            screen.status = f"event stream lost: polling every {interval:g} s, reconnecting"
            changed.set()
            time.sleep(1.0)

    def draw() -> RenderableType:
        status = screen.fetch()
        width, height = (console.size.width, console.size.height) if terminal else (console.width, None)
        return screen.compose(status, width, height)

    with until_interrupted():
        if terminal:
            signal.signal(signal.SIGWINCH, lambda signum, frame: changed.set())  # redraw at the new size
        first = draw()
        threading.Thread(target=listen, name="otc-watch-events", daemon=True).start()
        with Live(first, console=console, auto_refresh=False, screen=terminal, redirect_stderr=False) as live:
            if not terminal:
                err(f"watching {client.base}: not a terminal, the last screen is printed on exit")
            while True:
                if changed.wait(interval):
                    time.sleep(0.1)  # debounce: one refresh for a burst of events
                changed.clear()
                live.update(draw(), refresh=True)
