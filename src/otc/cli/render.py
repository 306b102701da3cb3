"""Rich renderables for the ``otc`` CLI, built from the control API's JSON (see api/routes.py).

Numbers stay decimal strings end to end and are shown for people (numbers.py): each pair's precision,
thousands separators, totals rounded (``--json`` has the exact values). Every table fits the width it
is given by dropping or abbreviating its less important columns, never by cutting a number (fit.py).
Buy is green, sell red, the user's own offers (``"mine": true``) are marked with ``*``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from ..core.money import CONTEXT, PAIRS, canonical
from . import numbers, words
from .fit import BOX as BOX  # re-exported: cli/rfq.py draws its tables with it
from .fit import Column, fitted_table

Json = dict[str, Any]

SIDE_STYLE = {"buy": "green", "sell": "red"}
MINE = "*"
WIDE = 200  # what a table gets when nobody says how wide (into a pipe or a file)


# --- small helpers ------------------------------------------------------------------------------------
def aligned(values: Sequence[str], styles: Sequence[str] | str = "") -> list[Text]:
    """Decimal strings, grouped, given as many fractional digits as the longest, the added zeros dimmed,
    so that right-justified their decimal points line up (rich strips trailing spaces from
    right-justified cells, so padding with spaces would not do). Empty strings stay empty."""
    width = max((len(v.partition(".")[2]) for v in values), default=0)
    out = []
    for i, v in enumerate(values):
        style = styles if isinstance(styles, str) else styles[i]
        text = Text(numbers.amount(v) if v else "", style=style)
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


def who(name: str, peer_id: str) -> Text:
    """A peer as people should read it: the name it claims, and beside it the id that is who it is."""
    return Text.assemble((name, ""), (f" {peer_id[:8]}", "dim"))


def one_pair(rows: Sequence[Json]) -> str | None:
    """The pair of every row, if they share one: then units go in the headers and no pair column."""
    pairs = {r["pair"] for r in rows}
    return pairs.pop() if len(pairs) == 1 else None


def headed(name: str, unit: str) -> str:
    return f"{name} {unit}" if unit else name


# --- offers and the book --------------------------------------------------------------------------------
def spread(book: Json) -> tuple[str, str] | None:
    """(spread, spread in % of the mid price to 2 places) when both sides have offers; negative when the
    book is crossed (a bid at or above an ask)."""
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


def book_table(
    book: Json,
    *,
    depth: int | None = None,
    cumulative: bool = False,
    width: int = WIDE,
    compact: bool = False,
) -> Table:
    """The book as a ladder: asks with the best (lowest) next to the spread, then the bids, best first."""
    pair = book["pair"]
    bids: list[Json] = book["bids"][:depth] if depth else book["bids"]
    asks: list[Json] = book["asks"][:depth] if depth else book["asks"]
    base, quote = units(pair)
    rows = list(reversed(asks)) + bids
    ids = short_ids([o["id"] for o in rows])
    cum: dict[str, str] = {}
    for side in (asks, bids):
        acc = Decimal(0)
        for o in side:
            acc = CONTEXT.add(acc, Decimal(free(o)))
            cum[o["id"]] = canonical(acc)
    styles = [SIDE_STYLE.get(o["side"], "") for o in rows]
    prices: list[Text] = [
        Text(numbers.price(o["price"], pair), style=s) for o, s in zip(rows, styles, strict=True)
    ]
    amounts = aligned([free(o) for o in rows])
    cums = aligned([cum[o["id"]] for o in rows], "dim")
    min_fills = aligned([o["min_fill"] or "" for o in rows], "dim")
    marks: list[Text] = [Text(MINE if o.get("mine") else "", style="bold yellow") for o in rows]
    sides: list[Text] = [side_text(o["side"]) for o in rows]
    makers: list[Text] = [who(o["maker_name"], o["maker"]) for o in rows]
    names: list[Text] = [Text(o["maker_name"]) for o in rows]  # the maker column's short form
    idcells: list[Text] = [Text(ids[o["id"]], style="dim") for o in rows]
    row_styles: list[str | None] = ["bold" if o.get("mine") else None for o in rows]
    lost = [not o.get("reachable", True) for o in rows]
    for i, unreachable in enumerate(lost):
        if unreachable:
            makers[i].append(" (silent)", style="yellow")
            names[i].append(" (silent)", style="yellow")

    sections: set[int] = set()
    if asks or bids:  # the spread row between asks and bids
        at = len(asks)
        gap = spread(book)
        crossed = gap is not None and Decimal(gap[0]) < 0
        marks.insert(at, Text(""))
        sides.insert(at, Text("crossed" if crossed else "spread", style="bold yellow" if crossed else "dim"))
        prices.insert(at, Text(numbers.price(gap[0], pair), style="bold") if gap else Text("—", style="dim"))
        amounts.insert(at, Text(gap[1], style="dim") if gap else Text(""))
        for cells in (cums, min_fills, makers, names, idcells):
            cells.insert(at, Text(""))
        row_styles.insert(at, None)
        sections = {at - 1, at} if at else {at}
    else:
        marks.append(Text(""))
        sides.append(Text("(empty)", style="dim"))
        for cells in (prices, amounts, cums, min_fills, makers, names, idcells):
            cells.append(Text(""))
        row_styles.append(None)

    title = f"{pair}  {len(book['bids'])} bids · {len(book['asks'])} asks"
    if len(bids) < len(book["bids"]) or len(asks) < len(book["asks"]):
        title += f" (the best {depth} of each side)"
    columns = [Column(MINE, marks, priority=5)] if any(o.get("mine") for o in rows) else []
    columns += [
        Column("side", sides, priority=8),
        Column(headed("price", quote), prices, "right"),
        Column(headed("amount", base), amounts, "right"),
    ]
    if cumulative:
        columns.append(Column("cumulative", cums, "right", priority=1))
    columns += [
        Column("min fill", min_fills, "right", priority=2),
        Column("maker", makers, priority=4, shrink=6, compact=names),
        Column("id", idcells, priority=6),
    ]
    table = fitted_table(
        columns, width, len(sides), sections=sections, styles=row_styles, title=title, show_edge=not compact
    )
    if any(c.header == MINE for c in table.columns):
        table.caption = f"{MINE} = your offer"
    return table


def offers_table(
    offers: list[Json], title: str | None = "my offers", *, width: int = WIDE, compact: bool = False
) -> RenderableType:
    """Offers as a table, one per pair when they are of several (so units go in the headers)."""
    pairs = sorted({o["pair"] for o in offers})
    if len(pairs) < 2:
        return pair_offers_table(offers, title, width=width, compact=compact)
    return Group(
        *(
            pair_offers_table([o for o in offers if o["pair"] == p], title, width=width, compact=compact)
            for p in pairs
        )
    )


def pair_offers_table(
    offers: list[Json], title: str | None = "my offers", *, width: int = WIDE, compact: bool = False
) -> Table:
    pair = one_pair(offers)
    base, quote = units(pair) if pair else ("", "")
    ids = short_ids([o["id"] for o in offers])
    prices: list[Text] = [
        Text(numbers.price(o["price"], o["pair"]), style=SIDE_STYLE.get(o["side"], "")) for o in offers
    ]
    statuses = {o["status"] for o in offers}
    columns = [
        Column("id", [Text(ids[o["id"]], style="dim") for o in offers], priority=7),
        Column("side", [side_text(o["side"]) for o in offers]),
    ]
    if pair is None:
        columns.append(Column("pair", [o["pair"] for o in offers], priority=6))
    columns += [
        Column(headed("price", quote), prices, "right"),
        Column(headed("remaining", base), aligned([o["remaining"] for o in offers]), "right"),
        Column("amount", aligned([o["amount"] for o in offers]), "right", priority=3),
    ]
    if any(o.get("reserved", "0") != "0" for o in offers):
        held = aligned([o.get("reserved", "0") if o.get("reserved", "0") != "0" else "" for o in offers])
        columns.append(Column("held", held, "right", priority=4))
    if any(o["min_fill"] for o in offers):
        columns.append(Column("min fill", aligned([o["min_fill"] or "" for o in offers], "dim"), "right", 2))
    if statuses != {"open"}:
        columns.append(Column("status", [o["status"] for o in offers], priority=5))
    if any(o["expires_at"] for o in offers):
        columns.append(Column("expires", [clock(o["expires_at"]) for o in offers], priority=1))
    rows = len(offers)
    if not offers:
        columns[0].cells = [Text("(none)", style="dim")]
        for c in columns[1:]:
            c.cells = [""]
        rows = 1
    if pair and title:
        title = f"{title} · {pair}"
    return fitted_table(columns, width, rows, title=title, show_edge=not compact)


def offer_line(o: Json, verb: str = "Posted") -> Text:
    """Two lines: what the offer is, then its full id."""
    base, quote = units(o["pair"])
    text = Text(f"{verb} ")
    text.append(o["side"], style=SIDE_STYLE.get(o["side"], ""))
    amount, remaining = numbers.amount(o["amount"]), numbers.amount(o["remaining"])
    size = amount if o["remaining"] == o["amount"] else f"{remaining} (of {amount})"
    text.append(f" {size} {base} at {numbers.price(o['price'], o['pair'])} {quote}")
    if o.get("min_fill"):
        text.append(f", min fill {numbers.amount(o['min_fill'])} {base}")
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


def trades_table(
    receipts: list[Json], title: str | None = "my trades", *, width: int = WIDE, compact: bool = False
) -> Table:
    pair = one_pair(receipts)
    base, quote = units(pair) if pair else ("", "")
    ids = short_ids([r["id"] for r in receipts])
    sides = [my_side(r) for r in receipts]
    prices: list[Text] = [
        Text(numbers.price(r["price"], r["pair"]), style=SIDE_STYLE.get(s, ""))
        for r, s in zip(receipts, sides, strict=True)
    ]
    totals: list[Text] = [
        Text(numbers.total(numbers.product(r["price"], r["amount"]), r["pair"])) for r in receipts
    ]
    columns = [
        Column("time", [clock(r["created_at"]) for r in receipts], priority=3),
        Column("trade", [Text(ids[r["id"]], style="dim") for r in receipts], priority=1),
        Column("role", [r["role"] for r in receipts], priority=2),
        Column("side", [side_text(s) for s in sides]),
    ]
    if pair is None:
        columns.append(Column("pair", [r["pair"] for r in receipts]))  # without it, prices have no unit
    columns += [
        Column(headed("price", quote), prices, "right"),
        Column(headed("amount", base), aligned([r["amount"] for r in receipts]), "right"),
        Column(headed("total", quote), totals, "right", priority=6),
        Column(
            "with",
            [counterparty(r) for r in receipts],
            priority=4,
            shrink=6,
            compact=[r["taker_name"] if r["role"] == "maker" else r["maker_name"] for r in receipts],
        ),
    ]
    rows = len(receipts)
    if not receipts:
        for c in columns:
            c.cells = [""]
        columns[0].cells = [Text("(none)", style="dim")]
        rows = 1
    if pair and title:
        title = f"{title} · {pair}"
    return fitted_table(columns, width, rows, title=title, show_edge=not compact)


def receipt_line(r: Json) -> Text:
    base, quote = units(r["pair"])
    side = my_side(r)
    text = Text()
    text.append("Bought" if side == "buy" else "Sold", style=SIDE_STYLE.get(side, ""))
    prep = "from" if side == "buy" else "to"
    price = numbers.price(r["price"], r["pair"])
    text.append(f" {numbers.amount(r['amount'])} {base} at {price} {quote} {prep} {counterparty(r)}")
    total = numbers.total(numbers.product(r["price"], r["amount"]), r["pair"])
    text.append(f" = {total} {quote}  trade {r['id']}")
    return text


def sweep_summary(s: Json, *, width: int = WIDE) -> RenderableType:
    pair = s["pair"]
    base, quote = units(pair)
    parts: list[RenderableType] = []
    if s["fills"]:
        parts.append(trades_table(s["fills"], title=f"fills ({len(s['fills'])})", width=width))
    head = Text()
    side = s["side"]
    head.append("Bought" if side == "buy" else "Sold", style=SIDE_STYLE.get(side, ""))
    head.append(f" {numbers.amount(s['filled'])} of {numbers.amount(s['amount'])} {base}")
    if s["average_price"] is not None:
        rounded = "≈" if numbers.is_rounded(s["average_price"], pair) else ""
        average = numbers.price(s["average_price"], pair)
        total = numbers.total(s["total"], pair)
        head.append(f" at an average {rounded}{average} {quote} (total {total} {quote})")
    head.append(f", limit {numbers.price(s['limit'], pair)} {quote}")
    parts.append(head)
    if s["fills"] == [] and s["posted"] is None and not s["skipped"] and s["pending"] == "0":
        limit = numbers.price(s["limit"], pair)
        parts.append(Text(f"No offers of other makers at {limit} {quote} or better.", style="yellow"))
    if s["skipped"]:
        parts.append(Text(f"Passed over {len(s['skipped'])} offer(s) (no trade with them):", style="dim"))
        for sk in s["skipped"]:
            why = words.skipped(sk["error"], sk["message"])
            parts.append(Text(f"  {sk['offer_id'][:8]}  {why} ({sk['error']})", style="dim"))
    if s["pending"] != "0":
        parts.append(
            Text(
                f"{numbers.amount(s['pending'])} {base} not settled yet: their makers reserved it but did "
                "not answer our confirmation in time. Your peer keeps asking; `otc takes` shows the "
                "outcome.",
                style="yellow",
            )
        )
    if s.get("deadline_reached"):
        parts.append(Text("Stopped at the sweep's deadline with offers left to try.", style="yellow"))
    if s["posted"] is not None:
        parts.append(offer_line(s["posted"], "Rested the remainder as a new offer:"))
    return Group(*parts)


def takes_table(takes: list[Json], *, width: int = WIDE) -> Table:
    """Our takes, newest first, with what came of each."""
    ids = short_ids([t["trade_id"] for t in takes])
    outcome: list[Text] = []
    for t in takes:
        if t["state"] == "done":
            outcome.append(Text("done", style="green"))
        elif t["state"] == "failed":
            code, _, why = (t.get("error") or "").partition(": ")
            outcome.append(Text(f"no trade: {words.skipped(code, why) if code else 'failed'}", style="dim"))
        elif t["state"] == "reserved":
            outcome.append(Text("settling: confirmed, waiting for the maker", style="yellow"))
        else:
            outcome.append(Text("asking the maker", style="yellow"))
    columns = [
        Column("time", [clock(t["updated_at"]) for t in takes], priority=3),
        Column("trade", [Text(ids[t["trade_id"]], style="dim") for t in takes], priority=2),
        Column("offer", [Text(t["offer_id"][:8], style="dim") for t in takes], priority=1),
        Column("side", [side_text(t["side"]) for t in takes]),
        Column("price", [numbers.price(t["price"], t["pair"]) for t in takes], "right"),
        Column("amount", aligned([t["amount"] for t in takes]), "right"),
        Column("maker", [t["maker_name"] or t["maker"][:8] for t in takes], priority=4, shrink=6),
        Column("outcome", outcome, priority=5, shrink=8),
    ]
    rows = len(takes)
    if not takes:
        for c in columns:
            c.cells = [""]
        columns[0].cells = [Text("(none)", style="dim")]
        rows = 1
    title = f"{len(takes)} take{'' if len(takes) == 1 else 's'}, newest first"
    return fitted_table(columns, width, rows, title=title)


# --- peers and chat -------------------------------------------------------------------------------------
def peers_table(peers: list[Json], *, width: int = WIDE) -> Table:
    now = time.time_ns() // 1_000_000
    columns = [
        Column("name", [p["name"] for p in peers], shrink=8, priority=5),
        Column(
            "id",
            [Text(p["id"][:16], style="dim") for p in peers],
            priority=4,
            compact=[Text(p["id"][:8], style="dim") for p in peers],
        ),
        Column("address", [p["address"] for p in peers], priority=2),
        Column("last seen", [ago(p["last_seen"], now) for p in peers], priority=3),
    ]
    rows = len(peers)
    if not peers:
        for c in columns:
            c.cells = [""]
        columns[0].cells = [Text("(none: no other peer is live)", style="dim")]
        rows = 1
    return fitted_table(columns, width, rows, title=f"{len(peers)} peer{'' if len(peers) == 1 else 's'}")


def local_peers_table(records: list[Json], *, width: int = WIDE) -> Table:
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
        title=f"{len(messages)} message{'' if len(messages) == 1 else 's'}",
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
        grapevine = m.get("via") == "grapevine"
        if m["direction"] == "in":
            arrow, name, pid = "from", f'"{m["sender_name"]}"', m["sender"]
            if grapevine:
                name, pid = "grapevine (unsigned)", m["sender"]
        else:
            arrow, name, pid = "to", names.get(m["to"], "?"), m["to"]
            if grapevine:
                name = f"{m['to']} (grapevine)"
        table.add_row(
            clock(m.get("received_at") or m["ts"]), arrow, name, pid if grapevine else pid[:16], m["text"]
        )
    if not messages:
        table.add_row("", "", Text("(no messages)", style="dim"))
    return table
