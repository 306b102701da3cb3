"""What a peer pushes to its neighbours, and the allowances it grants others. Pure.

- ``News``: what one event made new to us (offer updates, heads, death notices, proofs), to push on;
- ``Outbox``: what waits to be pushed to one neighbour, the newest state of each thing in arrival order,
  with a few requests in flight: what queues meanwhile goes in one batch, and a slow or silent neighbour
  delays nobody else;
- ``Bucket``: a token bucket, for the allowances of core/limits.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import limits as L
from .messages import Death, Equivocation, Gossip, Head, Offer
from .notices import head_key


class Bucket:
    """A token bucket: ``take`` spends if there is enough, refilling at ``rate`` per ms up to ``size``."""

    __slots__ = ("level", "rate", "size", "stamp")

    def __init__(self, size: float, per_s: float) -> None:
        self.size, self.rate, self.level, self.stamp = size, per_s / 1000, size, 0

    def take(self, amount: float, now: int) -> bool:
        self.level = min(self.size, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.level:
            return False
        self.level -= amount
        return True


@dataclass(slots=True)
class News:
    offers: list[Offer] = field(default_factory=list)
    heads: list[Head] = field(default_factory=list)
    deaths: list[Death] = field(default_factory=list)
    proofs: list[Equivocation] = field(default_factory=list)
    fresh: bool = False  # an offer in it is new to us, or closed: not a mere fill or hold
    forced: bool = False  # urgent whatever it holds (our refutation)

    def __bool__(self) -> bool:
        return bool(self.offers or self.heads or self.deaths or self.proofs)

    @property
    def urgent(self) -> bool:
        """Whether it goes to a neighbour at once, whatever the gap since the last push (see
        ``Timing.gossip_gap_ms``): a new or closed offer, a death notice, a proof, or a head alone (a
        revival, a refutation). Only a busy offer's fills and holds wait, coalesced to the newest."""
        return (
            self.fresh
            or self.forced
            or bool(self.deaths or self.proofs)
            or (bool(self.heads) and not self.offers)
        )

    def fits(self) -> bool:
        """Whether it fits in one gossip request."""
        return (
            len(self.offers) <= L.MAX_GOSSIP_OFFERS
            and len(self.heads) <= L.MAX_GOSSIP_HEADS
            and len(self.deaths) <= L.MAX_GOSSIP_DEATHS
            and len(self.proofs) <= L.MAX_GOSSIP_PROOFS
        )

    def gossip(self, sender: str) -> Gossip:
        return Gossip(
            sender=sender, offers=self.offers, heads=self.heads, deaths=self.deaths, proofs=self.proofs
        )


@dataclass(slots=True)
class Outbox:
    """What waits to be pushed to one neighbour: the newest state of each thing, in arrival order."""

    offers: dict[str, Offer] = field(default_factory=dict)
    heads: dict[str, Head] = field(default_factory=dict)
    deaths: dict[str, Death] = field(default_factory=dict)
    proofs: list[Equivocation] = field(default_factory=list)
    in_flight: int = 0
    next_send: int = 0  # no request to this neighbour before (ms) unless urgent: what queues meanwhile
    #                     goes in one request
    urgent: bool = False  # something queued is urgent (``News.urgent``)
    fresh: bool = False  # something queued is a new or closed offer (``News.fresh``)

    def room(self, fresh: bool = False) -> bool:
        """Whether another request may go to this neighbour now: a new or closed offer (what traders
        wait for) may have up to ``GOSSIP_IN_FLIGHT_FRESH`` requests in flight, anything else waits for
        one of ``GOSSIP_IN_FLIGHT`` to come back and then goes in one batch with whatever queued."""
        fresh = fresh or self.fresh
        return self.in_flight < (L.GOSSIP_IN_FLIGHT_FRESH if fresh else L.GOSSIP_IN_FLIGHT)

    def size(self) -> int:
        return len(self.offers) + len(self.heads) + len(self.deaths) + len(self.proofs)

    @property
    def pending(self) -> bool:
        return bool(self.offers or self.heads or self.deaths or self.proofs)

    def add(self, news: News) -> None:
        for o in news.offers:
            held = self.offers.get(o.id)
            if held is None or held.seq < o.seq:
                self.offers[o.id] = o
        for h in news.heads:
            held_head = self.heads.get(h.maker)
            if held_head is None or head_key(held_head) < head_key(h):
                self.heads[h.maker] = h
        for d in news.deaths:
            self.deaths[d.head.maker] = d
        self.proofs.extend(news.proofs)
        self.urgent = self.urgent or news.urgent
        self.fresh = self.fresh or news.fresh
        if self.size() > L.OUTBOX_MAX:  # a neighbour this far behind is repaired by reconciliation
            self.offers.clear()
            self.heads.clear()
            self.deaths.clear()
            self.proofs.clear()
            self.urgent = self.fresh = False

    def take(self, sender: str) -> Gossip:
        def cut(d: dict[str, Any], n: int) -> list[Any]:
            if len(d) <= n:
                items = list(d.values())
                d.clear()
                return items
            keys = list(d)[:n]
            return [d.pop(k) for k in keys]

        msg = Gossip(
            sender=sender,
            offers=cut(self.offers, L.MAX_GOSSIP_OFFERS) if self.offers else [],
            heads=cut(self.heads, L.MAX_GOSSIP_HEADS) if self.heads else [],
            deaths=cut(self.deaths, L.MAX_GOSSIP_DEATHS) if self.deaths else [],
        )
        if self.proofs:
            msg.proofs, self.proofs = self.proofs[: L.MAX_GOSSIP_PROOFS], self.proofs[L.MAX_GOSSIP_PROOFS :]
        self.urgent = self.urgent and self.pending
        self.fresh = self.fresh and self.pending
        return msg
