"""Market replication as a sans-IO state machine: events in (requests, replies, lookups, time), decisions
out (``Send``, ``Respond``, ``AskMaker``, ``Lookup``, ``Changed``, ``Joined``). No sockets, clocks,
randomness or threads: time is handed in, the RNG is seeded by the caller, signatures are checked by an
injected ``Verifier``. node/market.py carries the decisions out over Grenache; src/otc/sim runs the same
code in virtual time.

Theory of operation
-------------------
*Overlay.* Each peer keeps 6–12 neighbours (core/membership.py): found through ``otc:market`` lookups
(Grape answers at most 100 random announcers, so repeated lookups sample the market) and the addresses
in heads it relays, kept by dialling, and watched by a SWIM failure detector.

*Eager push.* Anything new to a peer (an offer update, a head, a death notice, an equivocation proof) is
checked, applied, and pushed to every neighbour but the one it came from, batched per neighbour with a
few requests in flight each (``Gossip``). A maker's new head rides with its updates: after applying
both, a receiver either matches the head (and so knows it holds exactly the maker's open offers) or pulls
the maker's record from the neighbour that pushed it.

*Liveness.* A maker is live until a death notice covers its newest head. Neighbours probe each other;
one that answers neither directly nor through two others, nor during a 3 s suspicion, is declared dead
by a notice its accuser signs, which floods the overlay. The maker refutes a notice with a newer head of
its own (a head newer than the one a notice names revives it everywhere); an accuser whose notices are
refuted within ``refute_window_ms`` collects strikes, and with three is ignored. So liveness costs
nothing per maker at idle: per-peer traffic does not grow with the market.

*Reconciliation.* Each probe carries the prober's settled fingerprint of every maker it holds (item =
maker, head seq and ts, state: core/fingerprint.py). Equal fingerprints end it there. Different ones make
the two peers descend the 16-ary prefix tree, at most once a second, until they list the items of a
differing range; each side then pulls what the other holds newer (``Pull``), if it still lacks it after
``pull_delay_ms`` (a flood in flight fixes most differences by itself). This repairs lost pushes, joins
the two halves of a healed partition, and spreads death notices and proofs to peers that missed them.

*Join.* A newcomer reads a snapshot (``SnapshotRequest``: pages of records in maker order, bounded in
bytes) from the first of several sources to answer, asking one more every ``join_hedge_ms`` so silent
strangers cannot hold it up, then reconciles like everyone else.

*Equivocation.* Two validly signed states of one (offer id, seq), or two heads with one seq and
different digests, are proof: the maker is hidden for good and the proof flooded.

Every guarantee of the book stays (core/book.py): signatures, seq order, tombstones, the synced_head
rule, no resurrection, "a maker heard again whose head our copy does not match stays hidden until
synced". Bounds are in core/limits.py, timings (with reasons) in core/timing.py.

The peer's replication phase::

    phase     event                                                  next
    --------  -----------------------------------------------------  --------
    joining   a snapshot source delivered its last page              running
    joining   no source answered a first page in join_first_page_ms  running  (reconciliation fills in)
    joining   the lookup found no other peer / every source failed   running
    running   —                                                       running
"""

from __future__ import annotations

import bisect
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from . import errors as E
from . import fingerprint as F
from . import limits as L
from . import membership as M
from .book import Applied, Book, HeadOutcome, MakerView
from .gossip import Bucket, News, Outbox
from .identity import Identity
from .messages import (
    Death,
    Equivocation,
    Gossip,
    Head,
    Item,
    Items,
    Leave,
    MakerOffers,
    Neighbour,
    NeighbourReply,
    Offer,
    Ping,
    PingReq,
    PingReqReply,
    Pong,
    Pull,
    Range,
    Reconcile,
    ReconcileReply,
    Record,
    Records,
    SnapshotRequest,
)
from .notices import Verifier, conflict, head_key, proof_maker, sign_death
from .offer import OPEN
from .timing import Timing

CHANGED = (Applied.NEW, Applied.UPDATED, Applied.CLOSED)
LEAF_ITEMS = 32  # a range with at most this many items is listed rather than split
HEAD_BYTES = 700  # estimated encoded size of a record's head (and of a death notice), for page bounds
OFFER_BYTES = 480  # estimated encoded size of one offer
SETTLE_STEP = 250  # settling is due on multiples of this (ms): changes close in time settle in one tick


class Phase(StrEnum):
    JOINING = "joining"
    RUNNING = "running"


# --- decisions ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to ``addr`` on the market key; feed the reply (or a ``Failure``) to ``on_reply``."""

    token: int
    addr: str
    msg: Any
    timeout_ms: int


@dataclass(frozen=True, slots=True)
class Respond:
    """The reply to a request we answered with ``Deferred(token)``."""

    token: int
    reply: Any


@dataclass(frozen=True, slots=True)
class AskMaker:
    """Ask the maker itself for its authoritative list (``otc:peer:<id>``); feed it to ``on_maker_offers``."""

    maker: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """Look ``otc:market`` up in the Grape; feed the addresses to ``on_lookup``."""


@dataclass(frozen=True, slots=True)
class Changed:
    """Offers changed in the book (for watchers); ``book``: something else changed (liveness, syncs)."""

    offers: list[Offer] = field(default_factory=list)
    book: bool = False


@dataclass(frozen=True, slots=True)
class Joined:
    """The join is over: serve snapshots, reconcile."""


@dataclass(frozen=True, slots=True)
class Silent:
    """A peer we probed answered neither us, nor our helpers, nor during its suspicion: whether or not we
    accuse it (we may be the one cut off), it does not answer us now: show its offers unreachable."""

    peer_id: str


Action = Send | Respond | AskMaker | Lookup | Changed | Joined | Silent


@dataclass(frozen=True, slots=True)
class Deferred:
    """``handle``'s answer when the reply comes later, as ``Respond(token, reply)``."""

    token: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """``handle``'s answer when the request is refused: an RPC error ``code: message``."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Failure:
    """What ``on_reply`` gets when a request failed (timeout, connection, an error reply)."""

    code: str


REPLY_TYPES: dict[type[Any], type[Any]] = {
    Gossip: dict,
    Ping: Pong,
    PingReq: PingReqReply,
    Neighbour: NeighbourReply,
    Leave: dict,
    Reconcile: ReconcileReply,
    Pull: Records,
    SnapshotRequest: Records,
}


@dataclass(slots=True)
class Want:
    item: Item  # what the source holds that we lack
    addr: str  # where to pull it from
    source: str  # the source's peer id ("" when unknown)
    due: int


def newer(theirs: Item, ours: Item | None) -> bool:
    """Whether a peer holding ``theirs`` holds something of that maker we should pull."""
    if ours is None:
        return True
    if ours.state == F.EQUIVOCATING:
        return False
    if theirs.state == F.EQUIVOCATING:
        return True
    if (theirs.seq, theirs.ts) != (ours.seq, ours.ts):
        return (theirs.seq, theirs.ts) > (ours.seq, ours.ts)
    if ours.state == F.DEAD:
        return False
    return theirs.state == F.DEAD or (theirs.state == F.IN_STEP and ours.state == F.DRIFTED)


class Replica:
    """One peer's replication: the book kept in step with the market, our head and updates pushed to it.

    ``sign_head(ts)`` signs our head as of now with that ts; ``own_offers()`` lists our open offers (both
    come from the desk). ``identity`` signs our death notices."""

    def __init__(
        self,
        identity: Identity,
        book: Book,
        sign_head: Callable[[int], Head],
        own_offers: Callable[[], list[Offer]],
        *,
        rng: random.Random,
        verifier: Verifier | None = None,
        timing: Timing | None = None,
    ) -> None:
        self.identity = identity
        self.own_id = identity.peer_id
        self.book = book
        self.sign_head = sign_head
        self.own_offers = own_offers
        self.rng = rng
        self.verifier = verifier or Verifier()
        self.timing = timing or Timing()
        self.membership = M.Membership(
            self.own_id, rng, self.timing, is_live=lambda p: self.book.maker_alive(p, 0)
        )
        self.fp = F.Fingerprints()
        self.phase = Phase.JOINING
        self.head: Head | None = None  # ours; None until we are a member of the overlay
        self.departed = False  # we said goodbye (``depart``): we stop speaking for ourselves
        self._reader_lookup = 0  # not a member yet: when to look the market up again
        self._own_counted = 0
        self._tokens = 0
        self._pending: dict[int, tuple[Any, ...]] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._wants: dict[str, Want] = {}
        self._settle: deque[tuple[int, str]] = deque()
        self._settling: set[str] = set()
        self._reconciling: str | None = None
        self._last_reconcile = -(10**12)
        self._next_forget = 0
        self._next_tombstones = 0
        self._strikes: dict[str, list[int]] = {}
        self._ping_reqs = 0
        self._sorted: list[str] | None = None
        self._sorted_count = -1
        # allowances (limits.py)
        self._stranger_makers = Bucket(L.NEW_MAKERS_STRANGER_BURST, L.NEW_MAKERS_STRANGER_PER_MINUTE / 60)
        self._neighbour_makers: dict[str, Bucket] = {}
        self._stranger_offers = Bucket(L.STRANGER_OFFERS_BURST, L.STRANGER_OFFERS_PER_S)
        self._serve = Bucket(L.SERVE_BYTES_BURST, L.SERVE_BYTES_PER_S)
        self._reconcile_steps = Bucket(L.RECONCILE_STEPS_BURST, L.RECONCILE_STEPS_PER_S)
        # the join
        self._join_candidates: list[str] = []
        self._join_sources: set[str] = set()
        self._join_started = 0
        self._join_next_hedge = 0
        self._join_paging = False
        # messages received and sent, offer copies received, accusations made, refutations signed
        self.stats = {"msgs_in": 0, "msgs_out": 0, "offers_in": 0, "accused": 0, "refuted": 0}
        self._wake_hint: int | None = None
        # our own updates (``publish``): held back while within publish_gap_ms of the last head
        self._own: list[Offer] = []  # the open offers our head commits to
        self._own_ids: set[str] = set()
        self._fresh = False  # something unpublished is a new or closed offer
        self._unpublished: dict[str, Offer] = {}
        self._publish_due: int | None = None
        self._next_publish = 0

    # --- lifecycle ------------------------------------------------------------------------------------
    def start(
        self,
        now: int,
        addrs: set[str],
        *,
        head: Head | None = None,
        joined: bool = False,
        member: bool = True,
    ) -> list[Action]:
        """Begin: a lookup whose answer starts the join (unless ``joined``: a book that already holds the
        market, as the simulator's first peers do) and, as a ``member``, our head as of now (or
        ``head``) and the dialling. ``addrs``: our own addresses, never dialled.

        Not yet a member, we only read: the join loads the book, but we sign no head, dial nobody and
        refuse neighbours, until ``become_member``. A peer whose own history is still being checked
        (node/recovery.py) starts so: a head or offers signed from a store that lost some must not
        reach any book."""
        self.membership.own_addrs |= addrs
        self._join_started = now
        self._reader_lookup = now + self.timing.lookup_fast_ms
        if joined:
            self.phase = Phase.RUNNING
        return [Lookup(), *(self.become_member(now, head=head) if member else [])]

    def become_member(self, now: int, *, head: Head | None = None) -> list[Action]:
        """Sign our head (committing to the desk's open offers) and take part in the overlay: the
        next tick dials neighbours, who learn our head and pull what it commits to."""
        if self.head is not None or self.departed:
            return []
        self._sign_own(now, now, head)
        self._hint(now)
        return []

    def depart(self, now: int) -> list[Action]:
        """We stop on purpose: a death notice of our own newest head, signed by ourselves, flooded like
        any other, hides our offers in every book at once instead of after the failure detector's
        timeouts. From here on we refute nothing and publish no head; a restart's newer head revives
        us, as it would after any death notice. A notice of oneself is no accusation: it earns no
        strikes, and only the maker's own key can sign it."""
        if self.head is None or self.departed:
            return []
        self.departed = True
        death = sign_death(self.identity, self.head, max(now, self.head.ts))
        # straight to every neighbour, past their queues: we stop in a moment and flush nothing after
        goodbye = Gossip(sender=self.own_id, deaths=[death])
        links = [link for link in self.membership.links.values() if link.neighbour]
        return [self._send(link.addr, goodbye, ("goodbye",)) for link in links]

    def adopt(self, fp: F.Fingerprints) -> None:
        """Take fingerprints that already count every maker of our (shared base) book and our own head:
        the simulator's first peers start from one market they all hold."""
        assert self.head is not None
        self.fp = fp
        self._own_counted = F.item_hash(self.own_id, self.head.head, self.head.ts, F.IN_STEP)

    def _finish_join(self) -> list[Action]:
        if self.phase is Phase.RUNNING:
            return []
        self.phase = Phase.RUNNING
        self._join_candidates.clear()
        return [Joined()]

    # --- our own updates ------------------------------------------------------------------------------
    def publish(self, offers: list[Offer], now: int) -> list[Action]:
        """Our desk changed offers: a new head commits to the result; both go to every neighbour. Not
        yet a member (or gone), the desk keeps them: the head we sign on joining commits to them.

        At most one head per ``publish_gap_ms``: the first change after a quiet spell goes at once, and
        what changes within the gap goes with the next head, newest state of each offer only. A busy
        maker (hundreds of fills a second) so costs the market a bounded stream of heads instead of one
        flood per fill."""
        if self.head is None or self.departed:
            return []
        for offer in offers:
            held = self._unpublished.get(offer.id)
            if held is None or held.seq < offer.seq:
                self._unpublished[offer.id] = offer
            if offer.status != OPEN or offer.id not in self._own_ids:
                self._fresh = True  # new or closed: at once (a fill or hold may wait)
        if now >= self._next_publish or self._fresh:
            return self._publish_now(now)
        self._publish_due = self._next_publish
        self._hint(self._publish_due)
        return []

    def _publish_now(self, now: int, *, urgent: bool = False) -> list[Action]:
        assert self.head is not None
        news = News(offers=list(self._unpublished.values()), fresh=self._fresh)
        news.forced = urgent  # (a refutation: at once, but within the ordinary in-flight allowance)
        self._unpublished.clear()
        self._fresh = False
        self._publish_due = None
        self._next_publish = now + self.timing.publish_gap_ms
        self._sign_own(max(now, self.head.ts + 1), now)
        news.heads.append(self.head)
        return self._forward(news, exclude="", now=now)

    def _sign_own(self, ts: int, now: int, head: Head | None = None) -> None:
        """Sign our head, and keep the open offers it commits to: what we serve as our record until the
        next head (the desk may have moved on meanwhile, unpublished)."""
        self.head = head or self.sign_head(ts)
        self._own = self.own_offers()
        self._own_ids = {o.id for o in self._own}
        self._touch(self.own_id, now)

    def own_record(self) -> MakerOffers | None:
        """Our head and the open offers it commits to (None: not a member)."""
        return None if self.head is None else MakerOffers(head=self.head, offers=self._own)

    def _refute(self, now: int) -> list[Action]:
        """A notice declared us dead: a newer head of ours revives us wherever it goes. Someone could not
        reach us: we may be the slow one, so our local health score rises too."""
        if self.head is None or self.departed:
            return []  # our own goodbye coming back to us, or a notice we cannot answer yet
        self.membership.accused(now)
        self.stats["refuted"] += 1
        return self._publish_now(now, urgent=True)  # with whatever waits: the new head commits to it

    # --- requests from the network ----------------------------------------------------------------------
    def handle(self, msg: Any, now: int) -> tuple[Any, list[Action]]:
        """A request on the market key: (the reply, or ``Deferred``/``Refusal``; decisions)."""
        self.stats["msgs_in"] += 1
        out: list[Action] = []
        reply: Any
        if isinstance(msg, Gossip):
            self.stats["offers_in"] += len(msg.offers)
            out = self._on_gossip(msg, now)
            reply = {}
        elif isinstance(msg, Ping):
            reply, out = self._on_ping(msg, now)
        elif isinstance(msg, PingReq):
            reply, out = self._on_ping_req(msg, now)
        elif isinstance(msg, Neighbour):
            reply, out = self._on_neighbour(msg, now)
        elif isinstance(msg, Leave):
            self.membership.left(msg.sender)
            self._unlinked(msg.sender)
            reply = {}
        elif isinstance(msg, Reconcile):
            reply, out = self._on_reconcile(msg, now)
        elif isinstance(msg, Pull):
            reply = self._on_pull(msg, now)
        elif isinstance(msg, SnapshotRequest):
            reply = self._on_snapshot(msg, now)
        else:
            reply = Refusal(E.ERR_INVALID_PAYLOAD, f"unexpected {type(msg).__name__}")
        self._settle_dirty(now)
        return reply, out

    def _source(self, sender: str, now: int) -> str | None:
        """The neighbour a message came from (None: a stranger), noting that we heard from it."""
        link = self.membership.links.get(sender) if sender else None
        if link is None or not link.neighbour:
            return None
        if link.state is not M.LinkState.ALIVE:
            self.membership.heard(sender, now)
        elif now - link.last_heard >= 1000:  # (the book's last_seen, for operators, to the second)
            self.book.seen(sender, now)
        link.last_heard = now
        return sender

    def _on_gossip(self, msg: Gossip, now: int) -> list[Action]:
        source = self._source(msg.sender, now)
        news = News()
        out: list[Action] = []
        changed: list[Offer] = []
        for offer in msg.offers:
            if not self.book.is_news(offer):
                held = self.book.same_seq_copy(offer)
                if held is not None and self.verifier.offer(offer):
                    proof = conflict(held, offer)
                    if proof is not None:
                        self._proven(proof, now, news)
                continue
            if source is None and not self._stranger_offers.take(1, now):
                continue
            if not self._admit(offer.maker, source, now) or not self.verifier.offer(offer):
                continue
            applied = self.book.apply(offer)
            if applied in CHANGED:
                news.offers.append(offer)
                news.fresh = news.fresh or applied is not Applied.UPDATED
                changed.append(offer)
        for head in msg.heads:
            out += self._on_head(head, source, msg.sender, now, news)
        for death in msg.deaths:
            out += self._on_death(death, source, now, news)
        for proof in msg.proofs:
            self._on_proof(proof, now, news)
        if changed or news.deaths or news.proofs:
            out.append(Changed(offers=changed, book=bool(news.deaths or news.proofs)))
        out += self._forward(news, exclude=msg.sender, now=now)
        return out

    def _admit(self, maker: str, source: str | None, now: int, *, exempt: bool = False) -> bool:
        """Whether a maker may be held: known, or new within the source's allowance (limits.py)."""
        if maker == self.own_id or maker in self.book.makers:
            return True
        if len(self.book.makers) >= L.MAX_MAKERS:
            return False
        if exempt:
            return True
        if source is None:
            return self._stranger_makers.take(1, now)
        bucket = self._neighbour_makers.get(source)
        if bucket is None:
            bucket = self._neighbour_makers[source] = Bucket(
                L.NEW_MAKERS_NEIGHBOUR_BURST, L.NEW_MAKERS_NEIGHBOUR_PER_MINUTE / 60
            )
        return bucket.take(1, now)

    def _head_is_news(self, head: Head) -> bool:
        if head.maker == self.own_id or head.count > self.book.max_offers:
            return False
        view = self.book.makers.get(head.maker)
        if view is None:
            return not self.book.buried(head.maker, head_key(head))
        if view.proof is not None:
            return False
        if view.head is not None and head_key(head) <= head_key(view.head):
            return head.head == view.head.head and head.digest != view.head.digest  # a conflict is news
        return view.death is None or head_key(head) > head_key(view.death.head)

    def _on_head(
        self, head: Head, source: str | None, sender: str, now: int, news: News, *, exempt: bool = False
    ) -> list[Action]:
        """A head from the network. ``source``: the neighbour it came from (None: a stranger)."""
        if not self._head_is_news(head) or not self._admit(head.maker, source, now, exempt=exempt):
            return []
        if not self.verifier.head(head):
            return []
        before = self.book.makers.get(head.maker)
        death, died_at = (before.death, before.died_at) if before is not None else (None, None)
        held = before.head if before is not None else None
        outcome = self.book.accept_head(head, now, verified=True)
        if outcome is HeadOutcome.CONFLICT:
            assert held is not None
            proof = conflict(held, head)
            if proof is not None:
                self._proven(proof, now, news)
            return []
        if outcome is HeadOutcome.IGNORED:
            return []
        if (
            death is not None
            and died_at is not None
            and now - died_at < self.timing.refute_window_ms
            and death.accuser != head.maker  # a maker's own goodbye, then its restart: no false accusation
        ):
            self._strike(death.accuser, now)
        news.heads.append(head)
        self.membership.note_peer(head.maker, head.addr)
        out: list[Action] = []
        if death is not None:
            out.append(Changed(book=True))
        if outcome is HeadOutcome.DRIFT:
            item = Item(head.maker, head.head, head.ts, F.IN_STEP)
            link = self.membership.links.get(source) if source else None
            if link is not None:
                self._want(item, link.addr, link.peer_id, now)
            else:
                out.append(AskMaker(head.maker))
        return out

    def _on_death(self, death: Death, source: str | None, now: int, news: News) -> list[Action]:
        maker = death.head.maker
        if maker == self.own_id:
            if self.head is not None and head_key(death.head) >= head_key(self.head):
                return self._refute(now)
            return []
        if self._ignored(death.accuser, now) or not self._notice_fresh(death, now):
            return []
        view = self.book.makers.get(maker)
        key = head_key(death.head)
        if view is not None and (
            view.proof is not None
            or (view.death is not None and head_key(view.death.head) >= key)
            or (view.head is not None and head_key(view.head) > key)
        ):
            return []
        accuser = self.book.makers.get(death.accuser)
        if death.accuser != self.own_id and (accuser is None or accuser.head is None):
            return []  # notices count only from peers we know
        if not self._admit(maker, source, now) or not self.verifier.death(death):
            return []
        if self.book.apply_death(death, now):
            news.deaths.append(death)
        return []

    def _notice_fresh(self, death: Death, now: int) -> bool:
        return now - self.timing.forget_dead_ms < death.ts <= now + self.timing.death_future_ms

    def _on_proof(self, proof: Equivocation, now: int, news: News) -> None:
        maker = proof_maker(proof)
        view = self.book.makers.get(maker)
        if maker == self.own_id or (view is not None and view.proof is not None):
            return
        if self.verifier.proof(proof):
            self._proven(proof, now, news)

    def _proven(self, proof: Equivocation, now: int, news: News) -> None:
        if self.book.apply_proof(proof, now):
            news.proofs.append(proof)

    def _strike(self, accuser: str, now: int) -> None:
        since = now - self.timing.strike_window_ms
        strikes = [t for t in self._strikes.get(accuser, []) if t >= since]
        strikes.append(now)
        self._strikes[accuser] = strikes[-self.timing.strikes * 2 :]
        if len(self._strikes) > L.MAX_MAKERS:  # bounded: forget the oldest accusers
            for key in list(self._strikes)[: len(self._strikes) // 2]:
                del self._strikes[key]

    def _ignored(self, accuser: str, now: int) -> bool:
        if accuser == self.own_id:
            return False
        since = now - self.timing.strike_window_ms
        return sum(1 for t in self._strikes.get(accuser, ()) if t >= since) >= self.timing.strikes

    # --- pushing ------------------------------------------------------------------------------------------
    def _forward(self, news: News, *, exclude: str, now: int) -> list[Action]:
        if not news:
            return []
        out: list[Action] = []
        direct: Gossip | None = None  # one message for every neighbour with nothing queued
        for peer_id, link in self.membership.links.items():
            if not link.neighbour or peer_id == exclude:
                continue
            box = self._outboxes.get(peer_id)
            if box is None:
                box = self._outboxes[peer_id] = Outbox()
            due = news.urgent or now >= box.next_send
            if box.room(news.fresh) and not box.pending and due and news.fits():
                if direct is None:
                    direct = news.gossip(self.own_id)
                box.in_flight += 1
                box.next_send = now + self.timing.gossip_gap_ms
                out.append(self._send(link.addr, direct, ("gossip", peer_id)))
            else:
                box.add(news)
                out += self._flush(peer_id, box, now)
        return out

    def _flush(self, peer_id: str, box: Outbox, now: int) -> list[Action]:
        """Send what waits for a neighbour, unless within ``gossip_gap_ms`` of the last send to it:
        then the next tick does, with whatever else queued meanwhile (one request for many updates)."""
        out: list[Action] = []
        link = self.membership.links.get(peer_id)
        if link is None or not box.pending:
            return out
        if now < box.next_send and not box.urgent:
            self._hint(box.next_send)  # the tick that flushes it (``_tick``)
            return out
        while box.pending and box.room():
            box.in_flight += 1
            out.append(self._send(link.addr, box.take(self.own_id), ("gossip", peer_id)))
        box.next_send = now + self.timing.gossip_gap_ms
        return out

    def _send(self, addr: str, msg: Any, context: tuple[Any, ...], timeout_ms: int | None = None) -> Send:
        self._tokens += 1
        self._pending[self._tokens] = context
        self.stats["msgs_out"] += 1
        return Send(self._tokens, addr, msg, timeout_ms or self.timing.rpc_timeout_ms)

    def _unlinked(self, peer_id: str) -> None:
        self._outboxes.pop(peer_id, None)
        self._neighbour_makers.pop(peer_id, None)

    # --- membership: probes, dials ------------------------------------------------------------------------
    def _carry(self, intent: M.Intent, now: int) -> list[Action]:
        t = self.timing
        if isinstance(intent, M.Probe):
            timeout = self.membership.stretch(t.probe_timeout_ms)
            return [self._send(intent.addr, self._ping(), ("probe", intent.peer_id), timeout)]
        if isinstance(intent, M.ProbeVia):
            via = PingReq(sender=self.own_id, target=intent.target_id, addr=intent.target_addr)
            timeout = self.membership.stretch(t.indirect_timeout_ms)
            return [self._send(intent.helper_addr, via, ("via", intent.target_id), timeout)]
        if isinstance(intent, M.Dial):
            assert self.head is not None
            dial = Neighbour(head=self.head, urgent=intent.urgent)
            timeout = self.membership.stretch(t.dial_timeout_ms)
            return [self._send(intent.addr, dial, ("dial", intent.addr), timeout)]
        if isinstance(intent, M.Lookup):
            return [Lookup()]
        if isinstance(intent, M.Leave):
            self._unlinked(intent.peer_id)
            return [self._send(intent.addr, Leave(sender=self.own_id), ("leave",))]
        assert isinstance(intent, M.Dead)
        self._unlinked(intent.peer_id)
        return [Silent(intent.peer_id), *self._accuse(intent.peer_id, intent.addr, intent.accuse, now)]

    def _ping(self) -> Ping:
        return Ping(sender=self.own_id, root=self.fp.root())

    def _accuse(self, peer_id: str, addr: str, accuse: bool, now: int) -> list[Action]:
        view = self.book.makers.get(peer_id)
        if (
            not accuse
            or view is None
            or view.head is None
            or view.death is not None
            or view.proof is not None
        ):
            return []
        if view.head.addr != addr:
            return []  # it moved (a restart elsewhere): its newer head is its own proof of life
        death = sign_death(self.identity, view.head, now)
        self.stats["accused"] += 1
        news = News()
        if self.book.apply_death(death, now):
            news.deaths.append(death)
        self._settle_dirty(now)
        return [Changed(book=True), *self._forward(news, exclude="", now=now)]

    def _on_ping(self, msg: Ping, now: int) -> tuple[Pong, list[Action]]:
        self._source(msg.sender, now)
        view = self.book.makers.get(msg.sender)
        ranges: list[Range] = []
        mine = self.fp.root()
        if (mine.count, mine.fp) != (msg.root.count, msg.root.fp):
            ranges = [self.fp.range(p) for p in F.children("")]
        pong = Pong(
            peer=self.own_id,
            neighbour=self.membership.is_neighbour(msg.sender),
            dead=view is not None and view.death is not None,
            ranges=ranges,
        )
        return pong, []

    def _on_ping_req(self, msg: PingReq, now: int) -> tuple[Any, list[Action]]:
        self._source(msg.sender, now)
        if self._ping_reqs >= L.MAX_PING_REQS_IN_FLIGHT or msg.target == self.own_id:
            return PingReqReply(ok=False), []
        self._ping_reqs += 1
        self._tokens += 1
        answer = self._tokens
        send = self._send(
            msg.addr, self._ping(), ("helper", answer, msg.target), self.timing.probe_timeout_ms
        )
        return Deferred(answer), [send]

    def _on_neighbour(self, msg: Neighbour, now: int) -> tuple[Any, list[Action]]:
        if self.head is None or self.departed:
            return Refusal(E.ERR_NOT_READY, "not taking part in the overlay (yet, or any more)"), []
        head = msg.head
        if head.maker == self.own_id or not self.verifier.head(head):
            return Refusal(E.ERR_INVALID_PAYLOAD, "a neighbour request carries its sender's signed head"), []
        accepted = self.membership.accept(head.maker, head.addr, now)
        news = News()
        out = self._on_head(head, head.maker if accepted else None, head.maker, now, news)
        out += self._forward(news, exclude=head.maker, now=now)  # the dialler probes us when linked
        others = [link.addr for link in self.membership.links.values() if link.neighbour]
        candidates = self.rng.sample(others, min(8, len(others)))
        return NeighbourReply(accepted=accepted, head=self.head, candidates=candidates), out

    def _probe_now(self, peer_id: str) -> list[Action]:
        """Probe a new neighbour at once: its answer starts reconciliation with it."""
        link = self.membership.links.get(peer_id)
        if link is None or link.probing:
            return []
        link.probing = True
        timeout = self.membership.stretch(self.timing.probe_timeout_ms)
        return [self._send(link.addr, self._ping(), ("probe", peer_id), timeout)]

    # --- reconciliation -----------------------------------------------------------------------------------
    def _sorted_makers(self) -> list[str]:
        count = len(self.book.makers)
        if self._sorted is None or self._sorted_count != count:
            keys = [m for m in self.book.makers if m != self.own_id]
            keys.append(self.own_id)
            keys.sort()
            self._sorted, self._sorted_count = keys, count
        return self._sorted

    def _item(self, maker: str) -> Item | None:
        if maker == self.own_id:
            return None if self.head is None else Item(maker, self.head.head, self.head.ts, F.IN_STEP)
        view = self.book.makers.get(maker)
        return None if view is None else self.book.item(maker, view)

    def _items(self, prefix: str) -> list[Item]:
        keys = self._sorted_makers()
        start = bisect.bisect_left(keys, prefix)
        out = []
        for maker in keys[start:]:
            if not maker.startswith(prefix):
                break
            item = self._item(maker)
            if item is not None:
                out.append(item)
        return out

    def _descend(self, theirs: list[Range]) -> tuple[list[Range], list[Items]]:
        """For ranges that differ from ours: our children ranges, or our items where few enough."""
        ranges: list[Range] = []
        items: list[Items] = []
        for prefix in self.fp.differing(theirs):
            if len(prefix) >= F.DEPTH or self.fp.range(prefix).count <= LEAF_ITEMS:
                items.append(Items(prefix, self._items(prefix)))
            else:
                ranges += [self.fp.range(c) for c in F.children(prefix)]
        return ranges, items

    def _compare(self, theirs: list[Items], addr: str, source: str, now: int) -> list[Action]:
        """Items a peer listed: want whatever it holds newer; refute a notice about us."""
        out: list[Action] = []
        for listed in theirs:
            for item in listed.items:
                if not item.maker.startswith(listed.prefix):
                    continue
                if item.maker == self.own_id:
                    if item.state == F.DEAD and self.head and (item.seq, item.ts) >= head_key(self.head):
                        out += self._refute(now)
                    continue
                if newer(item, self._item(item.maker)):
                    self._want(item, addr, source, now)
        return out

    def _want(self, item: Item, addr: str, source: str, now: int) -> None:
        held = self._wants.get(item.maker)
        if held is None or newer(item, held.item):
            due = now + self.timing.pull_delay_ms
            self._wants[item.maker] = Want(item, addr, source, due)
            self._hint(due)

    def _on_reconcile(self, msg: Reconcile, now: int) -> tuple[Any, list[Action]]:
        self._source(msg.sender, now)
        if not self._reconcile_steps.take(1, now):
            return Refusal(E.ERR_BUSY, "too many reconciliation steps: try later"), []
        ranges, items = self._descend(msg.ranges)
        out: list[Action] = []
        addr = self._addr_of(msg.sender)
        if msg.items:
            if addr is not None:
                out += self._compare(msg.items, addr, msg.sender, now)
            listed = {i.prefix for i in items}
            items += [Items(i.prefix, self._items(i.prefix)) for i in msg.items if i.prefix not in listed]
        return ReconcileReply(ranges=ranges, items=items), out

    def _addr_of(self, peer_id: str) -> str | None:
        link = self.membership.links.get(peer_id)
        if link is not None:
            return link.addr
        view = self.book.makers.get(peer_id)
        return view.head.addr if view is not None and view.head is not None else None

    def _reconcile(self, peer_id: str, addr: str, theirs: list[Range], now: int) -> list[Action]:
        """Continue a reconciliation: their ranges differ from ours; send ours (or our items) below."""
        ranges, items = self._descend(theirs)
        if not ranges and not items:
            self._reconciling = None
            return []
        msg = Reconcile(sender=self.own_id, ranges=ranges, items=items)
        return [self._send(addr, msg, ("reconcile", peer_id, addr))]

    # --- pulls, snapshots and records -------------------------------------------------------------------
    def _record(self, maker: str) -> tuple[Record, int] | None:
        """Our record of a maker and its estimated size."""
        if maker == self.own_id:
            own = self.own_record()
            if own is None:
                return None
            return Record(head=own.head, offers=own.offers), HEAD_BYTES + OFFER_BYTES * len(own.offers)
        view = self.book.makers.get(maker)
        if view is None or view.head is None:
            return None
        if view.proof is not None:
            return Record(head=view.head, proof=view.proof), 3 * HEAD_BYTES
        if view.death is not None:
            return Record(head=view.head, death=view.death), 2 * HEAD_BYTES
        if view.in_step(view.head):
            offers = list(view.offers.values())
            return Record(head=view.head, offers=offers), HEAD_BYTES + OFFER_BYTES * len(offers)
        return Record(head=view.head), HEAD_BYTES

    def _page(self, makers: list[str], now: int) -> tuple[list[Record], int] | Refusal:
        """Records of these makers up to PAGE_BYTES (at least one), within the serving budget; and how
        many of ``makers`` it covers."""
        records: list[Record] = []
        size = 0
        covered = 0
        for maker in makers:
            found = self._record(maker)
            covered += 1
            if found is None:
                continue
            record, cost = found
            if records and size + cost > L.PAGE_BYTES:
                covered -= 1
                break
            records.append(record)
            size += cost
        if size and not self._serve.take(size, now):
            return Refusal(E.ERR_BUSY, "serving too many pages: try later")
        return records, covered

    def _on_pull(self, msg: Pull, now: int) -> Any:
        page = self._page(list(msg.makers), now)
        if isinstance(page, Refusal):
            return page
        return Records(records=page[0])

    def _on_snapshot(self, msg: SnapshotRequest, now: int) -> Any:
        if self.phase is Phase.JOINING:
            # a half-loaded book would end the asker's join early with a partial copy
            return Refusal(E.ERR_NOT_READY, "still joining the market")
        keys = self._sorted_makers()
        start = bisect.bisect_right(keys, msg.after)
        chunk = keys[start : start + 4096]
        page = self._page(chunk, now)
        if isinstance(page, Refusal):
            return page
        records, covered = page
        more = start + covered < len(keys)
        return Records(records=records, next=chunk[covered - 1] if more and covered else None)

    def _apply_records(
        self, records: list[Record], source: str | None, now: int, *, exempt: bool, relay: bool
    ) -> list[Action]:
        """Records from a pull or a snapshot. ``relay``: push what was news on to our neighbours."""
        news = News()
        out: list[Action] = []
        changed = False
        for rec in records:
            maker = rec.head.maker
            if maker == self.own_id:
                if rec.death is not None and self.head and head_key(rec.death.head) >= head_key(self.head):
                    out += self._refute(now)
                continue
            if rec.proof is not None:
                self._on_proof(rec.proof, now, news)
                changed = True
                continue
            for action in self._on_head(rec.head, source, "", now, news, exempt=exempt):
                if isinstance(action, Changed):  # a drifting head is repaired by these very offers
                    out.append(action)
            view = self.book.makers.get(maker)
            if rec.offers is not None and view is not None and self._admit(maker, source, now, exempt=exempt):
                synced = self.book.sync(MakerOffers(head=rec.head, offers=rec.offers), now, verified=True)
                if synced:
                    changed = True
            if rec.death is not None:
                out += self._on_death(rec.death, source, now, news)
        if changed or news.deaths or news.proofs:
            out.append(Changed(book=True))
        if relay:
            news.offers.clear()  # bulk: neighbours that lack them pull them, seeing their heads drift
            out += self._forward(news, exclude=source or "", now=now)
        return out

    def _pull_due(self, now: int) -> list[Action]:
        by_source: dict[tuple[str, str], list[str]] = {}
        for maker, want in list(self._wants.items()):
            if want.due > now:
                continue
            del self._wants[maker]
            if newer(want.item, self._item(maker)):
                by_source.setdefault((want.addr, want.source), []).append(maker)
        out: list[Action] = []
        for (addr, source), makers in by_source.items():
            for i in range(0, len(makers), L.MAX_PULL_MAKERS):
                batch = makers[i : i + L.MAX_PULL_MAKERS]
                out.append(self._send(addr, Pull(makers=batch), ("pull", addr, source, batch)))
        return out

    # --- replies ----------------------------------------------------------------------------------------
    def on_reply(self, token: int, reply: Any, now: int) -> list[Action]:
        """The reply to one of our ``Send``s (or a ``Failure``)."""
        context = self._pending.pop(token, None)
        if context is None:
            return []
        out = self._on_reply(context, reply, now)
        self._settle_dirty(now)
        return out

    def _on_reply(self, context: tuple[Any, ...], reply: Any, now: int) -> list[Action]:
        kind = context[0]
        ok = not isinstance(reply, Failure)
        if kind == "gossip":
            box = self._outboxes.get(context[1])
            if box is None:
                return []
            box.in_flight = max(0, box.in_flight - 1)  # (a reply to a box since dropped and re-made)
            if ok:
                link = self.membership.links.get(context[1])
                if link is not None:
                    if link.state is M.LinkState.ALIVE:
                        link.last_heard = now
                    else:
                        self.membership.heard(context[1], now)
            return self._flush(context[1], box, now) if box.pending else []
        if kind == "probe":
            return self._on_pong(context[1], reply if ok else None, now)
        if kind == "via":
            self.membership.probed_via(context[1], ok and reply.ok, now, helper_answered=ok)
            return []
        if kind == "helper":
            self._ping_reqs -= 1
            answered = ok and reply.peer == context[2]
            return [Respond(context[1], PingReqReply(ok=answered))]
        if kind == "dial":
            return self._on_dialled(context[1], reply if ok else None, now)
        if kind == "reconcile":
            _, peer_id, addr = context
            if not ok:
                self._reconciling = None
                return []
            out = self._compare(reply.items, addr, peer_id, now)
            return out + self._reconcile(peer_id, addr, reply.ranges, now)
        if kind == "pull":
            _, addr, source, makers = context
            if not ok:
                return []
            src = source if self.membership.is_neighbour(source) else None
            out = self._apply_records(reply.records, src, now, exempt=False, relay=True)
            for maker in makers:  # what the source could not give us, we ask the maker itself
                item = self._item(maker)
                if item is not None and item.state == F.DRIFTED:
                    out.append(AskMaker(maker))
            return out
        if kind == "snapshot":
            return self._on_snapshot_page(context[1], reply if ok else None, now)
        return []  # leave, goodbye

    def _on_pong(self, peer_id: str, pong: Pong | None, now: int) -> list[Action]:
        t = self.timing
        out: list[Action] = []
        for intent in self.membership.probed(peer_id, pong.peer if pong else None, now):
            out += self._carry(intent, now)
        if pong is None or pong.peer != peer_id:
            return out
        self.book.seen(peer_id, now)
        link = self.membership.links.get(peer_id)
        if (
            link is not None
            and link.neighbour
            and not pong.neighbour
            and now - link.since > 2 * t.dial_timeout_ms
        ):
            # it does not count us (and this is no race with its accepting us): let dialling find another
            self.membership.left(peer_id)
            self._unlinked(peer_id)
            return out
        if pong.dead:
            out += self._refute(now)
        if (
            pong.ranges
            and link is not None
            and link.neighbour
            and self.phase is Phase.RUNNING
            and self._reconciling is None
            and now - self._last_reconcile >= self.timing.reconcile_ms
        ):
            self._reconciling = peer_id
            self._last_reconcile = now
            out += self._reconcile(peer_id, link.addr, pong.ranges, now)
        return out

    def _on_dialled(self, addr: str, reply: NeighbourReply | None, now: int) -> list[Action]:
        if reply is None or not self.verifier.head(reply.head) or reply.head.addr != addr:
            if reply is not None and reply.head.maker == self.own_id:
                self.membership.dialled(addr, self.own_id, False, [], now)
            else:
                self.membership.dialled(addr, None, False, reply.candidates if reply else [], now)
            return []
        peer_id = reply.head.maker
        linked = self.membership.dialled(addr, peer_id, reply.accepted, reply.candidates, now)
        news = News()
        out = self._on_head(reply.head, peer_id if linked else None, peer_id, now, news)
        out += self._forward(news, exclude=peer_id, now=now)
        if linked:
            out += self._probe_now(peer_id)
        return out

    def on_lookup(self, addrs: list[str], now: int) -> list[Action]:
        """A Grape lookup of otc:market answered (possibly empty)."""
        others = [a for a in addrs if a not in self.membership.own_addrs]
        self.membership.add_candidates(others)
        out: list[Action] = []
        if self.head is None and self.phase is Phase.RUNNING and others and len(self.book.makers) <= 1:
            self.phase = Phase.JOINING  # not a member, and the first join found nobody: join again
            self._join_started, self._join_paging = now, False
        if self.phase is Phase.JOINING and not self._join_candidates and not self._join_sources:
            if not others:
                return self._finish_join()
            self._join_candidates = self.rng.sample(others, len(others))
            self._join_next_hedge = now + self.timing.join_hedge_ms
            out += self._ask_source(now)
            out += self._ask_source(now)
        return out + self._tick(now)

    def on_maker_offers(self, reply: MakerOffers, now: int) -> tuple[int | None, list[Action]]:
        """The maker's own list, answered on its own key (a sync), authenticated by its head: how many
        offers changed (None: refused), and decisions."""
        if not self.verifier.head(reply.head):
            return None, []
        changed = self.book.sync(reply, now, verified=True)
        self._settle_dirty(now)
        return changed, [Changed(book=True)] if changed else []

    # --- joining -------------------------------------------------------------------------------------------
    def _ask_source(self, now: int) -> list[Action]:
        while self._join_candidates:
            addr = self._join_candidates.pop()
            if addr not in self.membership.own_addrs:
                self._join_sources.add(addr)
                msg = SnapshotRequest(after="")
                return [self._send(addr, msg, ("snapshot", addr), self.timing.snapshot_timeout_ms)]
        return []

    def _on_snapshot_page(self, addr: str, page: Records | None, now: int) -> list[Action]:
        if self.phase is not Phase.JOINING:
            return []
        if page is None:
            self._join_sources.discard(addr)
            out = self._ask_source(now)
            if not self._join_sources:
                out += self._finish_join()
            return out
        self._join_paging = True
        out = self._apply_records(page.records, None, now, exempt=True, relay=False)
        if page.next is None:
            return out + self._finish_join()
        msg = SnapshotRequest(after=page.next)
        return [*out, self._send(addr, msg, ("snapshot", addr), self.timing.snapshot_timeout_ms)]

    # --- time ----------------------------------------------------------------------------------------------
    def tick(self, now: int) -> list[Action]:
        self._wake_hint = None
        out = self._tick(now)
        self._settle_dirty(now)
        return out

    def _tick(self, now: int) -> list[Action]:
        t = self.timing
        out: list[Action] = []
        if self.head is not None and not self.departed:  # a member: probes, dials
            for intent in self.membership.tick(now):
                out += self._carry(intent, now)
        elif self.head is None and now >= self._reader_lookup:  # reading only: lookups go on (a join
            self._reader_lookup = now + t.lookup_fast_ms  # that found nobody is tried again)
            out.append(Lookup())
        if self.phase is Phase.JOINING:
            if self._join_candidates and now >= self._join_next_hedge and len(self._join_sources) < 8:
                self._join_next_hedge = now + t.join_hedge_ms
                out += self._ask_source(now)
            if not self._join_paging and now - self._join_started >= t.join_first_page_ms:
                out += self._finish_join()
        if self._publish_due is not None and now >= self._publish_due and not self.departed:
            out += self._publish_now(now)
        for peer_id, box in self._outboxes.items():  # what waited out gossip_gap_ms
            if box.pending and box.room() and now >= box.next_send:
                out += self._flush(peer_id, box, now)
        if self._wants:
            out += self._pull_due(now)
        self._settle_due(now)
        if now >= self._next_tombstones:
            self._next_tombstones = now + t.forget_tombstones_ms
            self.book.forget_tombstones()
        if now >= self._next_forget:
            self._next_forget = now + 30_000
            gone = self.book.forget(
                now,
                dead_after_ms=t.forget_dead_ms,
                silent_after_ms=t.forget_silent_ms,
                proven_after_ms=t.forget_proven_ms,
            )
            for maker, view in gone.items():
                self.fp.update(maker, view.counted, 0)
                self._wants.pop(maker, None)
        return out

    def _hint(self, when: int) -> None:
        self._wake_hint = when if self._wake_hint is None else min(self._wake_hint, when)

    def wake_hint(self) -> int | None:
        """The earliest deadline set since the last ``tick`` outside it (None: none): a caller that has a
        tick scheduled later than this must bring it forward. Cheaper than ``next_wakeup`` after every
        event, which is what a simulator of thousands of peers needs."""
        mine, theirs = self._wake_hint, self.membership.hint
        if mine is None and theirs is None:
            return None
        self._wake_hint = self.membership.hint = None
        if mine is None or theirs is None:
            return mine if theirs is None else theirs
        return min(mine, theirs)

    def next_wakeup(self, now: int) -> int:
        """The latest time ``tick`` must run next."""
        times = [self.membership.next_wakeup(now), self._next_tombstones, self._next_forget]
        if self._settle:
            times.append(self._settle[0][0])
        if self._wants:
            times.append(min(w.due for w in self._wants.values()))
        if self._publish_due is not None:
            times.append(self._publish_due)
        times += [b.next_send for b in self._outboxes.values() if b.pending and b.room()]
        if self.phase is Phase.JOINING:
            times += [self._join_next_hedge, self._join_started + self.timing.join_first_page_ms]
        return max(now + 1, min(times))

    # --- fingerprints -----------------------------------------------------------------------------------
    def _touch(self, maker: str, now: int) -> None:
        if maker not in self._settling:
            self._settling.add(maker)
            due = -(-(now + self.timing.settle_ms) // SETTLE_STEP) * SETTLE_STEP  # one tick settles many
            self._settle.append((due, maker))
            self._hint(due)

    def _settle_dirty(self, now: int) -> None:
        if self.book.dirty:
            for maker in self.book.dirty:
                self._touch(maker, now)
            self.book.dirty.clear()

    def _settle_due(self, now: int) -> None:
        while self._settle and self._settle[0][0] <= now:
            _, maker = self._settle.popleft()
            self._settling.discard(maker)
            if maker == self.own_id:
                item = self._item(maker)
                new = F.item_hash(maker, item.seq, item.ts, item.state) if item else 0
                self.fp.update(maker, self._own_counted, new)
                self._own_counted = new
                continue
            view = self.book.makers.get(maker)
            if view is None:
                continue  # forgotten: its count left the fingerprints then
            item = self.book.item(maker, view)
            new = F.item_hash(maker, item.seq, item.ts, item.state) if item else 0
            if new != view.counted:
                self.fp.update(maker, view.counted, new)
                self.book.set_counted(maker, new)

    # --- introspection ----------------------------------------------------------------------------------
    def neighbours(self) -> list[str]:
        return self.membership.neighbour_ids()


__all__ = ["Action", "MakerView", "Replica"]
