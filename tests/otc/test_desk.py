"""The maker's desk and the taker, driven directly (no network): validation, the take/confirm protocol,
refusals (signed, bound to the request they refuse), idempotency, reservation deadlines, what a taker
may hold (new takers, strikes, suspension), cancellation, expiry and restoring from storage."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from otc.core import errors as E
from otc.core import limits
from otc.core.desk import Desk, Refusal
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Confirm, Offer, Take, TradeRefusal
from otc.core.money import D
from otc.core.offer import check_consistent, content_hash, digest, offer_id
from otc.core.signing import is_signed, receipt_is_valid, receipt_of, request_digest, sign, signing_bytes
from otc.core.taker import Taker, receipt
from otc.core.trade import MakerState, MakerTrade, TakerState, TakerTrade

MAKER = Identity.from_seed(bytes([1]) * 32)
ALICE = Identity.from_seed(bytes([2]) * 32)
BOB = Identity.from_seed(bytes([3]) * 32)
T0 = 1_700_000_000_000
RESERVE = 10_000


def tid(n: int) -> str:
    return f"{n:032x}"


def know(desk: Desk, *takers: Identity) -> Desk:
    """Takers the desk has traded with: their reservations hold whatever they ask (see limits.py)."""
    for taker in takers:
        desk._taker(taker.peer_id).known = True
    return desk


@pytest.fixture
def desk() -> Desk:
    """A desk that knows alice and bob (the protocol tests); newcomers have their own tests below."""
    return know(Desk(MAKER, "maker", reserve_ms=RESERVE), ALICE, BOB)


@pytest.fixture
def alice() -> Taker:
    return Taker(ALICE, "alice")


@pytest.fixture
def bob() -> Taker:
    return Taker(BOB, "bob")


def post(desk: Desk, now: int = T0, **fields: Any) -> Offer:
    args: dict[str, Any] = {"side": "sell", "amount": "2", "price": "30000", "pair": "BTC/USD"} | fields
    offer, effects = desk.create(now=now, **args)
    assert effects.offers == [offer] and not effects.trades
    return offer


def refused(code: str, fn: Any, *args: Any, **kwargs: Any) -> OTCError:
    with pytest.raises(OTCError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def reserve(desk: Desk, taker: Taker, offer: Offer, amount: str, n: int, now: int = T0) -> TakerTrade:
    trade = taker.new_trade(offer, amount, tid(n), now)
    req = taker.next_request(trade)
    assert isinstance(req, Take)
    reply, effects = desk.take(req, now)
    assert [t.terms.id for t in effects.trades] == [tid(n)]
    # what a reservation holds is published only if it outlasts a round trip (tick): not here
    assert effects.offers == []
    trade = taker.on_reply(trade, reply, now)
    assert trade.state is TakerState.RESERVED
    return trade


def confirm(desk: Desk, taker: Taker, trade: TakerTrade, now: int = T0) -> TakerTrade:
    req = taker.next_request(trade)
    assert isinstance(req, Confirm)
    reply, _ = desk.confirm(req, now)
    return taker.on_reply(trade, reply, now)


def trade_done(desk: Desk, taker: Taker, offer: Offer, amount: str, n: int, now: int = T0) -> TakerTrade:
    trade = confirm(desk, taker, reserve(desk, taker, offer, amount, n, now), now)
    assert trade.state is TakerState.DONE
    return trade


def maker_receipt(desk: Desk, trade_id: str) -> Any:
    mt = desk.trades[trade_id]
    assert mt.state is MakerState.DONE and mt.taker_sig is not None
    return receipt_of(mt.terms, mt.maker_sig, mt.taker_sig)


def snapshot(desk: Desk) -> Any:
    return (
        desk.seq,
        dict(desk.offers),
        dict(desk.reserved),
        {k: msgspec.to_builtins(v) for k, v in desk.trades.items()},
    )


# --- create ------------------------------------------------------------------------------------------
def test_create_signs_a_canonical_open_offer(desk: Desk) -> None:
    offer = post(desk, amount="1.50", price="30000.10", min_fill="0.5", ttl_ms=60_000)
    assert desk.seq == 1 and offer.seq == 1
    assert offer.id == offer_id(MAKER.peer_id, 1)
    assert (offer.amount, offer.remaining, offer.price, offer.min_fill) == ("1.5", "1.5", "30000.1", "0.5")
    assert offer.status == "open" and offer.created_at == T0 and offer.expires_at == T0 + 60_000
    assert offer.maker == MAKER.peer_id and offer.maker_name == "maker"
    assert is_signed(offer)
    assert desk.offers[offer.id] == offer and desk.open_offers() == [offer]
    second = post(desk)
    assert second.seq == 2 and second.id != offer.id and second.expires_at is None


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"side": "short"}, E.ERR_INVALID_SIDE),
        ({"side": "BUY"}, E.ERR_INVALID_SIDE),
        ({"side": None}, E.ERR_INVALID_SIDE),
        ({"amount": "0"}, E.ERR_INVALID_AMOUNT),
        ({"amount": "-1"}, E.ERR_INVALID_AMOUNT),
        ({"amount": 1.5}, E.ERR_INVALID_AMOUNT),
        ({"amount": "1.123456789"}, E.ERR_INVALID_AMOUNT),
        ({"amount": "21000001"}, E.ERR_INVALID_AMOUNT),
        ({"amount": "NaN"}, E.ERR_INVALID_AMOUNT),
        ({"amount": ""}, E.ERR_INVALID_AMOUNT),
        ({"min_fill": "3"}, E.ERR_INVALID_AMOUNT),  # above the amount
        ({"min_fill": "0"}, E.ERR_INVALID_AMOUNT),
        ({"min_fill": "0.000000001"}, E.ERR_INVALID_AMOUNT),
        ({"price": "0"}, E.ERR_INVALID_PRICE),
        ({"price": "30000.001"}, E.ERR_INVALID_PRICE),
        ({"price": 30000.5}, E.ERR_INVALID_PRICE),
        ({"price": "Infinity"}, E.ERR_INVALID_PRICE),
        ({"price": "100000000.01"}, E.ERR_INVALID_PRICE),
        ({"pair": "BTC/XYZ"}, E.ERR_UNKNOWN_PAIR),
        ({"pair": None}, E.ERR_UNKNOWN_PAIR),
        ({"ttl_ms": 0}, E.ERR_INVALID_TTL),
        ({"ttl_ms": -5}, E.ERR_INVALID_TTL),
        ({"ttl_ms": 1.5}, E.ERR_INVALID_TTL),
        ({"ttl_ms": "1000"}, E.ERR_INVALID_TTL),
        ({"ttl_ms": True}, E.ERR_INVALID_TTL),
        ({"ttl_ms": 30 * 24 * 3600 * 1000 + 1}, E.ERR_INVALID_TTL),
    ],
)
def test_create_validates_and_a_failed_create_changes_nothing(
    desk: Desk, fields: dict[str, Any], code: str
) -> None:
    post(desk)
    before = snapshot(desk)
    head = desk.head(T0, "addr")
    args: dict[str, Any] = {"side": "sell", "amount": "2", "price": "30000", "pair": "BTC/USD"} | fields
    refused(code, desk.create, now=T0 + 1, **args)
    assert snapshot(desk) == before
    assert desk.seq == 1 and len(desk.offers) == 1
    assert desk.head(T0, "addr") == head


def test_ttl_bounds_are_inclusive(desk: Desk) -> None:
    assert post(desk, ttl_ms=1).expires_at == T0 + 1
    assert post(desk, ttl_ms=30 * 24 * 3600 * 1000).expires_at == T0 + 30 * 24 * 3600 * 1000


def test_too_many_open_offers() -> None:
    desk = Desk(MAKER, "maker", max_open_offers=2)
    first = post(desk)
    post(desk)
    refused(E.ERR_TOO_MANY_OFFERS, desk.create, side="buy", amount="1", price="1", pair="BTC/USD", now=T0)
    assert desk.seq == 2
    desk.cancel(first.id, T0)
    post(desk)  # a closed offer frees its slot


# --- take -> confirm ---------------------------------------------------------------------------------
def test_happy_path_both_sides_hold_the_same_receipt(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = alice.new_trade(offer, "0.5", tid(1), T0)
    assert trade.state is TakerState.REQUESTED and trade.maker == MAKER.peer_id
    take = alice.next_request(trade)
    assert isinstance(take, Take) and is_signed(take)

    reply, effects = desk.take(take, T0 + 1)
    assert reply.status == "reserved" and reply.reserved_until == T0 + 1 + RESERVE
    assert reply.terms.amount == "0.5" and reply.terms.price == "30000" and reply.terms.side == "sell"
    assert reply.terms.taker == ALICE.peer_id and reply.terms.maker == MAKER.peer_id
    assert effects.trades[0].state is MakerState.RESERVED
    assert desk.reserved == {offer.id: Decimal("0.5")}
    assert effects.offers == [] and desk.offers[offer.id] == offer and desk.seq == 1
    # what is held is published only once it has lasted longer than a confirm takes
    assert desk.next_deadline() == T0 + 1 + desk.publish_holds_ms

    trade = alice.on_reply(trade, reply, T0 + 2)
    assert trade.state is TakerState.RESERVED
    conf = alice.next_request(trade)
    assert isinstance(conf, Confirm) and conf.trade_id == tid(1)

    reply, effects = desk.confirm(conf, T0 + 3)
    assert reply.status == "done" and reply.taker_sig == conf.taker_sig
    filled = desk.offers[offer.id]
    assert effects.offers == [filled] and is_signed(filled)
    assert effects.trades[0].state is MakerState.DONE
    assert (filled.remaining, filled.reserved, filled.status, filled.seq) == ("1.5", "0", "open", 2)
    assert not desk.tick(T0 + 3 + desk.publish_holds_ms)  # nothing held, nothing left to publish
    assert desk.reserved == {}

    trade = alice.on_reply(trade, reply, T0 + 4)
    assert trade.state is TakerState.DONE
    assert alice.next_request(trade) is None
    mine = receipt(trade)
    assert receipt_is_valid(mine)
    assert mine == maker_receipt(desk, tid(1))
    assert mine.status == "done" and mine.amount == "0.5"


def test_partial_fills_update_remaining_and_seq(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk, amount="1")
    trade_done(desk, alice, offer, "0.3", 1)
    assert desk.offers[offer.id].remaining == "0.7" and desk.offers[offer.id].seq == 2
    trade_done(desk, bob, offer, "0.25", 2)
    after = desk.offers[offer.id]
    assert (after.remaining, after.status, after.seq, desk.seq) == ("0.45", "open", 3, 3)
    assert desk.open_offers() == [after]


def test_full_fill_closes_the_offer(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk, amount="1")
    trade_done(desk, alice, offer, "0.4", 1)
    trade_done(desk, bob, offer, "0.6", 2)
    after = desk.offers[offer.id]
    assert (after.remaining, after.status) == ("0", "filled")
    assert desk.open_offers() == []
    trade = alice.new_trade(offer, "0.1", tid(3), T0)
    refused(E.ERR_OFFER_CLOSED, desk.take, alice.next_request(trade), T0)


def test_taking_everything_at_once(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="2", min_fill="1")
    trade_done(desk, alice, offer, "2", 1)
    assert desk.offers[offer.id].status == "filled"


def test_buy_offer(desk: Desk, alice: Taker) -> None:
    offer = post(desk, side="buy", amount="3", price="29000.5", pair="ETH/USD")
    trade = trade_done(desk, alice, offer, "1", 1)
    assert trade.terms is not None and trade.terms.side == "buy" and trade.terms.pair == "ETH/USD"


# --- refusals ----------------------------------------------------------------------------------------
def test_offer_not_found(desk: Desk, alice: Taker) -> None:
    post(desk)
    ghost = post(Desk(BOB, "other"))  # an offer this desk never made
    trade = alice.new_trade(ghost, "1", tid(1), T0)
    refused(E.ERR_OFFER_NOT_FOUND, desk.take, alice.next_request(trade), T0)
    assert desk.trades == {} and desk.reserved == {}


def test_offer_closed_after_cancel(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    cancelled, effects = desk.cancel(offer.id, T0 + 1)
    assert cancelled.status == "cancelled" and cancelled.seq == 2 and effects.offers == [cancelled]
    assert is_signed(cancelled)
    trade = alice.new_trade(offer, "1", tid(1), T0 + 2)
    refused(E.ERR_OFFER_CLOSED, desk.take, alice.next_request(trade), T0 + 2)
    refused(E.ERR_OFFER_CLOSED, desk.cancel, offer.id, T0 + 3)
    refused(E.ERR_OFFER_NOT_FOUND, desk.cancel, tid(99), T0 + 3)
    assert desk.seq == 2


def test_insufficient_remaining(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    trade = alice.new_trade(offer, "1.00000001", tid(1), T0)
    err = refused(E.ERR_INSUFFICIENT_REMAINING, desk.take, alice.next_request(trade), T0)
    assert "reserved" not in err.message
    assert desk.trades == {}


def test_insufficient_remaining_when_the_rest_is_reserved(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk, amount="1")
    reserve(desk, alice, offer, "0.7", 1)
    trade = bob.new_trade(offer, "0.5", tid(2), T0)
    err = refused(E.ERR_INSUFFICIENT_REMAINING, desk.take, bob.next_request(trade), T0)
    assert "reserved" in err.message
    assert desk.reserved == {offer.id: Decimal("0.7")} and tid(2) not in desk.trades
    reserve(desk, bob, offer, "0.3", 3)  # exactly what is still available
    assert desk.reserved == {offer.id: Decimal(1)}
    trade = bob.new_trade(offer, "0.00000001", tid(4), T0)
    refused(E.ERR_INSUFFICIENT_REMAINING, desk.take, bob.next_request(trade), T0)


def test_below_min_fill(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk, amount="1", min_fill="0.4")
    trade = alice.new_trade(offer, "0.39999999", tid(1), T0)
    refused(E.ERR_BELOW_MIN_FILL, desk.take, alice.next_request(trade), T0)
    trade_done(desk, alice, offer, "0.4", 2)  # exactly the minimum is fine
    trade_done(desk, alice, offer, "0.45", 3)
    assert desk.offers[offer.id].remaining == "0.15"  # the rest is now below the minimum fill
    trade = bob.new_trade(offer, "0.1", tid(4), T0)
    refused(E.ERR_BELOW_MIN_FILL, desk.take, bob.next_request(trade), T0)
    trade_done(desk, bob, offer, "0.15", 5)  # ... but taking exactly all of it is allowed
    assert desk.offers[offer.id].status == "filled"


def test_price_changed(desk: Desk, alice: Taker) -> None:
    offer = post(desk, price="30000")
    seen = msgspec.structs.replace(offer, price="29999.99")  # what a stale or lying book showed
    trade = alice.new_trade(seen, "1", tid(1), T0)
    refused(E.ERR_PRICE_CHANGED, desk.take, alice.next_request(trade), T0)
    assert desk.trades == {}


def test_self_trade(desk: Desk) -> None:
    offer = post(desk)
    refused(E.ERR_SELF_TRADE, Taker(MAKER, "me").new_trade, offer, "1", tid(1), T0)
    own = Take(
        trade_id=tid(1),
        offer_id=offer.id,
        amount="1",
        price=offer.price,
        taker=MAKER.peer_id,
        taker_name="me",
        ts=T0,
    )
    take = sign(MAKER, own)
    refused(E.ERR_SELF_TRADE, desk.take, take, T0)
    assert desk.trades == {}


def test_bad_signature_on_a_tampered_take(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="2")
    take = alice.next_request(alice.new_trade(offer, "0.1", tid(1), T0))
    assert isinstance(take, Take)
    for tampered in (
        msgspec.structs.replace(take, amount="2"),
        msgspec.structs.replace(take, taker_name="mallory"),
        msgspec.structs.replace(take, taker=BOB.peer_id),
        msgspec.structs.replace(take, sig=""),
        sign(BOB, take),  # signed, but not by the taker it names
    ):
        refused(E.ERR_BAD_SIGNATURE, desk.take, tampered, T0)
    assert desk.trades == {} and desk.reserved == {}
    desk.take(take, T0)  # the genuine one still works


def test_bad_signature_on_a_confirm(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = reserve(desk, alice, offer, "1", 1)
    conf = alice.next_request(trade)
    assert isinstance(conf, Confirm)
    forged = Confirm(trade_id=conf.trade_id, taker=conf.taker, taker_sig=BOB.sign(b"whatever"))
    refused(E.ERR_BAD_SIGNATURE, desk.confirm, forged, T0)
    assert desk.trades[tid(1)].state is MakerState.RESERVED
    refused(E.ERR_TRADE_NOT_FOUND, desk.confirm, msgspec.structs.replace(conf, taker=BOB.peer_id), T0)
    refused(E.ERR_TRADE_NOT_FOUND, desk.confirm, msgspec.structs.replace(conf, trade_id=tid(2)), T0)
    confirm(desk, alice, trade)
    refused(E.ERR_BAD_SIGNATURE, desk.confirm, forged, T0)  # a done trade does not accept another sig


def test_trade_id_conflict(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk)
    reserve(desk, alice, offer, "1", 1)
    before = snapshot(desk)
    for other in (bob.new_trade(offer, "1", tid(1), T0), alice.new_trade(offer, "0.5", tid(1), T0 + 1)):
        refused(E.ERR_TRADE_ID_CONFLICT, desk.take, other.take, T0)
    assert snapshot(desk) == before


# --- idempotency -------------------------------------------------------------------------------------
def test_same_take_twice_is_answered_the_same_and_reserves_once(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    trade = alice.new_trade(offer, "0.6", tid(1), T0)
    take = alice.next_request(trade)
    assert isinstance(take, Take)
    first, _ = desk.take(take, T0)
    again, no_effects = desk.take(take, T0 + 500)
    assert again == first and not no_effects
    assert desk.reserved == {offer.id: Decimal("0.6")}
    trade = alice.on_reply(trade, first, T0)
    trade = alice.on_reply(trade, again, T0)  # a duplicate answer changes nothing
    assert trade.state is TakerState.RESERVED
    trade = confirm(desk, alice, trade)
    done, _ = desk.take(take, T0 + 600)  # a retried take finds the trade done
    assert done.status == "done"
    assert alice.on_reply(trade, done, T0).state is TakerState.DONE


def test_forgotten_history_recalled_answers_retries_as_before(desk: Desk, alice: Taker, bob: Taker) -> None:
    """The desk keeps recent history; the store keeps it all. A retry about a forgotten trade or closed
    offer, once its record is recalled, gets the answer the first request got and changes nothing."""
    offer = post(desk, amount="2")
    closed = post(desk, amount="1")
    reserved = reserve(desk, alice, offer, "0.5", 1)
    conf = alice.next_request(reserved)
    assert isinstance(conf, Confirm)
    done = confirm(desk, alice, reserved)
    live = reserve(desk, bob, offer, "0.5", 2, T0 + 1)
    desk.cancel(closed.id, T0)
    stored_trade = msgspec.json.decode(msgspec.json.encode(desk.trades[tid(1)]), type=MakerTrade)
    stored_offer = desk.offers[closed.id]
    before = desk.take(done.take, T0 + 5)[0]

    desk.forget_settled(keep=0)
    desk.forget_closed(keep=0)
    assert set(desk.trades) == {tid(2)}, "live reservations are never forgotten"
    assert closed.id not in desk.offers and offer.id in desk.offers

    desk.recall(trade=stored_trade, offer=stored_offer)
    state = snapshot(desk)
    again, effects = desk.take(done.take, T0 + 10)
    assert again == before and not effects
    assert desk.confirm(conf, T0 + 10) == (before, effects)
    late = bob.new_trade(closed, "1", tid(3), T0)
    refused(E.ERR_OFFER_CLOSED, desk.take, bob.next_request(late), T0 + 10)
    assert snapshot(desk) == state
    # a recalled record never overrides what the desk holds, and live ones are never taken back
    desk.recall(trade=msgspec.json.decode(msgspec.json.encode(desk.trades[tid(2)]), type=MakerTrade))
    assert desk.trades[tid(2)].state is MakerState.RESERVED and live.state is TakerState.RESERVED
    assert snapshot(desk) == state


def test_same_confirm_twice_gives_the_same_receipt_and_fills_once(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    trade = reserve(desk, alice, offer, "0.6", 1)
    conf = alice.next_request(trade)
    assert isinstance(conf, Confirm)
    first, _ = desk.confirm(conf, T0)
    seq = desk.seq
    again, no_effects = desk.confirm(conf, T0 + 1)
    assert again == first and not no_effects
    assert desk.seq == seq and desk.offers[offer.id].remaining == "0.4"
    trade = alice.on_reply(trade, first, T0)
    assert alice.on_reply(trade, again, T0) == trade
    # long after the deadline the confirmation is still answered with the receipt
    late, _ = desk.confirm(conf, T0 + 10 * RESERVE)
    assert late == first
    assert desk.tick(T0 + 10 * RESERVE).trades == []


def test_a_lost_reserved_answer_is_recovered_by_retrying_the_take(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = alice.new_trade(offer, "1", tid(1), T0)
    desk.take(alice.next_request(trade), T0)  # type: ignore[arg-type]  # answer lost
    reply, _ = desk.take(alice.next_request(trade), T0 + 100)  # type: ignore[arg-type]
    trade = alice.on_reply(trade, reply, T0 + 100)
    desk.confirm(alice.next_request(trade), T0 + 200)  # type: ignore[arg-type]  # answer lost
    reply, _ = desk.confirm(alice.next_request(trade), T0 + 300)  # type: ignore[arg-type]
    trade = alice.on_reply(trade, reply, T0 + 300)
    assert receipt(trade) == maker_receipt(desk, tid(1))


# --- reservation deadline ----------------------------------------------------------------------------
def test_tick_releases_an_expired_reservation(desk: Desk, alice: Taker, bob: Taker) -> None:
    offer = post(desk, amount="1")
    trade = reserve(desk, alice, offer, "1", 1, now=T0)
    assert desk.next_deadline() == T0 + desk.publish_holds_ms  # first: publish the hold, if it lasts
    [held] = desk.tick(T0 + desk.publish_holds_ms).offers
    assert (held.remaining, held.reserved, held.seq) == ("1", "1", 2)
    assert desk.next_deadline() == T0 + RESERVE
    assert desk.tick(T0 + RESERVE - 1).trades == []
    effects = desk.tick(T0 + RESERVE)
    freed = desk.offers[offer.id]
    assert [t.terms.id for t in effects.trades] == [tid(1)] and effects.offers == [freed]
    assert (freed.remaining, freed.reserved, freed.seq) == ("1", "0", 3)
    released = desk.trades[tid(1)]
    assert (
        released.state is MakerState.RELEASED
        and released.reason == "ERR_RESERVATION_EXPIRED: not confirmed in time"
    )
    assert desk.reserved == {} and desk.next_deadline() is None
    conf = alice.next_request(trade)
    refused(E.ERR_RESERVATION_EXPIRED, desk.confirm, conf, T0 + RESERVE + 1)
    err = refused(E.ERR_RESERVATION_EXPIRED, desk.take, trade.take, T0 + RESERVE + 1)
    assert desk.offers[offer.id] == freed
    assert conf is not None
    failed = alice.on_refusal(trade, desk.refusal(conf, err, T0 + RESERVE + 1), T0 + RESERVE + 1)
    assert failed.state is TakerState.FAILED and alice.next_request(failed) is None
    assert failed.error is not None and failed.error.startswith(E.ERR_RESERVATION_EXPIRED)
    trade_done(desk, bob, offer, "1", 2, now=T0 + RESERVE + 2)  # the amount is available again


def test_confirm_after_the_deadline_without_tick_is_refused_and_releases(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    trade = reserve(desk, alice, offer, "0.5", 1, now=T0)
    other = reserve(desk, Taker(BOB, "bob"), offer, "0.5", 2, now=T0 + 5)
    conf = alice.next_request(trade)
    with pytest.raises(Refusal) as info:
        desk.confirm(conf, T0 + RESERVE)  # type: ignore[arg-type]
    assert info.value.code == E.ERR_RESERVATION_EXPIRED
    assert isinstance(info.value, OTCError)
    assert [t.terms.id for t in info.value.effects.trades] == [tid(1)]
    assert desk.trades[tid(1)].state is MakerState.RELEASED
    assert desk.trades[tid(2)].state is MakerState.RESERVED  # its own deadline has not passed
    assert desk.reserved == {offer.id: Decimal("0.5")}
    assert desk.offers[offer.id].remaining == "1"
    refused(E.ERR_RESERVATION_EXPIRED, desk.confirm, conf, T0 + RESERVE + 1)  # and stays refused
    assert confirm(desk, Taker(BOB, "bob"), other, now=T0 + RESERVE + 4).state is TakerState.DONE


def test_confirm_just_before_the_deadline_succeeds(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = reserve(desk, alice, offer, "1", 1, now=T0)
    assert confirm(desk, alice, trade, now=T0 + RESERVE - 1).state is TakerState.DONE


def test_cancel_releases_reservations_and_a_later_confirm_is_refused(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = reserve(desk, alice, offer, "1", 1)
    cancelled, effects = desk.cancel(offer.id, T0 + 1)
    assert [t.terms.id for t in effects.trades] == [tid(1)] and effects.offers == [cancelled]
    assert (
        desk.trades[tid(1)].state is MakerState.RELEASED
        and desk.trades[tid(1)].reason == "ERR_OFFER_CLOSED: the offer was cancelled"
    )
    assert desk.reserved == {}
    refused(E.ERR_OFFER_CLOSED, desk.confirm, alice.next_request(trade), T0 + 2)
    assert desk.offers[offer.id].status == "cancelled" and desk.offers[offer.id].remaining == "2"


# --- offer expiry ------------------------------------------------------------------------------------
def test_offer_expiry_via_tick(desk: Desk, alice: Taker) -> None:
    offer = post(desk, ttl_ms=5_000)
    keep = post(desk)
    trade = reserve(desk, alice, offer, "1", 1, now=T0 + 1)
    assert [o.reserved for o in desk.tick(T0 + 1 + desk.publish_holds_ms).offers] == ["1"]
    assert desk.next_deadline() == T0 + 5_000
    assert not desk.tick(T0 + 4_999)
    effects = desk.tick(T0 + 5_000)
    expired = desk.offers[offer.id]
    assert effects.offers == [expired] and expired.status == "expired" and expired.seq == 4
    assert expired.reserved == "0"  # a closed offer holds nothing
    assert is_signed(expired)
    assert desk.trades[tid(1)].state is MakerState.RELEASED
    assert desk.open_offers() == [keep]
    refused(E.ERR_OFFER_EXPIRED, desk.confirm, alice.next_request(trade), T0 + 5_001)
    refused(E.ERR_OFFER_CLOSED, desk.take, alice.new_trade(offer, "1", tid(2), T0).take, T0 + 5_001)
    assert not desk.tick(T0 + 100_000)  # nothing happens twice


def test_an_expired_offer_is_refused_before_any_tick(desk: Desk, alice: Taker) -> None:
    offer = post(desk, ttl_ms=5_000)
    take = alice.new_trade(offer, "1", tid(1), T0).take
    refused(E.ERR_OFFER_EXPIRED, desk.take, take, T0 + 5_000)
    assert desk.trades == {}


def test_confirm_after_offer_expiry_without_tick_is_refused_and_closes_it() -> None:
    desk = Desk(MAKER, "maker", reserve_ms=60_000)
    alice = Taker(ALICE, "alice")
    offer = post(desk, ttl_ms=5_000)
    trade = reserve(desk, alice, offer, "1", 1, now=T0 + 4_000)
    with pytest.raises(Refusal) as info:
        desk.confirm(alice.next_request(trade), T0 + 5_000)  # type: ignore[arg-type]
    assert info.value.code == E.ERR_OFFER_EXPIRED
    assert [o.status for o in info.value.effects.offers] == ["expired"]
    assert desk.trades[tid(1)].state is MakerState.RELEASED and desk.reserved == {}
    assert desk.offers[offer.id].status == "expired"


# --- head / digest -----------------------------------------------------------------------------------
def test_head_digest_describes_the_open_offers(desk: Desk, alice: Taker) -> None:
    a = post(desk)
    b = post(desk, ttl_ms=1000)
    c = post(desk)
    desk.cancel(a.id, T0)
    trade_done(desk, alice, c, "1", 1)
    desk.tick(T0 + 1000)  # b expires
    head = desk.head(T0 + 2000, "127.0.0.1:1")
    assert is_signed(head)
    assert head.head == desk.seq == 6 and head.count == 1 and head.ts == T0 + 2000
    assert head.digest == digest(content_hash(o) for o in desk.open_offers())
    assert [o.id for o in desk.open_offers()] == [c.id] and b.id in desk.offers


# --- restore -----------------------------------------------------------------------------------------
def test_load_restores_state(desk: Desk, alice: Taker, bob: Taker) -> None:
    a = post(desk, amount="1")
    b = post(desk, amount="1")
    done = trade_done(desk, alice, a, "0.4", 1)
    pending = reserve(desk, bob, a, "0.5", 2)
    desk.cancel(b.id, T0)
    reserve(desk, bob, post(desk), "1", 3, now=T0)
    desk.tick(T0 + RESERVE)  # trade 3 released
    pending = reserve(desk, bob, a, "0.5", 4, now=T0 + RESERVE)
    offers = list(desk.offers.values())
    trades = [msgspec.json.decode(msgspec.json.encode(t), type=MakerTrade) for t in desk.trades.values()]

    restored = Desk(MAKER, "maker", reserve_ms=RESERVE)
    restored.load(offers, trades, desk.seq)
    assert snapshot(restored) == snapshot(desk)
    assert restored.head(T0, "x") == desk.head(T0, "x")
    assert restored.next_deadline() == desk.next_deadline()
    # the restored desk carries on where the old one stopped
    assert confirm(restored, bob, pending, now=T0 + RESERVE + 1).state is TakerState.DONE
    assert restored.offers[a.id].remaining == "0.1" and restored.seq == desk.seq + 1
    assert done.taker_sig is not None
    again, _ = restored.confirm(Confirm(trade_id=tid(1), taker=ALICE.peer_id, taker_sig=done.taker_sig), T0)
    assert again.status == "done" and receipt_of(again.terms, again.maker_sig, done.taker_sig) == receipt(
        done
    )


def test_load_never_moves_seq_back() -> None:
    desk = Desk(MAKER, "maker")
    offers = [post(desk) for _ in range(3)]
    desk.cancel(offers[0].id, T0)  # seq 4
    restored = Desk(MAKER, "maker")
    restored.load(list(desk.offers.values()), [], seq=1)  # a stale stored seq: the offers know better
    assert restored.seq == 4
    assert post(restored).seq == 5  # never reuses a seq already signed
    higher = Desk(MAKER, "maker")
    higher.load(list(desk.offers.values()), [], seq=10)
    assert higher.seq == 10
    fresh = Desk(MAKER, "maker", seq=20)
    fresh.load(list(desk.offers.values()), [], seq=7)
    assert fresh.seq == 20  # seq never goes back, whatever load is given


# --- taker checks the maker's answers ------------------------------------------------------------------
def test_taker_refuses_answers_it_did_not_ask_for(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = alice.new_trade(offer, "1", tid(1), T0)
    reply, _ = desk.take(trade.take, T0)
    other_terms = msgspec.structs.replace(reply.terms, amount="2")
    refused(
        E.ERR_INVALID_MESSAGE, alice.on_reply, trade, msgspec.structs.replace(reply, terms=other_terms), T0
    )
    refused(
        E.ERR_BAD_SIGNATURE,
        alice.on_reply,
        trade,
        msgspec.structs.replace(reply, maker_sig=BOB.sign(b"x")),
        T0,
    )
    # a maker that signs terms with the side or pair changed gets no countersignature either
    for change in ({"side": "buy"}, {"pair": "BTC/EUR"}):
        flipped = msgspec.structs.replace(reply.terms, **change)
        resigned = msgspec.structs.replace(reply, terms=flipped, maker_sig=MAKER.sign(signing_bytes(flipped)))
        refused(E.ERR_INVALID_MESSAGE, alice.on_reply, trade, resigned, T0)
    bogus_done = msgspec.structs.replace(reply, status="done", taker_sig=BOB.sign(b"x"))
    refused(E.ERR_BAD_SIGNATURE, alice.on_reply, trade, bogus_done, T0)
    assert D(reply.terms.amount) == 1


# --- signed refusals: only the maker's "no" to this very request is final --------------------------------
def test_refusals_are_signed_and_bound_to_the_request_they_refuse(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    trade = alice.new_trade(offer, "2", tid(1), T0)  # more than there is
    err = refused(E.ERR_INSUFFICIENT_REMAINING, desk.take, trade.take, T0)
    no = desk.refusal(trade.take, err, T0)
    assert is_signed(no) and no.request == request_digest(trade.take) and no.available == "1"
    assert (no.trade_id, no.taker, no.maker, no.code) == (tid(1), ALICE.peer_id, MAKER.peer_id, err.code)
    # what anyone in between could make of it does not fail the trade
    forged = [
        msgspec.structs.replace(no, sig=""),  # unsigned
        sign(BOB, no),  # signed by someone else
        sign(MAKER, msgspec.structs.replace(no, trade_id=tid(2))),  # another trade
        sign(MAKER, msgspec.structs.replace(no, taker=BOB.peer_id)),  # another taker
        sign(MAKER, msgspec.structs.replace(no, request="0" * 64)),  # another request
    ]
    for bad in forged:
        with pytest.raises(OTCError):
            alice.on_refusal(trade, bad, T0)
    failed = alice.on_refusal(trade, no, T0)
    assert failed.state is TakerState.FAILED and failed.available == "1"


def test_a_takes_refusal_cannot_fail_the_confirm_that_follows(desk: Desk, alice: Taker) -> None:
    """A refused take is not recorded, so a duplicate of it may be reserved later: its stale refusal,
    delivered late (or replayed by whoever sits in between), must not fail the trade once reserved
    while its confirm completes it at the maker."""
    offer = post(desk, amount="1")
    trade = alice.new_trade(offer, "0.5", tid(1), T0)
    desk.cancel(offer.id, T0)  # a first copy of the take is refused...
    stale = desk.refusal(trade.take, refused(E.ERR_OFFER_CLOSED, desk.take, trade.take, T0), T0)
    desk2 = know(Desk(MAKER, "maker", reserve_ms=RESERVE), ALICE)
    offer2 = post(desk2, amount="1")
    trade = alice.new_trade(offer2, "0.5", tid(1), T0)
    reply, _ = desk2.take(trade.take, T0)  # ... a second copy is reserved (here: a maker restored)
    trade = alice.on_reply(trade, reply, T0)
    with pytest.raises(OTCError):
        alice.on_refusal(trade, stale, T0)  # names the take, not the confirm we wait on
    # a forged confirm gets a refusal too, but it names the forged request, not ours
    conf = alice.next_request(trade)
    assert isinstance(conf, Confirm)
    forged = Confirm(trade_id=conf.trade_id, taker=conf.taker, taker_sig=BOB.sign(b"x"))
    no = desk2.refusal(forged, refused(E.ERR_BAD_SIGNATURE, desk2.confirm, forged, T0), T0)
    with pytest.raises(OTCError):
        alice.on_refusal(trade, no, T0)
    assert confirm(desk2, alice, trade).state is TakerState.DONE


def test_stale_or_future_takes_are_refused(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    old = alice.new_trade(offer, "0.1", tid(1), T0 - limits.TAKE_MAX_AGE_MS - 1).take
    ahead = alice.new_trade(offer, "0.1", tid(2), T0 + limits.TAKE_MAX_AGE_MS + 1).take
    refused(E.ERR_TAKE_STALE, desk.take, old, T0)
    refused(E.ERR_TAKE_STALE, desk.take, ahead, T0)
    assert desk.trades == {}
    edge = alice.new_trade(offer, "0.1", tid(3), T0 - limits.TAKE_MAX_AGE_MS).take
    desk.take(edge, T0)


def test_released_reservations_are_pruned_and_their_replay_refused(desk: Desk, alice: Taker) -> None:
    offer = post(desk)
    trade = reserve(desk, alice, offer, "0.5", 1)
    desk.tick(T0 + RESERVE)
    assert desk.prune_released(T0 + RESERVE + limits.KEEP_RELEASED_MS) == []
    assert desk.prune_released(T0 + RESERVE + limits.KEEP_RELEASED_MS + 1) == [tid(1)]
    assert tid(1) not in desk.trades
    # the take replayed now is too old to be a new trade
    refused(E.ERR_TAKE_STALE, desk.take, trade.take, T0 + RESERVE + limits.KEEP_RELEASED_MS + 1)


# --- what a taker may hold ---------------------------------------------------------------------------
def test_a_new_taker_holds_at_most_a_fifth_of_an_offer() -> None:
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    alice = Taker(ALICE, "alice")
    offer = post(desk, amount="10")
    reserve(desk, alice, offer, "1.5", 1)
    assert desk.trades[tid(1)].held and desk.reserved == {offer.id: Decimal("1.5")}
    big = reserve(desk, alice, offer, "6", 2)  # answered, but nothing more is held for it
    assert not desk.trades[tid(2)].held and desk.reserved == {offer.id: Decimal("1.5")}
    assert big.state is TakerState.RESERVED
    assert [o.reserved for o in desk.tick(T0 + desk.publish_holds_ms).offers] == ["1.5"]
    reserve(desk, alice, offer, "0.5", 3)  # exactly a fifth in all: held
    assert desk.trades[tid(3)].held and desk.reserved == {offer.id: Decimal(2)}
    reserve(desk, alice, offer, "0.01", 4)  # two holds is the most
    assert not desk.trades[tid(4)].held
    # an unheld reservation is filled on confirm if the amount is still there: first confirm wins
    assert confirm(desk, alice, big).state is TakerState.DONE
    assert desk.offers[offer.id].remaining == "4" and desk.reserved == {offer.id: Decimal(2)}
    # now known: a reservation holds whatever it asks
    reserve(desk, alice, offer, "1", 5)
    assert desk.trades[tid(5)].held and desk.reserved == {offer.id: Decimal(3)}


def test_an_unheld_reservation_loses_to_what_was_taken_meanwhile() -> None:
    desk = know(Desk(MAKER, "maker", reserve_ms=RESERVE), BOB)
    alice, bob = Taker(ALICE, "alice"), Taker(BOB, "bob")
    offer = post(desk, amount="10")
    late = reserve(desk, alice, offer, "5", 1)  # beyond a newcomer's fifth: held nothing
    trade_done(desk, bob, offer, "6", 2)
    conf = alice.next_request(late)
    assert isinstance(conf, Confirm)
    with pytest.raises(Refusal) as info:
        desk.confirm(conf, T0)
    assert info.value.code == E.ERR_INSUFFICIENT_REMAINING and info.value.available == 4
    assert [t.terms.id for t in info.value.effects.trades] == [tid(1)]
    assert desk.trades[tid(1)].state is MakerState.RELEASED
    failed = alice.on_refusal(late, desk.refusal(conf, info.value, T0), T0)
    assert failed.state is TakerState.FAILED  # maker released, taker failed: they agree
    refused(E.ERR_INSUFFICIENT_REMAINING, desk.confirm, conf, T0 + 1)  # and it stays so
    assert desk.offers[offer.id].remaining == "4"


def test_limits_on_pending_reservations_per_taker() -> None:
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    alice = Taker(ALICE, "alice")
    offer = post(desk, amount="100")
    for n in range(limits.NEW_TAKER_RESERVATIONS):
        reserve(desk, alice, offer, "0.1", n)
    trade = alice.new_trade(offer, "0.1", tid(99), T0)
    refused(E.ERR_TOO_MANY_RESERVATIONS, desk.take, trade.take, T0)
    know(desk, ALICE)
    for n in range(limits.NEW_TAKER_RESERVATIONS, limits.KNOWN_TAKER_RESERVATIONS_PER_OFFER):
        reserve(desk, alice, offer, "0.1", n)
    refused(E.ERR_TOO_MANY_RESERVATIONS, desk.take, trade.take, T0)
    other = post(desk, amount="100")
    reserve(desk, alice, other, "0.1", 100)  # per offer, then per maker


def test_strikes_suspend_a_taker_that_never_confirms() -> None:
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    alice, bob = Taker(ALICE, "alice"), Taker(BOB, "bob")
    offer = post(desk, amount="10")
    now = T0
    trade_done(desk, alice, offer, "0.1", 1, now)  # known ...
    for n in range(limits.STRIKES_TO_SUSPEND):
        reserve(desk, alice, offer, "1", 10 + n, now)
        if n == 0:
            assert desk.trades[tid(10)].held and desk.reserved == {offer.id: Decimal(1)}
        now += RESERVE
        desk.tick(now)  # ... until a reservation expires: a strike, and new again
        assert not desk.takers[ALICE.peer_id].known
    assert desk.reserved == {}
    trade = alice.new_trade(offer, "0.1", tid(20), now)
    err = refused(E.ERR_TAKER_SUSPENDED, desk.take, trade.take, now)
    assert "600 s" in err.message
    trade_done(desk, bob, offer, "1", 21, now)  # others are not affected
    later = now + limits.SUSPEND_MS
    reserve(desk, alice, offer, "0.1", 22, later)  # the suspension ends ...
    for n in range(limits.STRIKES_TO_SUSPEND - 1):
        later += RESERVE
        desk.tick(later)
        reserve(desk, alice, offer, "0.1", 23 + n, later)
    later += RESERVE
    desk.tick(later)
    assert desk.takers[ALICE.peer_id].suspended_until == later + 2 * limits.SUSPEND_MS  # ... and doubles


def test_a_griefer_holds_at_most_a_fifth_while_honest_takers_fill() -> None:
    """One key that never confirms, against honest takers taking small amounts, over many windows."""
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    griefer = Taker(Identity.from_seed(bytes([9]) * 32), "griefer")
    honest = [Taker(Identity.from_seed(bytes([20 + i]) * 32), f"h{i}") for i in range(5)]
    offer = post(desk, amount="100")
    now, n, asked, filled, most_held = T0, 0, Decimal(0), Decimal(0), Decimal(0)
    for step in range(200):
        now += 500
        desk.tick(now)
        n += 1
        grab = ("99", "20", "10")[step % 3]  # everything, or just what it may hold, every half second
        with contextlib.suppress(OTCError):
            desk.take(griefer.new_trade(desk.offers[offer.id], grab, tid(n), now).take, now)
        held_by_griefer = sum(
            (D(t.terms.amount) for t in desk._live.values() if t.terms.taker == griefer.peer_id and t.held),
            Decimal(0),
        )
        most_held = max(most_held, held_by_griefer / D(offer.amount))
        taker = honest[step % len(honest)]
        n += 1
        if desk.offers[offer.id].status != "open":
            break
        asked += D("0.2")
        try:
            trade_done(desk, taker, desk.offers[offer.id], "0.2", n, now)
            filled += D("0.2")
        except (OTCError, AssertionError):
            pass
    assert most_held == limits.NEW_TAKER_SHARE  # it did hold a fifth, never more
    assert filled / asked >= Decimal("0.9"), (filled, asked)
    assert now < desk.takers[griefer.peer_id].suspended_until  # and it ends up shut out


def test_held_amounts_are_published_and_every_state_is_consistent(desk: Desk, alice: Taker) -> None:
    offer = post(desk, amount="1")
    states = [offer]
    trade = reserve(desk, alice, offer, "0.4", 1)
    confirm(desk, alice, trade)  # confirmed within a round trip: only the fill is published
    states.append(desk.offers[offer.id])
    reserve(desk, alice, offer, "0.6", 2)
    assert desk.tick(T0 + desk.publish_holds_ms - 1).offers == []
    [held] = desk.tick(T0 + desk.publish_holds_ms).offers  # a hold that outlasts a round trip
    states.append(held)
    desk.tick(T0 + RESERVE)  # and its release, at once
    states.append(desk.offers[offer.id])
    assert [(o.remaining, o.reserved) for o in states] == [
        ("1", "0"),
        ("0.6", "0"),
        ("0.6", "0.6"),
        ("0.6", "0"),
    ]
    assert [o.seq for o in states] == [1, 2, 3, 4]
    for o in states:
        check_consistent(o)
        assert is_signed(o)
    # a fill while another hold is pending carries what is still held (bob: alice has a strike now)
    bob = Taker(BOB, "bob")
    t3 = reserve(desk, bob, desk.offers[offer.id], "0.1", 3, T0 + RESERVE)
    reserve(desk, bob, desk.offers[offer.id], "0.2", 4, T0 + RESERVE)
    confirm(desk, bob, t3, T0 + RESERVE)
    assert (desk.offers[offer.id].remaining, desk.offers[offer.id].reserved) == ("0.5", "0.2")
    bad = sign(MAKER, msgspec.structs.replace(offer, reserved="1.5"))
    with pytest.raises(OTCError):
        check_consistent(bad)
    assert isinstance(desk.refusal(trade.take, OTCError(E.ERR_OFFER_CLOSED, "x"), T0), TradeRefusal)


def test_a_storm_of_tiny_takes_from_fresh_keys_leaves_a_bounded_record() -> None:
    """Fresh keys are free: what new takers can make a maker keep is bounded by the rate it accepts their
    takes at and by how long released reservations are kept."""
    desk = Desk(MAKER, "maker", reserve_ms=RESERVE)
    offer = post(desk, amount="100")
    now, accepted, busy = T0, 0, 0
    for n in range(6_000):  # 100 takes a second from new keys, for a minute
        now += 10
        desk.tick(now)
        taker = Taker(Identity.from_seed(n.to_bytes(32, "big")), "storm")
        try:
            desk.take(taker.new_trade(offer, "0.00000001", tid(n), now).take, now)
            accepted += 1
        except OTCError as exc:
            assert exc.code == E.ERR_MAKER_BUSY
            busy += 1
        desk.prune_released(now)
    burst = limits.NEW_TAKER_TAKES_PER_MINUTE / 10
    assert accepted <= limits.NEW_TAKER_TAKES_PER_MINUTE + burst and busy > 0
    kept = len(desk.trades)  # released ones are kept two minutes, then pruned
    assert kept <= accepted
    for _ in range(30):  # the storm stops; a few minutes later nothing of it is left
        now += 10_000
        desk.tick(now)
        desk.prune_released(now)
    assert desk.trades == {} and desk.reserved == {}
    assert len(desk.takers) <= limits.TAKERS_TRACKED
