"""Requests for quote without a network (core/rfq.py): what a maker and a requester accept from each
other, the quote desk's handshake (a quote honoured at most up to its amount, never after it expires,
only for its requester), quoting rules, the balance across quotes, and a property test of many
requesters accepting at random against one maker's balance."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from otc.core import errors as E
from otc.core import limits as L
from otc.core.desk import Desk, Refusal
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Confirm, Quote, QuoteRequest, Take
from otc.core.money import D
from otc.core.offer import offer_id
from otc.core.rfq import QUOTE_SEQ_BASE, Quoter, Requester, firm_offer, make_rule, opposite, rank
from otc.core.signing import receipt_is_valid, receipt_of, sign
from otc.core.taker import Taker, receipt
from otc.core.trade import MakerState, TakerState, TakerTrade

MAKER = Identity.from_seed(bytes([31]) * 32)
MAKER2 = Identity.from_seed(bytes([32]) * 32)
ALICE = Identity.from_seed(bytes([33]) * 32)
BOB = Identity.from_seed(bytes([34]) * 32)
T0 = 1_700_000_000_000


def rid(n: int) -> str:
    return f"{n:032x}"


def new_request(
    who: Identity, n: int, *, side: str = "buy", amount: str = "5", now: int = T0
) -> QuoteRequest:
    """A signed request of ``who`` (from a throwaway requester: its own caps are not under test)."""
    requester = Requester(who, "r")
    return requester.new_request(
        rfq_id=rid(n), side=side, amount=amount, pair="BTC/USD", ttl_ms=None, now=now
    )


def request(
    who: Identity = ALICE, n: int = 1, *, side: str = "buy", amount: str = "5", now: int = T0
) -> tuple[Requester, QuoteRequest]:
    requester = Requester(who, "alice")
    req = requester.new_request(
        rfq_id=rid(n), side=side, amount=amount, pair="BTC/USD", ttl_ms=10_000, now=now
    )
    requester.requests[req.quote_req_id].asked.update({MAKER.peer_id, MAKER2.peer_id})  # as the fan-out does
    return requester, req


def refused(code: str, fn: Any, *args: Any, **kwargs: Any) -> OTCError:
    with pytest.raises(OTCError) as info:
        fn(*args, **kwargs)
    assert info.value.code == code, info.value
    return info.value


def accept(
    quoter: Quoter,
    taker: Taker,
    quote: Quote,
    amount: str,
    trade: int,
    now: int,
    *,
    confirm_at: int | None = None,
) -> TakerTrade:
    """The requester's whole handshake against the quote desk; returns the taker's final record."""
    t = taker.new_trade(firm_offer(quote), amount, rid(1000 + trade), now)
    try:
        reply, _ = quoter.take(t.take, now)
    except OTCError as exc:
        return taker.on_refusal(t, quoter.refusal(t.take, exc, now), now)  # the maker's signed "no"
    t = taker.on_reply(t, reply, now)
    req = taker.next_request(t)
    assert isinstance(req, Confirm)
    at = now if confirm_at is None else confirm_at
    try:
        reply, _ = quoter.confirm(req, at)
    except OTCError as exc:
        return taker.on_refusal(t, quoter.refusal(req, exc, at), at)
    return taker.on_reply(t, reply, at)


# --- requests -------------------------------------------------------------------------------------------
def test_a_request_is_validated_signed_and_bounded() -> None:
    requester = Requester(ALICE, "alice")
    make = lambda n, **kw: requester.new_request(  # noqa: E731
        rfq_id=rid(n), **({"side": "buy", "amount": "1", "pair": "BTC/USD", "ttl_ms": None, "now": T0} | kw)
    )
    refused(E.ERR_INVALID_SIDE, make, 1, side="hold")
    refused(E.ERR_UNKNOWN_PAIR, make, 1, pair="DOGE/USD")
    refused(E.ERR_INVALID_AMOUNT, make, 1, amount=1.5)
    refused(E.ERR_INVALID_AMOUNT, make, 1, amount="0")
    refused(E.ERR_INVALID_TTL, make, 1, ttl_ms=L.RFQ_MAX_TTL_MS + 1)
    refused(E.ERR_INVALID_TTL, make, 1, ttl_ms="5")
    assert requester.requests == {}
    req = make(1)
    assert req.valid_until == T0 + L.RFQ_DEFAULT_TTL_MS and req.requester == ALICE.peer_id
    for n in range(2, L.RFQ_MAX_OPEN_OUT + 1):
        make(n)
    refused(E.ERR_TOO_MANY_RFQS, make, 999)
    make(999, now=T0 + L.RFQ_DEFAULT_TTL_MS)  # the first ones have closed: room again


def test_a_maker_checks_what_it_is_asked() -> None:
    quoter = Quoter(MAKER, "maker")
    _, req = request()
    assert quoter.receive(req, T0) is True
    assert quoter.receive(req, T0) is False  # a repeat: idempotent
    other = sign(ALICE, msgspec.structs.replace(req, amount="6"))
    refused(E.ERR_INVALID_MESSAGE, quoter.receive, other, T0)  # another request under a known id
    forged = msgspec.structs.replace(req, quote_req_id=rid(2), sig=BOB.sign(b"x"))
    refused(E.ERR_BAD_SIGNATURE, quoter.receive, forged, T0)
    unsigned = msgspec.structs.replace(req, quote_req_id=rid(3), sig="")
    refused(E.ERR_BAD_SIGNATURE, quoter.receive, unsigned, T0)
    refused(E.ERR_RFQ_EXPIRED, quoter.receive, request(n=4)[1], T0 + 10_000)
    future = request(n=5, now=T0 + L.MAX_CLOCK_SKEW_MS + 1)[1]
    refused(E.ERR_INVALID_MESSAGE, quoter.receive, future, T0)
    long = sign(ALICE, msgspec.structs.replace(request(n=6)[1], valid_until=T0 + L.RFQ_MAX_TTL_MS * 2))
    refused(E.ERR_INVALID_MESSAGE, quoter.receive, long, T0)
    own = Requester(MAKER, "maker").new_request(
        rfq_id=rid(7), side="buy", amount="1", pair="BTC/USD", ttl_ms=None, now=T0
    )
    refused(E.ERR_SELF_TRADE, quoter.receive, own, T0)
    assert list(quoter.incoming) == [rid(1)]


def test_requests_are_capped_per_requester_and_rate_limited() -> None:
    quoter = Quoter(MAKER, "maker")
    outcomes: list[object] = []
    for n in range(L.RFQ_PER_PEER_PER_MIN + 5):
        try:
            outcomes.append(quoter.receive(new_request(BOB, n, amount="1"), T0))
        except OTCError as exc:
            outcomes.append(exc.code)
    # five held open at once; every request counts against the rate, refused or not
    cap, rate = L.RFQ_MAX_OPEN_PER_PEER, L.RFQ_PER_PEER_PER_MIN
    assert outcomes == [True] * cap + [E.ERR_TOO_MANY_RFQS] * (rate - cap) + [E.ERR_RATE_LIMITED] * 5
    assert quoter.receive(request(n=900)[1], T0)  # another requester is not affected
    later = T0 + L.RFQ_DEFAULT_TTL_MS  # the five have closed, and the bucket has refilled 5 tokens
    assert quoter.receive(new_request(BOB, 500, amount="1", now=later), later)
    assert len([r for r in quoter.open_requests(later) if r.requester == BOB.peer_id]) == 1


# --- quotes -----------------------------------------------------------------------------------------------
def test_a_quote_is_firm_private_and_checked_by_its_requester() -> None:
    requester, req = request()
    quoter = Quoter(MAKER, "maker")
    quoter.receive(req, T0)
    quote, effects = quoter.quote(req.quote_req_id, price="8000", amount="4", ttl_ms=3000, now=T0)
    (offer,) = effects.desk.offers
    assert effects.quotes == [quote] and quote.quote_id == offer.id
    assert (quote.side, quote.price, quote.amount, quote.valid_until) == ("sell", "8000", "4", T0 + 3000)
    assert offer.created_seq > QUOTE_SEQ_BASE and offer.id == offer_id(MAKER.peer_id, offer.created_seq)
    # the quote desk is not the maker's desk: no offer of its appears in the maker's head
    public = Desk(MAKER, "maker")
    assert public.head(T0, "127.0.0.1:1").count == 0
    assert requester.receive(quote, T0 + 1) is True
    assert requester.receive(quote, T0 + 1) is False
    assert rank(requester.requests[rid(1)].quotes.values()) == [quote]
    refused(E.ERR_QUOTE_EXPIRED, requester.acceptable, quote.quote_id, T0 + 3000)
    assert requester.acceptable(quote.quote_id, T0 + 2999) == quote


def test_a_requester_refuses_quotes_it_did_not_ask_for() -> None:
    requester, req = request(amount="5")
    quoter = Quoter(MAKER, "maker")
    quoter.receive(req, T0)
    good, _ = quoter.quote(req.quote_req_id, price="8000", now=T0)

    def bad(**changes: Any) -> Quote:
        return sign(MAKER, msgspec.structs.replace(good, **changes))

    refused(E.ERR_RFQ_NOT_FOUND, requester.receive, bad(quote_req_id=rid(9)), T0)
    stranger = Quoter(BOB, "bob")  # a peer the request was not sent to
    stranger.receive(req, T0)
    refused(
        E.ERR_RFQ_NOT_FOUND, requester.receive, stranger.quote(req.quote_req_id, price="8000", now=T0)[0], T0
    )
    refused(E.ERR_RFQ_NOT_FOUND, requester.receive, bad(requester=BOB.peer_id), T0)
    refused(E.ERR_INVALID_MESSAGE, requester.receive, bad(side="buy"), T0)
    refused(E.ERR_INVALID_MESSAGE, requester.receive, bad(pair="ETH/USD"), T0)
    refused(E.ERR_INVALID_AMOUNT, requester.receive, bad(amount="5.1"), T0)
    refused(E.ERR_INVALID_PRICE, requester.receive, bad(price="8000.001"), T0)
    refused(E.ERR_INVALID_MESSAGE, requester.receive, bad(valid_until=T0 + L.QUOTE_MAX_TTL_MS * 2), T0)
    refused(E.ERR_QUOTE_EXPIRED, requester.receive, good, good.valid_until)
    refused(E.ERR_BAD_SIGNATURE, requester.receive, msgspec.structs.replace(good, price="7000"), T0)
    refused(E.ERR_BAD_SIGNATURE, requester.receive, msgspec.structs.replace(good, maker=MAKER2.peer_id), T0)
    refused(E.ERR_RFQ_EXPIRED, requester.receive, good, req.valid_until + 1)
    assert requester.quotes == {}
    assert requester.receive(good, T0)
    refused(E.ERR_INVALID_MESSAGE, requester.receive, bad(price="1"), T0)  # another quote under that id


def test_quotes_per_maker_and_per_request_are_bounded() -> None:
    requester, req = request()
    quoter = Quoter(MAKER, "maker")
    quoter.receive(req, T0)
    for _ in range(L.QUOTES_PER_MAKER_PER_RFQ):
        q, _ = quoter.quote(req.quote_req_id, price="8000", amount="1", now=T0)
        assert requester.receive(q, T0)
    refused(E.ERR_TOO_MANY_QUOTES, quoter.quote, req.quote_req_id, price="8000", amount="1", now=T0)
    # a maker ignoring its own cap is stopped by the requester's
    quoter2 = Quoter(MAKER, "maker")
    quoter2.receive(req, T0)
    quoter2.desk.seq = quoter.desk.seq  # new ids
    extra, _ = quoter2.quote(req.quote_req_id, price="8000", amount="1", now=T0)
    refused(E.ERR_TOO_MANY_QUOTES, requester.receive, extra, T0)


def test_quotes_rank_best_first_for_the_requester() -> None:
    q = lambda side, price, amount, at: Quote(  # noqa: E731
        quote_id=rid(at),
        quote_req_id=rid(0),
        maker=MAKER.peer_id,
        maker_name="m",
        requester=ALICE.peer_id,
        side=side,
        pair="BTC/USD",
        price=price,
        amount=amount,
        created_at=at,
        valid_until=at + 1,
    )
    asks = [
        q("sell", "8010", "1", 1),
        q("sell", "8000", "1", 2),
        q("sell", "8000", "2", 3),
        q("sell", "8000", "2", 4),
    ]
    assert [x.created_at for x in rank(asks)] == [3, 4, 2, 1]
    bids = [q("buy", "7990", "1", 1), q("buy", "7995", "1", 2)]
    assert [x.created_at for x in rank(bids)] == [2, 1]


# --- accepting: the quote desk's handshake --------------------------------------------------------------
def given_quote(amount: str = "2", ttl: int = 5000, requester: Identity = ALICE) -> tuple[Quoter, Quote]:
    _, req = request(requester)
    quoter = Quoter(MAKER, "maker")
    quoter.receive(req, T0)
    quote, _ = quoter.quote(req.quote_req_id, price="8000", amount=amount, ttl_ms=ttl, now=T0)
    return quoter, quote


def test_only_the_requester_can_accept_and_both_hold_the_same_receipt() -> None:
    quoter, quote = given_quote()
    bob = Taker(BOB, "bob")
    failed = accept(quoter, bob, quote, "1", 1, T0)
    assert failed.state is TakerState.FAILED and failed.error and failed.error.startswith(E.ERR_QUOTE_FOREIGN)
    alice = Taker(ALICE, "alice")
    done = accept(quoter, alice, quote, "1.5", 2, T0 + 10)
    assert done.state is TakerState.DONE
    mt = quoter.desk.trades[done.take.trade_id]
    assert mt.state is MakerState.DONE and receipt_of(mt.terms, mt.maker_sig, mt.taker_sig or "") == receipt(
        done
    )
    assert receipt_is_valid(receipt(done)) and receipt(done).offer_id == quote.quote_id
    # a repeated take or confirm is answered as the first was
    reply, effects = quoter.take(done.take, T0 + 20)
    assert reply.status == "done" and not effects
    # the rest of it, then nothing more: used
    assert accept(quoter, alice, quote, "0.5", 3, T0 + 30).state is TakerState.DONE
    used = accept(quoter, alice, quote, "0.1", 4, T0 + 40)
    assert used.error and used.error.startswith(E.ERR_QUOTE_USED)
    assert quoter.desk.offers[quote.quote_id].status == "filled"


def test_a_quote_is_never_honoured_after_it_expires() -> None:
    quoter, quote = given_quote(ttl=1000)
    alice = Taker(ALICE, "alice")
    late = accept(quoter, alice, quote, "1", 1, T0 + 1000)  # take at valid_until
    assert late.error and late.error.startswith(E.ERR_QUOTE_EXPIRED)
    # reserved in time, confirmed too late: refused, and the reservation released
    quoter, quote = given_quote(ttl=1000)
    t = alice.new_trade(firm_offer(quote), "1", rid(7), T0 + 999)
    reply, _ = quoter.take(t.take, T0 + 999)
    t = alice.on_reply(t, reply, T0 + 999)
    with pytest.raises(Refusal) as info:
        quoter.confirm(alice.next_request(t), T0 + 1000)  # type: ignore[arg-type]
    assert info.value.code == E.ERR_QUOTE_EXPIRED
    assert quoter.desk.trades[rid(7)].state is MakerState.RELEASED
    assert quoter.desk.offers[quote.quote_id].status == "expired"
    # the timer expires quotes too, with nothing asked
    quoter, quote = given_quote(ttl=1000)
    effects = quoter.tick(T0 + 1000)
    assert [o.status for o in effects.desk.offers] == ["expired"]
    unknown = Take(
        trade_id=rid(8),
        offer_id=rid(99),
        amount="1",
        price="1",
        taker=ALICE.peer_id,
        taker_name="alice",
        ts=T0,
    )
    refused(E.ERR_QUOTE_NOT_FOUND, quoter.take, sign(ALICE, unknown), T0)


# --- rules and the balance --------------------------------------------------------------------------------
def test_rules_are_validated() -> None:
    refused(E.ERR_INVALID_SIDE, make_rule, pair="BTC/USD", side="both")
    refused(E.ERR_UNKNOWN_PAIR, make_rule, pair="X/Y", side="sell")
    refused(E.ERR_INVALID_PRICE, make_rule, pair="BTC/USD", side="sell", price="1", spread="1")
    refused(E.ERR_INVALID_PRICE, make_rule, pair="BTC/USD", side="sell", spread="-1")
    refused(E.ERR_INVALID_AMOUNT, make_rule, pair="BTC/USD", side="sell", max_size="0")
    refused(E.ERR_INVALID_AMOUNT, make_rule, pair="BTC/USD", side="sell", balance="1.000000001")
    refused(E.ERR_INVALID_TTL, make_rule, pair="BTC/USD", side="sell", ttl_ms=L.QUOTE_MAX_TTL_MS + 1)
    rule = make_rule(pair="BTC/USD", side="sell", spread="0", balance="0")
    assert rule.automatic and rule.balance == "0"
    assert not make_rule(pair="BTC/USD", side="buy", balance="3").automatic


def test_a_rule_answers_with_a_fixed_price_or_a_spread_on_our_best_offer() -> None:
    quoter = Quoter(MAKER, "maker")
    best = {("BTC/USD", "sell"): "8000", ("BTC/USD", "buy"): "7990"}
    own = lambda pair, side: best.get((pair, side))  # noqa: E731
    _, buy = request(n=1, side="buy", amount="5")
    _, sell = request(ALICE, n=2, side="sell", amount="5")
    for r in (buy, sell):
        quoter.receive(r, T0)
    assert quoter.auto_quote(buy, T0, own) is None  # no rule: silent
    quoter.set_rule(make_rule(pair="BTC/USD", side="sell", spread="2.5", max_size="3"))
    quoter.set_rule(make_rule(pair="BTC/USD", side="buy", price="7900"))
    answer = quoter.auto_quote(buy, T0, own)
    assert answer is not None and (answer[0].price, answer[0].amount, answer[0].side) == (
        "8002.5",
        "3",
        "sell",
    )
    answer = quoter.auto_quote(sell, T0, own)
    assert answer is not None and (answer[0].price, answer[0].amount, answer[0].side) == ("7900", "5", "buy")
    quoter.set_rule(make_rule(pair="BTC/USD", side="sell", spread="1"))
    _, again = request(n=3)
    quoter.receive(again, T0)
    assert quoter.auto_quote(again, T0, lambda p, s: None) is None  # no offer of ours to spread around
    quoter.remove_rule("BTC/USD", "buy")
    refused(E.ERR_RULE_NOT_FOUND, quoter.remove_rule, "BTC/USD", "buy")
    quoter.remove_rule("BTC/USD", "sell")
    assert quoter.auto_quote(again, T0, own) is None


def test_the_balance_caps_quotes_and_fills_reduce_it() -> None:
    quoter = Quoter(MAKER, "maker")
    quoter.set_rule(make_rule(pair="BTC/USD", side="sell", price="8000", max_size="4", balance="10"))
    takers = {i: Taker(Identity.from_seed(bytes([60 + i]) * 32), f"t{i}") for i in range(5)}
    quotes = {}
    for i, t in takers.items():
        req = new_request(t.identity, i, amount="4", now=T0)
        quoter.receive(req, T0)
        answer = quoter.auto_quote(req, T0, lambda p, s: None)
        if answer is not None:
            quotes[i] = answer[0]
    assert [q.amount for q in quotes.values()] == ["4", "4", "2"]  # 10 committed, the rest silent
    assert quoter.committed("BTC/USD", "sell") == 10 and quoter.available("BTC/USD", "sell") == 0
    _, late = request(ALICE, n=77)
    quoter.receive(late, T0)
    refused(E.ERR_INSUFFICIENT_BALANCE, quoter.quote, late.quote_req_id, price="8000", amount="0.1", now=T0)
    # a fill consumes what its quote committed: the balance falls, what is available does not change
    assert accept(quoter, takers[0], quotes[0], "3", 1, T0).state is TakerState.DONE
    rule = quoter.rules[("BTC/USD", "sell")]
    assert rule.balance == "7" and quoter.available("BTC/USD", "sell") == 0
    # expiry frees what was committed and not used: 1 of quote 0, and quotes 1 and 2
    quoter.tick(T0 + L.QUOTE_DEFAULT_TTL_MS)
    assert quoter.committed("BTC/USD", "sell") == 0 and quoter.available("BTC/USD", "sell") == 7


# --- the race, as a property ------------------------------------------------------------------------------
ACTORS = [Identity.from_seed(bytes([70 + i]) * 32) for i in range(4)]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_many_requesters_never_fill_beyond_the_balance_or_a_quote(data: st.DataObject) -> None:
    """Random requests, automatic and hand-made quotes, accepts by the right and the wrong requesters of
    random amounts, confirms early or late, timer ticks and memory trims, in any order: fills never
    exceed the balance, no quote is filled past its amount, after its expiry, or for anyone but its
    requester, and the maker's receipts are exactly the takers'."""
    balance = Decimal(data.draw(st.sampled_from(["3", "5", "7.5"])))
    quoter = Quoter(MAKER, "maker", reserve_ms=500)
    quoter.set_rule(make_rule(pair="BTC/USD", side="sell", price="8000", max_size="3", balance=str(balance)))
    takers = [Taker(i, f"t{n}") for n, i in enumerate(ACTORS)]
    now = T0
    quotes: list[Quote] = []
    pending: list[tuple[Taker, TakerTrade]] = []
    finished: list[TakerTrade] = []
    n = 0
    actions = ["request"] * 3 + ["manual"] + ["take"] * 4 + ["confirm"] * 4 + ["tick"] * 2 + ["forget"]
    for _ in range(data.draw(st.integers(10, 60))):
        n += 1
        action = data.draw(st.sampled_from(actions))
        if action == "request":
            who = data.draw(st.sampled_from(range(len(ACTORS))))
            amount = data.draw(st.sampled_from(["0.5", "1", "2", "4"]))
            req = new_request(ACTORS[who], n, amount=amount, now=now)
            try:
                quoter.receive(req, now)
            except OTCError as exc:
                assert exc.code in (E.ERR_RATE_LIMITED, E.ERR_TOO_MANY_RFQS)
                continue
            answer = quoter.auto_quote(req, now, lambda p, s: None)
            if answer is not None:
                quotes.append(answer[0])
        elif action == "manual" and quoter.incoming:
            rfq = data.draw(st.sampled_from(sorted(quoter.incoming)))
            try:
                quotes.append(
                    quoter.quote(
                        rfq, price="8001", amount=data.draw(st.sampled_from(["0.25", "1"])), now=now
                    )[0]
                )
            except OTCError as exc:
                assert exc.code in (
                    E.ERR_INSUFFICIENT_BALANCE,
                    E.ERR_RFQ_NOT_FOUND,
                    E.ERR_TOO_MANY_QUOTES,
                    E.ERR_INVALID_AMOUNT,
                )
        by_id = {q.quote_id: q for q in quotes}
        if action == "take" and quotes:
            quote = data.draw(st.sampled_from(quotes))
            right = next(t for t in takers if t.peer_id == quote.requester)
            taker = data.draw(st.sampled_from([right, right, *takers]))  # the wrong ones too
            t = taker.new_trade(
                firm_offer(quote), data.draw(st.sampled_from(["0.25", "1", "3"])), rid(10_000 + n), now
            )
            try:
                reply, _ = quoter.take(t.take, now)
            except OTCError as exc:
                # (and the desk's limits on what one taker may have pending: quotes are offers)
                assert exc.code in (
                    E.ERR_QUOTE_FOREIGN,
                    E.ERR_QUOTE_USED,
                    E.ERR_QUOTE_EXPIRED,
                    E.ERR_QUOTE_NOT_FOUND,
                    E.ERR_TOO_MANY_RESERVATIONS,
                    E.ERR_TAKER_SUSPENDED,
                    E.ERR_MAKER_BUSY,
                )
                if exc.code == E.ERR_QUOTE_FOREIGN:
                    assert taker.peer_id != quote.requester
                continue
            assert taker.peer_id == quote.requester
            pending.append((taker, taker.on_reply(t, reply, now)))
        elif action == "confirm" and pending:
            taker, t = pending.pop(data.draw(st.integers(0, len(pending) - 1)))
            try:
                reply, _ = quoter.confirm(taker.next_request(t), now)  # type: ignore[arg-type]
                finished.append(taker.on_reply(t, reply, now))
                assert now < by_id[t.take.offer_id].valid_until  # honoured only while valid
            except OTCError as exc:
                # expired; or, for a reservation that held nothing, used up by a confirm before it
                assert exc.code in (E.ERR_QUOTE_EXPIRED, E.ERR_RESERVATION_EXPIRED, E.ERR_QUOTE_USED)
        elif action == "tick":
            now += data.draw(st.sampled_from([10, 10, 300, 1000, 5000]))
            quoter.tick(now)
        elif action == "forget":
            quoter.forget()
        # the invariant, at every step
        done = [t for t in quoter.desk.trades.values() if t.state is MakerState.DONE]
        filled = sum((D(t.terms.amount) for t in done), Decimal(0))
        assert filled <= balance and D(quoter.rules[("BTC/USD", "sell")].balance or "0") == balance - filled
        assert filled + quoter.committed("BTC/USD", "sell") <= balance
    for quote in quotes:
        fills = [
            t
            for t in quoter.desk.trades.values()
            if t.terms.offer_id == quote.quote_id and t.state is MakerState.DONE
        ]
        assert sum((D(t.terms.amount) for t in fills), Decimal(0)) <= D(quote.amount)
        assert all(t.terms.taker == quote.requester and t.terms.created_at < quote.valid_until for t in fills)
    maker_side = {
        t.terms.id: (t.maker_sig, t.taker_sig)
        for t in quoter.desk.trades.values()
        if t.state is MakerState.DONE
    }
    taker_side = {t.take.trade_id: (t.maker_sig, t.taker_sig) for t in finished}
    assert maker_side == taker_side
    assert {t.state for t in finished} <= {TakerState.DONE}
    event(f"trades done: {min(len(finished), 3)}+" if finished else "no trade done")
    assert all(opposite(q.side) == "buy" for q in quotes)
