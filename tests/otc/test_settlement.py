"""Settlement steps without a network (core/settlement.py): who may make which step, the table, signed
steps checked on arrival, idempotency, disputes, deadlines, and a property test: two parties acting at
random over a channel that loses, duplicates and reorders their exchanges always end holding the same
steps and the same state."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from otc.core import errors as E
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Receipt, SettleStep, Terms
from otc.core.settlement import ENTITLED, FINAL, TRANSITIONS, Record, Role, Settlement, State, fold, parties
from otc.core.signing import receipt_of, sign, signing_bytes, terms_digest

MAKER = Identity.from_seed(bytes([41]) * 32)
TAKER = Identity.from_seed(bytes([42]) * 32)
MALLORY = Identity.from_seed(bytes([43]) * 32)
T0 = 1_700_000_000_000
HOUR = 3600_000


def trade(side: str = "sell", price: str = "8000", amount: str = "2.5") -> Receipt:
    terms = Terms(
        id="a" * 32,
        offer_id="b" * 32,
        maker=MAKER.peer_id,
        maker_name="maker",
        taker=TAKER.peer_id,
        taker_name="taker",
        side=side,
        pair="BTC/USD",
        price=price,
        amount=amount,
        created_at=T0,
    )
    data = signing_bytes(terms)
    return receipt_of(terms, MAKER.sign(data), TAKER.sign(data))


def both(receipt: Receipt, **kw: Any) -> tuple[Settlement, Settlement]:
    """(maker's view, taker's view)."""
    return (
        Settlement(Record(receipt=receipt), MAKER.peer_id, **kw),
        Settlement(Record(receipt=receipt), TAKER.peer_id, **kw),
    )


def refused(code: str, fn: Any, *args: Any) -> None:
    with pytest.raises(OTCError) as info:
        fn(*args)
    assert info.value.code == code, info.value


def test_the_buyer_pays_the_quote_currency_and_the_seller_delivers_the_base() -> None:
    sell = trade("sell")  # the maker sells: the taker buys
    assert parties(sell) == (TAKER.peer_id, MAKER.peer_id)
    maker, taker = both(sell)
    assert (maker.role, taker.role) == (Role.SELLER, Role.BUYER)
    view = taker.summary(T0)
    assert view["pays"] == {"from": TAKER.peer_id, "to": MAKER.peer_id, "currency": "USD", "amount": "20000"}
    assert view["delivers"] == {
        "from": MAKER.peer_id,
        "to": TAKER.peer_id,
        "currency": "BTC",
        "amount": "2.5",
    }
    assert (view["state"], view["next_steps"]) == ("awaiting_payment", ["payment_sent", "disputed"])
    assert maker.summary(T0)["next_steps"] == ["disputed"]  # the seller waits for the payment
    buy = trade("buy")
    assert parties(buy) == (MAKER.peer_id, TAKER.peer_id)
    assert Settlement(Record(receipt=buy), MAKER.peer_id).role is Role.BUYER
    refused(E.ERR_NOT_ENTITLED, Settlement, Record(receipt=buy), MALLORY.peer_id)


def test_the_happy_path_step_by_step_each_signed_by_its_party() -> None:
    seller, buyer = both(trade("sell"))
    identity = {seller.me: MAKER, buyer.me: TAKER}
    path = [
        (buyer, "payment_sent"),
        (seller, "payment_received"),
        (seller, "delivery_sent"),
        (buyer, "settled"),
    ]
    for n, (party, name) in enumerate(path, start=1):
        other = seller if party is buyer else buyer
        step = party.act(identity[party.me], name, T0 + n, note="ref 42" if n == 1 else None)
        assert step is not None and step.actor == party.me and step.terms == terms_digest(party.receipt)
        assert party.act(identity[party.me], name, T0 + n + 1) is None  # idempotent
        assert other.merge([step], T0 + n) == [step]
        assert other.merge([step], T0 + n) == []  # idempotent
        assert party.state == other.state == State(name)
        assert other.entered_at == T0 + n
    assert seller.state is State.SETTLED and seller.next_steps() == [] and seller.due_at() is None
    assert [s.step for s in seller.steps()] == [name for _, name in path]
    assert seller.steps()[0].note == "ref 42"


def test_steps_follow_the_table_and_the_roles() -> None:
    seller, buyer = both(trade("sell"))
    refused(E.ERR_NOT_ENTITLED, seller.act, MAKER, "payment_sent", T0)
    refused(E.ERR_NOT_ENTITLED, buyer.act, TAKER, "payment_received", T0)
    refused(E.ERR_SETTLEMENT_STEP, seller.act, MAKER, "payment_received", T0)  # nothing was sent yet
    refused(E.ERR_SETTLEMENT_STEP, buyer.act, TAKER, "settled", T0)
    refused(E.ERR_SETTLEMENT_STEP, buyer.act, TAKER, "shipped", T0)
    refused(E.ERR_INVALID_MESSAGE, buyer.act, TAKER, "payment_sent", T0, "\x00bad note")
    assert buyer.steps() == [] and buyer.state is State.AWAITING_PAYMENT
    # every step of the table is one party's, named after the state it leads to
    assert {name for (_, name) in TRANSITIONS} | {"disputed"} == set(ENTITLED)
    assert all(TRANSITIONS[(src, name)] == State(name) for (src, name) in TRANSITIONS)


def test_a_step_from_the_network_is_checked_and_a_bad_one_changes_nothing() -> None:
    seller, buyer = both(trade("sell"))
    good = buyer.act(TAKER, "payment_sent", T0)
    assert good is not None

    def forged(**changes: Any) -> SettleStep:
        return msgspec.structs.replace(good, **changes)

    cases = [
        (forged(sig=MALLORY.sign(b"x")), E.ERR_BAD_SIGNATURE),
        (forged(note="changed after signing"), E.ERR_BAD_SIGNATURE),
        (sign(MALLORY, forged(actor=MALLORY.peer_id)), E.ERR_NOT_ENTITLED),  # an outsider
        (sign(MAKER, forged(actor=MAKER.peer_id)), E.ERR_NOT_ENTITLED),  # the seller cannot say it paid
        (sign(TAKER, forged(terms="c" * 32)), E.ERR_INVALID_MESSAGE),  # about another trade
        (sign(TAKER, forged(trade_id="d" * 32)), E.ERR_INVALID_MESSAGE),
        (sign(TAKER, forged(ts=T0 + 10 * HOUR)), E.ERR_INVALID_MESSAGE),  # dated in the future
    ]
    for bad, code in cases:
        refused(code, seller.merge, [bad, good], T0)  # all or nothing: the good one is not kept either
        assert seller.steps() == [] and seller.state is State.AWAITING_PAYMENT
    assert seller.merge([good], T0) == [good]
    # once a step is held, another copy of it changes nothing (steps are immutable once signed)
    assert seller.merge([sign(TAKER, forged(note="another copy"))], T0) == [] and seller.steps() == [good]


def test_either_party_may_dispute_an_open_trade_and_a_dispute_wins_a_race() -> None:
    seller, buyer = both(trade("sell"))
    paid = buyer.act(TAKER, "payment_sent", T0 + 1)
    dispute = seller.act(MAKER, "disputed", T0 + 2)  # the seller disputes before it heard of the payment
    assert paid is not None and dispute is not None
    assert seller.state is State.DISPUTED and buyer.state is State.PAYMENT_SENT
    seller.merge([paid], T0 + 3)
    buyer.merge([dispute], T0 + 3)
    assert seller.state is buyer.state is State.DISPUTED
    assert seller.entered_at == buyer.entered_at == T0 + 2
    refused(E.ERR_SETTLEMENT_STEP, buyer.act, TAKER, "disputed", T0 + 4)  # final
    refused(E.ERR_SETTLEMENT_STEP, seller.act, MAKER, "payment_received", T0 + 4)


def test_deadlines_flag_each_state_once_on_both_sides() -> None:
    deadlines = {State.AWAITING_PAYMENT: 1000, State.PAYMENT_SENT: 5000}
    seller, buyer = both(trade("sell"), deadlines=deadlines)
    assert seller.due_at() == buyer.due_at() == T0 + 1000
    assert not seller.is_overdue(T0 + 999) and seller.is_overdue(T0 + 1000)
    assert seller.flag_overdue(T0 + 1000) and not seller.flag_overdue(T0 + 2000)  # once
    assert buyer.flag_overdue(T0 + 1000)
    paid = buyer.act(TAKER, "payment_sent", T0 + 1500)
    seller.merge([paid], T0 + 1600)  # type: ignore[list-item]
    assert seller.due_at() == buyer.due_at() == T0 + 6500  # from the signed time of the step
    assert not seller.flag_overdue(T0 + 6499) and seller.flag_overdue(T0 + 6500)
    # states without a setting use the defaults
    assert Settlement(Record(receipt=trade()), MAKER.peer_id, {}).due_at() == T0 + 2 * HOUR


def test_acknowledgements_track_what_the_other_party_holds() -> None:
    seller, buyer = both(trade("sell"))
    paid = buyer.act(TAKER, "payment_sent", T0)
    assert buyer.unacked() == [paid]
    seller.merge(buyer.steps(), T0)
    assert buyer.acknowledge(seller.steps()) and buyer.unacked() == []
    assert not buyer.acknowledge(seller.steps())  # nothing new
    assert buyer.record.acked == [f"payment_sent:{TAKER.peer_id}"]


def test_the_state_is_the_same_whatever_order_steps_arrive_in() -> None:
    seller, buyer = both(trade("sell"))
    steps = [buyer.act(TAKER, "payment_sent", T0 + 1)]
    seller.merge(steps, T0 + 1)  # type: ignore[arg-type]
    steps += [seller.act(MAKER, "payment_received", T0 + 2), seller.act(MAKER, "delivery_sent", T0 + 3)]
    rng = random.Random(7)
    for _ in range(10):
        shuffled = list(steps)
        rng.shuffle(shuffled)
        assert fold(shuffled, seller.receipt) == (State.DELIVERY_SENT, T0 + 3)  # type: ignore[arg-type]
    # a step whose predecessor is missing is held, not applied
    lone = Settlement(Record(receipt=seller.receipt), TAKER.peer_id)
    lone.merge([steps[2]], T0 + 4)  # type: ignore[list-item]
    assert lone.state is State.AWAITING_PAYMENT
    lone.merge(steps[:2], T0 + 4)  # type: ignore[arg-type]
    assert lone.state is State.DELIVERY_SENT


# --- the property: two parties over a bad channel -------------------------------------------------------
ACTIONS = ["act", "send", "send", "deliver", "deliver", "drop", "duplicate"]


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_two_parties_always_end_level(data: st.DataObject) -> None:
    side = data.draw(st.sampled_from(["buy", "sell"]))
    receipt = trade(side)
    parties_ = {
        MAKER.peer_id: (MAKER, Settlement(Record(receipt=receipt), MAKER.peer_id)),
        TAKER.peer_id: (TAKER, Settlement(Record(receipt=receipt), TAKER.peer_id)),
    }
    channel: list[tuple[str, list[SettleStep]]] = []  # (to, steps) in flight
    now = T0
    for _ in range(data.draw(st.integers(1, 50))):
        now += data.draw(st.integers(1, 1000))
        action = data.draw(st.sampled_from(ACTIONS))
        who = data.draw(st.sampled_from(sorted(parties_)))
        identity, me = parties_[who]
        if action == "act":  # mostly what the party may do now, sometimes anything (refused)
            allowed = [x for x in me.next_steps() if x != "disputed"]
            anything = ["payment_sent", "payment_received", "delivery_sent", "settled", "disputed"]
            step = data.draw(st.sampled_from(allowed * 12 + anything))
            before = me.state
            try:
                me.act(identity, step, now)
            except OTCError as exc:
                assert exc.code in (E.ERR_NOT_ENTITLED, E.ERR_SETTLEMENT_STEP)
                assert me.state is before
        elif action == "send":
            channel.append((me.other, me.steps()))
        elif channel:
            i = data.draw(st.integers(0, len(channel) - 1))
            if action == "drop":
                channel.pop(i)
            elif action == "duplicate":
                channel.append(channel[i])
            else:
                to, steps = channel.pop(i)
                target = parties_[to][1]
                target.merge(steps, now)
                target.acknowledge(steps)
    # then a reliable exchange each way, as the background loop does until acknowledged
    a, b = (s for _, s in parties_.values())
    for _ in range(2):
        b.merge(a.steps(), now)
        a.acknowledge(b.steps())
        a.merge(b.steps(), now)
        b.acknowledge(a.steps())
    assert a.steps() == b.steps() and a.state is b.state
    assert a.unacked() == [] and b.unacked() == []
    for step in a.steps():  # every step held is signed by the party entitled to it
        entitled = ENTITLED[step.step]
        assert entitled is Role.EITHER or entitled is (a.role if step.actor == a.me else b.role)
    event(f"final state: {a.state.value}")
    if a.state not in FINAL:
        assert a.state in {State(name) for (_, name) in TRANSITIONS} | {State.AWAITING_PAYMENT}
