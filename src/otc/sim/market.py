"""A market of simulated peers, each running the real replication core, book and desk in virtual time.

The scenario (times scale with nothing; sizes scale with the number of peers):

- 0 s: ``peers`` peers that all hold the same market (one shared base book, as if they had converged),
  dialling their overlays from Grape samples;
- warm-up, then an idle window where the messages every peer receives are counted;
- offers published at random makers, one every ``offer_gap_ms``; a quarter of them cancelled 2 s later;
- meanwhile churn: newcomers join (a snapshot from the overlay, then reconciliation), peers die (SIGKILL:
  silent from then on), and a group is cut off by a partition that heals later;
- a quiet tail, then the checks.

Invariants checked (each breach is printed; there must be none):

- delivery: every offer reaches every peer live (and not cut off from its maker) for the 10 s after it
  was published; its arrival time counts towards p50/p99;
- no resurrection: a peer that has applied an offer's cancel never applies it open again, and no live
  peer shows a cancelled offer at the end;
- death: 15 s after a peer dies, no live peer (that was not cut off meanwhile) shows it alive;
- convergence: at the end every live peer holds every live maker's newest head, in step, and every dead
  one dead (their fingerprints all equal the ground truth's).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..core import fingerprint as F
from ..core.book import Book, MakerView
from ..core.desk import Desk
from ..core.identity import Identity
from ..core.messages import Gossip, Head, Offer
from ..core.notices import Verifier
from ..core.replication import (
    AskMaker,
    Changed,
    Deferred,
    Failure,
    Joined,
    Lookup,
    Refusal,
    Replica,
    Respond,
    Send,
)
from .engine import Engine, Network

SECOND = 1000
GRAPE_TTL_MS = 120_000  # a dead peer's announcement lingers in Grape lookups this long (--dpa 120000)
GRAPE_LOOKUP_MAX = 100  # grenache-grape answers at most 100 random announcers


@dataclass
class Scenario:
    peers: int = 1000
    seed: int = 1
    offers: int = 0  # 0: by size
    offer_gap_ms: int = 100
    joins: int = -1  # -1: by size
    deaths: int = -1
    partition: int = -1  # peers cut off together
    partition_ms: int = 8_000
    warmup_ms: int = 8_000
    idle_ms: int = 10_000
    tail_ms: int = 20_000
    loss: float = 0.01

    def sized(self) -> Scenario:
        """Defaults by size. Past 2,000 peers the workload is lighter (20 offers, 5 joins, 5 deaths, 10
        peers cut off, shorter windows): every flood costs every peer a few messages, and a 10,000-peer run
        must finish in minutes on two cores."""
        n = self.peers
        big = n > 2000

        def pick(given: int, small: int, large: int) -> int:
            return given if given >= 0 else (large if big else small)

        default = Scenario()
        return Scenario(
            peers=n,
            seed=self.seed,
            offers=self.offers or (20 if big else 200),
            offer_gap_ms=self.offer_gap_ms,
            joins=pick(self.joins, max(2, n // 100), 5),
            deaths=pick(self.deaths, max(2, n // 100), 5),
            partition=pick(self.partition, max(2, n // 20), 10),
            partition_ms=self.partition_ms,
            warmup_ms=6_000 if big and self.warmup_ms == default.warmup_ms else self.warmup_ms,
            idle_ms=5_000 if big and self.idle_ms == default.idle_ms else self.idle_ms,
            tail_ms=15_000 if big and self.tail_ms == default.tail_ms else self.tail_ms,
            loss=self.loss,
        )


def head_signer(desk: Desk, addr: str) -> Callable[[int], Head]:
    def sign(ts: int) -> Head:
        return desk.head(ts, addr)

    return sign


class SimPeer:
    __slots__ = (
        "addr", "alive", "book", "cut", "deferred", "desk", "index", "joined_at", "outstanding", "replica",
        "wake",
    )  # fmt: skip

    def __init__(self, index: int, desk: Desk, book: Book, replica: Replica, addr: str) -> None:
        self.index = index
        self.desk = desk
        self.book = book
        self.replica = replica
        self.addr = addr
        self.alive = True
        self.joined_at: int | None = None
        self.outstanding: set[int] = set()
        self.deferred: dict[int, tuple[SimPeer, int]] = {}
        self.wake = -1
        self.cut: list[tuple[int, int]] = []  # partitions it was in: (from, to)

    @property
    def peer_id(self) -> str:
        return self.desk.peer_id

    def cut_during(self, start: int, end: int) -> bool:
        return any(a < end and b > start for a, b in self.cut)


@dataclass
class Published:
    offer: Offer
    at: int
    maker: SimPeer
    eligible: list[SimPeer] = field(default_factory=list)


class Sim:
    def __init__(self, scenario: Scenario) -> None:
        self.sc = scenario.sized()
        self.rng = random.Random(self.sc.seed)
        self.engine = Engine()
        self.net = Network(self.rng, loss=self.sc.loss)
        self.verifier = Verifier(memo=True)  # identical bytes verify identically: once for all peers
        self.peers: list[SimPeer] = []
        self.by_addr: dict[str, SimPeer] = {}
        self.by_id: dict[str, SimPeer] = {}
        self.announced: list[str] = []
        self._announced_at: dict[str, int] = {}
        self.violations: list[str] = []
        self.published: dict[tuple[str, int], Published] = {}
        self.arrivals: dict[tuple[str, int], dict[int, int]] = defaultdict(dict)
        self.copies: dict[tuple[str, int], int] = defaultdict(int)
        self.cancelled: dict[str, SimPeer] = {}  # offer id -> its maker
        self.saw_close: dict[str, set[int]] = defaultdict(set)
        self.received = 0  # requests handled, counted only while ``counting``
        self.counting = False
        self.deaths: list[tuple[SimPeer, int]] = []

    # --- building the market -------------------------------------------------------------------------
    def _identity(self) -> Identity:
        return Identity.from_seed(self.rng.randbytes(32))

    def _make(self, base: dict[str, MakerView] | None) -> SimPeer:
        index = len(self.peers)
        identity = self._identity()
        addr = f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}:1337"
        desk = Desk(identity, f"p{index}")
        book = Book(identity.peer_id, base=base)
        replica = Replica(
            identity,
            book,
            head_signer(desk, addr),
            desk.open_offers,
            rng=random.Random(self.rng.getrandbits(64)),
            verifier=self.verifier,
        )
        peer = SimPeer(index, desk, book, replica, addr)
        self.peers.append(peer)
        self.by_addr[addr] = peer
        self.by_id[identity.peer_id] = peer
        self._announce(addr)
        return peer

    def _announce(self, addr: str) -> None:
        self._announced_at[addr] = len(self.announced)
        self.announced.append(addr)

    def _unannounce(self, addr: str) -> None:
        i = self._announced_at.pop(addr, None)
        if i is None:
            return
        last = self.announced.pop()
        if last != addr:
            self.announced[i] = last
            self._announced_at[last] = i

    def genesis(self) -> None:
        """``peers`` peers holding one market: a base of maker views every book shares until it writes."""
        n = self.sc.peers
        identities = [self._identity() for _ in range(n)]
        self.rng = random.Random(self.sc.seed + 1)  # peers' own draws start from here
        heads: list[Head] = []
        for i, identity in enumerate(identities):
            addr = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:1337"
            heads.append(Desk(identity, f"p{i}").head(0, addr))
        base: dict[str, MakerView] = {}
        fp = F.Fingerprints()
        for head in heads:
            h = F.item_hash(head.maker, head.head, head.ts, F.IN_STEP)
            base[head.maker] = MakerView(head=head, revealed=True, counted=h, shared=True, last_seen=0)
            fp.update(head.maker, 0, h)
            self.verifier._cached(head, lambda: True)  # signed just now by the genesis desks
        for i, identity in enumerate(identities):
            desk = Desk(identity, f"p{i}")
            addr = heads[i].addr
            book = Book(identity.peer_id, base=base)
            replica = Replica(
                identity,
                book,
                head_signer(desk, addr),
                desk.open_offers,
                rng=random.Random(self.rng.getrandbits(64)),
                verifier=self.verifier,
            )
            peer = SimPeer(i, desk, book, replica, addr)
            self.peers.append(peer)
            self.by_addr[addr] = peer
            self.by_id[identity.peer_id] = peer
            self._announce(addr)
            replica.start(0, {addr}, head=heads[i], joined=True)
            replica.adopt(fp.share())
            peer.joined_at = 0
        for peer in self.peers:
            self.engine.at(self.rng.randrange(1000), self._start, peer)

    def _start(self, peer: SimPeer) -> None:
        self._run(peer, [Lookup()])

    def join(self) -> None:
        peer = self._make(None)
        self._run(peer, peer.replica.start(self.engine.now, {peer.addr}))

    # --- the network ---------------------------------------------------------------------------------
    def _run(self, peer: SimPeer, actions: Iterable[Any]) -> None:
        now = self.engine.now
        send = self._send
        for a in actions:
            if type(a) is Send:
                send(peer, a)
                continue
            if isinstance(a, Respond):
                asker = peer.deferred.pop(a.token, None)
                if asker is not None:
                    self._answer(peer, asker[0], asker[1], a.reply)
            elif isinstance(a, Changed):
                self._changed(peer, a.offers)
            elif isinstance(a, Lookup):
                self.engine.at(now + 5, self._lookup, peer)
            elif isinstance(a, AskMaker):
                self._ask_maker(peer, a.maker)
            elif isinstance(a, Joined):
                peer.joined_at = now
        if peer.alive:
            hint = peer.replica.wake_hint()
            if peer.wake < now:
                self._schedule(peer, peer.replica.next_wakeup(now))
            elif hint is not None and hint < peer.wake:
                self._schedule(peer, max(hint, now + 1))

    def _schedule(self, peer: SimPeer, wake: int) -> None:
        peer.wake = wake
        self.engine.at(wake, self._tick, peer, wake)

    def _tick(self, peer: SimPeer, wake: int) -> None:
        if peer.alive and peer.wake == wake:
            peer.wake = -1
            self._run(peer, peer.replica.tick(self.engine.now))

    def _lookup(self, peer: SimPeer) -> None:
        if not peer.alive:
            return
        sample = self.rng.sample(self.announced, min(GRAPE_LOOKUP_MAX, len(self.announced)))
        self._run(peer, peer.replica.on_lookup(sample, self.engine.now))

    def _send(self, src: SimPeer, a: Send) -> None:
        """A request: delivered after the link's latency, or lost (then the sender times out). Timeouts are
        scheduled only where an answer cannot come, so the event queue holds what will happen."""
        now = self.engine.now
        src.outstanding.add(a.token)
        dest = self.by_addr.get(a.addr)
        net = self.net
        if dest is None or not net.connected(src.index, dest.index) or net.rng.random() < net.loss:
            self.engine.at(now + a.timeout_ms, self._timeout, src, a.token)
            return
        lat = net.latency(src.index, dest.index)
        self.engine.at(now + lat, self._deliver, src, a.token, dest, a.msg, now + a.timeout_ms, lat)

    def _deliver(self, src: SimPeer, token: int, dest: SimPeer, msg: Any, deadline: int, lat: int) -> None:
        now = self.engine.now
        if not dest.alive:  # a closed port answers at once (connection refused)
            self.engine.at(now + lat, self._reply, src, token, Failure("ERR_REQUEST_GENERIC"))
            return
        net = self.net
        if not net.connected(src.index, dest.index):
            self.engine.at(deadline, self._timeout, src, token)
            return
        if self.counting:
            self.received += 1
        if self.published and type(msg) is Gossip:
            for o in msg.offers:
                key = (o.id, o.seq)
                if key in self.published:
                    self.copies[key] += 1
        reply, actions = dest.replica.handle(msg, now)
        if actions or dest.replica._wake_hint is not None or dest.replica.membership.hint is not None:
            self._run(dest, actions)
        if type(reply) is Deferred:
            dest.deferred[reply.token] = (src, token)
            self.engine.at(deadline, self._timeout, src, token)
            return
        if type(reply) is Refusal:
            reply = Failure(reply.code)
        if not net.connected(src.index, dest.index) or net.rng.random() < net.loss or now + lat > deadline:
            self.engine.at(deadline, self._timeout, src, token)
            return
        self.engine.at(now + lat, self._reply, src, token, reply)

    def _answer(self, dest: SimPeer, src: SimPeer, token: int, reply: Any) -> None:
        """A deferred answer (an indirect probe's outcome)."""
        if isinstance(reply, Refusal):
            reply = Failure(reply.code)
        if self.net.connected(src.index, dest.index) and not self.net.lost():
            lat = self.net.latency(src.index, dest.index)
            self.engine.at(self.engine.now + lat, self._reply, src, token, reply)

    def _reply(self, src: SimPeer, token: int, reply: Any) -> None:
        if src.alive and token in src.outstanding:
            src.outstanding.discard(token)
            actions = src.replica.on_reply(token, reply, self.engine.now)
            if actions or src.replica._wake_hint is not None or src.replica.membership.hint is not None:
                self._run(src, actions)

    def _timeout(self, src: SimPeer, token: int) -> None:
        if src.alive and token in src.outstanding:
            src.outstanding.discard(token)
            self._run(src, src.replica.on_reply(token, Failure("ERR_TIMEOUT"), self.engine.now))

    def _ask_maker(self, peer: SimPeer, maker_id: str) -> None:
        """The maker's own list through its ``otc:peer:<id>`` key (a request outside the overlay)."""
        maker = self.by_id.get(maker_id)
        if maker is None or not maker.alive or not self.net.connected(peer.index, maker.index):
            return
        rtt = 2 * self.net.latency(peer.index, maker.index)
        reply = maker.replica.own_record()  # what its last head commits to (a publish may be waiting)
        assert reply is not None

        def answered() -> None:
            if peer.alive:
                self._run(peer, peer.replica.on_maker_offers(reply, self.engine.now)[1])

        self.engine.at(self.engine.now + rtt, answered)

    # --- what peers saw --------------------------------------------------------------------------------
    def _changed(self, peer: SimPeer, offers: list[Offer]) -> None:
        now = self.engine.now
        for o in offers:
            if o.status != "open":
                self.saw_close[o.id].add(peer.index)
                continue
            if o.id in self.cancelled and peer.index in self.saw_close.get(o.id, ()):
                self.violations.append(
                    f"resurrection: {peer.addr} applied cancelled offer {o.id[:8]} open again"
                )
            key = (o.id, o.seq)
            if key in self.published:
                self.arrivals[key].setdefault(peer.index, now)

    # --- workload and churn ------------------------------------------------------------------------------
    def live(self) -> list[SimPeer]:
        return [p for p in self.peers if p.alive and p.joined_at is not None]

    def publish(self) -> None:
        now = self.engine.now
        makers = [
            p
            for p in self.live()
            if not p.cut_during(now - 5 * SECOND, now + 10 * SECOND) and self._stable(p, now)
        ]
        if not makers:
            return
        maker = self.rng.choice(makers)
        price = str(7000 + self.rng.randrange(2000))
        offer, effects = maker.desk.create(side="sell", amount="1", price=price, pair="BTC/USD", now=now)
        self.published[(offer.id, offer.seq)] = Published(offer, now, maker)
        self.commit(maker, effects.offers)
        self.engine.at(now + 10 * SECOND, self._check_delivery, (offer.id, offer.seq))
        if self.rng.random() < 0.25:
            self.engine.at(now + 2 * SECOND, self.cancel, maker, offer.id)

    def _stable(self, peer: SimPeer, now: int) -> bool:
        """Not about to die, and not cut off, for the next 10 s (so its offers' delivery is well defined)."""
        return all(not (p is peer and now <= t <= now + 10 * SECOND) for p, t in self._planned_deaths)

    def cancel(self, maker: SimPeer, oid: str) -> None:
        if not maker.alive:
            return
        now = self.engine.now
        _, effects = maker.desk.cancel(oid, now)
        self.cancelled[oid] = maker
        self.commit(maker, effects.offers)

    def commit(self, maker: SimPeer, offers: list[Offer]) -> None:
        """What the peer does with its desk's decisions (node/trading.py): its own book, then the market."""
        for offer in offers:
            maker.book.apply(offer)
        self._run(maker, maker.replica.publish(offers, self.engine.now))

    def kill(self, peer: SimPeer) -> None:
        if not peer.alive:
            return
        peer.alive = False
        self.deaths.append((peer, self.engine.now))
        self.engine.at(self.engine.now + GRAPE_TTL_MS, self._unannounce, peer.addr)
        self.engine.at(self.engine.now + 15 * SECOND, self._check_death, peer, self.engine.now)

    def cut(self, group: list[SimPeer], duration: int) -> None:
        now = self.engine.now
        for p in group:
            self.net.group[p.index] = 1
            p.cut.append((now, now + duration))
        self.engine.at(now + duration, self.heal, group)

    def heal(self, group: list[SimPeer]) -> None:
        for p in group:
            self.net.group.pop(p.index, None)

    # --- checks -----------------------------------------------------------------------------------------
    def _check_delivery(self, key: tuple[str, int]) -> None:
        pub = self.published[key]
        start, end = pub.at, self.engine.now
        if not pub.maker.alive:
            return
        arrivals = self.arrivals[key]
        for peer in self.peers:
            if (
                peer is pub.maker
                or not peer.alive
                or peer.joined_at is None
                or peer.joined_at > start
                or peer.cut_during(start - 5 * SECOND, end)  # healing: links re-forming, checked at the end
            ):
                continue
            pub.eligible.append(peer)
            if peer.index not in arrivals:
                view = peer.book.makers.get(pub.maker.peer_id)
                held = view.offers.get(pub.offer.id) if view is not None else None
                if (held is not None and held.seq >= pub.offer.seq) or (
                    view is not None
                    and (pub.offer.id in view.tombstones or view.synced_head >= pub.offer.seq)
                ):
                    arrivals[peer.index] = end  # repaired by a pull: counted as late as it could be

    def _check_death(self, dead: SimPeer, died: int) -> None:
        now = self.engine.now
        for peer in self.peers:
            if (
                not peer.alive
                or peer.joined_at is None
                or peer.cut_during(died, now)
                or dead.cut_during(died, now)
            ):
                continue
            if peer.book.maker_alive(dead.peer_id, now):
                self.violations.append(
                    f"death: {dead.addr} died at {died / 1000:.1f} s, still alive at {peer.addr} 15 s later"
                )

    def check_end(self) -> None:
        now = self.engine.now
        live = self.live()
        expected = F.Fingerprints()
        truth: dict[str, tuple[int, int, int]] = {}
        for p in live:
            head = p.replica.head
            assert head is not None
            truth[p.peer_id] = (head.head, head.ts, F.IN_STEP)
        for p, _ in self.deaths:
            ref = next((q for q in live if p.peer_id in q.book.makers), None)
            view = ref.book.makers.get(p.peer_id) if ref is not None else None
            if view is not None and view.head is not None:
                truth[p.peer_id] = (view.head.head, view.head.ts, F.DEAD)
        for maker, (seq, ts, state) in truth.items():
            expected.update(maker, 0, F.item_hash(maker, seq, ts, state))
        root = expected.root()
        shown = 0
        for p in live:
            mine = p.replica.fp.root()
            if (mine.count, mine.fp) != (root.count, root.fp) and shown < 10:
                shown += 1
                diff = []
                for maker, want in truth.items():
                    item = p.replica._item(maker)
                    got = (item.seq, item.ts, item.state) if item else None
                    if got != want:
                        diff.append(f"{maker[:8]} want {want} got {got}")
                extra = len(p.book.makers) - len(truth) + (0 if p.peer_id in p.book.makers else 1)
                self.violations.append(
                    f"divergence: {p.addr} (joined {p.joined_at}) differs on {len(diff)} makers"
                    f" ({extra:+d} extra): {'; '.join(diff[:3])}"
                )
        for oid in self.cancelled:
            for p in live:
                o = p.book.get(oid)
                if o is not None and p.book.is_visible(o, now):
                    self.violations.append(
                        f"resurrection: cancelled {oid[:8]} visible at {p.addr} at the end"
                    )

    # --- the run ----------------------------------------------------------------------------------------
    def run(self) -> Summary:
        sc = self.sc
        wall = time.perf_counter()
        self._planned_deaths: list[tuple[SimPeer, int]] = []
        self.genesis()
        idle_from = sc.warmup_ms
        idle_to = idle_from + sc.idle_ms
        self.engine.at(idle_from, self._count, True)
        self.engine.at(idle_to, self._count, False)
        busy_from = idle_to
        busy_ms = sc.offers * sc.offer_gap_ms
        for i in range(sc.offers):
            self.engine.at(busy_from + i * sc.offer_gap_ms, self.publish)
        span = max(busy_ms, 10 * SECOND)
        victims = self.rng.sample(self.peers, sc.deaths + sc.partition)
        dying, cut_off = victims[: sc.deaths], victims[sc.deaths :]
        for peer in dying:
            t = busy_from + self.rng.randrange(span)
            self._planned_deaths.append((peer, t))
            self.engine.at(t, self.kill, peer)
        for _ in range(sc.joins):
            self.engine.at(busy_from + self.rng.randrange(span), self.join)
        cut_at = busy_from + span // 4
        self.engine.at(cut_at, self.cut, cut_off, sc.partition_ms)
        end = busy_from + span + sc.tail_ms
        self.engine.run_until(end)
        self.check_end()
        return self.summary(time.perf_counter() - wall)

    def _count(self, on: bool) -> None:
        if on:
            self.received = 0
            self._idle_peers = len(self.live())
        self.counting = on

    def summary(self, wall: float) -> Summary:
        delivered = expected = 0
        latencies: list[int] = []
        copies = receivers = 0
        for key, pub in self.published.items():
            arrivals = self.arrivals.get(key, {})
            for peer in pub.eligible:
                expected += 1
                at = arrivals.get(peer.index)
                if at is None:
                    self.violations.append(f"delivery: offer {key[0][:8]} never reached {peer.addr}")
                else:
                    delivered += 1
                    latencies.append(at - pub.at)
            copies += self.copies.get(key, 0)
            receivers += len(arrivals)
        latencies.sort()

        def pct(q: float) -> int:
            return (
                latencies[min(len(latencies) - 1, round(q / 100 * (len(latencies) - 1)))] if latencies else 0
            )

        idle = self.received / max(1, self._idle_peers) / (self.sc.idle_ms / 1000)
        return Summary(
            peers=self.sc.peers,
            delivered=delivered,
            expected=expected,
            p50=pct(50),
            p99=pct(99),
            copies=copies / max(1, receivers),
            idle=idle,
            violations=self.violations,
            wall_s=wall,
            events=self.engine.events,
        )


@dataclass
class Summary:
    peers: int
    delivered: int
    expected: int
    p50: int
    p99: int
    copies: float
    idle: float
    violations: list[str]
    wall_s: float
    events: int

    def line(self) -> str:
        share = 100 * self.delivered / self.expected if self.expected else 0.0
        return (
            f"peers {self.peers}: delivered {self.delivered}/{self.expected} ({share:.2f} %), "
            f"p50 {self.p50} ms, p99 {self.p99} ms, copies per offer {self.copies:.2f}, "
            f"idle msgs per peer per s {self.idle:.2f}"
        )


def simulate(scenario: Scenario) -> Summary:
    return Sim(scenario).run()
