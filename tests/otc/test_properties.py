"""Property-based tests: random interleavings of the trade protocol and of book replication over a
network that loses, duplicates and reorders messages.

(a) One maker desk, a few takers. Hypothesis decides, step by step, which in-flight message is delivered,
    dropped or duplicated, when takers start, retry or give up, when the maker cancels, and when time
    advances. Afterwards a reliable reconciliation phase lets every pending taker finish. Maker and takers
    must agree on every trade, and no offer is ever over-filled.
(b) One maker desk produces a random history of signed offer updates; two book replicas receive them in
    different random orders with drops, duplicates, stale syncs and forgotten tombstones. After one
    authoritative sync each, both equal the desk's open offers exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import msgspec
from hypothesis import event, given, settings
from hypothesis import strategies as st

from otc.core.book import Applied, Book, HeadOutcome
from otc.core.desk import Desk, Refusal
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Confirm, Head, MakerOffers, Offer, Take, TradeRefusal, TradeReply
from otc.core.money import D
from otc.core.signing import receipt_is_valid, receipt_of
from otc.core.taker import Taker, receipt
from otc.core.trade import MakerState, MakerTrade, TakerState, TakerTrade

MAKER = Identity.from_seed(bytes([1]) * 32)
TAKER_IDS = [Identity.from_seed(bytes([i]) * 32) for i in range(2, 6)]
T0 = 1_700_000_000_000
RESERVE = 1_000
FINAL = (TakerState.DONE, TakerState.FAILED)
AMOUNTS = ["0.1", "0.25", "0.3", "0.5", "1", "1.5", "2", "remaining"]


# --- (a) trades over a lossy network ---------------------------------------------------------------------
# how often each action is drawn; deliveries first, so that shrinking favours a well-behaved network
WEIGHTS = {
    "deliver": 120,
    "drop": 20,
    "duplicate": 20,
    "start": 50,
    "retry": 30,
    "tick": 30,
    "give_up": 8,
    "cancel": 3,
    "restart": 3,
    "forget": 10,
}


def copy(trade: MakerTrade) -> MakerTrade:
    """A stored record, read back: a new object, as the store hands out."""
    return msgspec.json.decode(msgspec.json.encode(trade), type=MakerTrade)


def choose(data: st.DataObject, weights: dict[str, int]) -> str:
    pick = data.draw(st.integers(0, sum(weights.values()) - 1))
    for action, weight in weights.items():
        if pick < weight:
            return action
        pick -= weight
    raise AssertionError("unreachable")


@dataclass
class Msg:
    taker: int
    trade_id: str
    request: Take | Confirm
    reply: TradeReply | None = None  # set on the way back
    refusal: TradeRefusal | None = None  # the maker's signed refusal, on the way back

    @property
    def is_request(self) -> bool:
        return self.reply is None and self.refusal is None


@dataclass
class TradeSim:
    desk: Desk
    takers: list[Taker]
    now: int = T0
    trades: dict[str, tuple[int, TakerTrade]] = field(default_factory=dict)
    net: list[Msg] = field(default_factory=list)
    started: int = 0
    stored: dict[str, Offer] = field(default_factory=dict)  # every offer's latest state, as persisted
    stored_trades: dict[str, MakerTrade] = field(default_factory=dict)  # every maker trade, as persisted

    def restart(self, keep_settled: int) -> None:
        """The maker process restarts: a new desk loads what the peer loads (open offers, live
        reservations, the latest settled trades); the rest is recalled when asked about."""
        self.persist()
        live = [t for t in self.stored_trades.values() if t.state is MakerState.RESERVED]
        settled = sorted(
            (t for t in self.stored_trades.values() if t.state is not MakerState.RESERVED),
            key=lambda t: t.terms.created_at,
        )
        trades = [copy(t) for t in live + settled[len(settled) - keep_settled :]]
        desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
        desk.load([o for o in self.stored.values() if o.status == "open"], trades, self.desk.seq)
        assert desk.seq == self.desk.seq
        assert desk.head(self.now, "a") == self.desk.head(self.now, "a")
        self.desk = desk

    def forget(self, keep: int) -> None:
        """The desk trims its memory (the peer does so every 30 heartbeats, after persisting)."""
        self.persist()
        self.desk.forget_closed(keep)
        self.desk.forget_settled(keep)

    def persist(self) -> None:
        for offer in self.desk.offers.values():
            old = self.stored.get(offer.id)
            assert old is None or old.seq <= offer.seq
            self.stored[offer.id] = offer
        for tid, trade in self.desk.trades.items():
            old_trade = self.stored_trades.get(tid)
            assert old_trade is None or old_trade.state is MakerState.RESERVED or old_trade == trade
            self.stored_trades[tid] = copy(trade)

    # the maker's RPC handler
    def serve(self, msg: Msg) -> Msg:
        # as peer._recall: the stored record of a forgotten trade or offer goes back to the desk first
        if msg.trade_id not in self.desk.trades and msg.trade_id in self.stored_trades:
            self.desk.recall(trade=copy(self.stored_trades[msg.trade_id]))
        if isinstance(msg.request, Take) and msg.request.offer_id not in self.desk.offers:
            self.desk.recall(offer=self.stored.get(msg.request.offer_id))
        try:
            if isinstance(msg.request, Take):
                reply, _ = self.desk.take(msg.request, self.now)
            else:
                reply, _ = self.desk.confirm(msg.request, self.now)
        except OTCError as exc:  # desk.Refusal included: its effects are already in the desk's state
            return Msg(
                msg.taker, msg.trade_id, msg.request, refusal=self.desk.refusal(msg.request, exc, self.now)
            )
        return Msg(msg.taker, msg.trade_id, msg.request, reply=reply)

    def answer(self, msg: Msg) -> None:
        """The taker's RPC client. A reply is used only while the call it answers is still pending (as
        node/trading.py does: one call per trade at a time). A refusal is handed to the taker whenever it
        arrives, late or duplicated, whatever the trade's state: a refused take is not recorded by the
        maker, so a duplicate of it may be reserved later, and the first copy's late refusal must then
        not fail the trade at the taker while its confirm completes it at the maker. The taker's check
        that a refusal names the very request it waits on is what prevents that."""
        idx, trade = self.trades[msg.trade_id]
        taker = self.takers[idx]
        if msg.refusal is not None:
            try:
                new = taker.on_refusal(trade, msg.refusal, self.now)
            except OTCError:
                return  # not the maker's answer to the request this trade waits on
            assert taker.next_request(trade) == msg.request
        elif taker.next_request(trade) != msg.request:
            return  # the call it answers was given up, or the trade moved on: nobody is waiting for it
        else:
            assert msg.reply is not None
            new = taker.on_reply(trade, msg.reply, self.now)  # an honest maker's answer is always acceptable
        self.trades[msg.trade_id] = (idx, new)

    def send(self, trade_id: str) -> None:
        idx, trade = self.trades[trade_id]
        req = self.takers[idx].next_request(trade)
        if req is not None:
            self.net.append(Msg(idx, trade_id, req))

    def deliver(self, i: int) -> None:
        msg = self.net.pop(i)
        if msg.is_request:
            self.net.append(self.serve(msg))
        else:
            self.answer(msg)

    def pending(self) -> list[str]:
        return sorted(tid for tid, (_, t) in self.trades.items() if t.state not in FINAL)

    def check(self) -> None:
        """Safety, after every step."""
        desk = self.desk
        self.persist()
        for offer in self.stored.values():
            mine = [t for t in self.stored_trades.values() if t.terms.offer_id == offer.id]
            done = sum((D(t.terms.amount) for t in mine if t.state is MakerState.DONE), Decimal(0))
            held = sum(
                (D(t.terms.amount) for t in mine if t.state is MakerState.RESERVED and t.held), Decimal(0)
            )
            remaining = D(offer.remaining)
            assert remaining >= 0
            assert done + remaining == D(offer.amount), (offer, done)
            assert desk.reserved.get(offer.id, Decimal(0)) == held
            # the published state says what is held, unless a hold is younger than a round trip
            assert D(offer.reserved) == held or offer.id in desk._unpublished
            assert D(offer.reserved) <= remaining
            assert held <= remaining
            assert (offer.status == "filled") == (remaining == 0)
            if offer.status != "open":
                assert not any(t.state is MakerState.RESERVED for t in mine), "a closed offer keeps none"
        assert all(t >= 0 for t in desk._unpublished.values())
        # the timer's indexes are exactly the pending reservations and the open offers that expire
        assert set(desk._live) == {tid for tid, t in desk.trades.items() if t.state is MakerState.RESERVED}
        assert set(desk._expiring) == {
            oid for oid, o in desk.offers.items() if o.status == "open" and o.expires_at is not None
        }
        for tid, (_, trade) in self.trades.items():
            if trade.state is TakerState.DONE:
                mt = self.stored_trades.get(tid)
                assert mt is not None and mt.state is MakerState.DONE, "taker done, maker not"
                assert mt.taker_sig is not None
                assert receipt(trade) == receipt_of(mt.terms, mt.maker_sig, mt.taker_sig)
            if trade.state is TakerState.REQUESTED:
                assert tid not in self.stored_trades or self.stored_trades[tid].state is not MakerState.DONE


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_maker_and_takers_agree_despite_loss_duplication_and_reordering(data: st.DataObject) -> None:
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    n_offers = data.draw(st.integers(1, 3), label="offers")
    for _ in range(n_offers):
        desk.create(
            side=data.draw(st.sampled_from(["buy", "sell"])),
            amount=data.draw(st.sampled_from(["1", "2", "0.75"])),
            price="30000",
            pair="BTC/USD",
            min_fill=data.draw(st.sampled_from([None, None, "0.3"])),
            ttl_ms=data.draw(st.sampled_from([None, None, 2_500, 8_000])),
            now=T0,
        )
    offer_ids = sorted(desk.offers)
    n_takers = data.draw(st.integers(1, len(TAKER_IDS)), label="takers")
    sim = TradeSim(desk, [Taker(TAKER_IDS[i], f"taker{i}") for i in range(n_takers)])
    sim.persist()

    for _ in range(data.draw(st.integers(5, 80), label="steps")):
        possible = {
            "deliver": bool(sim.net),
            "drop": bool(sim.net),
            "duplicate": bool(sim.net),
            "start": True,
            "retry": bool(sim.pending()),
            "tick": True,
            "give_up": any(t.state is TakerState.REQUESTED for _, t in sim.trades.values()),
            "cancel": bool(sim.desk.open_offers()),
            "restart": True,
            "forget": True,
        }
        action = choose(data, {a: w for a, w in WEIGHTS.items() if possible[a]})
        if action == "start":
            idx = data.draw(st.integers(0, n_takers - 1))
            shown = sorted(o.id for o in sim.desk.open_offers()) or offer_ids  # what the taker's book shows
            offer = sim.stored[data.draw(st.sampled_from(shown))]
            amount = data.draw(st.sampled_from(AMOUNTS))
            amount = offer.remaining if amount == "remaining" else amount
            sim.started += 1
            trade_id = f"{idx:02x}{sim.started:030x}"
            try:
                trade = sim.takers[idx].new_trade(offer, amount, trade_id, sim.now)
            except OTCError:
                continue  # nothing left to take: the taker never asks
            sim.trades[trade_id] = (idx, trade)
            sim.send(trade_id)
        elif action == "deliver":
            sim.deliver(data.draw(st.integers(0, len(sim.net) - 1)))
        elif action == "drop":
            sim.net.pop(data.draw(st.integers(0, len(sim.net) - 1)))
        elif action == "duplicate":
            sim.net.append(sim.net[data.draw(st.integers(0, len(sim.net) - 1))])
        elif action == "retry":
            sim.send(data.draw(st.sampled_from(sim.pending())))
        elif action == "give_up":
            requested = sorted(tid for tid, (_, t) in sim.trades.items() if t.state is TakerState.REQUESTED)
            tid = data.draw(st.sampled_from(requested))
            idx, trade = sim.trades[tid]
            sim.trades[tid] = (
                idx,
                sim.takers[idx].give_up(trade, "ERR_MAKER_UNREACHABLE: no answer", sim.now),
            )
        elif action == "cancel":
            sim.desk.cancel(data.draw(st.sampled_from(sorted(o.id for o in sim.desk.open_offers()))), sim.now)
        elif action == "restart":
            sim.restart(keep_settled=data.draw(st.integers(0, 2)))
        elif action == "forget":
            sim.forget(keep=data.draw(st.integers(0, 1)))
        elif action == "tick":
            sim.now += data.draw(st.integers(0, 400))
            sim.desk.tick(sim.now)
        sim.check()

    # whatever is still in flight arrives late, or never
    while sim.net:
        if data.draw(st.booleans()):
            sim.deliver(0)
        else:
            sim.net.pop(0)
        sim.check()
    # reconciliation: every pending taker keeps asking, reliably, until it knows
    for _ in range(10):
        if not sim.pending():
            break
        sim.now += 100
        sim.desk.tick(sim.now)
        for tid in sim.pending():
            sim.send(tid)
            sim.deliver(len(sim.net) - 1)  # the request
            sim.deliver(len(sim.net) - 1)  # its answer
            sim.check()
    assert not sim.pending(), "every trade reaches a final state"
    desk = sim.desk
    desk.tick(sim.now + 10 * RESERVE)
    sim.check()

    maker_trades = sim.stored_trades  # the desk may have forgotten some: the store has them all
    assert all(t.state is not MakerState.RESERVED for t in maker_trades.values())
    maker_done = {tid for tid, t in maker_trades.items() if t.state is MakerState.DONE}
    taker_done = {tid for tid, (_, t) in sim.trades.items() if t.state is TakerState.DONE}
    assert maker_done == taker_done
    released = sum(t.state is MakerState.RELEASED for t in maker_trades.values())
    event(f"done trades: {min(len(maker_done), 3)}{'+' if len(maker_done) >= 3 else ''}")
    event(f"released reservations: {min(released, 2)}{'+' if released >= 2 else ''}")
    for tid in taker_done:
        assert receipt_is_valid(receipt(sim.trades[tid][1]))
    for tid, (idx, trade) in sim.trades.items():
        mt = maker_trades.get(tid)
        assert mt is None or mt.terms.taker == sim.takers[idx].peer_id
        if trade.state is TakerState.FAILED:
            assert mt is None or mt.state is MakerState.RELEASED


# --- (b) book convergence --------------------------------------------------------------------------------
@dataclass
class History:
    desk: Desk
    updates: list[Offer] = field(default_factory=list)
    snapshots: list[MakerOffers] = field(default_factory=list)  # (stale) authoritative lists along the way
    now: int = T0
    trades: int = 0


def make_history(data: st.DataObject) -> History:
    h = History(Desk(MAKER, "maker", reserve_ms=RESERVE))
    desk, taker = h.desk, Taker(TAKER_IDS[0], "taker")
    for _ in range(data.draw(st.integers(1, 25), label="desk steps")):
        live = sorted(o.id for o in desk.open_offers())
        op = data.draw(st.sampled_from(["create", "fill", "fill", "cancel", "tick"] if live else ["create"]))
        if op == "create":
            offer, effects = desk.create(
                side=data.draw(st.sampled_from(["buy", "sell"])),
                amount=data.draw(st.sampled_from(["1", "2", "0.5"])),
                price=data.draw(st.sampled_from(["9", "10", "9.5", "100"])),
                pair=data.draw(st.sampled_from(["BTC/USD", "ETH/BTC"])),
                min_fill=data.draw(st.sampled_from([None, "0.4"])),
                ttl_ms=data.draw(st.sampled_from([None, None, 1_000, 5_000])),
                now=h.now,
            )
            h.updates += effects.offers
        elif op == "fill":
            offer = desk.offers[data.draw(st.sampled_from(live))]
            amount = data.draw(st.sampled_from(["0.1", "0.5", offer.remaining]))
            h.trades += 1
            try:
                trade = taker.new_trade(offer, amount, f"{h.trades:032x}", h.now)
                reply, effects = desk.take(trade.take, h.now)
                h.updates += effects.offers
                trade = taker.on_reply(trade, reply, h.now)
                conf = taker.next_request(trade)
                assert isinstance(conf, Confirm)
                reply, effects = desk.confirm(conf, h.now)
                h.updates += effects.offers
            except Refusal as refusal:
                h.updates += refusal.effects.offers
            except OTCError:
                pass  # below the minimum fill, expired, ...: nothing changed
        elif op == "cancel":
            h.updates += desk.cancel(data.draw(st.sampled_from(live)), h.now)[1].offers
        else:
            h.now += data.draw(st.integers(0, 3_000))
            h.updates += desk.tick(h.now).offers
        h.snapshots.append(MakerOffers(head=desk.head(h.now, "addr"), offers=desk.open_offers()))
    return h


def replicate(data: st.DataObject, h: History, label: str) -> Book:
    """Deliver the history to a fresh book: random order, drops, duplicates, stale syncs, forgetting."""
    book = Book()
    events: list[tuple[str, int]] = [("update", i) for i in range(len(h.updates))]
    events += [("snapshot", i) for i in range(len(h.snapshots))]
    events += [("forget", 0)]
    order = data.draw(st.lists(st.sampled_from(events), max_size=3 * len(events)), label=label)
    closed_seen: dict[str, int] = {}  # offer id -> seq of a close this book has received
    for kind, i in order:
        if kind == "update":
            offer = h.updates[i]
            result = book.receive(offer, h.now)
            assert result is not Applied.INVALID, offer
            if offer.status != "open":
                closed_seen[offer.id] = offer.seq
        elif kind == "snapshot":
            book.sync(h.snapshots[i], h.now)
        else:
            book.forget_tombstones()
        view = book.makers.get(MAKER.peer_id)
        if view is not None:
            for oid, offer in view.offers.items():
                assert offer.status == "open"
                assert oid not in closed_seen, "a closed offer came back"
                assert offer.seq <= h.desk.seq
    return book


def book_state(book: Book) -> dict[str, Offer]:
    view = book.makers.get(MAKER.peer_id)
    return {} if view is None else dict(view.offers)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_books_converge_to_the_makers_open_offers(data: st.DataObject) -> None:
    h = make_history(data)
    desk = h.desk
    expected = {o.id: o for o in desk.open_offers()}
    head: Head = desk.head(h.now + 1, "addr")
    books = [replicate(data, h, "book A"), replicate(data, h, "book B")]
    for book in books:
        book.sync(MakerOffers(head=head, offers=desk.open_offers()), h.now + 1)
        assert book_state(book) == expected
        assert {oid: o.seq for oid, o in book_state(book).items()} == {
            o.id: o.seq for o in desk.open_offers()
        }
        in_pairs = {oid: o for offers in book.by_pair.values() for oid, o in offers.items()}
        assert in_pairs == expected
        assert book.open_count() == len(expected)
        assert book.makers[MAKER.peer_id].digest_hex == head.digest
        assert book.accept_head(desk.head(h.now + 2, "addr"), h.now + 2) is HeadOutcome.IN_STEP
        # late copies of anything, after the sync and after forgetting tombstones, change nothing
        book.forget_tombstones()
        for offer in h.updates:
            assert book.receive(offer, h.now + 2) is Applied.STALE, offer
        assert book_state(book) == expected
        for pair in ("BTC/USD", "ETH/BTC"):
            bids, asks = book.view(pair, h.now + 2)
            live = {
                o.id for o in expected.values() if o.pair == pair and (o.expires_at or 10**15) > h.now + 2
            }
            assert {o.id for o in bids + asks} == live
    assert book_state(books[0]) == book_state(books[1])
