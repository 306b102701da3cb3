"""A peer never silently loses or reuses history (issue 8 item 7), on real peer processes on real Grapes.

- a maker whose peer.sqlite (and WAL) is deleted refuses to trade, saying why; ``--recover`` brings back
  its seq (a new offer is above every old one and shows everywhere), its receipts as maker and as taker,
  and cancels the phantoms of its old offers in every book;
- a maker restored from an older copy of peer.sqlite is found behind by what the network holds (its own
  signed head at other peers), and is recovered likewise: the trade made after the copy is held by both
  sides again;
- a damaged peer.sqlite is a clear error and exit code, not a traceback, and changes nothing;
  ``--recover`` moves it aside;
- a peer nobody answers usefully (silent, garbage, forged evidence, or nobody at all) comes up within
  the check's bound and trades: it is not falsely called behind;
- strangers cannot read anyone's receipts: the request must be signed by the peer it is about, fresh,
  addressed to the peer asked, and not replayed.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from grenache import Link, PeerRPCServer, RPCError
from grenache.grapes import GrapeNetwork
from grenache.tls import self_signed, server_context
from otc.core import limits
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import (
    Gossip,
    Head,
    Held,
    HeldTrade,
    HeldTrades,
    Offer,
    ReceiptsRequest,
    Take,
    Terms,
    TradeRefusal,
)
from otc.core.offer import offer_id
from otc.core.signing import is_signed, receipt_of, sign, signing_bytes

from ..harness import APIError, PeerProcess, wait_for
from .attackers import BackgroundLoop, SilentListener, now_ms, raw_client, signed_take, wire

Run = Callable[..., PeerProcess]


@pytest.fixture
def run(grapes: GrapeNetwork, tmp_path: Path) -> Iterator[Run]:
    """Start ``otc peer`` processes (``args``: more options, e.g. ``--recover``); all stopped at the end."""
    started: list[PeerProcess] = []

    def start(name: str, *, data_dir: Path | None = None, args: tuple[str, ...] = ()) -> PeerProcess:
        url = grapes.urls[len(started) % 2]
        peer = PeerProcess(url, name, data_dir=data_dir, log_dir=tmp_path, args=args)
        started.append(peer)
        return peer.start()

    yield start
    for peer in started:
        peer.stop()


def visible(peer: PeerProcess, oid: str) -> dict[str, Any] | None:
    book = peer.book()
    return next((o for o in book["bids"] + book["asks"] if o["id"] == oid), None)


def head_seq_at(peer: PeerProcess, maker: str) -> int:
    return next((v["head_seq"] for v in peer.get("/api/peers?all=1") if v["id"] == maker), -1)


def refused(call: Callable[[], Any]) -> tuple[str | None, int]:
    with pytest.raises(APIError) as err:
        call()
    return err.value.code, err.value.status


def receipts(peer: PeerProcess) -> dict[str, tuple[str, str, str]]:
    """trade id -> (role, maker_sig, taker_sig)"""
    return {r["id"]: (r["role"], r["maker_sig"], r["taker_sig"]) for r in peer.get("/api/trades")}


def sigs(peer: PeerProcess) -> dict[str, tuple[str, str]]:
    return {tid: (m, t) for tid, (_, m, t) in receipts(peer).items()}


def delete_store(data: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        (data / f"peer.sqlite{suffix}").unlink(missing_ok=True)


def meet(*peers: PeerProcess) -> None:
    for p in peers:
        wait_for(lambda p=p: p.get("/api/health")["peers"] >= len(peers) - 1, what=f"{p.name} to meet")


async def ask_peer(grape: str, peer_id: str, msg: msgspec.Struct) -> Any:
    """A raw request to a peer's own key; its result, or its error code."""
    async with Link(grape) as link:
        client = raw_client(link)
        try:
            return await client.request(f"otc:peer:{peer_id}", wire(msg))
        except RPCError as exc:
            return exc.code
        finally:
            await client.stop()


def test_a_lost_store_refuses_to_trade_then_recover_rebuilds_seq_receipts_and_clears_phantoms(
    run: Run, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    data = tmp_path / "alice-data"
    alice, bob, carol = run("alice", data_dir=data), run("bob"), run("carol")
    meet(alice, bob, carol)
    ask = alice.offer("sell", "5", "8000")
    bid = alice.offer("buy", "2", "7000")
    gone = alice.offer("sell", "1", "9000")
    alice.delete(f"/api/offers/{gone['id']}")
    for p in (bob, carol):
        wait_for(
            lambda p=p: visible(p, ask["id"]) and visible(p, bid["id"]), what=f"alice's offers at {p.name}"
        )
    as_maker = bob.take(ask["id"], "1")
    theirs = carol.offer("sell", "3", "8100")
    wait_for(lambda: visible(alice, theirs["id"]), what="carol's offer at alice")
    as_taker = alice.take(theirs["id"], "1")
    top = max(o["seq"] for o in alice.get("/api/offers?all=1"))
    for p in (bob, carol):  # the network holds alice's head at her latest seq
        wait_for(lambda p=p: head_seq_at(p, alice.peer_id) == top, what=f"alice's head at {p.name}")

    alice.kill()
    delete_store(data)  # the WAL too: every commit is gone; identity.key survives
    alice = run("alice", data_dir=data)
    health = alice.get("/api/health")
    assert health["state"] == "needs_recovery"
    why = health["recovery"]
    assert "peer.sqlite was missing" in why["reason"]
    assert why["stored_seq"] == 0 and why["network_seq"] == top and why["answered"] >= 1
    # every trading endpoint refuses, saying why; reading and chatting still work
    assert refused(lambda: alice.offer("sell", "1", "8000")) == ("ERR_RECOVERY_NEEDED", 409)
    assert refused(lambda: alice.take(theirs["id"], "1")) == ("ERR_RECOVERY_NEEDED", 409)
    assert refused(lambda: alice.delete(f"/api/offers/{ask['id']}")) == ("ERR_RECOVERY_NEEDED", 409)
    sweep = {"side": "buy", "amount": "1", "limit": "9000"}
    assert refused(lambda: alice.post("/api/sweep", sweep)) == ("ERR_RECOVERY_NEEDED", 409)
    assert alice.get("/api/trades") == []
    assert visible(alice, theirs["id"])
    alice.post("/api/messages", {"to": bob.peer_id, "text": "lost my store, recovering"})
    wait_for(
        lambda: any(m["text"].startswith("lost my store") for m in bob.get("/api/messages")), what="chat"
    )
    # she says nothing signed to the market meanwhile, so her old offers are hidden in every book; a take
    # sent to her anyway (by a stranger that kept a copy) gets her signed, final refusal
    for p in (bob, carol):
        wait_for(lambda p=p: not visible(p, ask["id"]), timeout=15, what=f"alice's offers hidden at {p.name}")
        assert head_seq_at(p, alice.peer_id) == top  # no head of hers at seq 0 replaced the evidence
    answer = asyncio.run(ask_peer(grapes.urls[0], alice.peer_id, signed_take(Identity.generate(), ask, "1")))
    refusal = msgspec.convert(answer, TradeRefusal)
    assert (refusal.code, refusal.maker, is_signed(refusal)) == ("ERR_RECOVERY_NEEDED", alice.peer_id, True)

    alice.stop()
    alice = run("alice", data_dir=data, args=("--recover",))
    wait_for(lambda: alice.get("/api/health")["state"] == "ok", timeout=30, what="recovery")
    report = alice.get("/api/health")["recovery"]
    assert report["receipts_recovered"] == 2 and set(report["offers_cancelled"]) == {ask["id"], bid["id"]}
    assert report["seq"] > top
    mine = receipts(alice)
    assert {k: v[0] for k, v in mine.items()} == {as_maker["id"]: "maker", as_taker["id"]: "taker"}
    assert sigs(alice) == {**sigs(bob), **sigs(carol)}  # the very receipts both parties signed

    new = alice.offer("sell", "1", "8500")
    assert new["seq"] > top and new["created_seq"] > top  # no seq, no offer id, signed twice
    for p in (bob, carol):
        wait_for(lambda p=p: visible(p, new["id"]), what=f"the new offer at {p.name}")
        wait_for(
            lambda p=p: not visible(p, ask["id"]) and not visible(p, bid["id"]),
            what=f"phantoms gone at {p.name}",
        )
    history = {o["id"]: o["status"] for o in alice.get("/api/offers?all=1")}
    assert history == {ask["id"]: "cancelled", bid["id"]: "cancelled", new["id"]: "open"}

    alice.stop()  # recovered for good: a plain restart trades, with the seq it reached
    alice = run("alice", data_dir=data)
    assert alice.get("/api/health")["state"] == "ok"
    assert alice.offer("buy", "1", "7100")["seq"] > new["seq"]
    assert set(receipts(alice)) == {as_maker["id"], as_taker["id"]}


def test_a_store_restored_from_an_older_copy_is_found_behind_and_recovered(run: Run, tmp_path: Path) -> None:
    data = tmp_path / "alice-data"
    alice, bob, carol = run("alice", data_dir=data), run("bob"), run("carol")
    meet(alice, bob, carol)
    first = alice.offer("sell", "5", "8000")
    wait_for(lambda: visible(bob, first["id"]), what="offer at bob")
    before = bob.take(first["id"], "1")
    brief = alice.offer("buy", "1", "7500", ttl_s=3)  # open in the copy, expired after it
    alice.stop()  # a clean stop, then a copy of the store: a consistent backup
    backup = tmp_path / "backup.sqlite"
    shutil.copy(data / "peer.sqlite", backup)
    assert not (data / "peer.sqlite-wal").exists()

    alice = run("alice", data_dir=data)
    assert alice.get("/api/health")["state"] == "ok"
    later = alice.offer("sell", "2", "8200")
    wait_for(lambda: visible(bob, later["id"]) and visible(carol, later["id"]), what="later offer")
    after_as_maker = bob.take(later["id"], "0.5")
    theirs = carol.offer("sell", "3", "8100")
    wait_for(lambda: visible(alice, theirs["id"]), what="carol's offer at alice")
    after_as_taker = alice.take(theirs["id"], "1")
    wait_for(lambda: {o["id"]: o["status"] for o in alice.get("/api/offers?all=1")}[brief["id"]] == "expired",
             what="the brief offer to expire")  # fmt: skip
    top = max(o["seq"] for o in alice.get("/api/offers?all=1"))
    for p in (bob, carol):
        wait_for(lambda p=p: head_seq_at(p, alice.peer_id) == top, what=f"alice's head at {p.name}")
    alice.stop()
    shutil.copy(backup, data / "peer.sqlite")  # last week's copy, cleanly closed: locally it looks fine

    alice = run("alice", data_dir=data)
    health = alice.get("/api/health")
    assert health["state"] == "needs_recovery", health
    found = health["recovery"]["findings"]
    assert any("holds our signed head at seq" in f for f in found), found
    assert not any("peer.sqlite" in f for f in found), found  # the network told, not the directory
    assert health["recovery"]["network_seq"] == top > health["recovery"]["stored_seq"]
    assert set(receipts(alice)) == {before["id"]}
    assert refused(lambda: alice.offer("sell", "1", "8000")) == ("ERR_RECOVERY_NEEDED", 409)
    # the copy holds the brief offer open, past its expiry: the desk's timer would sign its expiry with a
    # seq already used after the copy was taken. Nothing is signed while trading is refused (the timer
    # runs every second: two of its rounds pass before we look).
    time.sleep(2.5)
    held = {o["id"]: (o["status"], o["seq"]) for o in alice.get("/api/offers?all=1")}
    assert held[brief["id"]] == ("open", brief["seq"]), held
    # nor any heartbeat (the first goes out at once, the next within 2.5 s): the books still hold her
    # latest head, the evidence that she is behind, for whoever asks next
    assert head_seq_at(bob, alice.peer_id) == head_seq_at(carol, alice.peer_id) == top

    alice.stop()
    alice = run("alice", data_dir=data, args=("--recover",))
    wait_for(lambda: alice.get("/api/health")["state"] == "ok", timeout=30, what="recovery")
    roles = {k: v[0] for k, v in receipts(alice).items()}
    assert roles == {before["id"]: "maker", after_as_maker["id"]: "maker", after_as_taker["id"]: "taker"}
    # the trades made after the copy are held by both sides again, the same signed bytes
    assert sigs(alice) == {**sigs(bob), **sigs(carol)}
    cancelled = set(alice.get("/api/health")["recovery"]["offers_cancelled"])
    # the copy's open offers, and the one it never knew
    assert cancelled == {first["id"], brief["id"], later["id"]}
    new = alice.offer("buy", "1", "7000")
    assert new["seq"] > top
    for p in (bob, carol):
        wait_for(lambda p=p: visible(p, new["id"]), what=f"the new offer at {p.name}")
        wait_for(
            lambda p=p: not visible(p, first["id"]) and not visible(p, later["id"]),
            what=f"no phantom at {p.name}",
        )


def otc_peer(grape: str, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otc.cli", "peer", "--grape", grape, "--api-port", "0", "--name", "alice",
         "--data-dir", str(data), *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_damaged_store_is_a_clear_error_and_recover_moves_it_aside(
    run: Run, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    data = tmp_path / "alice-data"
    alice, bob = run("alice", data_dir=data), run("bob")
    offer = alice.offer("sell", "2", "8000")
    wait_for(lambda: visible(bob, offer["id"]), what="offer at bob")
    traded = bob.take(offer["id"], "1")
    alice.stop()
    garbage = os.urandom(64 * 1024)
    (data / "peer.sqlite").write_bytes(garbage)

    refused_start = otc_peer(grapes.urls[0], data)
    assert refused_start.returncode == 3, refused_start.stderr
    assert "ERR_STORE_DAMAGED" in refused_start.stderr and "--recover" in refused_start.stderr
    assert "Traceback" not in refused_start.stderr
    assert (data / "peer.sqlite").read_bytes() == garbage  # nothing was changed

    # --recover, with a stranger among the peers it asks that pages forged receipts forever
    pager = EndlessPager(alice.peer_id)
    stranger = Stranger(pager)
    bob_rpc = f"127.0.0.1:{bob.get('/api/health')['rpc_port']}"
    with BackgroundLoop() as bg:
        bg.spawn(stranger.run(grapes.urls[0], bob_rpc))
        known = lambda: stranger.identity.peer_id in {p["id"] for p in bob.get("/api/peers")}  # noqa: E731
        wait_for(known, what="the stranger in bob's book")
        alice = run("alice", data_dir=data, args=("--recover",))
        wait_for(lambda: alice.get("/api/health")["state"] == "ok", timeout=30, what="recovery")
        assert 1 <= pager.pages <= 2, pager.pages  # a page with nothing genuine ends its paging
    aside = list(data.glob("peer.sqlite.damaged-*"))
    assert [p.read_bytes() for p in aside if not p.name.endswith(("-wal", "-shm"))] == [garbage]
    report = alice.get("/api/health")["recovery"]
    assert any("damaged" in f for f in report["findings"]) and report["offers_cancelled"] == [offer["id"]]
    assert sigs(alice) == sigs(bob) and set(sigs(alice)) == {traded["id"]}


class Stranger:
    """A peer made of raw parts that answers on its own key ``otc:peer:<id>`` as ``answer`` says, over
    TLS with a certificate bound to its own key, as a peer's would be (so callers' pinning lets it
    through: what is tested is what they make of its answers), or a silent address that never answers;
    it keeps a signed heartbeat of its own in a victim's book so that other peers learn of it from the
    victim's snapshot."""

    def __init__(self, answer: Callable[[Any], Any] | None, silent: SilentListener | None = None) -> None:
        self.identity = Identity.generate()
        self.desk = Desk(self.identity, "stranger")
        self.answer = answer
        self.silent = silent
        self.addr = silent.addr if silent is not None else ""

    async def run(self, grape: str, victim_rpc: str) -> None:
        async with Link(grape) as link:
            key = f"otc:peer:{self.identity.peer_id}"
            server = None
            if self.answer is not None:
                cert, key_pem = self_signed(self.identity.seed(), "stranger")
                server = PeerRPCServer(link, ssl=server_context(cert, key_pem))
                answer = self.answer

                async def handle(payload: Any) -> Any:
                    return answer(payload)

                server.add_handler(key, handle)
                await server.listen(0)
                await server.announce(key)
                self.addr = f"127.0.0.1:{server.port}"
            else:
                assert self.silent is not None
                await link.announce(key, self.silent.port)
            client = raw_client(link, timeout=3)
            try:
                while True:
                    head = self.desk.head(now_ms(), self.addr)
                    await client.request_dest(victim_rpc, "otc:market", wire(Gossip(heads=[head])))
                    await asyncio.sleep(1.5)
            finally:
                await client.stop()
                if server is not None:
                    await server.stop()


def forged_offer(victim: str, forger: Identity, seq: int = 10**9) -> Offer:
    return sign(forger, Offer(id=offer_id(victim, seq), created_seq=seq, maker=victim, maker_name="alice",
                              side="sell", pair="BTC/USD", price="1", amount="1", remaining="1",
                              created_at=now_ms(), seq=seq))  # fmt: skip


def forged_trade(victim: str, forger: Identity, offer: Offer) -> HeldTrade:
    """A trade "with the victim" as maker, whose maker signature is the forger's."""
    take = sign(forger, Take(trade_id=uuid.uuid4().hex, offer_id=offer.id, amount="1", price="1",
                             taker=forger.peer_id, taker_name="x", ts=now_ms()))  # fmt: skip
    terms = Terms(id=take.trade_id, offer_id=offer.id, maker=victim, maker_name="alice",
                  taker=forger.peer_id, taker_name="x", side="sell", pair="BTC/USD", price="1", amount="1",
                  created_at=now_ms())  # fmt: skip
    sig = forger.sign(signing_bytes(terms))
    return HeldTrade(take=take, receipt=receipt_of(terms, sig, sig))


def forged_evidence(victim: str, forger: Identity) -> Callable[[Any], Any]:
    """Answers ``held`` with the victim's head and offers at a huge seq, and ``receipts`` with a trade
    "with the victim" — all signed by the forger's key, not the victim's."""
    seq = 10**9
    head = sign(forger, Head(maker=victim, name="alice", addr="127.0.0.1:1", head=seq, count=0,
                             digest="0" * 32, ts=now_ms()))  # fmt: skip
    offer = forged_offer(victim, forger, seq)
    fake = forged_trade(victim, forger, offer)

    def answer(payload: Any) -> Any:
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "held":
            return wire(Held(head=head, offers=[offer]))
        if kind == "receipts":
            return wire(HeldTrades(trades=[fake]))
        return {"ok": True}

    return answer


class EndlessPager:
    """Answers ``receipts`` with one forged receipt per page and a next cursor, forever."""

    def __init__(self, victim: str) -> None:
        forger = Identity.generate()
        self.trade = forged_trade(victim, forger, forged_offer(victim, forger))
        self.pages = 0

    def __call__(self, payload: Any) -> Any:
        if isinstance(payload, dict) and payload.get("type") == "receipts":
            self.pages += 1
            return wire(HeldTrades(trades=[self.trade], next=f"{10**12 - self.pages}:{'0' * 32}"))
        return wire(Held())


def garbage(payload: Any) -> Any:
    return {"head": "not a head", "offers": 7, "trades": [1, 2, 3]}


def test_a_peer_nobody_answers_usefully_comes_up_within_the_bound_and_trades(
    run: Run, grapes: GrapeNetwork, tmp_path: Path
) -> None:
    data = tmp_path / "alice-data"
    alice = run("alice", data_dir=data)  # a new identity: nothing to check
    health = alice.get("/api/health")
    assert health["state"] == "ok" and health["recovery"]["asked"] == 0
    mine = alice.offer("sell", "1", "8000")
    bob = run("bob")
    wait_for(lambda: visible(bob, mine["id"]), what="alice's offer at bob")
    alice.stop()

    silent = SilentListener()
    forger = Identity.generate()
    strangers = [
        Stranger(None, silent),
        Stranger(None, silent),
        Stranger(garbage),
        Stranger(forged_evidence(alice.peer_id, forger)),
    ]
    bob_rpc = f"127.0.0.1:{bob.get('/api/health')['rpc_port']}"
    try:
        with BackgroundLoop() as bg:
            for s in strangers:
                bg.spawn(s.run(grapes.urls[0], bob_rpc))
            ids = {s.identity.peer_id for s in strangers}
            wait_for(
                lambda: ids <= {p["id"] for p in bob.get("/api/peers")}, what="the strangers in bob's book"
            )

            started = time.monotonic()
            alice = run("alice", data_dir=data)  # learns of the strangers from bob's snapshot, asks them
            up_s = time.monotonic() - started
            health = alice.get("/api/health")
    finally:
        silent.close()
    report = health["recovery"]
    assert health["state"] == "ok", report  # forged, garbage and silent answers are no evidence
    assert report["asked"] >= 5 and report["answered"] >= 1  # bob, and the strangers
    assert report["network_seq"] == mine["seq"] == report["stored_seq"]
    assert report["check_ms"] <= limits.CHECK_TIMEOUT_S * 1000 + 500, report
    assert up_s < 20, up_s  # process start and join included: generous, the bound is check_ms's
    assert alice.offer("sell", "1", "8001")["seq"] == mine["seq"] + 1

    bob.stop()
    alice.stop()
    alice = run("alice", data_dir=data)  # nobody there at all
    health = alice.get("/api/health")
    assert health["state"] == "ok" and health["recovery"]["answered"] == 0


def test_strangers_cannot_read_a_peers_receipts(run: Run, grapes: GrapeNetwork, tmp_path: Path) -> None:
    data = tmp_path / "alice-data"
    alice, bob, carol = run("alice", data_dir=data), run("bob"), run("carol")
    meet(alice, bob, carol)
    offer = bob.offer("sell", "5", "8000")
    wait_for(lambda: visible(alice, offer["id"]) and visible(carol, offer["id"]), what="bob's offer")
    with_alice = alice.take(offer["id"], "1")
    carol.take(offer["id"], "1")  # bob's trade with carol: none of alice's business
    alice_key = Identity.from_seed((data / "identity.key").read_bytes())  # as if captured
    stranger = Identity.generate()

    def request(signer: Identity | None, **fields: Any) -> ReceiptsRequest:
        msg = ReceiptsRequest(**{"peer": alice.peer_id, "to": bob.peer_id, "ts": now_ms(),
                                 "nonce": uuid.uuid4().hex, **fields})  # fmt: skip
        return msg if signer is None else sign(signer, msg)

    def code(msg: ReceiptsRequest) -> Any:
        return asyncio.run(ask_peer(grapes.urls[0], bob.peer_id, msg))

    assert code(request(None)) == "ERR_BAD_SIGNATURE"  # unsigned
    assert code(request(stranger)) == "ERR_BAD_SIGNATURE"  # signed by someone else
    assert code(request(alice_key, to=carol.peer_id)) == "ERR_INVALID_MESSAGE"  # meant for carol
    assert code(request(alice_key, ts=now_ms() - 2 * limits.SIGNED_REQUEST_MAX_AGE_MS)) == "ERR_REQUEST_STALE"
    genuine = request(alice_key)
    answer = code(genuine)
    got = msgspec.convert(answer, HeldTrades)
    assert [t.receipt.id for t in got.trades] == [with_alice["id"]]  # hers only, not bob's with carol
    assert code(genuine) == "ERR_REQUEST_STALE"  # the same request again: a replay


def test_a_quoting_maker_restarts_whole_and_recovers_its_quote_trades(run: Run, tmp_path: Path) -> None:
    """The quote desk (RFQ) keeps its trades apart: a requester's receipt of one is no sign of a loss at a
    clean restart; after a real loss it goes back to the quote desk, whose seq (hence quote ids) is
    rebuilt from the clock, so no quote id is given twice."""
    data = tmp_path / "alice-data"
    alice, bob = run("alice", data_dir=data), run("bob")
    meet(alice, bob)

    def quoted(price: str) -> tuple[dict[str, Any], dict[str, Any]]:
        rfq = bob.post("/api/rfqs", {"side": "buy", "amount": "2", "ttl_ms": 20_000})
        mine = lambda: any(r["id"] == rfq["id"] and not r["mine"] for r in alice.get("/api/rfqs"))  # noqa: E731
        wait_for(mine, what="the request at alice")
        quote = alice.post(f"/api/rfqs/{rfq['id']}/quotes", {"price": price})
        assert quote["delivered"] is True
        return rfq, quote

    _, quote = quoted("8004")
    traded = bob.post(f"/api/quotes/{quote['id']}/accept", {})
    assert receipts(alice)[traded["id"]][0] == "maker"
    alice.stop()
    alice = run("alice", data_dir=data)
    assert alice.get("/api/health")["state"] == "ok", alice.get("/api/health")["recovery"]

    alice.kill()
    delete_store(data)
    alice = run("alice", data_dir=data, args=("--recover",))
    wait_for(lambda: alice.get("/api/health")["state"] == "ok", timeout=30, what="recovery")
    assert receipts(alice)[traded["id"]] == ("maker", *sigs(bob)[traded["id"]])  # the very receipt
    meet(alice, bob)
    _, again = quoted("8005")
    assert again["id"] != quote["id"]  # the quote desk's first seq after the loss is not its first before
