"""`make demo`: two Grapes, three peers, and a narrated trading session. Unattended, under a minute,
exit code 0, and every process it started is stopped however it ends (Ctrl-C included)."""

from __future__ import annotations

import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from grenache.grapes import GrapeNetwork
from otc.core.messages import Receipt
from otc.core.signing import receipt_is_valid
from otc.core.sweep import average_display
from otc.launch import APIError, PeerProcess, book_state, wait_for

console = Console(highlight=False)
T0 = time.monotonic()


def say(text: str) -> None:
    console.print(f"[dim]{time.monotonic() - T0:5.1f}s[/dim]  {text}")


def step(title: str) -> None:
    console.print()
    console.rule(f"[bold]{title}")


def show_book(peer: PeerProcess) -> None:
    book = peer.book()
    table = Table(title=f"BTC/USD book as {peer.name} sees it", title_justify="left")
    for col in ("side", "price", "remaining", "of", "maker", "id"):
        table.add_column(col, justify="right" if col in ("price", "remaining", "of") else "left")
    rows = [("[red]ask[/red]", o) for o in reversed(book["asks"])]
    rows += [("[green]bid[/green]", o) for o in book["bids"]]
    for side, o in rows:
        table.add_row(side, o["price"], o["remaining"], o["amount"], o["maker_name"], o["id"][:8])
    console.print(table)


def show_receipts(peers: list[PeerProcess]) -> None:
    table = Table(title="Trade receipts (as each side holds them)", title_justify="left")
    for col in ("trade", "maker", "taker", "side", "amount", "price", "held by", "signatures"):
        table.add_column(col)
    for peer in peers:
        for r in peer.get("/api/trades"):
            fields = {k: v for k, v in r.items() if k in Receipt.__struct_fields__}
            valid = receipt_is_valid(msgspec.convert(fields, Receipt))
            table.add_row(r["id"][:8], r["maker_name"], r["taker_name"], r["side"], r["amount"], r["price"],
                          f"{peer.name} ({r['role']})", "valid ✓" if valid else "[red]INVALID")  # fmt: skip
    console.print(table)


def converge(peers: list[PeerProcess]) -> float:
    start = time.monotonic()
    wait_for(lambda: len({tuple(book_state(p)) for p in peers}) == 1, what="books to converge")
    return (time.monotonic() - start) * 1000


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="otc-demo-") as tmp:
        logs = Path(tmp)
        net = GrapeNetwork(2, log_dir=logs)
        peers: list[PeerProcess] = []
        try:
            step("1. Two Grape DHT nodes")
            net.start()
            for g in net.grapes:
                say(f"grape up: api {g.url}, dht udp 127.0.0.1:{g.dht_port}")

            step("2. Three traders start their peers")
            for name, grape in (("alice", 0), ("bob", 1), ("carol", 0)):
                peer = PeerProcess(net.urls[grape], name, log_dir=logs).start()
                peers.append(peer)
                say(f"{name:5} peer id {peer.peer_id[:16]}…  api {peer.url}  via grape {grape + 1}")
            alice, bob, carol = peers
            for p in peers:
                wait_for(lambda p=p: p.get("/api/health")["peers"] == 2, what="peers to meet")
            say("every peer sees the other two (their signed heads, through the market overlay)")

            step("3. Offers are posted and every book converges")
            big = alice.offer("sell", "100", "8000")
            say(f"alice: sell 100 BTC @ 8000 USD      offer {big['id'][:8]}")
            alice.offer("sell", "25", "8050")
            say("alice: sell 25 BTC @ 8050 USD")
            bob.offer("buy", "2.5", "7990.5")
            say("bob:   buy 2.5 BTC @ 7990.50 USD")
            carols = carol.offer("sell", "1", "8010", min_fill="0.5")
            say(f"carol: sell 1 BTC @ 8010 USD (min fill 0.5)   offer {carols['id'][:8]}")
            ms = converge(peers)
            say(f"all three books identical after {ms:.0f} ms")
            show_book(carol)

            step("4. A partial take, agreed peer to peer")
            receipt = bob.take(big["id"], "30")
            say(f"bob takes 30 of alice's 100 → trade {receipt['id'][:8]} {receipt['status']}, "
                f"signed by both ({receipt['maker_sig'][:8]}…, {receipt['taker_sig'][:8]}…)")  # fmt: skip
            wait_for(lambda: book_state(carol) == book_state(alice), what="carol to see the fill")
            left = next(o for o in carol.book()["asks"] if o["id"] == big["id"])["remaining"]
            say(f"carol's book now shows alice's offer with {left} remaining")

            step("5. A race: bob and carol both go for the same offer")
            bait = alice.offer("sell", "1", "7999")
            say(f"alice: sell 1 BTC @ 7999 (the best ask)   offer {bait['id'][:8]}")
            for p in (bob, carol):
                wait_for(lambda p=p: any(o["id"] == bait["id"] for o in p.book()["asks"]), what="bait")

            def grab(p: PeerProcess) -> tuple[str, str]:
                try:
                    return p.name, f"done: {p.take(bait['id'], '1')['amount']} BTC"
                except APIError as exc:
                    return p.name, f"refused: {exc.code}"

            with ThreadPoolExecutor(2) as pool:
                for name, outcome in pool.map(grab, (bob, carol)):
                    say(f"{name:5} {outcome}")
            trades = alice.get("/api/trades")
            filled = sum(Decimal(r["amount"]) for r in trades if r["offer_id"] == bait["id"])
            say(f"alice's offer was filled exactly once: {filled} of 1 BTC — the maker alone decides")
            assert filled == 1

            step("6. A cancel")
            carol.delete(f"/api/offers/{carols['id']}")
            say("carol cancels her 8010 offer")
            wait_for(lambda: all(carols["id"] not in str(p.book()) for p in peers), what="cancel")
            say("gone from every book; its signed 'cancelled' update can never be undone by a stale copy")

            step("7. Negotiation: a direct, signed message")
            bob.post("/api/messages", {"to": "alice", "text": "Could you do another 50 at 7995?"})
            inbox = wait_for(lambda: alice.get("/api/messages"), what="chat")
            m = inbox[-1]
            say(f"alice's inbox: from {m['sender_name']} ({m['sender'][:8]}…): “{m['text']}”")
            alice.post("/api/messages", {"to": "bob", "text": "8000 is my best. Take what's left."})
            say("alice answers bob the same way")

            step("8. A sweep: carol buys 90 BTC up to 8050, across the best offers")
            try:
                sweep = carol.post("/api/sweep", {"side": "buy", "amount": "90", "limit": "8050"})
                for r in sweep["fills"]:
                    say(f"fill {r['amount']:>6} BTC @ {r['price']} from {r['maker_name']}")
                average = average_display(sweep["average_price"])
                say(f"filled {sweep['filled']} BTC at an average of {average} USD")
            except APIError as exc:
                if exc.status != 404:
                    raise
                say("(sweep orders are not available in this build)")

            step("9. Final state")
            ms = converge(peers)
            say(f"books converged on all peers ({ms:.0f} ms after the last trade)")
            show_book(bob)
            show_receipts(peers)
            mine = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in alice.get("/api/trades")}
            taken = [r for p in (bob, carol) for r in p.get("/api/trades") if r["maker"] == alice.peer_id]
            theirs = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in taken}
            assert mine == theirs, "maker and takers disagree"
            say(f"alice's {len(mine)} receipts as maker match her takers' copies byte for byte")
            console.print(f"\n[bold green]demo finished in {time.monotonic() - T0:.1f} s[/bold green]")
            return 0
        finally:
            for p in peers:
                p.stop()
            net.stop()


if __name__ == "__main__":
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        global interrupted
        interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        # Ctrl-C reaches the peers too, and a peer that stops first fails the step under way: either way
        # it is the interruption, and main() has already stopped everything it started
        if not interrupted:
            raise
        console.print("\ninterrupted; every process the demo started is stopped")
        sys.exit(130)
