"""Offer templates and amendments, pure: repost an offer's terms, or replace an open offer in one step.

An offer's terms never change (books refuse an update that changes them, see book.py and
``offer.same_terms``), so amending an open offer's price or amount is a *replace*: a new offer with the
new terms and the cancel of the old one, decided in one synchronous call on the maker's desk (nothing can
interleave), returned as one ``Effects`` that the caller persists in one store transaction and publishes
in one batch. Either both happen or neither: the new offer is validated and created first (refusing bad
input changes nothing), then the old one is cancelled, which cannot fail once it is known to be ours and
open, as nothing ran in between. A take racing the replace is answered against whichever is current:
reservations on the old offer are released by its cancel (their confirm is refused ``ERR_OFFER_CLOSED``).
"""

from __future__ import annotations

from typing import Any

from . import errors as E
from .desk import Desk, Effects
from .errors import OTCError
from .messages import Offer
from .offer import CLOSED, is_live


def terms_of(offer: Offer) -> dict[str, Any]:
    """What ``Desk.create`` needs to post an offer with the same terms again (the whole amount, and the
    same lifetime counted from now)."""
    ttl = None if offer.expires_at is None else offer.expires_at - offer.created_at
    return {"side": offer.side, "amount": offer.amount, "price": offer.price, "pair": offer.pair,
            "min_fill": offer.min_fill, "ttl_ms": ttl}  # fmt: skip


def replace(
    desk: Desk, oid: str, now: int, *, price: Any = None, amount: Any = None
) -> tuple[Offer, Offer, Effects]:
    """Replace our open offer ``oid`` by one with a new price and/or amount (default: what remains),
    the rest of its terms (side, pair, min fill, expiry time) unchanged. Returns (the cancelled offer,
    the new offer, the effects of both); raises ``OTCError`` and changes nothing if it cannot."""
    old = desk.offers.get(oid)
    if old is None:
        raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no offer {oid} of yours")
    if old.status in CLOSED:
        raise OTCError(E.ERR_OFFER_CLOSED, f"offer {oid} is {old.status}: post it again instead")
    if not is_live(old, now):
        raise OTCError(E.ERR_OFFER_EXPIRED, f"offer {oid} has expired: post it again instead")
    if price is None and amount is None:
        raise OTCError(E.ERR_INVALID_PAYLOAD, "give a new price, a new amount, or both")
    new, created = desk.create(
        side=old.side,
        amount=old.remaining if amount is None else amount,
        price=old.price if price is None else price,
        pair=old.pair,
        min_fill=old.min_fill,
        ttl_ms=None if old.expires_at is None else old.expires_at - now,
        now=now,
    )
    closed, cancelled = desk.cancel(oid, now)
    created.extend(cancelled)
    return closed, new, created
