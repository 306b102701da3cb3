"""The ``otc`` CLI end to end: real ``otc peer`` processes on real Grapes, the CLI run as a subprocess
against their control API. Tables for people, ``--json`` for scripts, exit codes 0 / 1 (refused by the
peer) / 2 (usage, or no peer), ``otc watch`` under a pseudo-terminal, and sweep orders across makers."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pyte
import pytest

from grenache import Link, PeerRPCClient
from grenache.grapes import GrapeNetwork, free_port
from grenache.tls import client_context
from otc.core.identity import Identity
from otc.core.messages import Take
from otc.core.money import CONTEXT
from otc.core.signing import sign

from ..harness import APIError, PeerProcess, wait_for

Spawn = Callable[..., PeerProcess]
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78]")
# a key whose first two offers (seq 1 and 2) get ids sharing the prefix "e6fc": e6fc5248…, e6fc0ba5…
TWIN_PREFIX_SEED = "7b8e05912ba9717853e764eb6f027d57545b2908889a2a7153a16b49cf9b57ce"


# --- helpers ----------------------------------------------------------------------------------------------
def otc(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS")}
    return subprocess.run(
        [sys.executable, "-m", "otc.cli", *args],
        capture_output=True,
        text=True,
        env=base | (env or {}),
        timeout=timeout,
        check=False,
    )


def ok(*args: str, **kw: Any) -> str:
    result = otc(*args, **kw)
    assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
    return result.stdout


def refused(code: str, *args: str) -> str:
    """Run a command the peer must refuse with ``code``: exit 1 and ``ERR_CODE: message`` on stderr."""
    result = otc(*args)
    assert result.returncode == 1, (args, result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith(f"{code}: "), result.stderr
    assert result.stdout == ""
    return result.stderr


def usage_error(*args: str) -> str:
    result = otc(*args)
    assert result.returncode == 2, (args, result.returncode, result.stdout, result.stderr)
    return result.stderr


def as_json(*args: str) -> Any:
    return msgspec.json.decode(ok(*args, "--json"))


def rows(table: str) -> list[list[str]]:
    """The cells of every row (header included) of a table drawn with ``│`` separators."""
    return [[c.strip() for c in line.split("│")] for line in table.splitlines() if "│" in line]


def records(table: str) -> list[dict[str, str]]:
    """The rows of a table as dicts by column header."""
    head, *body = rows(table)
    return [dict(zip(head, row, strict=False)) for row in body]


def dec(text: str) -> Decimal:
    """A number as shown to people (grouped: ``8,000.00``)."""
    return Decimal(text.replace(",", "")) if text else Decimal(-1)


def visible(peer: PeerProcess, offer_id: str) -> dict[str, Any] | None:
    book = peer.book()
    return next((o for o in book["bids"] + book["asks"] if o["id"] == offer_id), None)


def sees_peers(peer: PeerProcess, n: int) -> bool:
    return bool(peer.get("/api/health")["peers"] >= n)


def strip(r: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in r.items() if k != "role"}


# --- no peer ----------------------------------------------------------------------------------------------
def test_no_peer_running_says_how_to_start_one() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    for args, env in [
        (("--api", url, "book"), None),
        (("book", "--api", url), None),
        (("trades",), {"OTC_API": url}),
        (("--api", url, "buy", "1", "--limit", "8000"), None),
        (("--api", url, "chat", "inbox", "--json"), None),
        (("--api", f"127.0.0.1:{port}", "watch"), None),  # no scheme: http is assumed
    ]:
        result = otc(*args, env=env)
        assert result.returncode == 2, (args, result)
        assert f"no otc peer is running at {url}" in result.stderr
        assert f"otc peer --name NAME --api-port {port}" in result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    # usage errors are exit 2 as well, and are caught before any connection
    for args in (
        ("take", "abc"),  # an id prefix needs 4+ hex characters
        ("take", "xyz123"),
        ("offer", "hold", "1", "8000"),
        ("offer", "buy", "1", "8000", "--pair", "DOGE/USD"),
        ("buy", "1"),  # --limit is required
        ("offer", "sell", "1", "8000", "--ttl", "0"),
    ):
        assert "Error" in usage_error("--api", url, *args)


# --- offers, book, take, cancel, trades, peers ------------------------------------------------------------
def test_offer_book_take_cancel_trades_and_peers(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: sees_peers(alice, 1) and sees_peers(bob, 1), what="alice and bob to see each other")

    out = ok("--api", alice.url, "offer", "sell", "1.5", "8000", "--min-fill", "0.5", "--ttl", "3600")
    assert out.startswith("Posted sell 1.5 BTC at 8,000.00 USD, min fill 0.5 BTC, expires ")
    sell_id = re.search(r"offer id ([0-9a-f]{32})", out).group(1)  # type: ignore[union-attr]
    buy = as_json("offer", "buy", "2", "7950.5", "--api", bob.url)
    assert {k: buy[k] for k in ("side", "amount", "remaining", "price", "pair", "mine", "maker_name")} == {
        "side": "buy", "amount": "2", "remaining": "2", "price": "7950.5", "pair": "BTC/USD", "mine": True,
        "maker_name": "bob",
    }  # fmt: skip
    assert buy["expires_at"] is None and buy["min_fill"] is None
    eth = as_json("--api", bob.url, "offer", "sell", "3", "0.05", "--pair", "ETH/BTC")
    assert eth["pair"] == "ETH/BTC"
    wait_for(lambda: visible(bob, sell_id) and visible(alice, buy["id"]), what="offers to propagate")

    # the book: a table with asks above the spread and bids below, own offers marked
    table = ok("--api", bob.url, "book")
    cells = rows(table)
    assert cells[0][:4] == ["*", "side", "price USD", "amount BTC"]
    ask_row = next(r for r in cells if r[1] == "sell")
    bid_row = next(r for r in cells if r[1] == "buy")
    spread_row = next(r for r in cells if r[1] == "spread")
    # a name is a claim: the short id beside it says who it is
    assert (ask_row[0], dec(ask_row[2]), dec(ask_row[3]), dec(ask_row[4]), ask_row[5]) == (
        "", Decimal("8000"), Decimal("1.5"), Decimal("0.5"), f"alice {alice.peer_id[:8]}",
    )  # fmt: skip
    assert sell_id.startswith(ask_row[6]) and len(ask_row[6]) >= 8
    assert (bid_row[0], dec(bid_row[2]), dec(bid_row[3]), bid_row[5]) == (
        "*", Decimal("7950.5"), 2, f"bob {bob.peer_id[:8]}"
    )  # fmt: skip
    assert dec(spread_row[2]) == Decimal("49.5")
    assert cells.index(ask_row) < cells.index(spread_row) < cells.index(bid_row)
    assert "BTC/USD  1 bids · 1 asks" in table and "* = your offer" in table
    # alice's view marks the other one; --json is exactly the API's book
    assert next(r for r in rows(ok("--api", alice.url, "book")) if r[1] == "sell")[0] == "*"
    assert as_json("--api", alice.url, "book") == alice.book()
    wait_for(lambda: alice.book("ETH/BTC")["asks"], what="the ETH/BTC offer at alice")
    eth_book = as_json("--api", alice.url, "book", "--pair", "ETH/BTC")
    assert [o["id"] for o in eth_book["asks"]] == [eth["id"]] and eth_book["pair"] == "ETH/BTC"
    assert "ETH/BTC  0 bids · 1 asks" in ok("--api", alice.url, "book", "--pair", "ETH/BTC")

    # take by a short id; refusals exit 1 with the peer's code; amounts stay exact
    out = ok("--api", bob.url, "take", sell_id[:6], "0.5")
    assert out.startswith(
        f"Bought 0.5 BTC at 8,000.00 USD from alice ({alice.peer_id[:8]}) = 4,000.00 USD  trade "
    )
    receipt = as_json("--api", bob.url, "take", sell_id[:10], "0.50000001")
    assert (receipt["amount"], receipt["price"], receipt["role"], receipt["taker_side"]) == (
        "0.50000001", "8000", "taker", "buy",
    )  # fmt: skip
    # refusals in plain words, with units, saying that no trade was made
    words = refused("ERR_INSUFFICIENT_REMAINING", "--api", bob.url, "take", sell_id, "5")
    assert "only 0.49999999 BTC of alice's offer" in words and "you asked for 5 BTC" in words
    assert "No trade was made." in words and f"otc take {sell_id[:8]} 0.49999999" in words
    words = refused("ERR_BELOW_MIN_FILL", "--api", bob.url, "take", sell_id, "0.1")
    assert "takes at least 0.5 BTC per take" in words and "No trade was made." in words
    refused("ERR_INVALID_AMOUNT", "--api", bob.url, "take", sell_id, "0.123456789")
    refused("ERR_SELF_TRADE", "--api", alice.url, "take", sell_id, "0.5")
    refused("ERR_OFFER_NOT_FOUND", "--api", bob.url, "take", "f" * 32, "1")

    # trades: the same receipts at both ends, as a table and as JSON
    wait_for(lambda: len(alice.get("/api/trades")) == 2, what="alice's receipts")
    maker_view = as_json("--api", alice.url, "trades")
    assert maker_view == alice.get("/api/trades") and [r["role"] for r in maker_view] == ["maker"] * 2
    assert [strip(r) for r in maker_view] == [strip(r) for r in as_json("--api", bob.url, "trades")]
    table = ok("--api", alice.url, "trades")
    assert "my trades · BTC/USD" in table  # one pair: its units in the headers, no pair column
    assert rows(table)[0] == ["time", "trade", "role", "side", "price USD", "amount BTC", "total USD", "with"]
    trade_rows = [r for r in rows(table) if r[2] == "maker"]
    assert len(trade_rows) == 2
    first = trade_rows[0]
    assert (first[3], first[4], dec(first[5]), first[6]) == ("sell", "8,000.00", Decimal("0.5"), "4,000.00")
    assert first[7] == f"bob ({bob.peer_id[:8]})"
    # totals are rounded for people (0.50000001 * 8000 = 4000.00008), exact in --json
    assert trade_rows[1][6] == "4,000.00"
    second = maker_view[1]
    assert Decimal(second["price"]) * Decimal(second["amount"]) == Decimal("4000.00008")
    bob_rows = [r for r in rows(ok("--api", bob.url, "trades")) if r[2] == "taker"]
    assert [r[3] for r in bob_rows] == ["buy", "buy"]

    # cancel: only its maker can; a short id will do; a closed offer stays closed
    refused("ERR_NOT_MAKER", "--api", bob.url, "cancel", sell_id[:8])
    out = ok("--api", alice.url, "cancel", sell_id[:5])
    assert out.startswith("Cancelled sell 0.49999999 (of 1.5) BTC at 8,000.00 USD") and "[cancelled]" in out
    assert refused("ERR_OFFER_CLOSED", "--api", alice.url, "cancel", sell_id).rstrip().endswith("cancelled")
    closed = as_json("--api", bob.url, "cancel", buy["id"][:8])
    assert (closed["id"], closed["status"], closed["mine"]) == (buy["id"], "cancelled", True)
    wait_for(lambda: not visible(alice, buy["id"]) and not visible(bob, sell_id), what="cancels to spread")
    assert "(empty)" in ok("--api", bob.url, "book")

    # peers
    peers = as_json("--api", alice.url, "peers")
    assert [(p["name"], p["id"]) for p in peers] == [("bob", bob.peer_id)]
    peer_rows = rows(ok("--api", alice.url, "peers"))
    assert peer_rows[0] == ["name", "id", "address", "last seen"]
    assert peer_rows[1][:3] == ["bob", bob.peer_id[:16], peers[0]["address"]]
    assert re.fullmatch(r"\d+s ago", peer_rows[1][3])


def test_short_ids_that_are_ambiguous_are_refused(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "twin"
    data.mkdir()
    (data / "identity.key").write_bytes(bytes.fromhex(TWIN_PREFIX_SEED))
    alice, bob = spawn("alice", data_dir=data), spawn("bob")
    first = as_json("--api", alice.url, "offer", "sell", "1", "8000")
    second = as_json("--api", alice.url, "offer", "sell", "1", "8001")
    assert first["id"][:4] == second["id"][:4] == "e6fc" and first["id"][4] != second["id"][4]
    wait_for(lambda: visible(bob, first["id"]) and visible(bob, second["id"]), what="both offers at bob")

    # the book shows ids long enough to tell them apart
    shown = {
        dec(r["price USD"]): r["id"] for r in records(ok("--api", bob.url, "book")) if r["side"] == "sell"
    }
    assert first["id"].startswith(shown[Decimal(8000)]) and second["id"].startswith(shown[Decimal(8001)])

    assert "ambiguous" in refused("ERR_AMBIGUOUS_ID", "--api", bob.url, "take", "e6fc", "0.1")
    assert "ambiguous" in refused("ERR_AMBIGUOUS_ID", "--api", bob.url, "take", "E6FC", "0.1")
    message = refused("ERR_AMBIGUOUS_ID", "--api", alice.url, "cancel", "e6fc")
    assert "ambiguous" in message and first["id"][:12] in message and second["id"][:12] in message

    receipt = as_json("--api", bob.url, "take", first["id"][:5], "0.25")
    assert (receipt["offer_id"], receipt["amount"]) == (first["id"], "0.25")
    closed = as_json("--api", alice.url, "cancel", second["id"][:5])
    assert (closed["id"], closed["status"]) == (second["id"], "cancelled")
    # once the other one is closed, the 4-character prefix is unique among open offers at bob
    wait_for(lambda: not visible(bob, second["id"]), what="the cancel at bob")
    assert as_json("--api", bob.url, "take", "e6fc", "0.25")["offer_id"] == first["id"]


# --- chat -------------------------------------------------------------------------------------------------
def test_chat_send_by_name_and_id_and_the_inbox(spawn: Spawn) -> None:
    alice, bob, carol = spawn("alice"), spawn("bob"), spawn("carol")
    for p in (alice, bob, carol):
        wait_for(lambda p=p: sees_peers(p, 2), what=f"{p.name} to see the others")

    out = ok("--api", alice.url, "chat", "send", "bob", "50 more", "at 7995?")
    assert out.strip() == f"Sent to bob ({bob.peer_id[:16]}): 50 more at 7995?"
    sent = as_json("--api", carol.url, "chat", "send", bob.peer_id[:10], "hi bob")
    assert (sent["direction"], sent["to"], sent["sender"], sent["text"]) == (
        "out",
        bob.peer_id,
        carol.peer_id,
        "hi bob",
    )

    inbox = as_json("--api", bob.url, "chat", "inbox")
    assert [(m["sender_name"], m["sender"], m["text"], m["direction"]) for m in inbox] == [
        ("alice", alice.peer_id, "50 more at 7995?", "in"),
        ("carol", carol.peer_id, "hi bob", "in"),
    ]
    table = rows(ok("--api", bob.url, "chat", "inbox"))
    assert table[0] == ["time", "", "peer", "id", "text"]
    assert (
        [r[1:] for r in table[1:] if r[1]]
        == [  # quoted: the name is the sender's claim
            ["from", '"alice"', alice.peer_id[:16], "50 more at 7995?"],
            ["from", '"carol"', carol.peer_id[:16], "hi bob"],
        ]
    )
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d", r[0]) for r in table[1:])
    # alice's inbox is empty; with --all it shows what she sent, and to whom
    assert as_json("--api", alice.url, "chat", "inbox") == []
    assert "(no messages)" in ok("--api", alice.url, "chat", "inbox")
    assert [r[1:4] for r in rows(ok("--api", alice.url, "chat", "inbox", "--all"))[1:]] == [
        ["to", "bob", bob.peer_id[:16]]
    ]

    assert "'zed'" in refused("ERR_PEER_NOT_FOUND", "--api", alice.url, "chat", "send", "zed", "hello?")
    refused("ERR_INVALID_MESSAGE", "--api", alice.url, "chat", "send", alice.peer_id, "talking to myself")
    usage_error("--api", alice.url, "chat", "send", "bob")  # no text


# --- watch ------------------------------------------------------------------------------------------------
class Terminal:
    """A command under a pseudo-terminal (so rich draws live, as for a person), its output collected
    and replayed on a VT100 screen (pyte): ``screen()`` is what a person would see now."""

    def __init__(self, args: list[str], columns: int = 100, lines: int = 40) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS", "LINES")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otc.cli", *args], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        self.master = master
        self.raw = b""
        self.vt = pyte.Screen(columns, lines)
        self.stream = pyte.ByteStream(self.vt)

    def read(self) -> str:
        while select.select([self.master], [], [], 0)[0]:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child has exited and closed its end
                break
            if not chunk:
                break
            self.raw += chunk
            self.stream.feed(chunk)
        return self.text

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode(errors="replace"))

    def screen(self) -> str:
        self.read()
        return "\n".join(line.rstrip() for line in self.vt.display)

    def resize(self, columns: int, lines: int) -> None:
        """What a terminal window does when resized: new size, then SIGWINCH to the program."""
        self.read()
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.vt.resize(lines, columns)
        self.proc.send_signal(signal.SIGWINCH)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    opened: list[Terminal] = []

    def start(args: list[str], columns: int = 100, lines: int = 40) -> Terminal:
        opened.append(Terminal(args, columns, lines))
        return opened[-1]

    yield start
    for t in opened:
        t.close()


def test_watch_shows_the_live_book_and_leaves_on_ctrl_c(
    spawn: Spawn, terminal: Callable[..., Terminal]
) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    ask = alice.offer("sell", "1.25", "8000.5")
    bid = bob.offer("buy", "2", "7990")
    wait_for(lambda: visible(alice, bid["id"]) and visible(bob, ask["id"]), what="offers to propagate")
    bob.take(ask["id"], "0.25")

    # a long --interval: what shows up quickly can only come through the event stream
    term = terminal(["--api", alice.url, "watch", "--interval", "60"])
    wait_for(
        lambda: "Ctrl-C to leave" in term.screen() and re.search(r"\blive\b", term.screen()),
        timeout=15,
        what="first screen",
    )
    screen = term.screen()
    assert "alice" in screen and "8,000.50" in screen and "7,990.00" in screen
    assert re.search(r"\*\s*│\s*sell\s*│\s*8,000\.50", screen)  # alice's own offer, marked
    assert re.search(r"spread 10\.50", screen)
    assert re.search(cells("maker", "sell", "8,000.50", "0.25"), screen)  # the last trades
    assert "my offers (1)" in screen

    late = bob.offer("sell", "3", "8123.45")
    wait_for(
        lambda: "8,123.45" in term.screen(), timeout=5, what="the new offer to show via the event stream"
    )
    took = time.monotonic()
    bob.take(ask["id"], "1")  # alice's offer is filled: gone from her book and her offers, and said so
    wait_for(lambda: "my offers (0)" in term.screen(), timeout=5, what="the fill to show")
    assert time.monotonic() - took < 5
    screen = term.screen()
    assert re.search(r"filled your offer: sold 1 BTC at 8,000\.50 USD to bob", screen), screen
    bob.post("/api/messages", {"to": "alice", "text": "another 2 at 8000?"})
    wait_for(
        lambda: re.search(r'message from "bob" \w{8}: another 2 at 8000\?', term.screen()),
        timeout=5,
        what="the message to show as it comes",
    )

    # the peer goes away: the view says so and keeps running
    alice.kill()
    wait_for(
        lambda: "disconnected (connection refused)" in term.screen(), timeout=10, what="the disconnection"
    )
    assert term.proc.poll() is None

    term.proc.send_signal(signal.SIGINT)
    assert term.proc.wait(10) == 0
    final = term.read()
    assert "Traceback" not in final and "Aborted" not in final
    assert late["id"][:8] in final


def test_watch_redraws_on_resize_and_fits_small_terminals(
    spawn: Spawn, terminal: Callable[..., Terminal]
) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    for i in range(6):
        bob.offer("sell", f"1.2345678{i}", f"1234{i}.5")
        bob.offer("buy", f"2.1234567{i}", f"1100{i}.25")
    alice.offer("buy", "1", "11111.11")
    wait_for(lambda: len(alice.book()["asks"]) == 6 and len(alice.book()["bids"]) == 7, what="the book")
    bob.take(alice.get("/api/offers")[0]["id"], "0.5")

    term = terminal(["--api", alice.url, "watch", "--interval", "60"], columns=100, lines=40)
    wait_for(lambda: "Ctrl-C to leave" in term.screen() and "live" in term.screen(), timeout=15, what="watch")
    assert "12,345.50" in term.screen()

    def fits(shows: str, hides: str) -> bool:
        """The whole frame on the screen once (no piece of an earlier frame), for this size (what a
        frame of this width shows and hides), numbers whole."""
        screen = term.screen()
        return (
            screen.count("Ctrl-C to leave") == 1
            and screen.count("BTC/USD  7 bids · 6 asks") == 1
            and "12,340.50" in screen  # the best ask, whole
            and "11,111.11" in screen  # the best bid, whole
            and shows in screen
            and hides not in screen
            and not re.search(r"[\d,.]…", screen)
        )

    # redrawn at once, not at the next --interval (60 s); narrower, columns give way; shorter, panels
    for columns, lines, shows, hides in (
        (60, 20, "maker", "cumulative"),
        (40, 15, "price USD", "maker"),
        (120, 50, "last trades (1)", "(the best"),  # room for every panel again
    ):
        term.resize(columns, lines)
        wait_for(
            lambda a=shows, b=hides: fits(a, b), timeout=5, what=f"the view redrawn at {columns}x{lines}"
        )
        assert all(len(r) <= columns for r in term.screen().splitlines())
    term.proc.send_signal(signal.SIGINT)
    assert term.proc.wait(10) == 0


def test_watch_json_streams_events_line_by_line(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    wait_for(lambda: sees_peers(alice, 1) and sees_peers(bob, 1), what="alice and bob to see each other")
    env = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otc.cli", "watch", "--api", alice.url, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    got: list[dict[str, Any]] = []
    pending = b""

    def until(check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        nonlocal pending
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for event in got:
                if check(event):
                    return event
            if select.select([proc.stdout], [], [], 0.1)[0]:
                pending += os.read(proc.stdout.fileno(), 65536)  # type: ignore[union-attr]
                *complete, pending = pending.split(b"\n")
                got.extend(msgspec.json.decode(line) for line in complete)  # each line one JSON object
        raise AssertionError(f"no such event among {got}")

    try:
        hello = until(lambda e: e["type"] == "connected")
        assert (hello["peer_id"], hello["name"]) == (alice.peer_id, "alice")
        offer = alice.offer("sell", "2", "8000")
        posted = until(lambda e: e["type"] == "offer" and e["id"] == offer["id"])
        assert (posted["price"], posted["available"]) == ("8000", "2")  # as GET /api/book shows it
        wait_for(lambda: visible(bob, offer["id"]), what="the offer at bob")
        bob.take(offer["id"], "0.5")
        fill = until(lambda e: e["type"] == "trade")  # as GET /api/trades shows it
        assert (fill["role"], fill["side"], fill["amount"], fill["taker"]) == (
            "maker",
            "sell",
            "0.5",
            bob.peer_id,
        )
        bob.post("/api/messages", {"to": "alice", "text": "hi"})
        message = until(lambda e: e["type"] == "message" and e["direction"] == "in")
        assert (message["sender"], message["text"]) == (bob.peer_id, "hi")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def test_watch_output_captured_without_a_terminal(spawn: Spawn) -> None:
    alice = spawn("alice")
    alice.offer("buy", "1", "7777.77")
    env = {k: v for k, v in os.environ.items() if k not in ("OTC_API", "COLUMNS")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "otc.cli", "--api", alice.url, "watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    err = b""

    def notice() -> bool:
        nonlocal err
        assert proc.stderr is not None
        while select.select([proc.stderr], [], [], 0)[0]:
            chunk = os.read(proc.stderr.fileno(), 4096)
            if not chunk:
                break
            err += chunk
        return b"the last screen is printed on exit" in err

    try:
        # into a pipe, the live view prints only its last screen, on exit; it says so once it runs
        wait_for(notice, timeout=15, what="watch to start")
        proc.send_signal(signal.SIGINT)
        out, rest = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err + rest
    text = out.decode()
    assert re.search(cells("buy", "7,777.77", "1", "1"), text), text
    assert "Traceback" not in (err + rest).decode() and "\x1b[" not in text  # plain text, no escapes


def cells(*values: str) -> str:
    """A regex for adjacent table cells."""
    return r"\s*│\s*".join(re.escape(v) for v in values)


# --- sweep orders -----------------------------------------------------------------------------------------
def test_sweep_buys_across_makers_best_price_first_and_posts_the_rest(spawn: Spawn) -> None:
    m1, m2, m3, taker = spawn("m1"), spawn("m2"), spawn("m3"), spawn("taker")
    a = {
        "m3a": m3.offer("sell", "0.5", "7999.5"),
        "m1a": m1.offer("sell", "1", "8000"),
        "m2a": m2.offer("sell", "0.5", "8001"),
        "m3b": m3.offer("sell", "1", "8002"),
        "m3c": m3.offer("sell", "2", "8002.5", min_fill="2"),  # 1.5 still wanted when reached: skipped
        "m1b": m1.offer("sell", "1", "8003"),
        "m2b": m2.offer("sell", "2", "8010"),  # above the limit
    }
    own = taker.offer("sell", "1", "7000")  # cheapest, but ours: never taken
    bids = [m1.offer("buy", "1", "7995"), m2.offer("buy", "1.5", "7990"), m3.offer("buy", "1", "7980")]
    wait_for(lambda: len(taker.book()["asks"]) == 8 and len(taker.book()["bids"]) == 3, what="book at taker")

    result = as_json("--api", taker.url, "buy", "4.5", "--limit", "8005", "--post")
    fills = result["fills"]
    assert [(f["offer_id"], f["amount"], f["price"]) for f in fills] == [
        (a["m3a"]["id"], "0.5", "7999.5"),
        (a["m1a"]["id"], "1", "8000"),
        (a["m2a"]["id"], "0.5", "8001"),
        (a["m3b"]["id"], "1", "8002"),
        (a["m1b"]["id"], "1", "8003"),
    ]
    assert [f["maker_name"] for f in fills] == ["m3", "m1", "m2", "m3", "m1"]
    assert len({f["id"] for f in fills}) == 5 and all(f["taker"] == taker.peer_id for f in fills)
    # 0.5*7999.5 + 8000 + 0.5*8001 + 8002 + 8003 = 32005.25, over 4
    assert (result["filled"], result["total"], result["average_price"]) == ("4", "32005.25", "8001.3125")
    assert (result["pending"], result["skipped"]) == ("0", [])
    posted = result["posted"]
    assert (posted["side"], posted["amount"], posted["price"], posted["mine"]) == ("buy", "0.5", "8005", True)

    # every fill is its own P2P trade, held by its maker too
    for maker in (m1, m2, m3):
        mine = {f["id"] for f in fills if f["maker"] == maker.peer_id}
        wait_for(lambda m=maker, ids=mine: {r["id"] for r in m.get("/api/trades")} == ids, what="receipts")
    untouched = {o["id"]: o["remaining"] for o in m3.get("/api/offers")}
    assert untouched[a["m3c"]["id"]] == "2" and a["m3b"]["id"] not in untouched
    assert {o["id"] for o in m2.get("/api/offers")} >= {a["m2b"]["id"]}
    wait_for(lambda: visible(m1, posted["id"]), what="the rested remainder to reach the market")
    assert visible(taker, own["id"])["remaining"] == "1"

    # the table form, selling into the bids; a sweep that finds nothing says so
    out = ok("--api", taker.url, "sell", "2", "--limit", "7990")
    assert "Sold 2 of 2 BTC at an average 7,992.50 USD (total 15,985.00 USD), limit 7,990.00 USD" in out
    fill_rows = [r for r in records(out) if r["role"] == "taker"]
    assert [
        (r["side"], r["price USD"], dec(r["amount BTC"]), r["total USD"], r["with"]) for r in fill_rows
    ] == [
        ("sell", "7,995.00", 1, "7,995.00", f"m1 ({m1.peer_id[:8]})"),
        ("sell", "7,990.00", 1, "7,990.00", f"m2 ({m2.peer_id[:8]})"),
    ]
    out = ok("--api", taker.url, "sell", "1", "--limit", "7996")  # our own bid at 8005 does not count
    assert "Sold 0 of 1 BTC, limit 7,996.00 USD" in out
    assert "No offers of other makers at 7,996.00 USD or better." in out
    assert visible(taker, bids[2]["id"])["remaining"] == "1"  # 7980 was below the limit: left alone
    refused("ERR_INVALID_PRICE", "--api", taker.url, "buy", "1", "--limit", "8000.001")
    refused("ERR_INVALID_AMOUNT", "--api", taker.url, "sell", "0", "--limit", "8000")


def test_sweep_api_validates_its_input(spawn: Spawn) -> None:
    peer = spawn("alice")
    cases = [
        ({"side": "hold", "amount": "1", "limit": "8000"}, "ERR_INVALID_SIDE"),
        ({"side": "buy", "amount": 1.5, "limit": "8000"}, "ERR_INVALID_AMOUNT"),
        ({"side": "buy", "amount": "1e400", "limit": "8000"}, "ERR_INVALID_AMOUNT"),
        ({"side": "buy", "amount": "1", "limit": 8000}, "ERR_INVALID_PRICE"),
        ({"side": "buy", "amount": "1", "limit": "8000.001"}, "ERR_INVALID_PRICE"),
        ({"side": "buy", "amount": "1", "limit": "8000", "pair": "DOGE/USD"}, "ERR_UNKNOWN_PAIR"),
        ({"side": "buy", "amount": "1", "limit": "8000", "post": "yes"}, "ERR_INVALID_PAYLOAD"),
        ({"side": "buy", "amount": "1", "limit": "8000", "slippage": "1"}, "ERR_INVALID_PAYLOAD"),
        ({"side": "buy", "amount": "1"}, "ERR_INVALID_PAYLOAD"),
    ]
    for body, code in cases:
        with pytest.raises(APIError) as err:
            peer.post("/api/sweep", body)
        assert (err.value.code, err.value.status) == (code, 400), body
    assert peer.get("/api/offers") == []
    doc = peer.get("/api/openapi.json")
    schema = doc["paths"]["/api/sweep"]["post"]
    assert schema["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SweepIn")
    assert set(doc["components"]["schemas"]["SweepIn"]["properties"]) == {
        "side",
        "amount",
        "limit",
        "pair",
        "post",
        "deadline_s",
    }
    assert doc["components"]["schemas"]["SweepIn"]["additionalProperties"] is False
    empty = peer.post("/api/sweep", {"side": "buy", "amount": "1", "limit": "8000"})
    assert (empty["fills"], empty["filled"], empty["average_price"], empty["posted"]) == ([], "0", None, None)


async def hold(grape: str, maker: str, offer: dict[str, Any], amount: str) -> dict[str, Any]:
    """Another taker that reserves ``amount`` of ``offer`` at its maker and never confirms (the maker
    holds what it holds for a new taker for its reservation time)."""
    racer = Identity.generate()
    take = sign(
        racer,
        Take(
            trade_id=uuid.uuid4().hex, offer_id=offer["id"], amount=amount, price=offer["price"],
            taker=racer.peer_id, taker_name="racer", ts=time.time_ns() // 1_000_000,
        ),
    )  # fmt: skip
    async with Link(grape) as link:
        client = PeerRPCClient(link, timeout=5, ssl=client_context())
        try:
            reply: dict[str, Any] = await client.request(f"otc:peer:{maker}", take)
        finally:
            await client.stop()
    return reply


def test_sweep_takes_what_is_not_held_and_the_rest_from_the_next(spawn: Spawn, grapes: GrapeNetwork) -> None:
    m1, m2, taker = spawn("m1"), spawn("m2"), spawn("taker")
    best = m1.offer("sell", "1", "8000")
    next_best = m2.offer("sell", "1", "8001")
    wait_for(lambda: len(taker.book()["asks"]) == 2, what="both asks at the taker")

    # a stranger asks for all of it: as a taker new to m1 it gets nothing held, so the book is unchanged
    reply = asyncio.run(hold(grapes.urls[0], m1.peer_id, best, "1"))
    assert (reply["type"], reply["status"]) == ("trade", "reserved")
    # a fifth of it is held for it, and every book says so (holds are published)
    reply = asyncio.run(hold(grapes.urls[0], m1.peer_id, best, "0.2"))
    assert reply["status"] == "reserved"
    wait_for(lambda: visible(taker, best["id"])["available"] == "0.8", what="the hold to be published")
    assert visible(taker, best["id"])["reserved"] == "0.2"

    result = as_json("--api", taker.url, "buy", "1", "--limit", "8001")
    assert result["skipped"] == []
    assert [(f["offer_id"], f["amount"], f["price"]) for f in result["fills"]] == [
        (best["id"], "0.8", "8000"),
        (next_best["id"], "0.2", "8001"),
    ]
    assert (result["filled"], result["average_price"], result["posted"]) == ("1", "8000.2", None)
    assert [(o["remaining"], o["reserved"]) for o in m1.get("/api/offers")] == [("0.2", "0.2")]


def test_sweeps_racing_takers_never_overfill(spawn: Spawn) -> None:
    m1, m2, sweeper, rival = spawn("m1"), spawn("m2"), spawn("sweeper"), spawn("rival")
    asks = [(m1 if i % 2 else m2).offer("sell", "0.5", str(8000 + i)) for i in range(10)]  # 5 BTC
    for p in (sweeper, rival):
        wait_for(lambda p=p: len(p.book()["asks"]) == 10, what=f"{p.name} to see the asks")

    def rival_takes(offer: dict[str, Any]) -> str:
        try:
            return str(rival.take(offer["id"], "0.5")["offer_id"])
        except APIError as exc:
            return exc.code or "?"

    # the rival goes for the 4 best asks, the sweep for the 5 best: they collide on the first ones
    # (straight to the API: a CLI process would start too late to race)
    body = {"side": "buy", "amount": "2.5", "limit": "8010"}
    with ThreadPoolExecutor(max_workers=5) as pool:
        sweep = pool.submit(sweeper.post, "/api/sweep", body)
        rivals = list(pool.map(rival_takes, asks[:4]))
        result = sweep.result(timeout=60)

    won_by_rival = {r for r in rivals if not r.startswith("ERR_")}
    swept = [f["offer_id"] for f in result["fills"]]
    assert not won_by_rival & set(swept)  # every offer went to one taker only
    assert Decimal(result["filled"]) == Decimal("2.5")  # 4 rival takes at most: supply was enough
    prices = [Decimal(f["price"]) for f in result["fills"]]
    assert prices == sorted(prices)
    assert {s["error"] for s in result["skipped"]} <= {
        "ERR_INSUFFICIENT_REMAINING", "ERR_OFFER_CLOSED", "ERR_OFFER_NOT_FOUND", "ERR_RESERVATION_EXPIRED",
    }  # fmt: skip
    total = sum(
        (CONTEXT.multiply(Decimal(f["price"]), Decimal(f["amount"])) for f in result["fills"]), Decimal(0)
    )
    assert Decimal(result["total"]) == total
    assert Decimal(result["average_price"]) == CONTEXT.divide(total, Decimal("2.5"))
    for maker in (m1, m2):
        for r in maker.get("/api/trades"):
            assert r["taker"] in (sweeper.peer_id, rival.peer_id)
    sold = [r for m in (m1, m2) for r in m.get("/api/trades")]
    per_offer: dict[str, Decimal] = {}
    for r in sold:
        per_offer[r["offer_id"]] = per_offer.get(r["offer_id"], Decimal(0)) + Decimal(r["amount"])
    assert all(v <= Decimal("0.5") for v in per_offer.values())


def test_peer_bind_and_announce_take_ip_addresses() -> None:
    for flag, value in (("--bind", "nonsense"), ("--announce", "host.example"), ("--bind", "10.0.0.300")):
        err = usage_error("peer", flag, value)
        assert f"Invalid value for {flag}: '{value}' is not an IP address" in err
