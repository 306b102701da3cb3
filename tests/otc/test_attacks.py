"""The hostile network, trading side (issue 8): each attack is made on real peer processes on real Grapes
by strangers built from raw parts (tests/otc/attackers.py), and each test fails if its defence is
removed.

- a squatter between taker and maker lies with unsigned refusals: maker and taker still agree;
- a taker that never confirms keeps at most a fifth of an offer out of reach, honest takers still fill;
- a storm of tiny takes from fresh keys leaves the maker's store bounded;
- signed offers from makers that never answer cost a sweep one short wait, not a timeout each;
- a chat flood is refused past its rate, and messages dated in the future cannot hide real ones;
- a name we know for one peer is never silently given to the next one claiming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from grenache import Link, PeerRPCClient, RPCError
from grenache.grapes import GrapeNetwork
from grenache.tls import client_context
from otc.core import limits
from otc.core.identity import Identity

from ..harness import APIError, PeerProcess, wait_for
from .attackers import (
    BackgroundLoop,
    FakeMaker,
    SilentListener,
    Squatter,
    now_ms,
    signed_chat,
    signed_take,
    wire,
)

Spawn = Callable[..., PeerProcess]


@pytest.fixture
def grapes() -> Iterator[GrapeNetwork]:
    """Grapes of each attack's own: junk announcements and silent listeners must not outlive it (a
    Grape keeps a record for minutes, and later tests would look through the junk)."""
    with GrapeNetwork(2) as net:
        yield net


def rpc_addr(peer: PeerProcess) -> str:
    return f"127.0.0.1:{peer.get('/api/health')['rpc_port']}"


def visible(peer: PeerProcess, offer_id: str) -> dict[str, Any] | None:
    book = peer.book()
    return next((o for o in book["bids"] + book["asks"] if o["id"] == offer_id), None)


def test_a_squatter_on_the_makers_name_fails_the_handshake_and_maker_and_taker_agree(
    spawn: Spawn, grapes: GrapeNetwork
) -> None:
    """A third party announces itself on ``otc:peer:<maker id>``. The maker's signed head names an
    address that does not answer (its ``--announce`` is wrong, as behind a bad NAT), so every take
    falls back to the DHT name the squatter shares. The squatter would relay every take and confirm to
    the maker and answer the taker with an unsigned "offer closed" (147 trades done at the maker and
    failed at the taker, in 60 s, before). The taker pins the maker's key in TLS: the squatter fails
    the handshake before it reads a byte of any request, the request goes to the next destination, and
    both sides end with the same trades. (Were a request ever to reach it, its unsigned refusal would
    still count for nothing: only the maker's signed refusal of that very request fails a trade; see
    test_desk.py.)"""
    maker = spawn("maker", grape=0, args=("--announce", "127.0.0.2"))  # listens on 127.0.0.1 only
    offer = maker.offer("sell", "100", "8000")
    taker = spawn("taker", grape=1)
    wait_for(lambda: visible(taker, offer["id"]), what="the offer at the taker")
    with BackgroundLoop() as bg:
        squatter = bg.run(Squatter(grapes.urls[1], maker.peer_id, rpc_addr(maker)).start())
        wait_for(lambda: bg.run(squatter.listed()), what="the squatter to be listed under the maker's name")

        def take(_: int) -> str:
            try:
                return str(taker.take(offer["id"], "0.5")["status"])
            except APIError as exc:
                return str(exc.code)

        with ThreadPoolExecutor(4) as pool:
            outcomes = Counter(pool.map(take, range(24)))
        wait_for(lambda: taker.get("/api/health")["pending_trades"] == 0, 60, what="pending trades to settle")
        relayed, knocked = dict(squatter.relayed), squatter.front.connections
        bg.run(squatter.stop())
    assert knocked > 0, "the taker never came to the squatter: the attack did not happen"
    assert relayed == {}, f"requests reached the squatter: {relayed}"
    maker_done = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in maker.get("/api/trades")}
    taker_done = {r["id"]: (r["maker_sig"], r["taker_sig"]) for r in taker.get("/api/trades")}
    assert maker_done == taker_done, outcomes
    assert outcomes == Counter({"done": 24}), outcomes


def held_by(db: Path, taker: str) -> Decimal:
    """What the maker's SQLite says it holds for ``taker`` right now (live, held reservations)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        rows = conn.execute("SELECT body FROM maker_trades WHERE state = 'reserved'").fetchall()
    bodies = [json.loads(row[0]) for row in rows]
    return sum(
        (
            Decimal(b["terms"]["amount"])
            for b in bodies
            if b["terms"]["taker"] == taker and b.get("held", True)
        ),
        Decimal(0),
    )


def test_a_taker_that_never_confirms_holds_at_most_a_fifth_and_honest_takers_fill(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    maker = spawn("maker", data_dir=tmp_path / "maker")
    honest = [spawn(f"honest{i}") for i in range(3)]
    offer = maker.offer("sell", "10", "8000")
    for p in honest:
        wait_for(functools.partial(visible, p, offer["id"]), what=f"the offer at {p.name}")
    griefer = Identity.generate()
    maker_rpc = rpc_addr(maker)
    answers: Counter[str] = Counter()
    most = Decimal(0)
    stop = threading.Event()

    async def grief() -> None:
        async with Link(grapes.urls[0]) as link:
            client = PeerRPCClient(link, timeout=3, ssl=client_context())
            grabs = ["10", "2", "1", "0.5"]  # all of it, or just what a newcomer may hold
            while not stop.is_set():
                take = signed_take(griefer, offer, grabs[answers.total() % len(grabs)])
                try:
                    answer = await client.request_dest(maker_rpc, f"otc:peer:{maker.peer_id}", wire(take))
                    answers[answer.get("code") or answer.get("status")] += 1
                except RPCError as exc:
                    answers[exc.code] += 1
                await asyncio.sleep(0.05)  # and never confirms
            await client.stop()

    def sample() -> None:
        nonlocal most
        while not stop.is_set():
            most = max(most, held_by(tmp_path / "maker" / "peer.sqlite", griefer.peer_id))
            time.sleep(0.05)

    asked = filled = Decimal(0)
    with BackgroundLoop() as bg:
        attack = bg.spawn(grief())
        sampler = threading.Thread(target=sample)
        sampler.start()
        wait_for(lambda: answers["reserved"] >= 2, what="the griefer to hold something")

        def honest_takes(p: PeerProcess) -> tuple[Decimal, Decimal]:
            got = Decimal(0)
            for _ in range(8):
                with contextlib.suppress(APIError):
                    got += Decimal(p.take(offer["id"], "0.25")["amount"])
            return Decimal(2), got  # 8 x 0.25 asked

        with ThreadPoolExecutor(len(honest)) as pool:
            for a, f in pool.map(honest_takes, honest):
                asked, filled = asked + a, filled + f
        stop.set()
        attack.result(10)
        sampler.join(10)
    assert most > 0, "the griefer held nothing: the attack did not happen"
    assert most <= limits.NEW_TAKER_SHARE * Decimal(offer["amount"]), most
    assert filled / asked >= Decimal("0.9"), (filled, asked, answers)


def test_a_storm_of_tiny_takes_from_fresh_keys_leaves_the_maker_bounded(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    maker = spawn("maker", data_dir=tmp_path / "maker")
    offer = maker.offer("sell", "100", "8000")
    maker_rpc = rpc_addr(maker)
    rss_before = maker.rss_kb()
    answers: Counter[str] = Counter()

    async def storm() -> None:
        async with Link(grapes.urls[0]) as link:
            client = PeerRPCClient(link, timeout=10, ssl=client_context())
            keys = [Identity.generate() for _ in range(300)]

            async def one(key: Identity) -> None:
                for _ in range(10):
                    take = signed_take(key, offer, "0.00000001")
                    try:
                        answer = await client.request_dest(maker_rpc, f"otc:peer:{maker.peer_id}", wire(take))
                        answers[answer.get("code") or answer.get("status")] += 1
                    except RPCError as exc:
                        answers[exc.code] += 1

            await asyncio.gather(*(one(k) for k in keys))
            await client.stop()

    with BackgroundLoop() as bg:
        bg.run(storm(), timeout=300)
    assert answers.total() == 3000
    db = tmp_path / "maker" / "peer.sqlite"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (rows,) = conn.execute("SELECT COUNT(*) FROM maker_trades").fetchone()
    burst = limits.NEW_TAKER_TAKES_PER_MINUTE / 10
    assert rows == answers["reserved"] <= limits.NEW_TAKER_TAKES_PER_MINUTE + burst, answers
    assert answers["ERR_MAKER_BUSY"] > 0
    assert maker.rss_kb() - rss_before < 30_000, "the storm grew the maker's memory"
    # and the maker still trades
    taker = PeerProcess(grapes.urls[0], "after", log_dir=tmp_path).start()
    try:
        wait_for(lambda: visible(taker, offer["id"]), what="the offer at a later taker")
        assert taker.take(offer["id"], "1")["status"] == "done"
    finally:
        taker.stop()


def test_signed_offers_from_makers_that_never_answer_cost_a_sweep_one_short_wait(
    spawn: Spawn, grapes: GrapeNetwork
) -> None:
    maker, taker = spawn("maker"), spawn("taker")
    real = [maker.offer("sell", "0.5", "8000") for _ in range(3)]
    silent = SilentListener()
    fakes = [FakeMaker(silent) for _ in range(4)]
    cheap = [f.offer("sell", "0.3", "7999") for f in fakes]  # just better than the market top
    try:
        with BackgroundLoop() as bg:

            async def attack() -> None:
                async with Link(grapes.urls[0]) as link:
                    client = PeerRPCClient(link, timeout=3, ssl=client_context())
                    for f in fakes:
                        await f.announce(grapes.urls[0])
                    await asyncio.gather(*(f.keep_alive(client, rpc_addr(taker)) for f in fakes))

            bg.spawn(attack())
            wait_for(
                lambda: {o.id for o in cheap} <= {o["id"] for o in taker.book()["asks"]},
                what="the fake offers to top the taker's book",
            )
            wait_for(lambda: all(visible(taker, o["id"]) for o in real), what="the real offers")
            started = time.monotonic()
            result = taker.post("/api/sweep", {"side": "buy", "amount": "1", "limit": "8001"})
            elapsed = time.monotonic() - started
            book = taker.book()
    finally:
        silent.close()
    assert result["filled"] == "1" and {f["maker"] for f in result["fills"]} == {maker.peer_id}
    assert {s["offer_id"]: s["error"] for s in result["skipped"]} == {
        o.id: "ERR_MAKER_UNREACHABLE" for o in cheap
    }
    # one probe of all four (a second), then the real takes: not a take timeout per fake offer
    assert elapsed < 2 * limits.PROBE_TIMEOUT_S + 2, elapsed
    shown = {o["id"]: o["reachable"] for o in book["asks"]}
    assert all(shown[o.id] is False for o in cheap if o.id in shown)


def test_a_chat_flood_is_refused_past_its_rate_and_future_dates_hide_nothing(
    spawn: Spawn, grapes: GrapeNetwork
) -> None:
    victim, bob = spawn("victim"), spawn("bob")
    wait_for(lambda: victim.get("/api/health")["peers"] >= 1, what="victim to see bob")
    victim_rpc = rpc_addr(victim)
    flooder = Identity.generate()
    codes: Counter[str] = Counter()

    async def flood() -> None:
        async with Link(grapes.urls[0]) as link:
            client = PeerRPCClient(link, timeout=5, ssl=client_context())
            key = f"otc:peer:{victim.peer_id}"
            for i in range(100):  # one sender, as fast as it can
                msg = signed_chat(flooder, victim.peer_id, f"spam {i}")
                try:
                    await client.request_dest(victim_rpc, key, wire(msg))
                    codes["ok"] += 1
                except RPCError as exc:
                    codes[exc.code] += 1
            future = now_ms() + 10 * 24 * 3600 * 1000  # ten days ahead, from twenty fresh keys
            for _ in range(20):
                dated = signed_chat(Identity.generate(), victim.peer_id, "from the future", future)
                await client.request_dest(victim_rpc, key, wire(dated))
            await client.stop()

    with BackgroundLoop() as bg:
        bg.run(flood())
    assert codes["ok"] <= limits.CHAT_BURST + 2 and codes["ERR_RATE_LIMITED"] >= 100 - limits.CHAT_BURST - 2
    bob.post("/api/messages", {"to": "victim", "text": "the real one"})
    inbox = victim.get("/api/messages")
    assert inbox[-1]["text"] == "the real one" and inbox[-1]["sender"] == bob.peer_id
    assert [m["received_at"] for m in inbox] == sorted(m["received_at"] for m in inbox)


def test_a_name_we_know_is_never_silently_given_to_the_next_peer_claiming_it(
    spawn: Spawn, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    alice, bob = spawn("alice"), spawn("bob", data_dir=tmp_path / "bob")
    wait_for(lambda: bob.get("/api/health")["peers"] >= 1, what="bob to see alice")
    bob.post("/api/messages", {"to": "alice", "text": "hello alice"})  # alice is now bob's contact
    alice.stop()
    bob.stop()  # bob restarts: his book no longer remembers alice, his contacts do
    bob.start()
    impostor = spawn("alice")  # a new key, the same name
    wait_for(
        lambda: any(p["id"] == impostor.peer_id for p in bob.get("/api/peers")),
        what="bob to see the impostor",
    )
    try:
        bob.post("/api/messages", {"to": "alice", "text": "are you there?"})
        raise AssertionError("a message to 'alice' went to a peer that is not the alice bob knows")
    except APIError as exc:
        assert exc.code in ("ERR_AMBIGUOUS_PEER", "ERR_PEER_NOT_FOUND"), exc.body
        assert alice.peer_id[:12] in exc.body["message"] and impostor.peer_id[:12] in exc.body["message"]
    assert impostor.get("/api/messages") == []
    bob.post("/api/messages", {"to": impostor.peer_id, "text": "by id, on purpose"})  # ids always work
    assert [m["text"] for m in impostor.get("/api/messages")] == ["by id, on purpose"]
