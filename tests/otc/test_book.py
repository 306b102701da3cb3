"""The replicated book: signature and consistency checks, merge by seq, tombstones, views, liveness,
digest drift and repair by sync."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otc.core.book import Applied, Book
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import Confirm, Departure, MakerOffers, MakerSeen, Offer, Take
from otc.core.signing import sign
from otc.core.taker import Taker

MAKER = Identity.from_seed(bytes([1]) * 32)
OTHER = Identity.from_seed(bytes([2]) * 32)
TAKER = Identity.from_seed(bytes([3]) * 32)
T0 = 1_700_000_000_000
LIVENESS = 8_000


@pytest.fixture
def desk() -> Desk:
    return Desk(MAKER, "maker", reserve_ms=10_000)


@pytest.fixture
def book() -> Book:
    return Book(liveness_ms=LIVENESS)


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
    return book.on_head(desk.head(now, "127.0.0.1:1"), now)


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
    other = Book(liveness_ms=LIVENESS)
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


def test_a_silent_makers_offers_are_hidden_until_it_speaks_again(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    assert visible(book, T0) == []  # never heard a heartbeat: not known to be alive
    assert not heartbeat(book, desk, T0)
    assert visible(book, T0) == [offer.id]
    assert visible(book, T0 + LIVENESS) == [offer.id]
    assert visible(book, T0 + LIVENESS + 1) == []
    assert book.get(offer.id) == offer  # hidden, not deleted
    assert book.peers(T0 + LIVENESS + 1) == []
    heartbeat(book, desk, T0 + 20_000)
    assert visible(book, T0 + 20_000) == [offer.id]
    (peer,) = book.peers(T0 + 20_000)
    assert (peer.peer_id, peer.name, peer.addr, peer.last_seen) == (
        MAKER.peer_id,
        "maker",
        "127.0.0.1:1",
        T0 + 20_000,
    )


def test_a_replayed_heartbeat_does_not_prove_liveness(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    old = desk.head(T0, "a")
    assert not book.on_head(old, T0)
    assert not book.on_head(old, T0 + 20_000)  # the same heartbeat, replayed later
    assert visible(book, T0 + 20_000) == []
    forged = msgspec.structs.replace(desk.head(T0 + 20_000, "a"), name="evil")
    assert not book.on_head(forged, T0 + 20_000)
    assert visible(book, T0 + 20_000) == []


def test_relayed_heartbeats_carry_their_age(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    book.on_seen(MakerSeen(head=desk.head(T0, "a"), age_ms=3_000), T0 + 3_000)
    assert visible(book, T0 + LIVENESS) == [offer.id]
    assert visible(book, T0 + LIVENESS + 1) == []


def test_a_relayed_head_matching_our_copy_shuts_out_staler_copies(book: Book, desk: Desk) -> None:
    """Two snapshot sources: the up-to-date one (no offers of the maker, head matching) is loaded first,
    the stale one (still holding the cancelled offer) after: the stale copy must not come back."""
    a = post(desk)
    cancel(desk, a)
    head = desk.head(T0, "a")
    book.on_seen(MakerSeen(head=head, age_ms=0), T0)  # source Y: nothing of the maker, head matches
    assert book.maker_alive(MAKER.peer_id, T0)
    assert book.receive(a, T0) is Applied.STALE  # source X's stale copy
    assert visible(book, T0) == []


def test_a_relayed_head_not_matching_our_copy_proves_no_liveness(book: Book, desk: Desk) -> None:
    a = post(desk)
    book.on_seen(MakerSeen(head=desk.head(T0, "a"), age_ms=0), T0)  # we hold nothing of it yet
    assert not book.maker_alive(MAKER.peer_id, T0)
    book.receive(a, T0)
    assert visible(book, T0) == []  # until its heartbeat (or a sync) shows our copy is right
    assert not heartbeat(book, desk, T0 + 1) and visible(book, T0 + 1) == [a.id]


def test_an_answered_sync_older_than_the_head_held_proves_no_liveness(book: Book, desk: Desk) -> None:
    """Whoever answers on a maker's name could replay an old reply: it must not keep a dead maker alive."""
    a = post(desk)
    old_reply = MakerOffers(head=desk.head(T0, "a"), offers=desk.open_offers())
    book.receive(a, T0)
    assert not heartbeat(book, desk, T0 + 1_000)
    later = T0 + LIVENESS + 1_001  # silent since T0 + 1 s: hidden
    assert visible(book, later) == []
    book.sync(old_reply, later, answered=True)
    assert visible(book, later) == []


def test_own_offers_are_always_visible(desk: Desk) -> None:
    book = Book(MAKER.peer_id, liveness_ms=LIVENESS)
    offer = post(desk)
    book.apply(offer)
    assert visible(book, T0 + 10**9) == [offer.id]
    assert not book.on_head(desk.head(T0, "a"), T0)  # our own heartbeat is not news


def test_the_network_never_writes_our_own_offers(desk: Desk) -> None:
    """After a restart, peers relay back copies of our offers that our desk has since closed: only the
    desk may write them, or a cancelled offer would reappear in our own book for good."""
    book = Book(MAKER.peer_id, liveness_ms=LIVENESS)
    stale = post(desk)
    head = desk.head(T0, "a")
    cancelled = desk.cancel(stale.id, T0)[0]
    assert book.receive(stale, T0) is Applied.STALE
    assert book.sync(MakerOffers(head=head, offers=[stale]), T0) is None
    assert visible(book, T0) == []
    book.apply(cancelled)
    assert book.receive(stale, T0) is Applied.STALE and visible(book, T0) == []


def test_a_returning_maker_with_a_stale_copy_stays_hidden_until_synced(book: Book, desk: Desk) -> None:
    """Offers the maker closed while it was silent must not show again, not even until the next sync."""
    a, b = post(desk), post(desk)
    book.receive(a, T0)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    later = T0 + LIVENESS + 1
    assert visible(book, later) == []  # silent: hidden
    cancel(desk, a)  # missed
    assert heartbeat(book, desk, later)  # back, and drifted
    assert visible(book, later) == [], "the cancelled offer must not flash back"
    head = desk.head(later, "addr")
    book.sync(MakerOffers(head=head, offers=desk.open_offers()), later)  # relayed: proves no liveness
    assert visible(book, later) == []
    book.sync(MakerOffers(head=head, offers=desk.open_offers()), later, answered=True)  # from the maker
    assert visible(book, later + 1) == [b.id]
    # a returning maker whose pushes outran its heartbeat is still synced before it shows
    cancel(desk, b)  # missed while silent
    stale_head = desk.head(later + 3 + LIVENESS, "addr")
    book.receive(post(desk), later + 3 + LIVENESS)  # the push that outran the head below
    assert book.on_head(stale_head, later + 3 + LIVENESS)
    assert visible(book, later + 3 + LIVENESS) == [], "the cancelled offer must not flash back"
    book.sync(MakerOffers(head=desk.head(later + 3 + LIVENESS, "addr"), offers=desk.open_offers()),
              later + 3 + LIVENESS, answered=True)  # fmt: skip
    assert b.id not in visible(book, later + 3 + LIVENESS) and len(visible(book, later + 3 + LIVENESS)) == 1


def test_a_live_makers_drift_hides_nothing(book: Book, desk: Desk) -> None:
    b = post(desk)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    later = T0
    c = post(desk)
    assert heartbeat(book, desk, later + 2)
    assert visible(book, later + 2) == [b.id]
    book.receive(c, later + 2)
    assert sorted(visible(book, later + 2)) == sorted([b.id, c.id])


def test_makers_silent_for_long_are_forgotten_and_cannot_come_back_stale(desk: Desk) -> None:
    book = Book(OTHER.peer_id, liveness_ms=LIVENESS)
    other = Desk(OTHER, "me")
    mine = post(other)
    book.apply(mine)
    a, b = post(desk), post(desk, price="30001")
    book.receive(a, T0)
    book.receive(b, T0)
    assert not heartbeat(book, desk, T0)
    a_cancelled = cancel(desk, a)
    book.receive(a_cancelled, T0)
    assert book.forget_silent(T0 + 60_000, after_ms=60_000) == []  # not yet
    assert book.forget_silent(T0 + 60_001, after_ms=60_000) == [MAKER.peer_id]
    assert MAKER.peer_id not in book.makers and book.get(b.id) is None
    assert book.open_count() == 1 and visible(book, T0 + 60_001) == [mine.id]  # our own offers stay
    assert book.page("", 10)[0] == [mine]  # and the forgotten ones are no longer relayed to newcomers

    # a replayed copy of the cancelled offer is accepted again, but stays hidden while the maker is silent
    later = T0 + 70_000
    assert book.receive(a, later) is Applied.NEW and a.id not in visible(book, later)
    # the maker speaks again: the head does not match our copy, so everything stays hidden until a sync
    assert heartbeat(book, desk, later)
    assert visible(book, later) == [mine.id]
    book.sync(MakerOffers(head=desk.head(later, "addr"), offers=desk.open_offers()), later)
    assert not book.on_head(desk.head(later + 1, "addr"), later + 1)
    assert sorted(visible(book, later + 1)) == sorted([mine.id, b.id])


def test_updates_of_unheard_makers_are_forgotten_too(book: Book, desk: Desk) -> None:
    a = post(desk)
    book.receive(a, T0)  # no heartbeat ever
    assert book.forget_silent(T0 + 1_000, after_ms=1_000) == []
    assert book.forget_silent(T0 + 1_001, after_ms=1_000) == [MAKER.peer_id]
    assert book.get(a.id) is None


def test_makers_known_only_from_applied_updates_are_forgotten_too(book: Book, desk: Desk) -> None:
    """The peer applies verified batches with ``apply`` (no clock): the first pass starts the clock."""
    a = post(desk)
    book.apply(a)
    assert book.forget_silent(T0, after_ms=1_000) == []
    assert book.forget_silent(T0 + 1_001, after_ms=1_000) == [MAKER.peer_id]
    assert book.get(a.id) is None


# --- digest drift and sync -----------------------------------------------------------------------------
def test_on_head_reports_drift(book: Book, desk: Desk) -> None:
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
    old = desk.head(T0 + 1, "a")
    newer = post(desk)
    book.receive(newer, T0 + 1)  # a push that outran the heartbeat below
    assert not book.on_head(old, T0 + 1)
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
    assert book.on_head(head, T0 + 1)
    changed = book.sync(MakerOffers(head=head, offers=desk.open_offers()), T0 + 1)
    assert changed == 3  # c added, b updated, a closed
    assert held(book) == {o.id: o.seq for o in desk.open_offers()} == {b.id: 5, c.id: 4}
    assert book.get(b.id) == b_filled and book.get(c.id) == c and book.get(a.id) is None
    assert book.makers[MAKER.peer_id].digest_hex == head.digest
    assert visible(book, T0 + 1) == []  # first heard with a head we did not match: hidden until it speaks
    assert not heartbeat(book, desk, T0 + 2)  # (the peer feeds the head of the sync reply here)
    assert sorted(visible(book, T0 + 2)) == sorted([b.id, c.id])
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


# --- goodbye on stop (issue 13) ------------------------------------------------------------------------
def goodbye(identity: Identity, ts: int) -> Departure:
    return sign(identity, Departure(maker=identity.peer_id, ts=ts))


def test_a_signed_goodbye_hides_a_maker_at_once_until_it_is_heard_again(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    heartbeat(book, desk, T0)
    assert visible(book, T0 + 100) == [offer.id]
    assert book.on_departure(goodbye(MAKER, T0 + 100), T0 + 100)
    assert visible(book, T0 + 100) == [] and book.peers(T0 + 100) == []  # at once, not after 8 s
    assert book.get(offer.id) == offer  # hidden, not deleted
    assert not book.on_departure(goodbye(MAKER, T0 + 100), T0 + 200)  # the same goodbye again: nothing
    # a heartbeat sent before the goodbye, arriving after it, does not bring the maker back
    assert not heartbeat(book, desk, T0 + 50)
    assert visible(book, T0 + 200) == []
    # it restarts: a newer head with the same offers shows them again
    heartbeat(book, desk, T0 + 5_000)
    assert visible(book, T0 + 5_000) == [offer.id]


def test_a_goodbye_that_is_forged_stale_or_replayed_changes_nothing(book: Book, desk: Desk) -> None:
    offer = post(desk)
    book.receive(offer, T0)
    heartbeat(book, desk, T0)
    now = T0 + 1_000
    forged = msgspec.structs.replace(goodbye(OTHER, now), maker=MAKER.peer_id)  # another key's signature
    unsigned = Departure(maker=MAKER.peer_id, ts=now)
    older = goodbye(MAKER, T0 - 1)  # from before the head we hold: a replay after the maker came back
    future = goodbye(MAKER, now + 2 * LIVENESS + 1)
    for bad in (forged, unsigned, older, future):
        assert not book.on_departure(bad, now)
        assert visible(book, now) == [offer.id]
    assert not book.on_departure(goodbye(OTHER, now), now)  # a maker we never heard: nothing to hide
    assert OTHER.peer_id not in book.makers or book.makers[OTHER.peer_id].departed == 0
