"""Offer templates and amendments without a network (core/templates.py): posting the same terms again,
and replacing an open offer in one step that is applied whole or not at all."""

from __future__ import annotations

import pytest

from otc.core import errors as E
from otc.core.desk import Desk
from otc.core.errors import OTCError
from otc.core.identity import Identity
from otc.core.messages import Take
from otc.core.offer import same_terms
from otc.core.signing import sign
from otc.core.templates import replace, terms_of

MAKER = Identity.from_seed(bytes([51]) * 32)
TAKER = Identity.from_seed(bytes([52]) * 32)
T0 = 1_700_000_000_000


def test_again_posts_the_same_terms_with_the_same_lifetime() -> None:
    desk = Desk(MAKER, "maker")
    old, _ = desk.create(
        side="sell", amount="3", price="8000", pair="BTC/USD", min_fill="1", ttl_ms=60_000, now=T0
    )
    closed, _ = desk.cancel(old.id, T0 + 5)
    new, effects = desk.create(now=T0 + 10, **terms_of(closed))
    assert effects.offers == [new] and new.id != old.id and new.status == "open"
    assert (new.side, new.amount, new.price, new.pair, new.min_fill) == ("sell", "3", "8000", "BTC/USD", "1")
    assert new.expires_at == T0 + 10 + 60_000


def test_an_amendment_is_one_new_offer_and_one_cancel_in_one_effects() -> None:
    desk = Desk(MAKER, "maker")
    old, _ = desk.create(side="buy", amount="5", price="7900", pair="BTC/USD", ttl_ms=60_000, now=T0)
    take = sign(
        TAKER,
        Take(
            trade_id="e" * 32,
            offer_id=old.id,
            amount="1",
            price="7900",
            taker=TAKER.peer_id,
            taker_name="t",
            ts=T0,
        ),
    )
    desk.take(take, T0 + 1)  # a reservation in flight on the old offer
    cancelled, new, effects = replace(desk, old.id, T0 + 2, price="7950")
    assert [o.id for o in effects.offers] == [new.id, old.id]
    assert cancelled.status == "cancelled" and new.status == "open"
    assert (new.price, new.amount, new.side, new.expires_at) == ("7950", "5", "buy", old.expires_at)
    assert not same_terms(new, old)  # a new offer, not a changed one: books never see terms change
    assert [t.state.value for t in effects.trades] == ["released"]  # the reservation went with the old
    assert desk.open_offers() == [new]
    _, newer, _ = replace(desk, new.id, T0 + 3, amount="2")
    assert (newer.price, newer.amount) == ("7950", "2")


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"price": "-1"}, E.ERR_INVALID_PRICE),
        ({"amount": "0"}, E.ERR_INVALID_AMOUNT),
        ({"amount": "0.5"}, E.ERR_INVALID_AMOUNT),  # below the offer's min fill
        ({}, E.ERR_INVALID_PAYLOAD),
    ],
)
def test_a_bad_amendment_changes_nothing(changes: dict[str, str], code: str) -> None:
    desk = Desk(MAKER, "maker")
    old, _ = desk.create(side="sell", amount="3", price="8000", pair="BTC/USD", min_fill="1", now=T0)
    seq, digest = desk.seq, desk.digest()
    with pytest.raises(OTCError) as info:
        replace(desk, old.id, T0 + 1, **changes)
    assert info.value.code == code
    assert desk.seq == seq and desk.digest() == digest and desk.open_offers() == [old]


def test_only_an_open_offer_of_ours_can_be_amended() -> None:
    desk = Desk(MAKER, "maker")
    old, _ = desk.create(side="sell", amount="3", price="8000", pair="BTC/USD", ttl_ms=1000, now=T0)
    for oid, now, code in [("f" * 32, T0, E.ERR_OFFER_NOT_FOUND), (old.id, T0 + 1000, E.ERR_OFFER_EXPIRED)]:
        with pytest.raises(OTCError) as info:
            replace(desk, oid, now, price="1")
        assert info.value.code == code
    desk.cancel(old.id, T0 + 1)
    with pytest.raises(OTCError) as info:
        replace(desk, old.id, T0 + 2, price="1")
    assert info.value.code == E.ERR_OFFER_CLOSED
