"""The replicated order book every peer holds: all makers' offers, merged by seq. Pure.

Theory of operation
-------------------
Each maker is the only author of its offers, and every update is the offer's whole state, signed, with
the maker's next seq. A peer therefore keeps, per offer, the copy with the highest seq, and refuses:

- anything not signed by the offer's maker, or internally inconsistent;
- an update whose seq is not above the copy held (stale, replayed or duplicated);
- any update of its own offers from the network: the desk writes those (``apply``), and a stale copy
  relayed back after a restart would otherwise resurrect an offer only we could ever repair;
- any update of an offer it holds a tombstone for: closed offers never come back;
- an update that changes an offer's terms or makes ``remaining`` grow (a maker contradicting itself);
- an update of an unknown offer with ``seq <= synced_head``, the seq at which we last received the
  maker's authoritative list of open offers: had it been open then, it would have been on the list.

That last rule is what lets tombstones be forgotten safely once ``synced_head`` has passed them.

Repair: each maker's signed heartbeat (``Head``) carries its latest seq and a digest committing to its
open offers (a hash over their full signed encodings). A peer whose own digest for that maker differs,
at the same or a newer seq, asks the maker for its list (``sync``), which both adds what was missed and
closes what is gone. The signed head authenticates the whole list, whoever relays it.

Liveness: offers of a maker not heard from for ``liveness_ms`` are hidden (not deleted: a paused maker
that comes back needs nothing re-sent), and so at once are those of a maker that says goodbye (a signed
``Departure``, when it stops on purpose); offers past ``expires_at`` are hidden by everyone's own clock. A
maker that comes back (or is heard for the first time) with a head our copy does not match stays hidden
until a sync has repaired the copy, so offers it closed meanwhile never show again, even briefly.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum

from sortedcontainers import SortedList

from .errors import OTCError
from .messages import Departure, Head, MakerOffers, MakerSeen, Offer
from .money import D
from .offer import OPEN, DigestCache, check_consistent, content_hash, digest, is_live, same_terms
from .signing import is_signed, offer_is_valid


class Applied(Enum):
    NEW = "new"  # first copy of an open offer
    UPDATED = "updated"  # newer state of an offer held
    CLOSED = "closed"  # the offer is now closed (tombstoned)
    STALE = "stale"  # not newer than what we know: ignored
    INVALID = "invalid"  # bad signature, inconsistent, or contradicts the maker's earlier updates


@dataclass
class MakerView:
    offers: dict[str, Offer] = field(default_factory=dict)  # open offers only
    tombstones: dict[str, int] = field(default_factory=dict)  # closed offer id -> seq that closed it
    max_seq: int = 0
    synced_head: int = 0
    head: Head | None = None
    last_seen: int | None = None  # local clock, ms
    since: int | None = None  # when we first heard of this maker (local clock, ms): for forgetting
    departed: int = 0  # ts of its last signed goodbye: no head dated at or before it is a sign of life

    digests: DigestCache = field(default_factory=DigestCache)

    @property
    def digest_hex(self) -> str:
        return self.digests.of(self.offers.values())

    def in_step(self, head: Head) -> bool:
        """Whether we hold exactly the open offers this head commits to, at its seq."""
        return head.head == self.max_seq and head.digest == self.digest_hex


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    name: str
    addr: str
    last_seen: int


class Book:
    def __init__(self, own_id: str | None = None, *, liveness_ms: int = 8000) -> None:
        self.own_id = own_id
        self.liveness_ms = liveness_ms
        self.makers: dict[str, MakerView] = {}
        self.by_pair: dict[str, dict[str, Offer]] = {}
        # price-time priority per (pair, side): best first. Keys: (-price or price, created_at, id)
        self._levels: dict[tuple[str, str], SortedList] = {}
        self._keys: dict[str, tuple[int, int, str]] = {}
        self._dead: dict[tuple[str, str], int] = {}  # removed keys still in each level
        self._sorted_ids: list[str] | None = None  # for paged snapshots; rebuilt after a change

    # --- reading ------------------------------------------------------------------------------------
    def get(self, oid: str) -> Offer | None:
        for offers in self.by_pair.values():
            offer = offers.get(oid)
            if offer is not None:
                return offer
        return None

    def find(self, prefix: str) -> list[Offer]:
        return [o for offers in self.by_pair.values() for oid, o in offers.items() if oid.startswith(prefix)]

    def is_visible(self, offer: Offer, now: int) -> bool:
        return is_live(offer, now) and self.maker_alive(offer.maker, now)

    def maker_alive(self, maker: str, now: int) -> bool:
        if maker == self.own_id:
            return True
        view = self.makers.get(maker)
        return view is not None and view.last_seen is not None and now - view.last_seen <= self.liveness_ms

    def view(self, pair: str, now: int) -> tuple[list[Offer], list[Offer]]:
        """(bids best first, asks best first); older first at equal price."""
        return self.side(pair, "buy", now), self.side(pair, "sell", now)

    def side(self, pair: str, side: str, now: int, limit: int | None = None) -> list[Offer]:
        """Visible offers of one side with something available, best price first (older first at
        equal price)."""
        offers = self.by_pair.get(pair, {})
        out: list[Offer] = []
        for key in self._levels.get((pair, side), ()):
            offer = offers.get(key[2])
            # an offer wholly held for other takers' confirms promises nothing: not shown until freed
            if offer is not None and offer.reserved != offer.remaining and self.is_visible(offer, now):
                out.append(offer)
                if limit is not None and len(out) >= limit:
                    break
        return out

    def best(self, pair: str, side: str, now: int) -> Offer | None:
        """The best visible offer of one side: the highest bid or the lowest ask."""
        found = self.side(pair, side, now, limit=1)
        return found[0] if found else None

    def open_count(self) -> int:
        return len(self._keys)

    def page(self, after: str, limit: int) -> tuple[list[Offer], str | None]:
        """Open offers with ids above ``after``, in id order, and the cursor of the next page."""
        if self._sorted_ids is None:
            self._sorted_ids = sorted(self._keys)
        start = bisect.bisect_right(self._sorted_ids, after)
        ids = self._sorted_ids[start : start + limit + 1]
        more = len(ids) > limit
        ids = ids[:limit]
        offers = [o for o in (self.get(oid) for oid in ids) if o is not None]
        return offers, (ids[-1] if more else None)

    def peers(self, now: int, *, hidden: bool = False) -> list[PeerInfo]:
        """Makers heard from and live; with ``hidden``, also those silent or awaiting a sync
        (``last_seen`` 0 for a maker never counted as live)."""
        out = []
        for maker, view in self.makers.items():
            if maker != self.own_id and view.head is not None and (hidden or self.maker_alive(maker, now)):
                out.append(PeerInfo(maker, view.head.name, view.head.addr, view.last_seen or 0))
        return sorted(out, key=lambda p: (p.name, p.peer_id))

    # --- writing ------------------------------------------------------------------------------------
    def is_news(self, offer: Offer) -> bool:
        """Whether an update could change anything: cheap, so signatures are checked only for news."""
        if offer.maker == self.own_id:
            return False  # our desk is the authority on our own offers
        view = self.makers.get(offer.maker)
        if view is None:
            return True
        if offer.id in view.tombstones:
            return False
        held = view.offers.get(offer.id)
        return offer.seq > (held.seq if held is not None else view.synced_head)

    def receive(self, offer: Offer, now: int, *, verified: bool = False) -> Applied:
        """Verify and apply one update from the network."""
        if not self.is_news(offer):
            return Applied.STALE
        if not verified and not offer_is_valid(offer):
            return Applied.INVALID
        applied = self.apply(offer)
        view = self.makers[offer.maker]
        if view.since is None:
            view.since = now
        return applied

    def apply(self, offer: Offer) -> Applied:
        """Apply an update already known to be authentic and consistent."""
        view = self.makers.get(offer.maker)
        if view is None:
            view = self.makers[offer.maker] = MakerView()
        if offer.id in view.tombstones:
            return Applied.STALE
        held = view.offers.get(offer.id)
        if held is not None:
            if offer.seq <= held.seq:
                return Applied.STALE
            if not same_terms(held, offer) or (
                offer.remaining != held.remaining and D(offer.remaining) > D(held.remaining)
            ):
                return Applied.INVALID
        elif offer.seq <= view.synced_head:
            return Applied.STALE
        elif offer.id in self._keys:
            return Applied.INVALID  # another maker's open offer has this id: ids index the whole book
        if offer.seq > view.max_seq:
            view.max_seq = offer.seq
        view.digests.invalidate()
        if offer.status != OPEN:
            if held is not None:
                self._drop(view, held)
            if offer.maker != self.own_id:  # our own are never taken from the network: no need
                view.tombstones[offer.id] = offer.seq
            return Applied.CLOSED
        view.offers[offer.id] = offer
        self.by_pair.setdefault(offer.pair, {})[offer.id] = offer
        if held is not None:
            return Applied.UPDATED  # same terms, so the same place in the index
        key = (
            -price_key(offer.price) if offer.side == "buy" else price_key(offer.price),
            offer.created_at,
            offer.id,
        )
        self._keys[offer.id] = key
        level = self._levels.get((offer.pair, offer.side))
        if level is None:
            level = self._levels[(offer.pair, offer.side)] = SortedList()
        level.add(key)
        self._sorted_ids = None
        return Applied.NEW

    def on_head(self, head: Head, now: int, *, verified: bool = False) -> bool:
        """Record a maker's heartbeat; True when our copy of its offers has drifted and needs a sync."""
        if head.maker == self.own_id or (not verified and not is_signed(head)):
            return False
        if not self._fresh(head, now):
            return False  # replayed, long delayed, or dated in the future: not a sign of life
        view = self.makers.get(head.maker)
        if view is None:
            view = self.makers[head.maker] = MakerView(since=now)
        if view.head is not None and head.ts <= view.head.ts:
            return False  # replayed or reordered heartbeat: proves nothing about liveness
        if head.ts <= view.departed:
            return False  # sent before the maker's goodbye, arriving after it
        returning = not self.maker_alive(head.maker, now)
        view.head = head
        if view.in_step(head):
            # we hold exactly the maker's list as of head.head: as good as a sync, so tombstones
            # at or below it can go (the synced_head rule now covers them)
            view.synced_head = max(view.synced_head, head.head)
            view.last_seen = now
            return False
        # A maker heard from again (or for the first time) whose offers we hold differently from what
        # it announces stays hidden until a sync: offers it closed meanwhile must not reappear.
        if returning:
            return True
        view.last_seen = now
        # a live maker: updates newer than its heartbeat mean pushes outran it, not drift
        return head.head >= view.max_seq

    def _fresh(self, head: Head, now: int) -> bool:
        return -self.liveness_ms <= now - head.ts <= 2 * self.liveness_ms

    def on_seen(self, seen: MakerSeen, now: int) -> None:
        """A heartbeat relayed in a snapshot (apply the snapshot's offers first): liveness as the
        relaying peer saw it, granted only if our copy of the maker's offers is what the head commits
        to (otherwise the maker's next heartbeat finds the drift and a sync reveals it)."""
        if seen.head.maker == self.own_id or not self._fresh(seen.head, now) or not is_signed(seen.head):
            return
        view = self.makers.get(seen.head.maker)
        if view is None:
            view = self.makers[seen.head.maker] = MakerView(since=now)
        if seen.head.ts <= view.departed:
            return
        if view.head is None or seen.head.ts > view.head.ts:
            view.head = seen.head
            last = now - seen.age_ms
            if view.digest_hex == seen.head.digest and (view.last_seen is None or last > view.last_seen):
                view.last_seen = last
                # our copy is exactly its open set at that seq: as good as a sync, so a staler copy
                # from a slower snapshot source is refused rather than shown
                view.synced_head = max(view.synced_head, seen.head.head)
                view.max_seq = max(view.max_seq, seen.head.head)

    def on_departure(self, goodbye: Departure, now: int) -> bool:
        """A maker's signed goodbye: hide its offers at once, as if it had been silent past the liveness
        timeout (they are kept: when it is heard again with a newer head, the rules for a maker coming
        back apply). Ignored unless signed, fresh, and newer than every head of it we hold. True when
        it hid a live maker."""
        if goodbye.maker == self.own_id or not -self.liveness_ms <= now - goodbye.ts <= 2 * self.liveness_ms:
            return False
        view = self.makers.get(goodbye.maker)
        if view is None or view.head is None or goodbye.ts <= max(view.head.ts, view.departed):
            return False
        if not is_signed(goodbye):
            return False
        alive = self.maker_alive(goodbye.maker, now)
        view.departed = goodbye.ts
        if view.last_seen is not None:
            view.last_seen = min(view.last_seen, now - self.liveness_ms - 1)
        return alive

    def sync(self, reply: MakerOffers, now: int, *, answered: bool = False) -> int | None:
        """Apply a maker's authoritative list of its open offers; returns how many offers changed, or
        None if the list was refused. ``answered``: the maker sent it itself, just now, so it is alive
        (and visible again if it was hidden), provided its head is fresh.

        The list must be exactly what the maker's signed head commits to (count, and the digest of the
        offers' full encodings) or nothing is applied: whoever relays a genuine head can neither drop,
        add nor alter offers behind it. One signature check then authenticates the whole list."""
        head = reply.head
        if head.maker == self.own_id or not is_signed(head):
            return None
        listed = {o.id: o for o in reply.offers}
        if (
            len(listed) != len(reply.offers)
            or len(listed) != head.count
            or any(o.maker != head.maker or o.status != OPEN or o.seq > head.head for o in reply.offers)
            or digest(content_hash(o) for o in reply.offers) != head.digest
        ):
            return None
        try:
            for offer in reply.offers:
                check_consistent(offer)  # the maker vouches for these, but we hold no malformed offer
        except OTCError:
            return None
        changed = 0
        for offer in reply.offers:
            if self.receive(offer, now, verified=True) in (Applied.NEW, Applied.UPDATED, Applied.CLOSED):
                changed += 1
        view = self.makers.setdefault(head.maker, MakerView(since=now))
        for oid, offer in list(view.offers.items()):
            if oid not in listed and offer.seq <= head.head:
                self._drop(view, offer)
                view.tombstones[oid] = head.head
                changed += 1
        view.synced_head = max(view.synced_head, head.head)
        view.max_seq = max(view.max_seq, head.head)
        # a reply older than a head we already hold could be a replay by whoever answers on its name
        if (
            answered
            and self._fresh(head, now)
            and (view.head is None or head.ts >= view.head.ts)
            and head.ts > view.departed
        ):
            view.head = head
            view.last_seen = now if view.last_seen is None else max(view.last_seen, now)
        return changed

    def forget_tombstones(self) -> int:
        """Drop tombstones the synced_head rule now covers; returns how many."""
        dropped = 0
        for view in self.makers.values():
            for oid in [oid for oid, seq in view.tombstones.items() if seq <= view.synced_head]:
                del view.tombstones[oid]
                dropped += 1
        return dropped

    def forget_silent(self, now: int, after_ms: int) -> list[str]:
        """Forget makers silent for ``after_ms`` (offers, tombstones and all); returns their ids.

        Safe for the same reason a newcomer is: whatever stale copy of their offers reaches us later
        stays hidden while they are silent, and a maker heard again whose head our copy does not match
        stays hidden until a sync has replaced that copy (see ``on_head``)."""
        for view in self.makers.values():
            if view.since is None and view.last_seen is None:
                view.since = now  # known only from relayed updates: the clock starts now
        gone = [
            maker
            for maker, view in self.makers.items()
            if maker != self.own_id and now - max(view.last_seen or 0, view.since or 0) > after_ms
        ]
        for maker in gone:
            view = self.makers.pop(maker)
            for offer in list(view.offers.values()):
                self._drop(view, offer)
        return gone

    def _drop(self, view: MakerView, offer: Offer) -> None:
        del view.offers[offer.id]
        view.digests.invalidate()
        pair = self.by_pair.get(offer.pair)
        if pair is not None:
            pair.pop(offer.id, None)
        self._sorted_ids = None
        if self._keys.pop(offer.id, None) is not None:
            # lazy removal: the key stays in its level (reads skip it) until the dead outnumber the live
            where = (offer.pair, offer.side)
            dead = self._dead[where] = self._dead.get(where, 0) + 1
            level = self._levels[where]
            if dead * 2 > len(level):
                self._levels[where] = SortedList(k for k in level if k[2] in self._keys)
                self._dead[where] = 0


def price_key(price: str) -> int:
    """A canonical decimal price as an exact integer in units of 1e-18, for fast ordering."""
    whole, _, frac = price.partition(".")
    return int(whole + frac.ljust(18, "0"))
