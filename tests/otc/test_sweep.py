"""Sweep orders without a network: the pure planning (sweep.plan), the exact result arithmetic, and
the Sweeper's execution loop driven through a scripted ``take`` (lost offers, one retry with the fresh
remaining, pending takes, posting the remainder, input validation)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otc.core import errors as E
from otc.core.book import Book
from otc.core.desk import Desk
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Offer, Receipt
from otc.core.money import CONTEXT, D, canonical
from otc.core.offer import fill
from otc.core.signing import sign
from otc.core.sweep import Candidate, SweepResult, average_text, plan
from otc.node.clock import now_ms
from otc.node.sweeps import Sweeper

M1 = Identity.from_seed(bytes([11]) * 32)
M2 = Identity.from_seed(bytes([12]) * 32)
M3 = Identity.from_seed(bytes([13]) * 32)
ME = Identity.from_seed(bytes([14]) * 32)
T0 = 1_700_000_000_000
DESKS = {i.peer_id: Desk(i, f"m{n}") for n, i in enumerate((M1, M2, M3, ME), start=1)}


def offer(maker: Identity, side: str, amount: str, price: str, *, at: int = 0, **extra: Any) -> Offer:
    desk = DESKS[maker.peer_id]
    made, _ = desk.create(side=side, amount=amount, price=price, pair="BTC/USD", now=T0 + at, **extra)
    return made


def ask(maker: Identity, amount: str, price: str, **kw: Any) -> Offer:
    return offer(maker, "sell", amount, price, **kw)


def bid(maker: Identity, amount: str, price: str, **kw: Any) -> Offer:
    return offer(maker, "buy", amount, price, **kw)


def taken(cands: list[Candidate]) -> list[tuple[str, str]]:
    return [(o.price, canonical(a)) for o, a in cands]


# --- planning -------------------------------------------------------------------------------------------
def test_buy_takes_the_lowest_asks_across_makers_up_to_the_amount() -> None:
    asks = [ask(M1, "1", "8010"), ask(M2, "0.5", "8000"), ask(M3, "2", "8005"), ask(M1, "3", "8020")]
    cands = plan("buy", asks, D("3"), D("8015"), ME.peer_id)
    assert taken(cands) == [("8000", "0.5"), ("8005", "2"), ("8010", "0.5")]
    assert [o.maker for o, _ in cands] == [M2.peer_id, M3.peer_id, M1.peer_id]


def test_buy_stops_at_the_limit() -> None:
    asks = [ask(M1, "1", "8000"), ask(M2, "1", "8000.01"), ask(M3, "1", "7999.99")]
    assert taken(plan("buy", asks, D("10"), D("8000"), ME.peer_id)) == [("7999.99", "1"), ("8000", "1")]
    assert plan("buy", asks, D("10"), D("7999.98"), ME.peer_id) == []


def test_sell_takes_the_highest_bids_down_to_the_limit() -> None:
    bids = [bid(M1, "1", "7900"), bid(M2, "2", "7950"), bid(M3, "1", "7800"), bid(M1, "1", "7950.5")]
    cands = plan("sell", bids, D("2.5"), D("7900"), ME.peer_id)
    assert taken(cands) == [("7950.5", "1"), ("7950", "1.5")]
    assert taken(plan("sell", bids, D("9"), D("7900"), ME.peer_id)) == [
        ("7950.5", "1"),
        ("7950", "2"),
        ("7900", "1"),
    ]


def test_older_first_at_equal_price_whatever_the_input_order() -> None:
    late, early = ask(M1, "1", "8000", at=5), ask(M2, "1", "8000", at=1)
    for order in ([late, early], [early, late]):
        assert [o.id for o, _ in plan("buy", order, D("2"), D("8000"), ME.peer_id)] == [early.id, late.id]


def test_own_wrong_side_and_closed_offers_are_never_taken() -> None:
    mine = ask(ME, "1", "7000")
    a_bid = bid(M1, "1", "7500")
    closed = msgspec.structs.replace(ask(M2, "1", "7100"), status="cancelled")
    good = ask(M3, "1", "8000")
    assert taken(plan("buy", [mine, a_bid, closed, good], D("5"), D("9000"), ME.peer_id)) == [("8000", "1")]


def test_min_fill_skips_offers_unless_their_whole_remainder_is_wanted() -> None:
    big = ask(M1, "5", "8000", min_fill="2")  # best price, but takes of less than 2 are refused
    small = ask(M2, "3", "8001")
    assert taken(plan("buy", [big, small], D("1"), D("9000"), ME.peer_id)) == [("8001", "1")]
    assert taken(plan("buy", [big, small], D("2"), D("9000"), ME.peer_id)) == [("8000", "2")]
    assert taken(plan("buy", [big, small], D("6"), D("9000"), ME.peer_id)) == [("8000", "5"), ("8001", "1")]
    # a remainder below min_fill may still be taken whole (the maker allows the last remainder)
    rest = msgspec.structs.replace(big, remaining="1.5", seq=big.seq + 1)
    assert taken(plan("buy", [rest, small], D("1.5"), D("9000"), ME.peer_id)) == [("8000", "1.5")]
    assert taken(plan("buy", [rest, small], D("1"), D("9000"), ME.peer_id)) == [("8001", "1")]


def test_amounts_are_exact_decimals() -> None:
    asks = [ask(M1, "0.1", "8000"), ask(M2, "0.2", "8000.01"), ask(M3, "0.00000001", "8000.02")]
    cands = plan("buy", asks, D("0.30000001"), D("9000"), ME.peer_id)
    assert [a for _, a in cands] == [D("0.1"), D("0.2"), D("0.00000001")]
    assert sum(a for _, a in cands) == D("0.30000001")
    assert all(isinstance(a, Decimal) for _, a in cands)


def test_nothing_to_take() -> None:
    assert plan("buy", [], D("1"), D("8000"), ME.peer_id) == []
    assert plan("sell", [ask(M1, "1", "1")], D("1"), D("1"), ME.peer_id) == []


prices = st.integers(min_value=7990, max_value=8010).map(str)
sizes = st.integers(min_value=1, max_value=500).map(lambda n: canonical(Decimal(n) / 100))


@settings(max_examples=150, deadline=None)
@given(
    book=st.lists(
        st.tuples(st.sampled_from([M1, M2, ME]), sizes, prices, st.none() | sizes), min_size=0, max_size=12
    ),
    amount=sizes,
    limit=prices,
    side=st.sampled_from(["buy", "sell"]),
    seed=st.integers(0, 1000),
)
def test_plan_properties(
    book: list[tuple[Identity, str, str, str | None]], amount: str, limit: str, side: str, seed: int
) -> None:
    offers = []
    for maker, size, price, min_fill in book:
        mf = min_fill if min_fill is not None and D(min_fill) <= D(size) else None
        offers.append(offer(maker, "sell" if side == "buy" else "buy", size, price, min_fill=mf))
    random.Random(seed).shuffle(offers)
    want, lim = D(amount), D(limit)
    cands = plan(side, offers, want, lim, ME.peer_id)  # type: ignore[arg-type]
    total = sum((a for _, a in cands), Decimal(0))
    assert total <= want
    seen = set()
    for o, a in cands:
        assert o.maker != ME.peer_id and o.id not in seen
        seen.add(o.id)
        assert 0 < a <= D(o.remaining)
        assert D(o.price) <= lim if side == "buy" else D(o.price) >= lim
        assert o.min_fill is None or a >= D(o.min_fill) or a == D(o.remaining)
    ps = [D(o.price) for o, _ in cands]
    assert ps == sorted(ps, reverse=side == "sell")  # best price first
    if total < want:  # whatever was left out could not be taken
        for o in offers:
            if o.id in seen or o.maker == ME.peer_id:
                continue
            if D(o.price) <= lim if side == "buy" else D(o.price) >= lim:
                assert o.min_fill is not None


# --- result arithmetic ---------------------------------------------------------------------------------
def receipt_for(o: Offer, amount: str, taker: Identity = ME) -> Receipt:
    return Receipt(
        id=uuid.uuid4().hex, offer_id=o.id, maker=o.maker, maker_name=o.maker_name, taker=taker.peer_id,
        taker_name="me", side=o.side, pair=o.pair, price=o.price, amount=amount, created_at=T0,
        maker_sig="", taker_sig="",
    )  # fmt: skip


def test_average_price_is_exact() -> None:
    r = SweepResult(side="buy", pair="BTC/USD", amount=D("4"), limit=D("8010"))
    assert (r.filled, r.total, r.average_price, average_text(r.average_price)) == (0, 0, None, None)
    r.fills = [receipt_for(ask(M1, "1", "8000"), "1"), receipt_for(ask(M2, "2", "8001.5"), "2")]
    assert (r.filled, r.total, average_text(r.average_price)) == (D("3"), D("24003"), "8001")
    r.fills.append(receipt_for(ask(M3, "0.00000001", "8010"), "0.00000001"))
    assert r.total == D("24003.0000801")
    assert r.average_price == CONTEXT.divide(D("24003.0000801"), D("3.00000001"))  # 50 digits
    r.fills = [receipt_for(ask(M1, "1", "1"), "1"), receipt_for(ask(M2, "2", "2"), "2")]
    assert average_text(r.average_price) == "1." + "6" * 48 + "7"  # 50 significant digits


def test_totals_do_not_round_at_28_digits() -> None:
    # ETH/BTC: 8-place prices times 8-place amounts; six of these sum to 29 significant digits
    desk = Desk(M1, "m1")
    big, _ = desk.create(
        side="sell", amount="199999999.99999999", price="999.99999999", pair="ETH/BTC", now=T0
    )
    r = SweepResult(side="buy", pair="ETH/BTC", amount=D("1"), limit=D("1000"))
    r.fills = [receipt_for(big, big.amount) for _ in range(6)]
    exact = "1199999999987.9999400000000006"  # 19999999999999999 * 99999999999 * 6 / 10**24
    assert canonical(r.total) == exact
    assert sum((D(f.price) * D(f.amount) for f in r.fills), Decimal(0)) != D(exact)  # what prec 28 gives
    assert r.filled == 6 * D("199999999.99999999")


# --- execution: Sweeper with a scripted take ---------------------------------------------------------------
Script = dict[str, list[OTCError | None]]  # offer id -> what each successive take of it does (None: fills)


class Reach:
    """Which makers answer, scripted: ``silent`` never do; the others answer every probe."""

    def __init__(self) -> None:
        self.silent: set[str] = set()
        self.unreachable: set[str] = set()
        self.answered: set[str] = set()
        self.probes: list[list[str]] = []

    def reachable(self, peer_id: str) -> bool:
        return peer_id not in self.unreachable

    def answered_within(self, peer_id: str, seconds: float) -> bool:
        return peer_id in self.answered

    async def probe(self, peer_ids: list[str], timeout: float) -> None:
        self.probes.append(peer_ids)
        for p in peer_ids:
            (self.unreachable if p in self.silent else self.answered).add(p)


class Harness:
    """A Sweeper on a real book and desk; takes, syncs and who answers are scripted."""

    def __init__(self) -> None:
        self.book = Book(ME.peer_id)
        self.desk = Desk(ME, "me")
        self.calls: list[tuple[str, str]] = []
        self.script: Script = {}
        self.on_sync: Callable[[str], object] = lambda maker: None
        self.synced: list[str] = []
        self.reach = Reach()
        self.deadlines: list[float] = []
        self.sweeper = Sweeper(ME.peer_id, self.book, "BTC/USD", self.take, self.sync, self.post, self.reach)

    def add(self, *offers: Offer) -> None:
        for o in offers:
            self.book.apply(o)
            self.book.makers[o.maker].revealed = True  # live: its head matched (liveness is the book's)

    def post(self, **fields: Any) -> Offer:
        offer, _ = self.desk.create(now=now_ms(), **fields)
        self.book.apply(offer)
        return offer

    async def take(self, oid: str, amount: Any = None, *, deadline_s: float | None = None) -> Receipt:
        assert deadline_s is not None and deadline_s > 0
        self.deadlines.append(deadline_s)
        self.calls.append((oid, amount))
        steps = self.script.get(oid, [])
        step = steps.pop(0) if steps else None
        if step is not None:
            raise step
        o = self.book.get(oid)
        assert o is not None and D(amount) <= D(o.remaining)
        return receipt_for(o, amount, ME)

    async def sync(self, maker: str, *, force: bool = False) -> None:
        assert force, "a sweep needs the fresh state now, whatever the retry wait says"
        self.synced.append(maker)
        self.on_sync(maker)


@pytest.fixture
def h() -> Harness:
    return Harness()


def fresh(o: Offer, filled: str, maker: Identity) -> Offer:
    """The maker's next update of ``o`` after ``filled`` more of it was taken."""
    return sign(maker, fill(o, D(filled), o.seq + 1000))


async def test_sweep_fills_best_first_and_reports_exact_totals(h: Harness) -> None:
    a1, a2, a3 = ask(M1, "1", "8000"), ask(M2, "1", "8001"), ask(M3, "5", "8002")
    h.add(a3, a1, a2, ask(M1, "9", "8003"))
    res = await h.sweeper.sweep("buy", "2.5", "8002", None, False)
    assert h.calls == [(a1.id, "1"), (a2.id, "1"), (a3.id, "0.5")]
    assert (res.filled, res.total, res.pending, res.posted, res.skipped) == (
        D("2.5"),
        D("20002"),
        0,
        None,
        [],
    )
    assert average_text(res.average_price) == "8000.8"


async def test_offers_lost_to_other_takers_are_skipped(h: Harness) -> None:
    a1, a2, a3, a4 = ask(M1, "1", "8000"), ask(M2, "1", "8001"), ask(M3, "1", "8002"), ask(M3, "1", "8003")
    h.add(a1, a2, a3, a4)
    h.script = {
        a1.id: [OTCError(E.ERR_OFFER_CLOSED, "offer is filled")],
        a2.id: [OTCError(E.ERR_OFFER_NOT_FOUND, "gone")],
        a3.id: [OTCError(E.ERR_RESERVATION_EXPIRED, "too late")],
    }
    res = await h.sweeper.sweep("buy", "1", "8003", "BTC/USD", False)
    assert h.calls == [(a1.id, "1"), (a2.id, "1"), (a3.id, "1"), (a4.id, "1")]
    assert [f.offer_id for f in res.fills] == [a4.id] and res.filled == 1
    assert [(s.offer_id, s.code) for s in res.skipped] == [
        (a1.id, E.ERR_OFFER_CLOSED),
        (a2.id, E.ERR_OFFER_NOT_FOUND),
        (a3.id, E.ERR_RESERVATION_EXPIRED),
    ]


async def test_insufficient_remaining_retries_once_with_the_fresh_remaining(h: Harness) -> None:
    a1, a2 = ask(M1, "1", "8000"), ask(M2, "1", "8001")
    h.add(a1, a2)
    h.script = {a1.id: [OTCError(E.ERR_INSUFFICIENT_REMAINING, "only 0.4 of 1 is available")]}
    h.on_sync = lambda maker: h.book.apply(fresh(a1, "0.6", M1))  # the maker's list: 0.4 left
    res = await h.sweeper.sweep("buy", "1", "8001", None, False)
    assert h.synced == [M1.peer_id]
    assert h.calls == [(a1.id, "1"), (a1.id, "0.4"), (a2.id, "0.6")]
    assert [f.amount for f in res.fills] == ["0.4", "0.6"] and res.skipped == []
    assert res.total == D("0.4") * 8000 + D("0.6") * 8001


async def test_insufficient_remaining_twice_or_without_news_skips(h: Harness) -> None:
    a1, a2, a3 = ask(M1, "1", "8000"), ask(M2, "1", "8001"), ask(M3, "1", "8002")
    h.add(a1, a2, a3)
    refusal = OTCError(E.ERR_INSUFFICIENT_REMAINING, "the rest is reserved by other takers")
    h.script = {a1.id: [refusal, refusal], a2.id: [refusal]}
    h.on_sync = lambda maker: maker == M1.peer_id and h.book.apply(fresh(a1, "0.5", M1))
    res = await h.sweeper.sweep("buy", "1", "8002", None, False)
    # a1 retried once with its fresh 0.5 then skipped; a2 had no news (a hold by another taker): skipped
    assert h.calls == [(a1.id, "1"), (a1.id, "0.5"), (a2.id, "1"), (a3.id, "1")]
    assert [s.offer_id for s in res.skipped] == [a1.id, a2.id]
    assert [f.offer_id for f in res.fills] == [a3.id]


async def test_pending_takes_are_counted_never_overfilled_and_post_rests_the_rest(h: Harness) -> None:
    a1, a2 = ask(M1, "1", "8000"), ask(M2, "1", "8001")
    h.add(a1, a2)
    h.post(side="sell", amount="1", price="7000", pair="BTC/USD")  # our own, cheaper: never taken
    h.script = {a1.id: [OTCError(E.ERR_TRADE_PENDING, "retried in the background")]}
    res = await h.sweeper.sweep("buy", "3", "8001.5", None, True)
    assert h.calls == [(a1.id, "1"), (a2.id, "1")]
    assert (res.filled, res.pending) == (D("1"), D("1"))
    assert res.posted is not None
    posted = res.posted
    assert (posted.side, posted.amount, posted.price, posted.maker) == ("buy", "1", "8001.5", ME.peer_id)
    assert posted.id in h.desk.offers


async def test_sell_sweep_and_nothing_to_post_when_filled(h: Harness) -> None:
    b1, b2 = bid(M1, "2", "7900"), bid(M2, "2", "7950")
    h.add(b1, b2)
    res = await h.sweeper.sweep("sell", "3", "7900", None, True)
    assert h.calls == [(b2.id, "2"), (b1.id, "1")]
    assert (
        res.posted is None
        and average_text(res.average_price) == "7933.3333333333333333333333333333333333333333333333"
    )


async def test_nothing_fillable_posts_everything_or_nothing(h: Harness) -> None:
    h.add(ask(M1, "1", "8100"))
    res = await h.sweeper.sweep("buy", "2", "8000", None, False)
    assert (h.calls, res.fills, res.posted) == ([], [], None)
    res = await h.sweeper.sweep("buy", "2", "8000", None, True)
    assert res.posted is not None and (res.posted.amount, res.posted.price) == ("2", "8000")


@pytest.mark.parametrize(
    ("side", "amount", "limit", "pair", "code"),
    [
        ("hold", "1", "8000", None, E.ERR_INVALID_SIDE),
        ("buy", "0", "8000", None, E.ERR_INVALID_AMOUNT),
        ("buy", "-1", "8000", None, E.ERR_INVALID_AMOUNT),
        ("buy", "0.123456789", "8000", None, E.ERR_INVALID_AMOUNT),
        ("buy", 1.5, "8000", None, E.ERR_INVALID_AMOUNT),
        ("buy", "1", "8000.001", None, E.ERR_INVALID_PRICE),
        ("sell", "1", "abc", None, E.ERR_INVALID_PRICE),
        ("sell", "1", "8000", "DOGE/USD", E.ERR_UNKNOWN_PAIR),
    ],
)
async def test_invalid_input_is_refused_before_anything_is_taken(
    h: Harness, side: str, amount: Any, limit: str, pair: str | None, code: str
) -> None:
    h.add(ask(M1, "1", "7000"), bid(M1, "1", "9000"))
    with pytest.raises(OTCError) as err:
        await h.sweeper.sweep(side, amount, limit, pair, True)
    assert err.value.code == code
    assert h.calls == [] and h.desk.open_offers() == []


def test_average_display_rounds_only_what_needs_it() -> None:
    from otc.core.sweep import average_display

    assert average_display("8000") == "8000"
    assert average_display("8001.3125") == "8001.3125"
    assert average_display("8011.1111111111111111111") == "≈8011.1111"
    assert average_display("0.00015") == "≈0.0002"  # rounded half-even, and marked approximate


async def test_makers_that_do_not_answer_are_probed_once_and_skipped(h: Harness) -> None:
    a1, a2, a3 = ask(M1, "1", "8000"), ask(M2, "1", "8001"), ask(M3, "1", "8002")
    a4 = ask(M2, "1", "8003")
    h.add(a1, a2, a3, a4)
    h.reach.silent = {M1.peer_id, M2.peer_id}  # fake offers, priced best, from makers that never answer
    res = await h.sweeper.sweep("buy", "1", "8003", None, False)
    assert h.calls == [(a3.id, "1")]  # never waited on a silent maker's take
    assert h.reach.probes == [sorted([M1.peer_id, M2.peer_id, M3.peer_id])]  # one wait for all of them
    skipped = {s.offer_id: s.code for s in res.skipped}
    assert skipped[a1.id] == E.ERR_MAKER_UNREACHABLE and skipped[a2.id] == E.ERR_MAKER_UNREACHABLE
    assert res.filled == 1 and not res.deadline_reached


async def test_makers_heard_lately_are_not_probed(h: Harness) -> None:
    a1 = ask(M1, "1", "8000")
    h.add(a1)
    h.reach.answered = {M1.peer_id}
    res = await h.sweeper.sweep("buy", "1", "8000", None, False)
    assert h.reach.probes == [] and res.filled == 1


async def test_a_sweep_stops_at_its_deadline(h: Harness) -> None:
    a1, a2 = ask(M1, "1", "8000"), ask(M2, "1", "8001")
    h.add(a1, a2)
    h.reach.answered = {M1.peer_id, M2.peer_id}

    async def slow_take(oid: str, amount: Any = None, *, deadline_s: float | None = None) -> Receipt:
        assert deadline_s is not None and deadline_s <= 0.05
        await asyncio.sleep(deadline_s)  # a maker that takes all the time it is given
        raise OTCError(E.ERR_MAKER_UNREACHABLE, "no answer")

    h.sweeper.take = slow_take
    res = await h.sweeper.sweep("buy", "2", "8001", None, False, 0.05)
    assert res.deadline_reached and res.filled == 0


async def test_a_sweep_deadline_is_validated(h: Harness) -> None:
    for bad in (0, -1, 3601, "10", True):
        with pytest.raises(OTCError) as err:
            await h.sweeper.sweep("buy", "1", "8000", None, False, bad)
        assert err.value.code == E.ERR_INVALID_PAYLOAD
