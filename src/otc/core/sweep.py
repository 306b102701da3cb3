"""Sweep orders: take the best offers across makers, best price first, up to an amount and a limit price.

Planning is pure: from one side of the book it picks, in order, the offers a sweep would take and how
much of each. The peer (``Peer.sweep``) executes the plan one take at a time and re-plans from its fresh
book after every refusal, since books are only eventually consistent and other takers race for the same
offers. All arithmetic is ``Decimal``.

A buy sweep takes asks (sell offers) priced at or below the limit, lowest first; a sell sweep takes bids
(buy offers) priced at or above the limit, highest first; at equal price the older offer goes first, as
in the book. Own offers are never taken. An offer whose ``min_fill`` exceeds what is still wanted is
skipped, unless what is wanted is all that remains of it (the maker accepts a take of the whole
remainder whatever its ``min_fill``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, NamedTuple

from .messages import Offer, Receipt
from .money import CONTEXT, D, canonical
from .offer import available

Side = Literal["buy", "sell"]


class Candidate(NamedTuple):
    offer: Offer
    amount: Decimal


def opposite(side: str) -> str:
    return "sell" if side == "buy" else "buy"


def acceptable(side: str, price: Decimal, limit: Decimal) -> bool:
    """Whether a taker on ``side`` accepts ``price`` under ``limit``."""
    return price <= limit if side == "buy" else price >= limit


def plan(
    side: Side,
    offers: Iterable[Offer],
    amount: Decimal,
    limit: Decimal,
    me: str,
    caps: Mapping[str, Decimal] | None = None,
) -> list[Candidate]:
    """The takes that fill up to ``amount`` of a ``side`` sweep (the taker's side) from ``offers`` (the
    opposite side of one pair's book, in any order), best price first, never beyond ``limit``. What is
    reserved for other takers is not available; ``caps`` (offer id -> amount) bound takes further,
    e.g. where a maker said how much it lets us hold."""
    wanted_side = opposite(side)
    usable = [
        o
        for o in offers
        if o.side == wanted_side
        and o.status == "open"
        and o.maker != me
        and acceptable(side, D(o.price), limit)
    ]
    sign = 1 if side == "buy" else -1
    usable.sort(key=lambda o: (sign * D(o.price), o.created_at, o.id))
    out: list[Candidate] = []
    left = amount
    for offer in usable:
        if left <= 0:
            break
        remaining = D(offer.remaining)
        free = available(offer)
        if caps is not None and offer.id in caps:
            free = min(free, caps[offer.id])
        if free <= 0:
            continue
        take = min(left, free)
        if offer.min_fill is not None and take < D(offer.min_fill) and take != remaining:
            continue
        out.append(Candidate(offer, take))
        left = CONTEXT.subtract(left, take)
    return out


@dataclass(frozen=True)
class Skipped:
    offer_id: str
    code: str
    message: str


@dataclass
class SweepResult:
    side: Side
    pair: str
    amount: Decimal  # what was asked for
    limit: Decimal
    fills: list[Receipt] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # offers lost to other takers, or refused
    pending: Decimal = Decimal(0)  # takes the maker has not answered yet: may still complete
    posted: Offer | None = None  # the unfilled remainder, rested at the limit (``post``)
    deadline_reached: bool = False  # stopped at its deadline, with offers left to try

    @property
    def filled(self) -> Decimal:
        return exact_sum(D(r.amount) for r in self.fills)

    @property
    def total(self) -> Decimal:
        """Quote currency exchanged: the sum of price × amount over the fills (exact)."""
        return exact_sum(CONTEXT.multiply(D(r.price), D(r.amount)) for r in self.fills)

    @property
    def average_price(self) -> Decimal | None:
        filled = self.filled
        return None if filled == 0 else CONTEXT.divide(self.total, filled)


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """A sum in the 50-digit money context (the default context rounds at 28 digits)."""
    total = Decimal(0)
    for value in values:
        total = CONTEXT.add(total, value)
    return total


def average_text(value: Decimal | None) -> str | None:
    return None if value is None else canonical(value)


def average_display(text: str, places: int = 4) -> str:
    """An average price for people: at most ``places`` decimals, marked ``≈`` when that rounds it."""
    exact = Decimal(text)
    shown = exact.quantize(Decimal(1).scaleb(-places))
    return canonical(shown) if shown == exact else f"≈{canonical(shown)}"
