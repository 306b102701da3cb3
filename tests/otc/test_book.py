"""The replicated book: signature and consistency checks, merge by seq, tombstones, views, liveness by
heads and death notices, equivocation, bounds, digest drift and repair by sync, shared bases."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otc.core import limits as L
from otc.core.book import Applied, Book, HeadOutcome, MakerView
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import Confirm, Head, MakerOffers, Offer, Take
from otc.core.notices import sign_death
from otc.core.signing import sign
from otc.core.taker import Taker

MAKER = Identity.from_seed(bytes([1]) * 32)
OTHER = Identity.from_seed(bytes([2]) * 32)
TAKER = Identity.from_seed(bytes([3]) * 32)
T0 = 1_700_000_000_000
ACCUSER = Identity.from_seed(bytes([4]) * 32)


@pytest.fixture
def desk() -> Desk:
    return Desk(MAKER, "maker", reserve_ms=10_000)


@pytest.fixture
def book() -> Book:
    return Book()


def post(desk: Desk, now: int = T0, **fields: Any) -> Offer:
    args: dict[str, Any] = {"side": "sell", "amount": "2", "price": "30000", "pair": "BTC/USD"} | fields
    return desk.create(now=now, **args)[0]


def cancel(desk: Desk, offer: Offer, now: int = T0) -> Offer:
    return desk.cancel(offer.id, now)[0]


_trades = iter(range(1, 10**9))


def fill(desk: Desk, offer: Offer, amount: str, now: int = T0) -> Offer:
    """Fill through the real protocol; returns the offer update it produced."""
    taker = Taker(TAKER, "taker")
    trade = taker.new_trade(offer, amount, f"{next(_trades):032x}", now)
    req = taker.next_request(trade)
    assert isinstance(req, Take)
    trade = taker.on_reply(trade, desk.take(req, now)[0], now)
    conf = taker.next_request(trade)
    assert isinstance(conf, Confirm)
    _, effects = desk.confirm(conf, now)
    (update,) = effects.offers
    return update


def heartbeat(book: Book, desk: Desk, now: int) -> bool:
    """The maker's head as of now reaches the book; True when our copy drifted from it."""
    return book.accept_head(desk.head(now, "127.0.0.1:1"), now) is HeadOutcome.DRIFT


def kill(book: Book, head: Head, now: int) -> bool:
    return book.apply_death(sign_death(ACCUSER, head, now), now)


def held(book: Book, maker: str = MAKER.peer_id) -> dict[str, int]:
    view = book.makers.get(maker)
    return {} if view is None else {oid: o.seq for oid, o in view.offers.items()}


def visible(book: Book, now: int, pair: str = "BTC/USD") -> list[str]:
    bids, asks = book.view(pair, now)
    return [o.id for o in bids + asks]


def resign(identity: Identity, offer: Offer, **changes: Any) -> Offer:
    return sign(identity, msgspec.structs.replace(offer, **changes, sig=""))


# --- receive: authenticity and consistency -------------------------------------------------------------
def test_receive_applies_a_makers_updates_in_order(book: Book, desk: Desk) -> None:
    offer = post(desk)
    assert book.receive(offer, T0) is Applied.NEW
    assert book.get(offer.id) == offer and held(book) == {offer.id: 1}
    filled = fill(desk, offer, "0.5")
    assert book.receive(filled, T0) is Applied.UPDATED
    assert book.get(offer.id) == filled and held(book) == {offer.id: 2}
    closed = cancel(desk, offer)
    assert book.receive(closed, T0) is Applied.CLOSED
    assert book.get(offer.id) is None and held(book) == {} and book.open_count() == 0
    assert book.makers[MAKER.peer_id].tombstones == {offer.id: 3}


def test_forged_signatures_are_invalid(book: Book, desk: Desk) -> None:
    offer = post(desk)
    forgeries = [
        msgspec.structs.replace(offer, price="1"),  # tampered, old signature kept
        msgspec.structs.replace(offer, remaining="1"),
        msgspec.structs.replace(offer, seq=99),
        msgspec.structs.replace(offer, status="cancelled"),
        msgspec.structs.replace(offer, maker_name="someone"),
        msgspec.structs.replace(offer, sig=""),
        sign(OTHER, offer),  # signed by someone who is not the maker it names
        resign(OTHER, offer, maker=MAKER.peer_id, price="1"),
        msgspec.structs.replace(offer, maker=OTHER.peer_id),  # the maker's signature, another maker's name
    ]
    for forged in forgeries:
        assert book.receive(forged, T0) is Applied.INVALID, forged
    assert book.makers == {} and book.open_count() == 0
    assert book.receive(offer, T0) is Applied.NEW


@pytest.mark.parametrize(
    "changes",
    [
        {"remaining": "3"},  # more than the amount
        {"remaining": "0"},  # nothing left but still open
        {"status": "filled"},  # filled with something left
        {"min_fill": "3"},
        {"expires_at": T0},  # expires when created
        {"expires_at": T0 - 1},
        {"price": "30000.001"},  # too many places for the pair
        {"amount": "2.000000001", "remaining": "2.000000001"},
        {"amount": "21000001", "remaining": "21000001"},
        {"price": "100000001"},
        {"pair": "BTC/XYZ"},
    ],
)
def test_inconsistent_offers_are_invalid_even_when_signed(
    book: Book, desk: Desk, changes: dict[str, Any]
) -> None:
    offer = resign(MAKER, post(desk), **changes)
    assert book.receive(offer, T0) is Applied.INVALID
    assert book.open_count() == 0 and held(book) == {}


def test_stale_and_replayed_updates(book: Book, desk: Desk) -> None:
    offer = post(desk)
    first = fill(desk, offer, "0.5")
    second = fill(desk, first, "0.5")
    assert book.receive(offer, T0) is Applied.NEW
    assert book.receive(offer, T0) is Applied.STALE  # duplicate
    assert book.receive(second, T0) is Applied.UPDATED  # skipping one is fine: every update is whole
    assert book.receive(first, T0) is Applied.STALE  # older, arrived late
    assert book.receive(second, T0) is Applied.STALE
    assert book.get(offer.id) == second and book.get(offer.id).remaining == "1"  # type: ignore[union-attr]


def test_a_closed_offer_never_comes_back(book: Book, desk: Desk) -> None:
    offer = post(desk)
    partly = fill(desk, offer, "1")
    closed = cancel(desk, offer)
    assert book.receive(offer, T0) is Applied.NEW
    assert book.receive(closed, T0) is Applied.CLOSED
    for old in (offer, partly, closed):
        assert book.receive(old, T0) is Applied.STALE
    heartbeat(book, desk, T0)
    assert book.get(offer.id) is None and visible(book, T0) == []
    # the same when the close arrives before anything else
    other = Book()
    assert other.receive(closed, T0) is Applied.CLOSED
    assert other.receive(offer, T0) is Applied.STALE
    assert other.receive(partly, T0) is Applied.STALE
    assert other.get(offer.id) is None


def test_term_changes_are_refused(book: Book, desk: Desk) -> None:
    offer = post(desk, amount="2", min_fill="0.5", ttl_ms=60_000)
    partly = fill(desk, offer, "1")
    assert book.receive(partly, T0) is Applied.NEW
    for changes in (
        {"price": "29000"},
        {"side": "buy"},
        {"amount": "3"},
        {"min_fill": "0.6"},
        {"min_fill": None},
        {"created_at": T0 + 1},
        {"expires_at": T0 + 70_000},
        {"expires_at": None},
        {"pair": "BTC/EUR"},
        {"remaining": "1.5"},  # remaining may only shrink
        {"remaining": "2", "status": "cancelled"},
        {"price": "1", "status": "cancelled"},
    ):
        contradicting = resign(MAKER, partly, seq=50, **changes)
        assert book.receive(contradicting, T0) is Applied.INVALID, changes
        assert book.get(offer.id) == partly
    assert book.receive(resign(MAKER, partly, seq=50, remaining="0.5"), T0) is Applied.UPDATED


def test_offers_of_different_makers_are_independent(book: Book, desk: Desk) -> None:
    other = Desk(OTHER, "other")
    a, b = post(desk), post(other)
    assert book.receive(a, T0) is Applied.NEW and book.receive(b, T0) is Applied.NEW
    assert a.seq == b.seq == 1 and a.id != b.id
    assert book.receive(cancel(other, b), T0) is Applied.CLOSED
    assert book.get(a.id) == a and held(book) == {a.id: 1} and held(book, OTHER.peer_id) == {}


def test_another_maker_cannot_take_over_an_offer_id(book: Book, desk: Desk) -> None:
    """Offer ids index the whole book, and anyone can sign an offer with any id: a second maker reusing an
    id held open must be refused, or it shadows the genuine offer and, once closed, corrupts the index."""
    evil = Desk(OTHER, "evil")
    genuine = post(desk, price="100")
    assert book.receive(genuine, T0) is Applied.NEW
    heartbeat(book, desk, T0)
    heartbeat(book, evil, T0)
    own = post(evil, price="50")
    clash = resign(OTHER, own, id=genuine.id)
    elsewhere = resign(OTHER, post(evil, price="0.5", pair="ETH/BTC"), id=genuine.id)
    for update in (clash, elsewhere, resign(OTHER, evil.cancel(own.id, T0)[0], id=genuine.id)):
        assert book.receive(update, T0) is Applied.INVALID
        assert book.view("BTC/USD", T0) == ([], [genuine])
        assert book.view("ETH/BTC", T0) == ([], [])
        assert book.get(genuine.id) == genuine and book.open_count() == 1
    assert book.receive(cancel(desk, genuine), T0) is Applied.CLOSED
    assert book.view("BTC/USD", T0) == ([], []) and book.open_count() == 0


# --- view ----------------------------------------------------------------------------------------------
def test_view_orders_best_price_first_then_oldest(book: Book, desk: Desk) -> None:
    bids = {p: post(desk, side="buy", price=p) for p in ("9", "10", "9.5", "100", "0.99")}
    asks = {p: post(desk, side="sell", price=p) for p in ("10", "9", "100", "9.5", "10.01")}
    late = post(desk, side="sell", price="10", now=T0 + 5)
    early = post(desk, side="sell", price="10", now=T0 - 5)  # created after `late`, but older
    other_pair = post(desk, side="sell", price="1", pair="BTC/EUR")
    for offer in [*bids.values(), *asks.values(), late, early, other_pair]:
        book.receive(offer, T0)
    heartbeat(book, desk, T0)
    got_bids, got_asks = book.view("BTC/USD", T0)
    assert [o.price for o in got_bids] == ["100", "10", "9.5", "9", "0.99"]
    assert [o.price for o in got_asks] == ["9", "9.5", "10", "10", "10", "10.01", "100"]
    assert [o.id for o in got_asks if o.price == "10"] == [early.id, asks["10"].id, late.id]
    assert book.view("BTC/EUR", T0) == ([], [other_pair])
    assert book.view("ETH/USD", T0) == ([], [])


def test_equal_price_and_age_falls_back_to_id(book: Book, desk: Desk) -> None:
    offers = [post(desk, price="5") for _ in range(4)]
    for offer in offers:
        book.receive(offer, T0)
    heartbeat(book, desk, T0)
    assert [o.id for o in book.view("BTC/USD", T0)[1]] == sorted(o.id for o in offers)


def test_expired_offers_are_hidden_by_time_alone(book: Book, desk: Desk) -> None:
    offer = post(desk, ttl_ms=1_000)
    keep = post(desk)
    book.receive(offer, T0)
    book.receive(keep, T0)
    heartbeat(book, desk, T0)
    assert sorted(visible(book, T0 + 999)) == sorted([offer.id, keep.id])
    assert visible(book, T0 + 1_000) == [keep.id]
    assert not book.is_visible(offer, T0 + 1_000)
    assert book.get(offer.id) == offer  # hidden, not yet forgotten
    desk.tick(T0 + 1_000)
    assert book.receive(desk.offers[offer.id], T0 + 1_000) is Applied.CLOSED
    assert book.get(offer.id) is None


def test_a_maker_shows_from_its_first_matching_head_until_a_notice_covers_it(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    assert visible(book, T0) == []  # never heard a head: not known to be alive
    assert not heartbeat(book, desk, T0)
    assert visible(book, T0) == [offer.id]
    assert visible(book, T0 + 10**9) == [offer.id]  # no heartbeats: alive until declared dead
    head = book.makers[MAKER.peer_id].head
    assert head is not None and kill(book, head, T0 + 5)
    assert visible(book, T0 + 5) == [] and book.peers(T0 + 5) == []
    assert book.get(offer.id) == offer  # hidden, not deleted
    (peer,) = book.peers(T0 + 5, hidden=True)
    assert (peer.peer_id, peer.name, peer.addr, peer.last_seen) == (MAKER.peer_id, "maker", "127.0.0.1:1", T0)
    assert not kill(book, head, T0 + 6)  # the same death again changes nothing
    # the maker refutes with a newer head of its own: back at once (our copy matches it)
    assert not heartbeat(book, desk, T0 + 20_000)
    assert visible(book, T0 + 20_000) == [offer.id]
    assert book.peers(T0 + 20_000)[0].last_seen == T0 + 20_000


def test_a_notice_about_an_older_head_is_stale(book: Book, desk: Desk) -> None:
    old = desk.head(T0, "a")
    offer = post(desk)
    book.receive(offer, T0)
    assert not heartbeat(book, desk, T0 + 1)
    assert not kill(book, old, T0 + 2)  # it named a head older than the one we hold
    assert visible(book, T0 + 2) == [offer.id]


def test_a_replayed_or_forged_head_proves_nothing(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    old = desk.head(T0, "a")
    assert book.accept_head(old, T0) is HeadOutcome.IN_STEP
    assert kill(book, old, T0 + 1)
    assert book.accept_head(old, T0 + 20_000) is HeadOutcome.IGNORED  # replayed: the notice covers it
    assert visible(book, T0 + 20_000) == []
    forged = msgspec.structs.replace(desk.head(T0 + 20_000, "a"), name="evil")
    assert book.accept_head(forged, T0 + 20_000) is HeadOutcome.IGNORED
    assert visible(book, T0 + 20_000) == []


def test_a_head_matching_our_copy_shuts_out_staler_copies(book: Book, desk: Desk) -> None:
    """Two snapshot sources: the up-to-date one (no offers of the maker, head matching) is loaded first,
    the stale one (still holding the cancelled offer) after: the stale copy must not come back."""
    a = post(desk)
    cancel(desk, a)
    head = desk.head(T0, "a")
    assert book.sync(MakerOffers(head=head, offers=[]), T0) == 0  # source Y: nothing of it, head matches
    assert book.maker_alive(MAKER.peer_id, T0)
    assert book.receive(a, T0) is Applied.STALE  # source X's stale copy
    assert visible(book, T0) == []


def test_a_new_makers_head_not_matching_our_copy_keeps_it_hidden(book: Book, desk: Desk) -> None:
    a = post(desk)
    assert heartbeat(book, desk, T0)  # we hold nothing of it yet
    assert not book.maker_alive(MAKER.peer_id, T0)
    book.receive(a, T0)
    assert visible(book, T0) == []  # until a head (or a sync) shows our copy is right
    assert not heartbeat(book, desk, T0 + 1) and visible(book, T0 + 1) == [a.id]


def test_a_sync_covered_by_a_notice_does_not_revive(book: Book, desk: Desk) -> None:
    """Whoever answers on a maker's name could replay its list: it must not bring back a dead maker."""
    a = post(desk)
    reply = MakerOffers(head=desk.head(T0, "a"), offers=desk.open_offers())
    book.receive(a, T0)
    assert not heartbeat(book, desk, T0 + 1_000)
    assert kill(book, book.makers[MAKER.peer_id].head, T0 + 2_000)  # type: ignore[arg-type]
    book.sync(reply, T0 + 3_000)
    assert visible(book, T0 + 3_000) == []


def test_own_offers_are_always_visible(desk: Desk) -> None:
    book = Book(MAKER.peer_id)
    offer = post(desk)
    book.apply(offer)
    assert visible(book, T0 + 10**9) == [offer.id]
    assert book.accept_head(desk.head(T0, "a"), T0) is HeadOutcome.IGNORED  # our own head is not news
    assert not kill(book, desk.head(T0, "a"), T0)  # nor is a notice about us: we refute it elsewhere
    assert visible(book, T0) == [offer.id]


def test_the_network_never_writes_our_own_offers(desk: Desk) -> None:
    """After a restart, peers relay back copies of our offers that our desk has since closed: only the
    desk may write them, or a cancelled offer would reappear in our own book for good."""
    book = Book(MAKER.peer_id)
    stale = post(desk)
    head = desk.head(T0, "a")
    cancelled = desk.cancel(stale.id, T0)[0]
    assert book.receive(stale, T0) is Applied.STALE
    assert book.sync(MakerOffers(head=head, offers=[stale]), T0) is None
    assert visible(book, T0) == []
    book.apply(cancelled)
    assert book.receive(stale, T0) is Applied.STALE and visible(book, T0) == []


def test_a_returning_maker_with_a_stale_copy_stays_hidden_until_synced(book: Book, desk: Desk) -> None:
    """Offers the maker closed while it was dead to us must not show again, not even until the sync."""
    a, b = post(desk), post(desk)
    book.receive(a, T0)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    assert kill(book, book.makers[MAKER.peer_id].head, T0 + 1)  # type: ignore[arg-type]
    later = T0 + 10_000
    assert visible(book, later) == []
    cancel(desk, a)  # missed
    assert heartbeat(book, desk, later)  # back, and drifted
    assert visible(book, later) == [], "the cancelled offer must not flash back"
    head = desk.head(later + 1, "addr")
    book.sync(MakerOffers(head=head, offers=desk.open_offers()), later + 1)  # the list its head commits to
    assert visible(book, later + 1) == [b.id]
    # a returning maker whose pushes outran its head is still synced before it shows
    assert kill(book, head, later + 2)
    cancel(desk, b)  # missed while dead to us
    stale_head = desk.head(later + 3, "addr")
    book.receive(post(desk), later + 3)  # the push that outran the head below
    assert book.accept_head(stale_head, later + 3) is HeadOutcome.DRIFT
    assert visible(book, later + 3) == [], "the cancelled offer must not flash back"
    book.sync(MakerOffers(head=desk.head(later + 4, "addr"), offers=desk.open_offers()), later + 4)
    assert b.id not in visible(book, later + 4) and len(visible(book, later + 4)) == 1


def test_a_restarted_maker_is_hidden_until_synced(book: Book, desk: Desk) -> None:
    a = post(desk)
    book.receive(a, T0)
    assert not heartbeat(book, desk, T0)
    cancel(desk, a)  # missed while it restarted
    assert book.accept_head(desk.head(T0 + 5, "127.0.0.1:2"), T0 + 5) is HeadOutcome.DRIFT  # a new address
    assert visible(book, T0 + 5) == []
    book.sync(MakerOffers(head=desk.head(T0 + 6, "127.0.0.1:2"), offers=desk.open_offers()), T0 + 6)
    assert book.maker_alive(MAKER.peer_id, T0 + 6) and book.get(a.id) is None


def test_a_live_makers_drift_hides_nothing(book: Book, desk: Desk) -> None:
    b = post(desk)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    c = post(desk)
    assert heartbeat(book, desk, T0 + 2)
    assert visible(book, T0 + 2) == [b.id]
    book.receive(c, T0 + 2)
    assert sorted(visible(book, T0 + 2)) == sorted([b.id, c.id])


def forget(book: Book, now: int) -> list[str]:
    return sorted(book.forget(now, dead_after_ms=60_000, silent_after_ms=1_000, proven_after_ms=120_000))


def test_dead_makers_are_forgotten_and_an_old_head_cannot_bring_them_back(desk: Desk) -> None:
    book = Book(OTHER.peer_id)
    other = Desk(OTHER, "me")
    mine = post(other)
    book.apply(mine)
    a, b = post(desk), post(desk, price="30001")
    book.receive(a, T0)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    head = book.makers[MAKER.peer_id].head
    assert head is not None and kill(book, head, T0)
    assert forget(book, T0 + 60_000) == []  # not yet
    assert forget(book, T0 + 60_001) == [MAKER.peer_id]
    assert MAKER.peer_id not in book.makers and book.get(b.id) is None
    assert book.open_count() == 1 and visible(book, T0 + 60_001) == [mine.id]  # our own offers stay
    assert book.page("", 10)[0] == [mine]  # and the forgotten ones are no longer relayed to newcomers
    later = T0 + 70_000
    assert book.accept_head(head, later) is HeadOutcome.IGNORED  # the old head, replayed
    assert book.apply_death(sign_death(ACCUSER, head, later), later) is False
    # replayed copies of its offers, at or below its last seq, are refused too
    assert book.receive(a, later) is Applied.STALE and a.id not in visible(book, later)
    # the maker speaks again with a newer head our copy does not match: hidden until a sync
    cancel(desk, a)
    assert heartbeat(book, desk, later)
    assert visible(book, later) == [mine.id]
    book.sync(MakerOffers(head=desk.head(later, "addr"), offers=desk.open_offers()), later)
    assert sorted(visible(book, later)) == sorted([mine.id, b.id])


def test_updates_of_makers_never_heard_are_forgotten(book: Book, desk: Desk) -> None:
    a = post(desk)
    book.apply(a)  # no head ever (applied without a clock: the first pass starts it)
    assert forget(book, T0) == []
    assert forget(book, T0 + 1_000) == []
    assert forget(book, T0 + 1_001) == [MAKER.peer_id]
    assert book.get(a.id) is None


def test_live_makers_are_never_forgotten_for_silence(book: Book, desk: Desk) -> None:
    book.receive(post(desk), T0)
    assert not heartbeat(book, desk, T0)
    assert forget(book, T0 + 10**9) == []


# --- equivocation and bounds -----------------------------------------------------------------------------
def test_two_heads_with_one_seq_and_different_digests_are_a_conflict(book: Book, desk: Desk) -> None:
    a = post(desk)
    book.receive(a, T0)
    head = desk.head(T0, "a")
    assert book.accept_head(head, T0) is HeadOutcome.IN_STEP
    twin = Desk(MAKER, "maker")  # the same key, another history: seq 1 with another offer
    twin.create(side="buy", amount="1", price="1", pair="BTC/USD", now=T0)
    other = twin.head(T0 + 1, "a")
    assert other.head == head.head and other.digest != head.digest
    assert book.accept_head(other, T0 + 1) is HeadOutcome.CONFLICT
    assert book.accept_head(msgspec.structs.replace(other, sig="0" * 128), T0 + 1) is HeadOutcome.IGNORED
    assert (
        book.accept_head(desk.head(T0 + 2, "a"), T0 + 2) is HeadOutcome.IN_STEP
    )  # a re-signed head is no conflict


def test_a_proof_hides_a_maker_for_good(book: Book, desk: Desk) -> None:
    from otc.core.notices import Verifier, conflict

    a = post(desk)
    book.receive(a, T0)
    assert not heartbeat(book, desk, T0)
    forked = resign(MAKER, a, price="29999")
    assert book.is_news(forked) is False and book.same_seq_copy(forked) == a
    proof = conflict(a, forked)
    assert proof is not None and Verifier().proof(proof)
    assert book.apply_proof(proof, T0) and not book.apply_proof(proof, T0)
    assert visible(book, T0) == [] and book.get(a.id) is None
    assert book.receive(post(desk), T0) is Applied.STALE  # nothing of it is news any more
    assert book.accept_head(desk.head(T0 + 5, "a"), T0 + 5) is HeadOutcome.IGNORED
    assert (peer := book.peers(T0, hidden=True)[0]).peer_id == MAKER.peer_id and peer.name == "maker"
    assert not Verifier().proof(msgspec.structs.replace(proof, offers=[a, a]))


def test_offers_past_the_per_maker_bound_are_refused(desk: Desk) -> None:
    book = Book(max_offers=3)
    offers = [post(desk, price=str(30000 + i)) for i in range(4)]
    assert [book.receive(o, T0) for o in offers] == [Applied.NEW] * 3 + [Applied.REFUSED]
    assert book.accept_head(desk.head(T0, "a"), T0) is HeadOutcome.IGNORED  # it commits to 4 > 3
    assert visible(book, T0) == []
    assert book.receive(cancel(desk, offers[0]), T0) is Applied.CLOSED
    assert book.receive(offers[3], T0) is Applied.NEW
    assert book.accept_head(desk.head(T0, "a"), T0) is HeadOutcome.IN_STEP
    assert Book().max_offers == L.MAX_OFFERS_PER_MAKER


def test_books_sharing_a_base_copy_what_they_change(desk: Desk) -> None:
    head = desk.head(T0, "a")
    base = {MAKER.peer_id: MakerView(head=head, revealed=True, shared=True)}
    one, two = Book(OTHER.peer_id, base=base), Book(TAKER.peer_id, base=base)
    assert one.maker_alive(MAKER.peer_id, T0) and two.maker_alive(MAKER.peer_id, T0)
    offer = post(desk)
    assert one.receive(offer, T0) is Applied.NEW
    assert kill(two, head, T0)
    assert base[MAKER.peer_id].offers == {} and base[MAKER.peer_id].death is None
    assert one.maker_alive(MAKER.peer_id, T0) and not two.maker_alive(MAKER.peer_id, T0)
    assert held(one) == {offer.id: 1} and held(two) == {}
    assert len(one.makers) == 1 and MAKER.peer_id in one.makers and list(two.makers) == [MAKER.peer_id]
    del one.makers[MAKER.peer_id]
    assert MAKER.peer_id not in one.makers and len(one.makers) == 0 and MAKER.peer_id in base


# --- digest drift and sync -----------------------------------------------------------------------------
def test_accept_head_reports_drift(book: Book, desk: Desk) -> None:
    a = post(desk)
    b = post(desk)
    book.receive(a, T0)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0 + 1)  # in step
    assert book.makers[MAKER.peer_id].digest_hex == desk.head(T0, "x").digest
    c = post(desk)  # missed
    assert heartbeat(book, desk, T0 + 2)  # the maker is ahead of us
    book.receive(c, T0)
    assert not heartbeat(book, desk, T0 + 3)
    fill(desk, a, "1")  # missed ...
    d = post(desk)  # ... but a later update arrived: same seq, different digest
    book.receive(d, T0)
    assert book.makers[MAKER.peer_id].max_seq == desk.seq
    assert heartbeat(book, desk, T0 + 4)
    book.receive(desk.offers[a.id], T0)
    assert not heartbeat(book, desk, T0 + 5)


def test_a_heartbeat_older_than_what_we_hold_is_no_drift(book: Book, desk: Desk) -> None:
    first = post(desk)
    book.receive(first, T0)
    assert not heartbeat(book, desk, T0)  # in step, and live
    old = desk.head(T0 + 1, "127.0.0.1:1")
    newer = post(desk)
    book.receive(newer, T0 + 1)  # a push that outran the head below
    assert book.accept_head(old, T0 + 1) is not HeadOutcome.DRIFT
    assert sorted(visible(book, T0 + 1)) == sorted([first.id, newer.id])


def test_sync_repairs_missed_creates_and_cancels(book: Book, desk: Desk) -> None:
    a = post(desk)  # seq 1
    b = post(desk)  # seq 2
    assert book.receive(a, T0) is Applied.NEW and book.receive(b, T0) is Applied.NEW
    # everything below is missed by the book
    a_cancelled = cancel(desk, a)  # 3
    c = post(desk)  # 4
    b_filled = fill(desk, b, "0.5")  # 5
    e = post(desk)  # 6
    e_cancelled = cancel(desk, e)  # 7
    head = desk.head(T0 + 1, "addr")
    assert book.accept_head(head, T0 + 1) is HeadOutcome.DRIFT
    changed = book.sync(MakerOffers(head=head, offers=desk.open_offers()), T0 + 1)
    assert changed == 3  # c added, b updated, a closed
    assert held(book) == {o.id: o.seq for o in desk.open_offers()} == {b.id: 5, c.id: 4}
    assert book.get(b.id) == b_filled and book.get(c.id) == c and book.get(a.id) is None
    assert book.makers[MAKER.peer_id].digest_hex == head.digest
    assert sorted(visible(book, T0 + 1)) == sorted([b.id, c.id])  # the list matches its head: revealed
    # late copies of what was missed change nothing
    for old in (a, a_cancelled, e, e_cancelled, b):
        assert book.receive(old, T0 + 2) is Applied.STALE, old
    assert e.id not in book.makers[MAKER.peer_id].tombstones  # E is refused by the synced_head rule
    assert held(book) == {b.id: 5, c.id: 4}
    # and the book keeps following the maker
    assert book.receive(cancel(desk, c), T0 + 3) is Applied.CLOSED
    assert book.receive(post(desk), T0 + 3) is Applied.NEW


def test_sync_keeps_updates_newer_than_its_head(book: Book, desk: Desk) -> None:
    a = post(desk)
    head = desk.head(T0, "addr")
    listed = desk.open_offers()
    b = post(desk)  # created after the list was taken, and already received
    book.receive(b, T0)
    book.sync(MakerOffers(head=head, offers=listed), T0)
    assert held(book) == {a.id: 1, b.id: 2}


def test_sync_refuses_a_list_the_head_does_not_vouch_for(book: Book, desk: Desk) -> None:
    """Anyone can answer on a maker's service name and replay its genuine signed head: the list must be
    exactly what that head describes (count and digest), or nothing at all is applied."""
    a = post(desk)
    head = desk.head(T0, "addr")
    newer = post(desk)
    stranger = post(Desk(OTHER, "other"))
    for offers in ([a, newer, stranger], [a, newer], [a, stranger], [], [a, a]):
        assert book.sync(MakerOffers(head=head, offers=offers), T0) is None, offers
        assert held(book) == {} and held(book, OTHER.peer_id) == {}
    assert book.sync(MakerOffers(head=head, offers=[a]), T0) == 1
    assert held(book) == {a.id: 1}
    # the attack: a genuine later head replayed with an empty list must not hide the maker's offers
    book.receive(newer, T0)
    later = desk.head(T0 + 1, "addr")
    assert book.sync(MakerOffers(head=later, offers=[]), T0 + 1) is None
    assert held(book) == {a.id: 1, newer.id: 2}
    tampered = msgspec.structs.replace(newer, sig="0" * 128)  # same terms, signature swapped
    assert book.sync(MakerOffers(head=later, offers=[a, tampered]), T0 + 1) is None
    forged_head = msgspec.structs.replace(later, head=99)  # signature no longer matches
    assert book.sync(MakerOffers(head=forged_head, offers=[a, newer]), T0 + 1) is None
    assert book.sync(MakerOffers(head=later, offers=[a, newer]), T0 + 1) == 0  # nothing new, all valid
    assert held(book) == {a.id: 1, newer.id: 2}


def test_forgetting_tombstones_keeps_closed_offers_closed(book: Book, desk: Desk) -> None:
    a = post(desk)  # 1
    b = post(desk)  # 2
    book.receive(a, T0)
    book.receive(b, T0)
    a_closed = cancel(desk, a)  # 3
    assert book.receive(a_closed, T0) is Applied.CLOSED
    assert book.forget_tombstones() == 0  # not yet covered by a sync
    book.sync(MakerOffers(head=desk.head(T0, "x"), offers=desk.open_offers()), T0)
    b_closed = cancel(desk, b)  # 4: above the synced head
    assert book.receive(b_closed, T0) is Applied.CLOSED
    assert book.forget_tombstones() == 1
    assert book.makers[MAKER.peer_id].tombstones == {b.id: 4}
    for old in (a, a_closed, b, b_closed):
        assert book.receive(old, T0) is Applied.STALE, old
    book.sync(MakerOffers(head=desk.head(T0 + 1, "x"), offers=desk.open_offers()), T0 + 1)
    assert book.forget_tombstones() == 1
    assert book.makers[MAKER.peer_id].tombstones == {}
    for old in (a, a_closed, b, b_closed):
        assert book.receive(old, T0 + 1) is Applied.STALE, old
    assert book.open_count() == 0 and visible(book, T0 + 1) == []


# --- the price-time index under churn ------------------------------------------------------------------
@given(st.lists(st.tuples(st.sampled_from(["add", "fill", "cancel"]), st.integers(0, 40), st.booleans()),
                max_size=120))  # fmt: skip
@settings(max_examples=150, deadline=None)
def test_index_matches_a_naive_sort_under_churn(ops: list[tuple[str, int, bool]]) -> None:
    """Lazy removal and compaction never change what a side shows: it equals a plain sort of the open
    offers by price (best first), then age."""
    desk = Desk(MAKER, "maker")
    book = Book(MAKER.peer_id)  # our own offers: always live
    open_: list[Offer] = []
    for op, n, buy in ops:
        if op == "add" or not open_:
            offer = post(desk, now=T0 + n, side="buy" if buy else "sell", price=str(100 + n % 7))
            book.apply(offer)
            open_.append(offer)
            continue
        victim = open_[n % len(open_)]
        update = cancel(desk, victim) if op == "cancel" else fill(desk, victim, "0.5")
        assert book.apply(update) in (Applied.UPDATED, Applied.CLOSED)
        open_.remove(victim)
        if update.status == "open":
            open_.append(update)
    for side, sign_ in (("buy", -1), ("sell", 1)):
        expected = sorted((o for o in open_ if o.side == side),
                          key=lambda o: (sign_ * Decimal(o.price), o.created_at, o.id))  # fmt: skip
        assert book.side("BTC/USD", side, T0) == expected
        assert book.best("BTC/USD", side, T0) == (expected[0] if expected else None)
    assert book.open_count() == len(open_)
