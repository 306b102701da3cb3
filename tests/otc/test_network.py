"""The exchange end to end: `otc peer` processes on two real Grapes, trading over real Grenache RPC."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grenache.grapes import GrapeNetwork

from ..harness import APIError, PeerProcess, book_state, start_all, wait_for

Spawn = Callable[..., PeerProcess]


def visible(peer: PeerProcess, offer_id: str) -> dict[str, Any] | None:
    book = peer.book()
    return next((o for o in book["bids"] + book["asks"] if o["id"] == offer_id), None)


def converged(peers: list[PeerProcess]) -> tuple[list[tuple[str, str, int]]] | None:
    """The common book state (in a 1-tuple, so an empty book is still truthy), or None."""
    states = [book_state(p) for p in peers]
    return (states[0],) if all(s == states[0] for s in states) else None


def test_offer_take_and_book_update_across_three_peers(spawn: Spawn) -> None:
    alice, bob, carol = spawn("alice"), spawn("bob"), spawn("carol")
    for p in (alice, bob, carol):
        wait_for(lambda p=p: p.get("/api/health")["peers"] >= 2, what=f"{p.name} to see two peers")

    offer = alice.offer("sell", "100", "8000")
    assert offer["remaining"] == "100" and offer["maker_name"] == "alice"
    for p in (bob, carol):
        wait_for(lambda p=p: visible(p, offer["id"]), what=f"{p.name} to see the offer")

    receipt = bob.take(offer["id"], "30.5")
    assert receipt["status"] == "done"
    assert (receipt["amount"], receipt["price"], receipt["taker"]) == ("30.5", "8000", bob.peer_id)

    maker_receipts = alice.get("/api/trades")
    taker_receipts = bob.get("/api/trades")
    strip = lambda r: {k: v for k, v in r.items() if k != "role"}  # noqa: E731
    assert [strip(r) for r in maker_receipts] == [strip(receipt)]
    assert [strip(r) for r in taker_receipts] == [strip(receipt)]
    assert maker_receipts[0]["role"] == "maker" and taker_receipts[0]["role"] == "taker"

    for p in (alice, bob, carol):
        wait_for(lambda p=p: (visible(p, offer["id"]) or {}).get("remaining") == "69.5", what="new remaining")

    # /api/peers shows each peer's replication state of alice: her seq 2 (create, fill), one offer
    def alice_at(p: PeerProcess) -> dict[str, Any] | None:
        return next((v for v in p.get("/api/peers") if v["id"] == alice.peer_id), None)

    for p in (bob, carol):
        view = wait_for(lambda p=p: (v := alice_at(p)) and v["head_seq"] == 2 and v, what="a heartbeat")
        assert (view["held_seq"], view["offers"], view["in_sync"], view["listed"]) == (2, 1, True, True)


def test_racing_takers_never_overfill(spawn: Spawn) -> None:
    maker, t1, t2, t3 = spawn("maker"), spawn("t1"), spawn("t2"), spawn("t3")
    takers = [t1, t2, t3]
    offers = [maker.offer("sell", "5", "8000"), maker.offer("sell", "3", "8001")]
    for t in takers:
        for o in offers:
            wait_for(lambda t=t, o=o: visible(t, o["id"]), what="offers to propagate")

    # 60 concurrent takes of 0.5 for 8 units of supply: exactly 16 can succeed
    jobs = [(takers[i % 3], offers[i % 2]["id"]) for i in range(60)]

    def attempt(job: tuple[PeerProcess, str]) -> tuple[str, Any]:
        taker, oid = job
        try:
            return "done", taker.take(oid, "0.5")
        except APIError as exc:
            return exc.code or "?", exc.body

    with ThreadPoolExecutor(max_workers=60) as pool:
        outcomes = list(pool.map(attempt, jobs))

    done = [r for status, r in outcomes if status == "done"]
    refused = {status for status, _ in outcomes if status != "done"}
    assert refused <= {"ERR_INSUFFICIENT_REMAINING", "ERR_OFFER_CLOSED", "ERR_OFFER_NOT_FOUND"}, refused
    for o in offers:
        filled = sum(Decimal(r["amount"]) for r in done if r["offer_id"] == o["id"])
        assert filled == Decimal(o["amount"]), (o["id"], filled)  # never more; demand exceeded supply
    assert len(done) == 16

    # the maker and the takers hold exactly the same receipts
    maker_ids = {r["id"]: r["maker_sig"] + r["taker_sig"] for r in maker.get("/api/trades")}
    taker_ids = {r["id"]: r["maker_sig"] + r["taker_sig"] for t in takers for r in t.get("/api/trades")}
    assert maker_ids == taker_ids and len(maker_ids) == 16

    # filled offers leave every book, and all books converge
    (state,) = wait_for(lambda: converged([maker, *takers]), what="books to converge")
    assert state == []


def test_cancel_and_closed_offers_never_come_back(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("buy", "1", "7000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    closed = alice.delete(f"/api/offers/{offer['id']}")
    assert closed["status"] == "cancelled"
    wait_for(lambda: visible(bob, offer["id"]) is None, what="cancel to reach bob")
    with pytest.raises(APIError) as err:
        bob.take(offer["id"], "1")
    assert err.value.code == "ERR_OFFER_NOT_FOUND"
    with pytest.raises(APIError) as err:
        bob.delete(f"/api/offers/{offer['id']}")
    assert err.value.code == "ERR_OFFER_NOT_FOUND"
    with pytest.raises(APIError) as err:
        alice.delete(f"/api/offers/{offer['id']}")
    assert err.value.code == "ERR_OFFER_CLOSED"
    # a newcomer loading the book late does not resurrect it either
    carol = spawn("carol")
    live = alice.offer("sell", "2", "9000")
    wait_for(lambda: visible(carol, live["id"]), what="carol to load the book")
    assert visible(carol, offer["id"]) is None


def test_late_joiner_loads_the_book(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    ids = [alice.offer("sell", "1", str(8000 + i))["id"] for i in range(20)]
    ids += [bob.offer("buy", "1", str(7000 + i))["id"] for i in range(20)]
    wait_for(lambda: len(book_state(bob)) == 40, what="bob to hold 40 offers")
    carol = spawn("carol")
    (state,) = wait_for(lambda: converged([alice, bob, carol]), what="carol to converge")
    assert sorted(i for i, _, _ in state) == sorted(ids)
    book = carol.book()
    assert [o["price"] for o in book["asks"]] == [str(8000 + i) for i in range(20)]  # lowest first
    assert [o["price"] for o in book["bids"]] == [str(7019 - i) for i in range(20)]  # highest first


def test_a_paused_peer_does_not_hold_up_a_late_join(spawn: Spawn) -> None:
    """The joiner asks two peers for their books at once and is done with the first complete one, so a
    paused source costs nothing (it used to cost the 30 s snapshot timeout)."""
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    bob.signal(signal.SIGSTOP)
    try:
        carol = spawn("carol")  # its snapshot sources are alice and the paused bob
        assert carol.get("/api/health")["join_ms"] < 15_000
        assert visible(carol, offer["id"])
    finally:
        bob.signal(signal.SIGCONT)


def test_dead_maker_offers_disappear_within_15_s(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    alice.kill()
    wait_for(lambda: visible(bob, offer["id"]) is None, timeout=15, what="dead maker's offer to vanish")
    assert [p["id"] for p in bob.get("/api/peers")] == []
    (seen,) = bob.get("/api/peers?all=1")  # still known, hidden
    assert (seen["id"], seen["alive"], seen["offers"]) == (alice.peer_id, False, 1)


def test_paused_maker_comes_back(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    alice.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: visible(bob, offer["id"]) is None, timeout=15, what="paused maker hidden")
    finally:
        alice.signal(signal.SIGCONT)
    wait_for(lambda: visible(bob, offer["id"]), timeout=15, what="offer back after SIGCONT")


def test_restart_from_data_dir_keeps_offers_and_trades(spawn: Spawn, tmp_path: Path) -> None:
    data = tmp_path / "alice-data"
    alice, bob = spawn("alice", data_dir=data), spawn("bob")
    keep = alice.offer("sell", "4", "8000")
    gone = alice.offer("sell", "1", "8100")
    alice.delete(f"/api/offers/{gone['id']}")
    wait_for(lambda: visible(bob, keep["id"]), what="offer at bob")
    receipt = bob.take(keep["id"], "1")
    peer_id = alice.peer_id
    alice.kill()  # SIGKILL: no chance to flush anything
    wait_for(lambda: visible(bob, keep["id"]) is None, timeout=15, what="offer hidden while alice is down")

    alice2 = spawn("alice", data_dir=data)
    assert alice2.peer_id == peer_id  # same key, same identity
    assert [r["id"] for r in alice2.get("/api/trades")] == [receipt["id"]]
    back = wait_for(lambda: visible(bob, keep["id"]), timeout=15, what="open offer republished")
    assert back["remaining"] == "3"
    assert visible(bob, gone["id"]) is None and visible(alice2, gone["id"]) is None
    history = {o["id"]: o["status"] for o in alice2.get("/api/offers?all=1")}
    assert history == {keep["id"]: "open", gone["id"]: "cancelled"}
    assert [o["id"] for o in alice2.get("/api/offers")] == [keep["id"]]
    with pytest.raises(APIError) as info:  # closed before the restart: still "closed", not "not found"
        alice2.delete(f"/api/offers/{gone['id']}")
    assert info.value.code == "ERR_OFFER_CLOSED"
    assert bob.take(keep["id"], "3")["status"] == "done"


def test_a_restarted_maker_ignores_stale_copies_of_its_own_offers(spawn: Spawn, tmp_path: Path) -> None:
    """Bob misses alice's cancel (paused), alice restarts and loads the book from bob: bob's stale open
    copy must not resurrect the offer in alice's own book (found by the chaos run)."""
    data = tmp_path / "alice-data"
    alice, bob = spawn("alice", data_dir=data), spawn("bob")
    offer = alice.offer("sell", "1", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    bob.signal(signal.SIGSTOP)
    try:
        alice.delete(f"/api/offers/{offer['id']}")
        alice.kill()
    finally:
        bob.signal(signal.SIGCONT)

    alice2 = spawn("alice", data_dir=data)  # answers only once its join from bob is done
    assert visible(alice2, offer["id"]) is None

    # and after bob has repaired its copy from the restarted alice's head (seq 2: the cancel), neither
    # side shows it (bob holds the old head, in step with its stale copy, until the new one arrives)
    def synced() -> bool:
        views = bob.get("/api/peers")
        return any(v["name"] == "alice" and v["in_sync"] and v["head_seq"] == 2 for v in views)

    wait_for(synced, timeout=15, what="bob in sync with alice")
    assert visible(bob, offer["id"]) is None and visible(alice2, offer["id"]) is None


def test_trading_goes_on_while_the_grapes_are_down(tmp_path: Path) -> None:
    """With every Grape down, peers still reach each other at the addresses their signed heartbeats
    give (once a Grape had listed them); restarted Grapes get every announcement back quickly enough
    for a newcomer to join."""
    with GrapeNetwork(2, log_dir=tmp_path) as net:
        peers = [
            PeerProcess(net.urls[i % 2], name, log_dir=tmp_path)
            for i, name in enumerate(["alice", "bob", "carol"])
        ]
        alice, bob, carol = peers
        try:
            start_all(peers)
            offer = alice.offer("sell", "10", "8000")
            for p in (bob, carol):
                wait_for(lambda p=p: visible(p, offer["id"]), what=f"{p.name} to see the offer")

            for p in peers:  # each has had the others' addresses confirmed by a Grape
                wait_for(lambda p=p: sum(v["listed"] for v in p.get("/api/peers")) == 2, what="listed peers")
            for grape in net.grapes:
                grape.stop()
            down_ms = time.time_ns() // 1_000_000

            def heard_alice_since(ms: int) -> bool:
                return any(v["id"] == alice.peer_id and v["last_seen"] > ms for v in bob.get("/api/peers"))

            # a heartbeat of alice's sent well after the Grapes went down reached bob, and bob's
            # cached lookups (2 s) have lapsed by then: whatever works now works without a Grape
            wait_for(lambda: heard_alice_since(down_ms + 2500), timeout=15, what="alice heard with no Grape")
            assert bob.take(offer["id"], "4")["status"] == "done"
            wait_for(
                lambda: (visible(carol, offer["id"]) or {}).get("remaining") == "6", what="fill at carol"
            )

            for i in range(len(net.grapes)):
                net.restart(i)
            dave = PeerProcess(net.urls[0], "dave", log_dir=tmp_path)
            peers.append(dave)
            dave.start()
            wait_for(lambda: converged(peers) and book_state(dave), timeout=30, what="dave to hold the book")
        finally:
            for p in peers:
                p.stop()


def test_expired_offers_disappear_everywhere(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    for p in (alice, bob):
        wait_for(lambda p=p: p.get("/api/health")["peers"] == 1, what=f"{p.name} to see the other")
    offer = alice.offer("sell", "1", "8000", ttl_s=3)
    assert offer["expires_at"] == offer["created_at"] + 3000
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    for p in (alice, bob):
        wait_for(lambda p=p: visible(p, offer["id"]) is None, timeout=10, what="expiry")
    with pytest.raises(APIError) as err:
        bob.take(offer["id"], "1")
    assert err.value.code == "ERR_OFFER_NOT_FOUND"


def test_trade_refusals_say_why(spawn: Spawn) -> None:
    alice, bob = spawn("alice"), spawn("bob")
    offer = alice.offer("sell", "2", "8000", min_fill="0.5")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    cases = [
        (bob, {"offer_id": offer["id"], "amount": "3"}, "ERR_INSUFFICIENT_REMAINING", 409),
        (bob, {"offer_id": offer["id"], "amount": "0.1"}, "ERR_BELOW_MIN_FILL", 409),
        (bob, {"offer_id": offer["id"], "amount": "0.123456789"}, "ERR_INVALID_AMOUNT", 400),
        (bob, {"offer_id": "f" * 32, "amount": "1"}, "ERR_OFFER_NOT_FOUND", 404),
        (alice, {"offer_id": offer["id"], "amount": "1"}, "ERR_SELF_TRADE", 409),
        (bob, {"offer_id": offer["id"], "amount": 1.5}, "ERR_INVALID_AMOUNT", 400),
        (bob, {"offer": offer["id"]}, "ERR_INVALID_PAYLOAD", 400),
    ]
    for peer, body, code, status in cases:
        with pytest.raises(APIError) as err:
            peer.post("/api/trades", body)
        assert (err.value.code, err.value.status) == (code, status), body
        assert err.value.body["message"]
    assert visible(bob, offer["id"])["remaining"] == "2"  # nothing changed
    assert alice.get("/api/trades") == [] and bob.get("/api/trades") == []


def test_one_data_directory_serves_one_peer(spawn: Spawn, tmp_path: Path, grapes: GrapeNetwork) -> None:
    data = tmp_path / "shared-data"
    spawn("alice", data_dir=data)
    second = subprocess.run(
        [sys.executable, "-m", "otc.cli", "peer", "--grape", grapes.urls[0], "--api-port", "0",
         "--data-dir", str(data), "--name", "impostor"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert second.returncode == 1
    assert "another peer is running on the data directory" in second.stderr
    assert "`otc peers --local` lists it" in second.stderr
