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
  maker's authoritative list of open offers: had it been open then, it would have been on the list;
- a new offer past ``MAX_OFFERS_PER_MAKER`` open ones of its maker (limits.py).

That rule on ``synced_head`` is what lets tombstones be forgotten safely once it has passed them.

Heads. Each maker signs a ``Head``: its latest seq and a digest committing to its open offers (a hash over
their full signed encodings). Heads travel with the maker's updates; a head whose digest our copy does
not match tells us we missed something, and a list of offers that matches a head (``sync``) is
authenticated by that one signature, whoever relays it, and closes every offer it leaves out.

Liveness is decided by the replication protocol (core/replication.py), recorded here per maker:

    state      event                                                     next
    ---------  --------------------------------------------------------  ---------
    unknown    head (our copy matches it)                                live
    unknown    head (our copy does not match it)                         hidden
    hidden     a list matching its head (sync), or a head we now match   live
    live       head (newer), whether or not our copy matches             live   (drift is repaired by a pull)
    live       death notice naming a head at least as new as ours        dead
    hidden     death notice naming a head at least as new as ours        dead
    dead       head newer than the one the notice named                  live if our copy matches it,
                                                                         else hidden
    live       head from a new address (the maker restarted)             live if our copy matches it,
                                                                         else hidden
    any        proof that it signed two states of one thing              equivocating (final)
    dead       forgotten (limits: 10 min after the notice)               unknown, but heads not newer
                                                                         than the last are refused

Only live makers' offers are visible; so a maker heard again (or for the first time) whose offers we hold
differently from what it announces stays hidden until a sync has repaired our copy: offers it closed
meanwhile never show again, even briefly. Offers past ``expires_at`` are hidden by everyone's own clock.

Books can start from a shared base of maker views (``Book(base=...)``): the simulator runs thousands of
books that begin identical. A shared view is copied before this book changes it (``_writable``).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from sortedcontainers import SortedList

from . import fingerprint as F
from . import limits as L
from .errors import OTCError
from .messages import Death, Equivocation, Head, Item, MakerOffers, Offer
from .money import D
from .notices import head_key, proof_maker
from .offer import OPEN, DigestCache, check_consistent, content_hash, digest, is_live, same_terms
from .signing import is_signed, offer_is_valid


class Applied(Enum):
    NEW = "new"  # first copy of an open offer
    UPDATED = "updated"  # newer state of an offer held
    CLOSED = "closed"  # the offer is now closed (tombstoned)
    STALE = "stale"  # not newer than what we know: ignored
    INVALID = "invalid"  # bad signature, inconsistent, or contradicts the maker's earlier updates
    REFUSED = "refused"  # past a bound (limits.py), or its maker is hidden for good


class HeadOutcome(Enum):
    IGNORED = "ignored"  # ours, not newer than what we hold, covered by a notice, or past a bound
    IN_STEP = "in_step"  # newer, and our copy is exactly what it commits to
    DRIFT = "drift"  # newer, and our copy differs: a pull repairs it (the maker stays hidden if it was)
    CONFLICT = "conflict"  # same seq as the head we hold, another digest: the maker equivocates


@dataclass(slots=True)
class MakerView:
    offers: dict[str, Offer] = field(default_factory=dict)  # open offers only
    tombstones: dict[str, int] = field(default_factory=dict)  # closed offer id -> seq that closed it
    max_seq: int = 0
    synced_head: int = 0
    head: Head | None = None
    last_seen: int | None = None  # local clock, ms: the last new head, or direct word from the maker
    since: int | None = None  # when we first heard of this maker (local clock, ms): for forgetting
    revealed: bool = False  # our copy has matched its head since we (re)learned of it: it may show
    death: Death | None = None  # the notice that hides it (covers ``head``)
    died_at: int | None = None  # local clock when that notice was applied
    proof: Equivocation | None = None  # it equivocated: hidden for good
    counted: int = 0  # its item hash as counted in the book's fingerprints (0: not counted)
    shared: bool = False  # part of a base shared with other books: copy before writing

    digests: DigestCache = field(default_factory=DigestCache)

    @property
    def digest_hex(self) -> str:
        return self.digests.of(self.offers.values())

    def in_step(self, head: Head) -> bool:
        """Whether we hold exactly the open offers this head commits to, at its seq."""
        return head.head == self.max_seq and head.digest == self.digest_hex

    @property
    def state(self) -> int:
        if self.proof is not None:
            return F.EQUIVOCATING
        if self.death is not None:
            return F.DEAD
        if self.head is not None and self.revealed and self.in_step(self.head):
            return F.IN_STEP
        return F.DRIFTED

    def copy(self) -> MakerView:
        digests = DigestCache()
        digests._hashes, digests._value = dict(self.digests._hashes), self.digests._value
        return MakerView(
            dict(self.offers), dict(self.tombstones), self.max_seq, self.synced_head, self.head,
            self.last_seen, self.since, self.revealed, self.death, self.died_at, self.proof, self.counted,
            False, digests,
        )  # fmt: skip


@dataclass(frozen=True)
class PeerInfo:
    peer_id: str
    name: str
    addr: str
    last_seen: int


_GONE: Any = None  # a layered mapping's mark for a key deleted from its base


class Layered(MutableMapping[str, MakerView]):
    """A dict over a read-only base shared with other books: reads fall through to the base, writes and
    deletions stay here. What a book of thousands of identical peers needs to fit in memory."""

    def __init__(self, base: Mapping[str, MakerView]) -> None:
        self.base = base
        self.local: dict[str, MakerView | None] = {}
        self._len = len(base)

    def __getitem__(self, key: str) -> MakerView:
        view = self.local.get(key, self)
        if view is self:
            return self.base[key]
        if view is None:
            raise KeyError(key)
        return view  # type: ignore[return-value]

    def get(self, key: str, default: Any = None) -> Any:
        view = self.local.get(key, self)
        if view is self:
            return self.base.get(key, default)
        return default if view is None else view

    def __contains__(self, key: object) -> bool:
        view = self.local.get(key, self)  # type: ignore[call-overload]
        return key in self.base if view is self else view is not None

    def __setitem__(self, key: str, view: MakerView) -> None:
        if key not in self:
            self._len += 1
        self.local[key] = view

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._len -= 1
        if key in self.base:
            self.local[key] = _GONE
        else:
            del self.local[key]

    def __iter__(self) -> Iterator[str]:
        for key, view in self.local.items():
            if view is not None:
                yield key
        for key in self.base:
            if key not in self.local:
                yield key

    def __len__(self) -> int:
        return self._len


class Book:
    def __init__(
        self,
        own_id: str | None = None,
        *,
        max_offers: int = L.MAX_OFFERS_PER_MAKER,
        base: Mapping[str, MakerView] | None = None,
    ) -> None:
        self.own_id = own_id
        self.max_offers = max_offers
        self.makers: MutableMapping[str, MakerView] = {} if base is None else Layered(base)
        self.by_pair: dict[str, dict[str, Offer]] = {}
        # price-time priority per (pair, side): best first. Keys: (-price or price, created_at, id)
        self._levels: dict[tuple[str, str], SortedList] = {}
        self._keys: dict[str, tuple[int, int, str]] = {}
        self._dead: dict[tuple[str, str], int] = {}  # removed keys still in each level
        self._sorted_ids: list[str] | None = None  # for paged snapshots; rebuilt after a change
        # forgotten dead or equivocating makers: the newest (seq, ts) of theirs we knew, so an old head
        # replayed later cannot bring them back (bounded: oldest entries go first)
        self.graveyard: OrderedDict[str, tuple[int, int]] = OrderedDict()
        self.dirty: set[str] = set()  # makers whose item may have changed since the replica last looked
        # what the periodic passes look at, so they cost what is pending, not the whole book
        self._tombstoned: set[str] = set()  # makers holding tombstones
        self._mortal: set[str] = set()  # makers that may be forgotten: dead, equivocating or headless

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
        """Whether the maker's offers may show: ours, or live (see the table at the top)."""
        if maker == self.own_id:
            return True
        view = self.makers.get(maker)
        return view is not None and view.revealed and view.death is None and view.proof is None

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
        """Makers with a head that are live; with ``hidden``, also those dead, equivocating or awaiting
        a sync (``last_seen`` 0 for a maker never heard from directly)."""
        out = []
        for maker, view in self.makers.items():
            if maker != self.own_id and view.head is not None and (hidden or self.maker_alive(maker, now)):
                out.append(PeerInfo(maker, view.head.name, view.head.addr, view.last_seen or 0))
        return sorted(out, key=lambda p: (p.name, p.peer_id))

    def item(self, maker: str, view: MakerView) -> Item | None:
        """What we hold of a maker, as reconciliation compares it (None: nothing to compare, no head)."""
        if view.head is None:
            return None
        return Item(maker, view.head.head, view.head.ts, view.state)

    # --- writing ------------------------------------------------------------------------------------
    def _writable(self, maker: str) -> MakerView | None:
        view = self.makers.get(maker)
        if view is not None and view.shared:
            view = self.makers[maker] = view.copy()
        if view is not None:
            self.dirty.add(maker)
        return view

    def _new_view(self, maker: str, now: int | None) -> MakerView:
        view = self.makers[maker] = MakerView(since=now)
        self.dirty.add(maker)
        self._mortal.add(maker)  # headless for now
        return view

    def buried(self, maker: str, key: tuple[int, int]) -> bool:
        """Whether a state of a forgotten dead or equivocating maker is no newer than its last one."""
        last = self.graveyard.get(maker)
        return last is not None and key <= last

    def is_news(self, offer: Offer) -> bool:
        """Whether an update could change anything: cheap, so signatures are checked only for news."""
        if offer.maker == self.own_id:
            return False  # our desk is the authority on our own offers
        view = self.makers.get(offer.maker)
        if view is None:
            return not self.buried(offer.maker, (offer.seq, 2**63))
        if offer.id in view.tombstones or view.proof is not None:
            return False
        held = view.offers.get(offer.id)
        return offer.seq > (held.seq if held is not None else view.synced_head)

    def same_seq_copy(self, offer: Offer) -> Offer | None:
        """The open copy we hold of this offer at the same seq, if it differs from ``offer``: with both
        validly signed, the maker equivocated."""
        view = self.makers.get(offer.maker)
        held = view.offers.get(offer.id) if view is not None else None
        if held is None or held is offer or held.seq != offer.seq or held.sig == offer.sig:
            return None  # (one signature per state: Ed25519 signatures are deterministic)
        return held if held != offer else None

    def receive(self, offer: Offer, now: int, *, verified: bool = False) -> Applied:
        """Verify and apply one update from the network."""
        if not self.is_news(offer):
            return Applied.STALE
        if not verified and not offer_is_valid(offer):
            return Applied.INVALID
        applied = self.apply(offer)
        view = self.makers.get(offer.maker)  # apply made it this book's own
        if view is not None and view.since is None:
            view.since = now
        return applied

    def apply(self, offer: Offer) -> Applied:
        """Apply an update already known to be authentic and consistent."""
        view = self._writable(offer.maker)
        if view is None:
            view = self._new_view(offer.maker, None)
        if offer.id in view.tombstones:
            return Applied.STALE
        if view.proof is not None:
            return Applied.REFUSED
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
        elif offer.status == OPEN and len(view.offers) >= self.max_offers and offer.maker != self.own_id:
            return Applied.REFUSED
        if offer.seq > view.max_seq:
            view.max_seq = offer.seq
        view.digests.invalidate()
        if offer.status != OPEN:
            if held is not None:
                self._drop(view, held)
            if offer.maker != self.own_id:  # our own are never taken from the network: no need
                view.tombstones[offer.id] = offer.seq
                self._tombstoned.add(offer.maker)
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

    def accept_head(self, head: Head, now: int, *, verified: bool = False) -> HeadOutcome:
        """A maker's head, from wherever it came (its own push, a relay, a snapshot): newer ones replace
        the one held, revive a maker whose death notice named an older one, and reveal a hidden maker
        if our copy matches. See the state table at the top."""
        if head.maker == self.own_id or head.count > self.max_offers:
            return HeadOutcome.IGNORED
        view = self.makers.get(head.maker)
        if view is None and self.buried(head.maker, head_key(head)):
            return HeadOutcome.IGNORED
        if view is not None:
            if view.proof is not None:
                return HeadOutcome.IGNORED
            held = view.head
            if held is not None:
                if head.head == held.head and head.digest != held.digest:
                    return HeadOutcome.CONFLICT if verified or is_signed(head) else HeadOutcome.IGNORED
                if head_key(head) <= head_key(held):
                    return HeadOutcome.IGNORED
            if view.death is not None and head_key(head) <= head_key(view.death.head):
                return HeadOutcome.IGNORED
        if not verified and not is_signed(head):
            return HeadOutcome.IGNORED
        if view is None:
            self.graveyard.pop(head.maker, None)
            view = self._new_view(head.maker, now)
        else:
            view = self._writable(head.maker)
            assert view is not None
        # returning: first heard, back from the dead, still awaiting a sync, or restarted elsewhere (a
        # new address is a new run of the maker: what happened while it was down, we may have missed)
        returning = (
            view.head is None or view.death is not None or not view.revealed or view.head.addr != head.addr
        )
        view.head = head
        view.death = view.died_at = None
        view.last_seen = now
        if view.in_step(head):
            # we hold exactly the maker's list as of head.head: as good as a sync, so tombstones
            # at or below it can go (the synced_head rule now covers them)
            view.synced_head = max(view.synced_head, head.head)
            view.revealed = True
            return HeadOutcome.IN_STEP
        if returning:
            view.revealed = False
            return HeadOutcome.DRIFT
        # pushes that outran their head (max_seq above it) are no drift; the next head will match
        return HeadOutcome.DRIFT if head.head >= view.max_seq else HeadOutcome.IN_STEP

    def apply_death(self, death: Death, now: int) -> bool:
        """A death notice (already verified): hides the maker if it names a head at least as new as the
        one we hold; True if it changed anything."""
        maker = death.head.maker
        if maker == self.own_id:
            return False
        view = self.makers.get(maker)
        key = head_key(death.head)
        if view is None:
            if self.buried(maker, key):
                return False
            view = self._new_view(maker, now)
        elif (
            view.proof is not None
            or (view.head is not None and head_key(view.head) > key)
            or (view.death is not None and head_key(view.death.head) >= key)
        ):
            return False
        else:
            view = self._writable(maker)
            assert view is not None
        if view.head is None or head_key(view.head) < key:
            view.head = death.head
        view.death = death
        view.died_at = now
        self._mortal.add(maker)
        return True

    def apply_proof(self, proof: Equivocation, now: int) -> bool:
        """Proof (already verified) that a maker equivocated: it is hidden for good, its offers dropped."""
        maker = proof_maker(proof)
        if maker == self.own_id:
            return False
        view = self.makers.get(maker)
        if view is None:
            view = self._new_view(maker, now)
        elif view.proof is not None:
            return False
        else:
            view = self._writable(maker)
            assert view is not None
        view.proof = proof
        view.died_at = now
        self._mortal.add(maker)
        if view.head is None and proof.heads:
            view.head = max(proof.heads, key=head_key)
        for offer in list(view.offers.values()):
            self._drop(view, offer)
        return True

    def sync(self, reply: MakerOffers, now: int, *, verified: bool = False) -> int | None:
        """Apply a maker's authoritative list of its open offers; returns how many offers changed, or
        None if the list was refused.

        The list must be exactly what the maker's signed head commits to (count, and the digest of the
        offers' full encodings) or nothing is applied: whoever relays a genuine head can neither drop,
        add nor alter offers behind it. One signature check then authenticates the whole list. A head
        newer than ours is taken as a head (``accept_head``); the list then reveals a hidden maker."""
        head = reply.head
        if head.maker == self.own_id or head.count > self.max_offers or not (verified or is_signed(head)):
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
        held = self.makers.get(head.maker)
        if held is not None and held.proof is not None:
            return None
        if held is None:
            if self.buried(head.maker, head_key(head)):
                return None
            self.graveyard.pop(head.maker, None)  # back with a newer head: its offers are news again
            self._new_view(head.maker, now)
        changed = 0
        for offer in reply.offers:
            if self.receive(offer, now, verified=True) in (Applied.NEW, Applied.UPDATED, Applied.CLOSED):
                changed += 1
        view = self._writable(head.maker) or self._new_view(head.maker, now)
        for oid, offer in list(view.offers.items()):
            if oid not in listed and offer.seq <= head.head:
                self._drop(view, offer)
                view.tombstones[oid] = head.head
                self._tombstoned.add(head.maker)
                changed += 1
        view.synced_head = max(view.synced_head, head.head)
        view.max_seq = max(view.max_seq, head.head)
        self.accept_head(head, now, verified=True)
        if view.head is not None and view.death is None and view.in_step(view.head):
            view.revealed = True
        return changed

    def forget_tombstones(self) -> int:
        """Drop tombstones the synced_head rule now covers; returns how many."""
        dropped = 0
        for maker in list(self._tombstoned):
            view = self.makers.get(maker)
            stale = (
                [] if view is None else [o for o, seq in view.tombstones.items() if seq <= view.synced_head]
            )
            if stale:
                view = self._writable(maker)
                assert view is not None
                for oid in stale:
                    del view.tombstones[oid]
                dropped += len(stale)
            if view is None or not view.tombstones:
                self._tombstoned.discard(maker)
        return dropped

    def seen(self, maker: str, now: int) -> None:
        """The maker itself was heard from just now (it answered a probe, or pushed to us)."""
        view = self.makers.get(maker)
        if view is not None:
            if view.shared:
                view = self.makers[maker] = view.copy()
            view.last_seen = now

    def set_counted(self, maker: str, value: int) -> None:
        """Record the item hash the replica's fingerprints count for this maker (not a change of it)."""
        view = self.makers.get(maker)
        if view is not None:
            if view.shared:
                view = self.makers[maker] = view.copy()
            view.counted = value

    def forget(
        self, now: int, *, dead_after_ms: int, silent_after_ms: int, proven_after_ms: int
    ) -> dict[str, MakerView]:
        """Forget makers (offers, tombstones and all); returns their last views:

        - dead ones, ``dead_after_ms`` after the notice (by its accuser's clock, so every book forgets a
          maker at about the same time and reconciliation does not keep handing it back);
        - makers known only from updates (no head) for ``silent_after_ms``;
        - equivocators, ``proven_after_ms`` after we learnt it.

        A forgotten dead or equivocating maker's newest (seq, ts) goes to the graveyard: an old head
        replayed later cannot bring it back. Safe otherwise for the same reason a newcomer is: a maker
        heard again whose head our copy does not match stays hidden until a sync."""
        gone = []
        for maker in list(self._mortal):
            view = self.makers.get(maker)
            if view is None or maker == self.own_id:
                self._mortal.discard(maker)
            elif view.proof is not None:
                if now - (view.died_at or now) > proven_after_ms:
                    gone.append(maker)
            elif view.death is not None:
                if now - view.death.ts > dead_after_ms:
                    gone.append(maker)
            elif view.head is None:
                if view.since is None:
                    view = self._writable(maker)
                    assert view is not None
                    view.since = now  # known only from relayed updates: the clock starts now
                elif now - view.since > silent_after_ms:
                    gone.append(maker)
            else:
                self._mortal.discard(maker)  # alive again
        forgotten: dict[str, MakerView] = {}
        for maker in gone:
            self._mortal.discard(maker)
            self._tombstoned.discard(maker)
            view = forgotten[maker] = self.makers.pop(maker)
            self.dirty.add(maker)
            if view.head is not None and (view.death is not None or view.proof is not None):
                self.graveyard[maker] = head_key(view.head)
                self.graveyard.move_to_end(maker)
                while len(self.graveyard) > L.GRAVEYARD_SIZE:
                    self.graveyard.popitem(last=False)
            for offer in list(view.offers.values()):
                self._drop(view, offer, owned=False)
        return forgotten

    def _drop(self, view: MakerView, offer: Offer, *, owned: bool = True) -> None:
        if owned:
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
