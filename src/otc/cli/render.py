"""Rich renderables for the ``otc`` CLI, built from the control API's JSON (see api.py).

Numbers stay decimal strings end to end; columns of them are aligned on the decimal point. Buy is green,
sell red, and the user's own offers (``"mine": true``) are marked with ``*``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.money import CONTEXT, PAIRS, canonical
from ..core.sweep import average_display

Json = dict[str, Any]

SIDE_STYLE = {"buy": "green", "sell": "red"}
BOX = box.MINIMAL  # column rules, so tables stay readable (and parseable) without colour
MINE = "*"


# --- small helpers ------------------------------------------------------------------------------------
def aligned(values: Sequence[str], styles: Sequence[str] | str = "") -> list[Text]:
    """Decimal strings given as many fractional digits as the longest, the added zeros dimmed, so that
    right-justified their decimal points line up (rich strips trailing spaces from right-justified
    cells, so padding with spaces would not do). Empty strings stay empty."""
    width = max((len(v.partition(".")[2]) for v in values), default=0)
    out = []
    for i, v in enumerate(values):
        style = styles if isinstance(styles, str) else styles[i]
        text = Text(v, style=style)
        if v and width:
            frac = v.partition(".")[2]
            text.append(("" if frac else ".") + "0" * (width - len(frac)), style=f"{style} dim".strip())
        out.append(text)
    return out


def short_ids(ids: Sequence[str], least: int = 8) -> dict[str, str]:
    """Each id's shortest prefix of at least ``least`` characters that is unique among ``ids``."""
    order = sorted(set(ids))

    def common(a: str, b: str) -> int:
        n = 0
        while n < min(len(a), len(b)) and a[n] == b[n]:
            n += 1
        return n

    out: dict[str, str] = {}
    for k, i in enumerate(order):  # in sorted order, the closest ids are the neighbours
        shared = max(
            common(i, order[k - 1]) if k else 0, common(i, order[k + 1]) if k + 1 < len(order) else 0
        )
        out[i] = i[: max(least, shared + 1)]
    return out


def side_text(side: str) -> Text:
    return Text(side, style=SIDE_STYLE.get(side, ""))


def money_mul(a: str, b: str) -> str:
    return canonical(CONTEXT.multiply(Decimal(a), Decimal(b)))


def clock(ms: int | None) -> str:
    """Local time of a ms timestamp: HH:MM:SS today, else the date too."""
    if ms is None:
        return ""
    when = datetime.fromtimestamp(ms // 1000)
    fmt = "%H:%M:%S" if when.date() == datetime.now().date() else "%Y-%m-%d %H:%M"
    return when.strftime(fmt)


def ago(ms: int, now_ms: int | None = None) -> str:
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    s = max(0, now - ms) // 1000
    return f"{s}s ago" if s < 120 else f"{s // 60}m ago"


def units(pair: str) -> tuple[str, str]:
    p = PAIRS.get(pair)
    return (p.base, p.quote) if p else ("", "")


# --- offers and the book --------------------------------------------------------------------------------
def spread(book: Json) -> tuple[str, str] | None:
    """(spread, spread in % of the mid price to 2 places) when both sides have offers."""
    if not book["bids"] or not book["asks"]:
        return None
    bid, ask = Decimal(book["bids"][0]["price"]), Decimal(book["asks"][0]["price"])
    gap = CONTEXT.subtract(ask, bid)
    mid = CONTEXT.divide(CONTEXT.add(ask, bid), Decimal(2))
    pct = CONTEXT.divide(CONTEXT.multiply(gap, Decimal(100)), mid).quantize(Decimal("0.01"))
    return canonical(gap), f"{pct}%"


def free(o: Json) -> str:
    """What a taker can get of an offer now: remaining less what is held for others' confirms."""
    return str(o.get("available", o["remaining"]))


def book_table(book: Json, *, depth: int | None = None, cumulative: bool = False) -> Table:
    """The book as a ladder: asks with the best (lowest) next to the spread, then the bids, best first."""
    bids: list[Json] = book["bids"][:depth] if depth else book["bids"]
    asks: list[Json] = book["asks"][:depth] if depth else book["asks"]
    base, quote = units(book["pair"])
    rows = list(reversed(asks)) + bids
    ids = short_ids([o["id"] for o in rows])
    cum: dict[str, str] = {}
    for side in (asks, bids):
        acc = Decimal(0)
        for o in side:
            acc = CONTEXT.add(acc, Decimal(free(o)))
            cum[o["id"]] = canonical(acc)
    prices = aligned([o["price"] for o in rows], [SIDE_STYLE.get(o["side"], "") for o in rows])
    amounts = aligned([free(o) for o in rows])
    cums = aligned([cum[o["id"]] for o in rows], "dim")
    min_fills = aligned([o["min_fill"] or "" for o in rows], "dim")

    gap = spread(book)
    title = f"{book['pair']}  {len(book['bids'])} bids · {len(book['asks'])} asks"
    if len(bids) < len(book["bids"]) or len(asks) < len(book["asks"]):
        title += f" (the best {depth} of each side)"
    table = Table(
        title=title,
        title_justify="left",
        caption=f"{MINE} = your offer",
        caption_justify="left",
        box=box.MINIMAL,
    )
    table.add_column(MINE, width=1, no_wrap=True)
    table.add_column("side", no_wrap=True)
    table.add_column(f"price {quote}".strip(), justify="right", no_wrap=True)
    table.add_column(f"amount {base}".strip(), justify="right", no_wrap=True)
    if cumulative:
        table.add_column("cumulative", justify="right", no_wrap=True)
    table.add_column("min fill", justify="right", no_wrap=True)
    table.add_column("maker", no_wrap=True, max_width=20, overflow="ellipsis")
    table.add_column("id", no_wrap=True, style="dim")

    def row(i: int, o: Json) -> None:
        cells: list[RenderableType] = [
            Text(MINE if o.get("mine") else "", style="bold yellow"),
            side_text(o["side"]),
            prices[i],
            amounts[i],
        ]
        if cumulative:
            cells.append(cums[i])
        cells += [min_fills[i], who(o["maker_name"], o["maker"]), Text(ids[o["id"]])]
        table.add_row(*cells, style="bold" if o.get("mine") else None)

    for i, o in enumerate(rows[: len(asks)]):
        row(i, o)
    if asks or bids:
        table.add_section()
        gap_cells: list[RenderableType] = ["", Text("spread", style="dim")]
        gap_cells.append(Text(gap[0], style="bold") if gap else Text("—", style="dim"))
        gap_cells.append(Text(gap[1], style="dim") if gap else "")
        table.add_row(*gap_cells)
        table.add_section()
    for i, o in enumerate(bids, start=len(asks)):
        row(i, o)
    if not rows:
        table.add_row("", Text("(empty)", style="dim"))
    return table


def offers_table(offers: list[Json], title: str | None = "my offers") -> Table:
    table = Table(title=title, title_justify="left", box=BOX)
    for name, justify in (("id", "left"), ("side", "left"), ("pair", "left"), ("price", "right"),
                          ("remaining", "right"), ("amount", "right"), ("min fill", "right"),
                          ("status", "left"), ("expires", "left")):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    ids = short_ids([o["id"] for o in offers])
    prices = aligned([o["price"] for o in offers], [SIDE_STYLE.get(o["side"], "") for o in offers])
    remaining = aligned([o["remaining"] for o in offers])
    amounts = aligned([o["amount"] for o in offers])
    min_fills = aligned([o["min_fill"] or "" for o in offers], "dim")
    for i, o in enumerate(offers):
        table.add_row(
            Text(ids[o["id"]], style="dim"),
            side_text(o["side"]),
            o["pair"],
            prices[i],
            remaining[i],
            amounts[i],
            min_fills[i],
            o["status"],
            clock(o["expires_at"]),
        )
    if not offers:
        table.add_row(Text("(none)", style="dim"))
    return table


def offer_line(o: Json, verb: str = "Posted") -> Text:
    """Two lines: what the offer is, then its full id."""
    base, quote = units(o["pair"])
    text = Text(f"{verb} ")
    text.append(o["side"], style=SIDE_STYLE.get(o["side"], ""))
    size = o["amount"] if o["remaining"] == o["amount"] else f"{o['remaining']} (of {o['amount']})"
    text.append(f" {size} {base} at {o['price']} {quote}")
    if o.get("min_fill"):
        text.append(f", min fill {o['min_fill']}")
    if o.get("expires_at"):
        text.append(f", expires {clock(o['expires_at'])}")
    text.append(f" [{o['status']}]\n")
    text.append(f"offer id {o['id']}", style="dim")
    return text


# --- trades -------------------------------------------------------------------------------------------
def my_side(r: Json) -> str:
    return str(r["side"] if r["role"] == "maker" else r["taker_side"])


def counterparty(r: Json) -> str:
    if r["role"] == "maker":
        return f"{r['taker_name']} ({r['taker'][:8]})"
    return f"{r['maker_name']} ({r['maker'][:8]})"


def trades_table(receipts: list[Json], title: str | None = "my trades") -> Table:
    table = Table(title=title, title_justify="left", box=BOX)
    for name, justify in (("time", "left"), ("trade", "left"), ("role", "left"), ("side", "left"),
                          ("pair", "left"), ("price", "right"), ("amount", "right"), ("total", "right"),
                          ("with", "left")):  # fmt: skip
        table.add_column(name, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    ids = short_ids([r["id"] for r in receipts])
    prices = aligned([r["price"] for r in receipts], [SIDE_STYLE.get(my_side(r), "") for r in receipts])
    amounts = aligned([r["amount"] for r in receipts])
    totals = aligned([money_mul(r["price"], r["amount"]) for r in receipts])
    for i, r in enumerate(receipts):
        side = my_side(r)
        table.add_row(
            clock(r["created_at"]),
            Text(ids[r["id"]], style="dim"),
            r["role"],
            side_text(side),
            r["pair"],
            prices[i],
            amounts[i],
            totals[i],
            counterparty(r),
        )
    if not receipts:
        table.add_row("", Text("(none)", style="dim"))
    return table


def receipt_line(r: Json) -> Text:
    base, quote = units(r["pair"])
    side = my_side(r)
    text = Text()
    text.append("Bought" if side == "buy" else "Sold", style=SIDE_STYLE.get(side, ""))
    prep = "from" if side == "buy" else "to"
    text.append(f" {r['amount']} {base} at {r['price']} {quote} {prep} {counterparty(r)}")
    text.append(f" = {money_mul(r['price'], r['amount'])} {quote}  trade {r['id']}")
    return text


def sweep_summary(s: Json) -> RenderableType:
    base, quote = units(s["pair"])
    parts: list[RenderableType] = []
    if s["fills"]:
        parts.append(trades_table(s["fills"], title=f"fills ({len(s['fills'])})"))
    head = Text()
    side = s["side"]
    head.append("Bought" if side == "buy" else "Sold", style=SIDE_STYLE.get(side, ""))
    head.append(f" {s['filled']} of {s['amount']} {base}")
    if s["average_price"] is not None:
        average = average_display(s["average_price"])
        head.append(f" at an average {average} {quote} (total {s['total']} {quote})")
    head.append(f", limit {s['limit']}")
    parts.append(head)
    if s["fills"] == [] and s["posted"] is None:
        parts.append(Text(f"No offers of other makers at {s['limit']} or better.", style="yellow"))
    if s["skipped"]:
        parts.append(Text(f"Passed over {len(s['skipped'])} offer(s) lost to other takers:", style="dim"))
        for sk in s["skipped"]:
            parts.append(Text(f"  {sk['offer_id'][:8]}  {sk['error']}: {sk['message']}", style="dim"))
    if s["pending"] != "0":
        parts.append(Text(f"{s['pending']} {base} pending: makers did not answer in time", style="yellow"))
    if s["posted"] is not None:
        parts.append(offer_line(s["posted"], "Rested the remainder as a new offer:"))
    return Group(*parts)


# --- peers and chat -------------------------------------------------------------------------------------
def peers_table(peers: list[Json]) -> Table:
    table = Table(title=f"{len(peers)} peers", title_justify="left", box=BOX)
    for name in ("name", "id", "address", "last seen"):
        table.add_column(name, no_wrap=True)
    now = time.time_ns() // 1_000_000
    for p in peers:
        table.add_row(p["name"], Text(p["id"][:16], style="dim"), p["address"], ago(p["last_seen"], now))
    if not peers:
        table.add_row(Text("(none: no other peer is live)", style="dim"))
    return table


def who(name: str, peer_id: str) -> Text:
    """A peer as people should read it: the name it claims, and beside it the id that is who it is."""
    return Text.assemble((name, ""), (f" {peer_id[:8]}", "dim"))


def local_peers_table(records: list[Json]) -> Table:
    table = Table(title=f"{len(records)} peers running on this machine", title_justify="left", box=BOX)
    for name in ("name", "id", "api", "pid", "data"):
        table.add_column(name, no_wrap=name != "data", overflow="fold" if name == "data" else "ellipsis")
    for r in records:
        table.add_row(r["name"], Text(r["peer_id"][:16], style="dim"), r["api"], str(r["pid"]), r["data_dir"])
    if not records:
        table.add_row(Text("(none: start one with otc peer --name NAME)", style="dim"))
    return table


def messages_table(messages: list[Json], names: dict[str, str]) -> Table:
    table = Table(
        title=f"{len(messages)} messages",
        title_justify="left",
        caption='"name": what the sender calls itself (anyone can); the id is who sent it',
        caption_justify="left",
        box=BOX,
    )
    table.add_column("time", no_wrap=True)
    table.add_column("", no_wrap=True)
    table.add_column("peer", no_wrap=True)
    table.add_column("id", no_wrap=True, style="dim")
    table.add_column("text", overflow="fold")
    for m in messages:
        if m["direction"] == "in":
            arrow, name, pid = "from", f'"{m["sender_name"]}"', m["sender"]
        else:
            arrow, name, pid = "to", names.get(m["to"], "?"), m["to"]
        table.add_row(clock(m.get("received_at") or m["ts"]), arrow, name, pid[:16], m["text"])
    if not messages:
        table.add_row("", "", Text("(no messages)", style="dim"))
    return table


# --- the watch screen -------------------------------------------------------------------------------------
def watch_screen(
    health: Json | None,
    book: Json | None,
    trades: list[Json],
    mine: list[Json],
    *,
    api: str,
    depth: int,
    status: str,
) -> RenderableType:
    head = Text()
    if health is not None:
        head.append(f"{health['name']} ", style="bold")
        head.append(f"{health['peer_id'][:12]}  ", style="dim")
        head.append(f"{health['peers']} peers  ")
    head.append(f"{api}  ", style="dim")
    head.append(status, style="green" if status.startswith("live") else "yellow")
    head.append(f"  {time.strftime('%H:%M:%S')}", style="dim")
    parts: list[RenderableType] = [head]
    if book is not None:
        gap = spread(book)
        line = Text()
        if book["bids"]:
            line.append("best bid ", style="dim")
            line.append(book["bids"][0]["price"], style="green")
        if book["asks"]:
            line.append("  best ask ", style="dim")
            line.append(book["asks"][0]["price"], style="red")
        if gap:
            line.append(f"  spread {gap[0]} ({gap[1]})", style="bold")
        parts += [line, book_table(book, depth=depth, cumulative=True)]
    recent = list(reversed(trades[-8:]))
    parts.append(trades_table(recent, title=f"last trades ({len(trades)})"))
    parts.append(offers_table(mine[-10:], title=f"my offers ({len(mine)})"))
    parts.append(Text("Ctrl-C to leave", style="dim"))
    return Group(*parts)
