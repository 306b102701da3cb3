"""The offer state machine, as its maker runs it.

Theory of operation
-------------------
An offer belongs to its maker, and only the maker ever changes it. Each change produces the offer's
complete new state with the maker's next sequence number, signed; other peers merely keep the highest
``seq`` they have seen (book.py). There are four states, and three of them are final::

    state    event                          next state
    -------  -----------------------------  ----------
    open     hold (reservations change)     open        reserved changes, remaining does not
    open     fill (amount <  remaining)     open        remaining decreases
    open     fill (amount == remaining)     filled
    open     cancel                         cancelled
    open     expire (now >= expires_at)     expired
    filled / cancelled / expired: no event applies; a closed offer never reopens.

``reserved`` is how much of ``remaining`` the maker holds for takers' pending confirms; it is published
with every change, so no book promises liquidity a taker cannot get (a closed offer holds nothing).

Expiry needs no message: every peer hides an offer whose ``expires_at`` has passed by its own clock;
the maker's ``expired`` update only lets books forget it sooner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from decimal import Decimal
from enum import Enum
from typing import Final

import msgspec

from .errors import ERR_INVALID_OFFER, OTCError
from .messages import Offer
from .money import CONTEXT, D, canonical, get_pair


class OfferEvent(Enum):
    HOLD = "hold"
    FILL = "fill"
    FILL_ALL = "fill_all"
    CANCEL = "cancel"
    EXPIRE = "expire"


OPEN: Final = "open"
FILLED: Final = "filled"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"
CLOSED = frozenset({FILLED, CANCELLED, EXPIRED})

TRANSITIONS: dict[tuple[str, OfferEvent], str] = {
    (OPEN, OfferEvent.HOLD): OPEN,
    (OPEN, OfferEvent.FILL): OPEN,
    (OPEN, OfferEvent.FILL_ALL): FILLED,
    (OPEN, OfferEvent.CANCEL): CANCELLED,
    (OPEN, OfferEvent.EXPIRE): EXPIRED,
}


def next_status(status: str, event: OfferEvent) -> str:
    try:
        return TRANSITIONS[(status, event)]
    except KeyError:
        raise OTCError(ERR_INVALID_OFFER, f"cannot {event.value} an offer that is {status}") from None


def offer_id(maker: str, seq: int) -> str:
    """Offer ids are derived, never random: the maker's key and the seq that created it. Every peer
    checks this, so no maker can claim (or squat in advance) an id belonging to another."""
    return hashlib.blake2b(f"{maker}:{seq}".encode(), digest_size=16).hexdigest()


_encoder = msgspec.json.Encoder()


def content_hash(offer: Offer) -> bytes:
    """SHA-256 of the offer's whole encoding, signature included."""
    return hashlib.sha256(_encoder.encode(offer)).digest()


def digest(hashes: Iterable[bytes]) -> str:
    """A maker's commitment to its open offers: SHA-256 over their sorted content hashes. A signed head
    carrying it authenticates a whole list with one signature check (a late join checks 100,000 offers
    in a fraction of a second), and, being no XOR or sum, it cannot be matched by recombining old
    signed states."""
    return hashlib.sha256(b"".join(sorted(hashes))).hexdigest()[:32]


class DigestCache:
    """The digest of a changing set of offers, rehashing only offer states not hashed before."""

    __slots__ = ("_hashes", "_value")

    def __init__(self) -> None:
        self._hashes: dict[str, tuple[int, bytes]] = {}
        self._value: str | None = None

    def invalidate(self) -> None:
        self._value = None

    def of(self, offers: Iterable[Offer]) -> str:
        if self._value is None:
            fresh: dict[str, tuple[int, bytes]] = {}
            for o in offers:
                cached = self._hashes.get(o.id)
                fresh[o.id] = cached if cached and cached[0] == o.seq else (o.seq, content_hash(o))
            self._hashes = fresh
            self._value = digest(h for _, h in fresh.values())
        return self._value


def fill(offer: Offer, amount: Decimal, seq: int, reserved: Decimal | None = None) -> Offer:
    """The offer after ``amount`` of it was traded; ``reserved``: what is still held for others."""
    remaining = CONTEXT.subtract(D(offer.remaining), amount)
    if remaining < 0:
        raise OTCError(ERR_INVALID_OFFER, "fill exceeds the remaining amount")  # guarded by the desk
    held = Decimal(0) if reserved is None else reserved
    if not 0 <= held <= remaining:
        raise OTCError(ERR_INVALID_OFFER, "reserved exceeds the remaining amount")  # guarded by the desk
    event = OfferEvent.FILL_ALL if remaining == 0 else OfferEvent.FILL
    return msgspec.structs.replace(
        offer,
        remaining=canonical(remaining),
        reserved=canonical(held),
        status=next_status(offer.status, event),
        seq=seq,
        sig="",
    )


def hold(offer: Offer, reserved: Decimal, seq: int) -> Offer:
    """The offer with a new amount held for pending confirms."""
    if not 0 <= reserved <= D(offer.remaining):
        raise OTCError(ERR_INVALID_OFFER, "reserved exceeds the remaining amount")  # guarded by the desk
    status = next_status(offer.status, OfferEvent.HOLD)
    return msgspec.structs.replace(offer, reserved=canonical(reserved), status=status, seq=seq, sig="")


def close(offer: Offer, event: OfferEvent, seq: int) -> Offer:
    status = next_status(offer.status, event)
    return msgspec.structs.replace(offer, reserved="0", status=status, seq=seq, sig="")


def available(offer: Offer) -> Decimal:
    """What a taker can get of an offer now: its remaining less what is held for others' confirms."""
    return CONTEXT.subtract(D(offer.remaining), D(offer.reserved))


def is_live(offer: Offer, now_ms: int) -> bool:
    return offer.status == OPEN and (offer.expires_at is None or offer.expires_at > now_ms)


def check_consistent(offer: Offer) -> None:
    """What a well-formed offer satisfies, whoever signed it (schemas check the field formats)."""
    if offer.id != offer_id(offer.maker, offer.created_seq) or offer.created_seq > offer.seq:
        raise OTCError(ERR_INVALID_OFFER, "offer id is not derived from its maker and creation seq")
    pair = get_pair(offer.pair)
    amount, remaining, price = D(offer.amount), D(offer.remaining), D(offer.price)
    if not 0 < amount <= pair.max_amount or not 0 < price <= pair.max_price:
        raise OTCError(ERR_INVALID_OFFER, "amount or price out of range")
    if _places(offer.amount) > pair.amount_places or _places(offer.remaining) > pair.amount_places:
        raise OTCError(ERR_INVALID_OFFER, "amount has too many decimal places")
    if _places(offer.price) > pair.price_places:
        raise OTCError(ERR_INVALID_OFFER, "price has too many decimal places")
    if remaining > amount:
        raise OTCError(ERR_INVALID_OFFER, "remaining exceeds amount")
    if _places(offer.reserved) > pair.amount_places or D(offer.reserved) > remaining:
        raise OTCError(ERR_INVALID_OFFER, "reserved exceeds remaining")
    if offer.status != OPEN and offer.reserved != "0":
        raise OTCError(ERR_INVALID_OFFER, "a closed offer holds nothing")
    if (remaining == 0) != (offer.status == FILLED):
        raise OTCError(ERR_INVALID_OFFER, "only a filled offer has nothing remaining")
    if offer.min_fill is not None and not 0 < D(offer.min_fill) <= amount:
        raise OTCError(ERR_INVALID_OFFER, "min_fill out of range")
    if offer.expires_at is not None and offer.expires_at <= offer.created_at:
        raise OTCError(ERR_INVALID_OFFER, "expires before it was created")


def same_terms(a: Offer, b: Offer) -> bool:
    """An offer's terms never change across updates; only remaining, reserved, status and seq do."""
    return (
        a.maker == b.maker
        and a.side == b.side
        and a.pair == b.pair
        and a.price == b.price
        and a.amount == b.amount
        and a.min_fill == b.min_fill
        and a.created_at == b.created_at
        and a.expires_at == b.expires_at
    )


def _places(text: str) -> int:
    _, _, frac = text.partition(".")
    return len(frac)
