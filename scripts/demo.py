"""`make demo`: two Grapes, four peers, and a narrated trading session (offers, takes, a race, a sweep,
a request for quote answered by three makers and an automatic rule, and a settlement). Unattended, in
seconds, exit code 0, and every process it started is stopped however it ends (Ctrl-C included).

It ends by printing a login link to alice's web desk. With `--keep` (`KEEP=1 make demo`) the market
stays up for a person to click through, with a little trading going on, until Ctrl-C: Enter prints a
fresh link (each works once, within a minute)."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from grenache.grapes import GrapeNetwork
from otc.core.messages import Receipt
from otc.core.signing import receipt_is_valid
from otc.core.sweep import average_display
from otc.launch import APIError, PeerProcess, book_state, http, isolate, start_all, wait_for

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
            table.add_row(
                r["id"][:8],
                r["maker_name"],
                r["taker_name"],
                r["side"],
                r["amount"],
                r["price"],
                f"{peer.name} ({r['role']})",
                "valid ✓" if valid else "[red]INVALID",
            )
    console.print(table)


def show_quotes(rfq: dict[str, Any]) -> None:
    table = Table(title=f"Quotes dave received, best first ({rfq['id'][:8]})", title_justify="left")
    for col in ("#", "maker", "sells", "at", "firm until", "quote"):
        table.add_column(col, justify="right" if col in ("#", "sells", "at") else "left")
    for i, q in enumerate(rfq["quotes"], start=1):
        until = time.strftime("%H:%M:%S", time.localtime(q["valid_until"] / 1000))
        table.add_row(str(i), q["maker_name"], q["amount"], q["price"], until, q["id"][:8])
    console.print(table)


def converge(peers: list[PeerProcess]) -> float:
    start = time.monotonic()
    wait_for(lambda: len({tuple(book_state(p)) for p in peers}) == 1, what="books to converge")
    return (time.monotonic() - start) * 1000


def login_link(peer: PeerProcess) -> str:
    """What `otc web` prints: a one-time link (a login code in the fragment, never the token)."""
    return peer.url + peer.post("/api/login-codes", None)["path"]


def keep_trading(alice: PeerProcess, bob: PeerProcess, carol: PeerProcess, stop: threading.Event) -> None:
    """A quiet market for a person watching the desks: carol quotes around 8000 and moves her quotes
    every few seconds; bob now and then takes a little, or says something to alice."""
    rng = random.Random(7)
    quotes: list[str] = []
    while not stop.wait(rng.uniform(1.5, 3.5)):
        try:
            side = rng.choice(["buy", "sell"])
            price = 8000 + (-1 if side == "buy" else 1) * rng.randint(5, 120) + rng.choice([0, 0.25, 0.5])
            amount = rng.choice(["0.1", "0.25", "0.5", "1", "1.5"])
            quotes.append(carol.offer(side, amount, f"{price:g}")["id"])
            if len(quotes) > 8:
                carol.delete(f"/api/offers/{quotes.pop(0)}")
            roll = rng.random()
            if roll < 0.2:
                best = bob.book()["asks"]
                if best and best[0]["maker"] != bob.peer_id:
                    bob.take(best[0]["id"], min(best[0]["available"], "0.1", key=Decimal))
            elif roll < 0.3:
                bob.post("/api/messages", {"to": alice.peer_id, "text": rng.choice(CHATTER)})
        except APIError:
            pass  # a take lost to another, a cancel of something filled: markets move


CHATTER = ["still buying?", "I can do 2 more at 8010", "filled, thanks", "any size at 7990?", "gm"]


def main(keep: bool = False) -> int:
    with tempfile.TemporaryDirectory(prefix="otc-demo-") as tmp:
        logs = Path(tmp)
        isolate(logs)  # the demo's peers leave nothing in the user's own directories
        net = GrapeNetwork(2, log_dir=logs)
        peers: list[PeerProcess] = []
        try:
            step("1. Two Grape DHT nodes")
            net.start()
            for g in net.grapes:
                say(f"grape up: api {g.url}, dht udp 127.0.0.1:{g.dht_port}")

            step("2. Four traders start their peers")
            for name, grape in (("alice", 0), ("bob", 1), ("carol", 0), ("dave", 1)):
                peers.append(PeerProcess(net.urls[grape], name, log_dir=logs))
            start_all(peers)
            for p, grape in zip(peers, (0, 1, 0, 1), strict=True):
                say(f"{p.name:5} peer id {p.peer_id[:16]}…  api {p.url}  via grape {grape + 1}")
            alice, bob, carol, dave = peers
            for p in peers:
                wait_for(lambda p=p: p.get("/api/health")["peers"] == 3, what="peers to meet")
            say("every peer sees the other three (their signed heads, through the market overlay)")
            try:
                http("GET", alice.url + "/api/trades")
            except APIError as exc:
                say(f"alice's API without her token: {exc.status} {exc.code}; every call below carries "
                    "the token alice's peer wrote to its data directory (api.token, mode 0600)")  # fmt: skip

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
            say(
                f"bob takes 30 of alice's 100 → trade {receipt['id'][:8]} {receipt['status']}, "
                f"signed by both ({receipt['maker_sig'][:8]}…, {receipt['taker_sig'][:8]}…)"
            )
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

            step("9. A request for quote: dave wants 5 BTC, three makers answer")
            rule = http(
                "PUT",
                alice.url + "/api/quoting",
                {"side": "sell", "price": "8005", "max_size": "5", "balance": "20"},
                token=alice.token,
            )
            say(
                f"alice sets an automatic quoting rule: sell at {rule['price']}, at most "
                f"{rule['max_size']} BTC a quote, {rule['balance']} BTC in all"
            )
            rfq = dave.post("/api/rfqs", {"side": "buy", "amount": "5"})
            say(
                f"dave: request for quote {rfq['id'][:8]}, buy 5 BTC, sent to every live peer "
                "(not to the book)"
            )
            for maker, price, amount in ((bob, "8010", "5"), (carol, "8002", "3")):
                wait_for(
                    lambda m=maker: any(r["id"] == rfq["id"] for r in m.get("/api/rfqs")), what="the RFQ"
                )
                maker.post(f"/api/rfqs/{rfq['id']}/quotes", {"price": price, "amount": amount})
                say(f"{maker.name:5} quotes by hand: sell {amount} at {price}, firm for 5 s, to dave only")
            view = wait_for(
                lambda: (v := dave.get(f"/api/rfqs/{rfq['id']}")) and len(v["quotes"]) == 3 and v,
                what="three quotes",
            )
            show_quotes(view)
            first, second = view["quotes"][0], view["quotes"][1]
            got = [
                dave.post(f"/api/quotes/{first['id']}/accept", {}),
                dave.post(f"/api/quotes/{second['id']}/accept", {"amount": "2"}),
            ]
            for r in got:
                say(
                    f"dave accepts {r['amount']} at {r['price']} from {r['maker_name']} → trade "
                    f"{r['id'][:8]} {r['status']}, the same maker-decided handshake as a take"
                )
            left = http("GET", alice.url + "/api/quoting", token=alice.token)[0]
            say(f"alice's rule balance is now {left['balance']} BTC; no book ever held a quote")
            assert not {q["id"] for q in view["quotes"]} & {i for p in peers for i, _, _ in book_state(p)}

            step("10. Settlement: dave pays carol, carol delivers, both sign each step")
            deal = got[0]
            tid = deal["id"]
            plan = dave.get(f"/api/trades/{tid}/settlement")
            say(
                f"dave (the {plan['role']}) owes {plan['pays']['amount']} {plan['pays']['currency']}; "
                f"carol owes {plan['delivers']['amount']} {plan['delivers']['currency']}"
            )
            for who, name, note in (
                (dave, "payment_sent", "wire ref D-1"),
                (carol, "payment_received", None),
                (carol, "delivery_sent", "txid 4f9a…"),
                (dave, "settled", None),
            ):
                other = carol if who is dave else dave
                body = {"step": name} | ({"note": note} if note else {})
                who.post(f"/api/trades/{tid}/settlement", body)
                wait_for(
                    lambda o=other, n=name: o.get(f"/api/trades/{tid}/settlement")["state"] == n,
                    what=f"{name} at the other side",
                )
                say(f"{who.name:5} signs {name:17} → both sides: {name}" + (f"  ({note})" if note else ""))
            ends = {p.name: p.get(f"/api/trades/{tid}/settlement") for p in (dave, carol)}
            assert {e["state"] for e in ends.values()} == {"settled"}
            assert ends["dave"]["steps"] == ends["carol"]["steps"]
            say("settled on both sides, with the same four signed steps")

            step("11. Final state")
            ms = converge(peers)
            say(f"books converged on all peers ({ms:.0f} ms after the last trade)")
            show_book(bob)
            show_receipts(peers)
            mine = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in alice.get("/api/trades")}
            taken = [
                r for p in (bob, carol, dave) for r in p.get("/api/trades") if r["maker"] == alice.peer_id
            ]
            theirs = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in taken}
            assert mine == theirs, "maker and takers disagree"
            say(f"alice's {len(mine)} receipts as maker match her takers' copies byte for byte")
            step("12. The web desk: every peer serves one")
            console.print(f"alice's desk: [bold]{login_link(alice)}[/bold]", soft_wrap=True)
            say("a one-time login link, as `otc web` prints it: it works once, within a minute")
            console.print(f"\n[bold green]demo finished in {time.monotonic() - T0:.1f} s[/bold green]")
            if not keep:
                say("the market stops now: `KEEP=1 make demo` (or --keep) leaves it running to click through")
                return 0
            return keep_running(alice, bob, carol)
        finally:
            for p in peers:
                p.stop()
            net.stop()


def keep_running(alice: PeerProcess, bob: PeerProcess, carol: PeerProcess) -> int:
    """Leave the market up until Ctrl-C, with a little trading going on; Enter prints a new link."""
    stop = threading.Event()
    trader = threading.Thread(target=keep_trading, args=(alice, bob, carol, stop), daemon=True)
    trader.start()
    console.print(
        "\nThe market keeps running, carol quoting and bob trading a little. Enter: a new link to "
        "alice's desk (a name, e.g. [bold]bob[/bold], then Enter: that peer's desk). Ctrl-C stops "
        "everything the demo started."
    )
    peers = {p.name: p for p in (alice, bob, carol)}
    try:
        for line in sys.stdin:  # at the end of input (no terminal), wait for Ctrl-C
            peer = peers.get(line.strip().lower() or "alice")
            if peer is None:
                console.print(f"no peer {line.strip()!r}: alice, bob or carol")
                continue
            console.print(f"{peer.name}'s desk: [bold]{login_link(peer)}[/bold]", soft_wrap=True)
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        console.print("\nstopping")
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the market running until Ctrl-C")
    options = parser.parse_args()
    interrupted = False

    def on_signal(signum: int, frame: object) -> None:
        global interrupted
        interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sys.exit(main(keep=options.keep))
    except SystemExit:
        raise
    except BaseException:
        # Ctrl-C reaches the peers too, and a peer that stops first fails the step under way: either way
        # it is the interruption, and main() has already stopped everything it started
        if not interrupted:
            raise
        console.print("\ninterrupted; every process the demo started is stopped")
        sys.exit(130)
