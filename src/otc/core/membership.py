"""The overlay around one peer: its neighbours, the addresses it could dial, and the failure detector
that watches them (SWIM's probes, with Lifeguard's caution about one's own health). Pure: time and a
seeded RNG are handed in; what it wants done comes back as intents for core/replication.py to carry out.

Theory of operation
-------------------
Grape is the way in: ``otc:market`` lookups (at most 100 random announcers each) and the addresses in
heads we relay fill a bounded pool of candidates. We dial candidates until we hold ``NEIGHBOURS_TARGET``
neighbours and accept dials up to ``NEIGHBOURS_MAX``; every ``rewire_ms`` we dial one more (and leave one
if above target), so the graph keeps mixing and links form again across a healed partition.

Each neighbour (and, every ``other_probe_ms``, one random live maker that is not a neighbour, so a maker
nobody links to is still watched) goes through this state machine::

    state     event                                               next
    --------  --------------------------------------------------  --------
    —         our dial accepted, or we accept its dial            alive
    alive     its probe answered, or anything heard from it       alive
    alive     probe unanswered after probe_timeout_ms             probing   (ping-req via `helpers` others)
    probing   a helper (or it) answered                           alive
    probing   no helper answered by indirect_timeout_ms           suspect   (retried every second)
    suspect   anything heard from it                              alive
    suspect   suspect_ms pass                                     dead      (dropped; accused unless we
                                                                             are the likely sick one)
    any       it leaves, answers as another peer, or says we      dropped   (no accusation)
              are not its neighbour

"The likely sick one" (Lifeguard's local health awareness, simplified): when most of the peers we
probed in the last ``health_window_ms`` failed, we are probably the one cut off, and accuse nobody (we
still drop them, and dial others). And a local health score (0–8) rises with our own event loop's lag
(reported by the adapter: a process starved of CPU answers late and sees others answer late), with a
helper that does not answer our indirect probe at all, and with being accused; it falls with each probe
answered, and stretches our probe, indirect probe, suspicion and dial timeouts by (1 + score); past 2
we accuse nobody either, nor within ``health_window_ms`` of our loop running late or of being accused
ourselves. So an overloaded machine slows its own failure detection down instead of declaring live
peers dead and flooding refutations.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from . import limits as L
from .timing import Timing


class LinkState(StrEnum):
    ALIVE = "alive"
    PROBING = "probing"
    SUSPECT = "suspect"


@dataclass(slots=True)
class Link:
    peer_id: str
    addr: str
    neighbour: bool  # False: a non-neighbour watched while a probe of it is under way
    since: int
    state: LinkState = LinkState.ALIVE
    last_heard: int = 0
    until: int = 0  # probing: when the helpers' time is up; suspect: when it is declared dead
    retry_at: int = 0  # suspect: next direct retry
    probing: bool = False  # a direct probe is in flight
    helpers: int = 0  # indirect probes still out


# what membership asks the replication core to do ----------------------------------------------------
@dataclass(frozen=True, slots=True)
class Probe:
    peer_id: str
    addr: str


@dataclass(frozen=True, slots=True)
class ProbeVia:
    helper_id: str
    helper_addr: str
    target_id: str
    target_addr: str


@dataclass(frozen=True, slots=True)
class Dial:
    addr: str
    urgent: bool


@dataclass(frozen=True, slots=True)
class Lookup:
    pass


@dataclass(frozen=True, slots=True)
class Leave:
    peer_id: str
    addr: str


@dataclass(frozen=True, slots=True)
class Dead:
    peer_id: str
    addr: str
    accuse: bool


Intent = Probe | ProbeVia | Dial | Lookup | Leave | Dead
MAX_SCORE = 8


@dataclass
class Membership:
    own_id: str
    rng: random.Random
    timing: Timing = field(default_factory=Timing)
    # is this maker live in our book? (random probes of non-neighbours pick among live ones only)
    is_live: Callable[[str], bool] = lambda peer_id: True

    def __post_init__(self) -> None:
        self.links: dict[str, Link] = {}  # neighbours, and non-neighbours under probe
        self.own_addrs: set[str] = set()
        self.candidates: list[str] = []
        self._candidate_set: set[str] = set()
        self.known: list[tuple[str, str]] = []  # a reservoir of (peer id, addr) of makers heard of
        self._known_seen = 0
        self.dialing: dict[str, int] = {}  # addr -> when
        self.backoff: dict[str, int] = {}  # addr -> not before
        self._waits: dict[str, int] = {}  # addr -> its last backoff (doubles while dials keep failing)
        self._sick_until = 0  # we were lately the likely sick one: rewire fast to rejoin the market
        self._order: list[str] = []
        self._next_probe = 0
        self._last_lookup = -(10**12)
        self._next_other = 0
        self._next_rewire = 0
        self._results: dict[str, tuple[int, bool]] = {}  # peer -> (when, answered) of direct probes
        # links probing or suspect: the only ones with deadlines (a dict: ordered, so runs are repeatable)
        self._troubled: dict[str, None] = {}
        self.score = 0  # local health: 0 healthy .. MAX_SCORE starved (see the top)
        self._starved_at = -(10**12)  # when our loop last ran late, or we were last accused
        self.hint: int | None = None  # the earliest deadline set outside ``tick`` since the last one

    # --- views -------------------------------------------------------------------------------------
    @property
    def neighbours(self) -> dict[str, Link]:
        return {p: link for p, link in self.links.items() if link.neighbour}

    def neighbour_ids(self) -> list[str]:
        return [p for p, link in self.links.items() if link.neighbour]

    def degree(self) -> int:
        return len(self._order)  # the probe order holds exactly the neighbours

    def is_neighbour(self, peer_id: str) -> bool:
        link = self.links.get(peer_id)
        return link is not None and link.neighbour

    def healthy(self, now: int) -> bool:
        """Whether we trust our own verdicts: most peers we probed lately answered, our local health
        score is low, and our loop has not run late nor have we been accused within ``health_window_ms``
        (we are not the one starved of CPU)."""
        starved = now - self._starved_at < self.timing.health_window_ms
        return not self._cut_off(now) and self.score <= 2 and not starved

    def _cut_off(self, now: int) -> bool:
        """Most peers we probed lately did not answer: the fault is likely our links."""
        since = now - self.timing.health_window_ms
        recent = [ok for when, ok in self._results.values() if when >= since]
        failed = recent.count(False)
        return failed >= 2 and failed * 2 > len(recent)

    def stretch(self, ms: int) -> int:
        """A timeout as our local health allows: longer while we are slow."""
        return ms * (1 + self.score)

    def lagged(self, ms: int, now: int) -> None:
        """Our own event loop ran ``ms`` late: we are starved of CPU, so others will look slow to us.
        Besides the score (which answered probes bring down within seconds), we accuse nobody for
        ``health_window_ms`` after: on a saturated machine a peer gets the CPU in bursts, and one whose
        score had just fallen accused live peers; each false accusation costs the market two floods
        (the notice and the refutation), which kept 150 peers on 2 cores saturated."""
        if ms >= 200:
            self.score = min(MAX_SCORE, self.score + ms // 200)
            self._starved_at = now

    def accused(self, now: int) -> None:
        """Someone declared us dead: we may be the slow one (see ``lagged``)."""
        self.score = min(MAX_SCORE, self.score + 1)
        self._starved_at = now

    # --- inputs ------------------------------------------------------------------------------------
    def add_candidates(self, addrs: list[str]) -> None:
        for addr in addrs:
            if addr in self._candidate_set or addr in self.own_addrs:
                continue
            if len(self.candidates) >= L.CANDIDATES_MAX:
                # random replacement keeps the pool a fresh sample rather than the first ones heard
                i = self.rng.randrange(len(self.candidates))
                self._candidate_set.discard(self.candidates[i])
                self.candidates[i] = addr
            else:
                self.candidates.append(addr)
            self._candidate_set.add(addr)

    def note_peer(self, peer_id: str, addr: str) -> None:
        """A maker's head went by: a candidate to dial, and one to probe at random (reservoir sample)."""
        if peer_id == self.own_id:
            return
        self._known_seen += 1
        if len(self.known) < 64:
            self.known.append((peer_id, addr))
        else:
            i = self.rng.randrange(self._known_seen)
            if i < 64:
                self.known[i] = (peer_id, addr)
                if self.rng.random() < 0.25:
                    self.add_candidates([addr])

    def heard(self, peer_id: str, now: int) -> None:
        """Anything arrived from this peer: as good as an answered probe."""
        link = self.links.get(peer_id)
        if link is not None:
            link.last_heard = now
            if link.state is not LinkState.ALIVE:
                link.state = LinkState.ALIVE
                self._troubled.pop(peer_id, None)
                if not link.neighbour and not link.probing:
                    del self.links[peer_id]

    def accept(self, peer_id: str, addr: str, now: int) -> bool:
        """A dial from another peer: take it while below the maximum degree."""
        if peer_id == self.own_id:
            return False
        link = self.links.get(peer_id)
        if link is not None and link.neighbour:
            link.addr, link.last_heard = addr, now
            return True
        if self.degree() >= L.NEIGHBOURS_MAX:
            return False
        self._link(peer_id, addr, now)
        return True

    def _link(self, peer_id: str, addr: str, now: int) -> None:
        self.links[peer_id] = Link(peer_id, addr, True, now, last_heard=now)
        self._troubled.pop(peer_id, None)
        self._order.insert(self.rng.randrange(len(self._order) + 1), peer_id)
        self.backoff.pop(addr, None)
        self._waits.pop(addr, None)

    def dialled(
        self, addr: str, peer_id: str | None, accepted: bool, candidates: list[str], now: int
    ) -> bool:
        """Our dial's outcome (``peer_id`` None: no answer). True if a new neighbour was linked."""
        self.dialing.pop(addr, None)
        if peer_id == self.own_id:
            self.own_addrs.add(addr)
            self._drop_candidate(addr)
            return False
        self.add_candidates(candidates)
        if peer_id is None or not accepted:
            self._back_off(addr, now)
            return False
        link = self.links.get(peer_id)
        if link is not None and link.neighbour:
            link.addr = addr
            return False
        if self.degree() >= L.NEIGHBOURS_MAX:
            return False  # we filled up meanwhile; it will notice from our pongs (neighbour: false)
        self._link(peer_id, addr, now)
        return True

    def left(self, peer_id: str) -> None:
        """It left us, or told us we are not its neighbour: drop it without accusing it."""
        link = self.links.pop(peer_id, None)
        self._troubled.pop(peer_id, None)
        self._hint(now=None)  # fewer neighbours: dial again soon
        if link is not None and peer_id in self._order:
            self._order.remove(peer_id)

    def probed(self, peer_id: str, answered_as: str | None, now: int) -> list[Intent]:
        """A direct probe's outcome: ``answered_as`` is the id that answered (None: no answer)."""
        link = self.links.get(peer_id)
        if link is None:
            return []
        link.probing = False
        ok = answered_as == peer_id
        self._results[peer_id] = (now, ok)
        if ok:
            self.score = max(0, self.score - 1)
        if ok:
            self.heard(peer_id, now)
            return []
        if link.state is LinkState.ALIVE:
            helpers = [
                other
                for other in self.links.values()
                if other.neighbour and other.peer_id != peer_id and other.state is LinkState.ALIVE
            ]
            chosen = self.rng.sample(helpers, min(self.timing.helpers, len(helpers)))
            if not chosen:
                self._suspect(link, now)
                return []
            link.state = LinkState.PROBING
            self._troubled[peer_id] = None
            self._hint(link.until)
            link.helpers = len(chosen)
            link.until = now + self.stretch(self.timing.indirect_timeout_ms)
            return [ProbeVia(h.peer_id, h.addr, peer_id, link.addr) for h in chosen]
        return []

    def probed_via(self, target_id: str, ok: bool, now: int, *, helper_answered: bool = True) -> None:
        """An indirect probe's outcome. A helper that did not answer at all (it answers "no" when the
        target does not) says more about our own links than about the target: our score rises."""
        if not helper_answered:
            self.score = min(MAX_SCORE, self.score + 1)
        link = self.links.get(target_id)
        if link is None or link.state is not LinkState.PROBING:
            return
        if ok:
            self.heard(target_id, now)
            return
        link.helpers -= 1
        if link.helpers <= 0:
            self._suspect(link, now)

    def _suspect(self, link: Link, now: int) -> None:
        link.state = LinkState.SUSPECT
        self._troubled[link.peer_id] = None
        self._hint(link.retry_at)
        link.until = now + self.stretch(self.timing.suspect_ms)
        link.retry_at = now + self.timing.suspect_retry_ms

    def _back_off(self, addr: str, now: int) -> None:
        """Do not dial ``addr`` for a while: 2 s, doubling while it keeps failing, up to dial_backoff_ms
        (short at first, so links come back soon after a partition heals)."""
        wait = min(self.timing.dial_backoff_ms, 2 * self._waits.get(addr, self.timing.lookup_fast_ms // 2))
        self._waits[addr] = wait
        self.backoff[addr] = now + wait // 2 + self.rng.randrange(wait // 2 + 1)

    def _hint(self, when: int | None = None, *, now: int | None = None) -> None:
        when = when if when is not None else (self._next_probe if now is None else now)
        self.hint = when if self.hint is None else min(self.hint, when)

    def _drop_candidate(self, addr: str) -> None:
        if addr in self._candidate_set:
            self._candidate_set.discard(addr)
            self.candidates.remove(addr)

    # --- time --------------------------------------------------------------------------------------
    def tick(self, now: int) -> list[Intent]:
        t = self.timing
        self.hint = None
        out: list[Intent] = []
        # suspicion and indirect probes that ran out of time
        for link in [self.links[p] for p in self._troubled]:
            if link.state is LinkState.PROBING and now >= link.until:
                self._suspect(link, now)
            if link.state is LinkState.SUSPECT:
                if now >= link.until:
                    self.left(link.peer_id)
                    self._back_off(link.addr, now)
                    if self._cut_off(now):  # (rewiring does not help a peer short of CPU)
                        self._sick_until = now + t.rewire_ms
                    out.append(Dead(link.peer_id, link.addr, accuse=self.healthy(now)))
                elif now >= link.retry_at and not link.probing:
                    link.retry_at = now + t.suspect_retry_ms
                    link.probing = True
                    out.append(Probe(link.peer_id, link.addr))
        # one neighbour probed per tick, round robin, each at least every probe_period_ms
        degree = self.degree()
        if now >= self._next_probe and self._order:
            self._next_probe = now + min(t.probe_interval_ms, t.probe_period_ms // max(1, degree))
            for _ in range(len(self._order)):
                peer_id = self._order.pop(0)
                self._order.append(peer_id)
                probe = self.links.get(peer_id)
                if probe is not None and probe.state is LinkState.ALIVE and not probe.probing:
                    probe.probing = True
                    out.append(Probe(peer_id, probe.addr))
                    break
        # a random live maker we do not link to: nobody's orphan goes unwatched
        if now >= self._next_other:
            self._next_other = now + t.other_probe_ms // 2 + self.rng.randrange(t.other_probe_ms)
            picks = [(p, a) for p, a in self.known if p not in self.links and p != self.own_id]
            if picks:
                peer_id, addr = self.rng.choice(picks)
                if self.is_live(peer_id):
                    self.links[peer_id] = Link(peer_id, addr, False, now, last_heard=now, probing=True)
                    out.append(Probe(peer_id, addr))
        # dial up to the target degree; look the market up when short of candidates
        for addr, since in list(self.dialing.items()):
            if now - since > 2 * self.stretch(t.dial_timeout_ms):
                del self.dialing[addr]  # its outcome got lost: a late answer is still welcome
        for addr, until in list(self.backoff.items()):
            if until <= now:
                del self.backoff[addr]
        if len(self._waits) > 4 * L.CANDIDATES_MAX:
            self._waits = {a: w for a, w in self._waits.items() if a in self.backoff}
        want = L.NEIGHBOURS_TARGET - degree - len(self.dialing)
        if now >= self._next_rewire:
            # after a spell of being cut off, rewire every few seconds: the market we lost sight of is
            # reachable again once the partition heals, and our links all point inside our own side
            period = t.lookup_fast_ms if now < self._sick_until else t.rewire_ms
            self._next_rewire = now + period // 2 + self.rng.randrange(period)
            if degree >= L.NEIGHBOURS_TARGET + 2:
                victim = self.rng.choice(self.neighbour_ids())
                out.append(Leave(victim, self.links[victim].addr))
                self.left(victim)
            elif degree >= L.NEIGHBOURS_TARGET and degree < L.NEIGHBOURS_MAX:
                want = max(want, 1)
        if want > 0:
            linked = {link.addr for link in self.links.values() if link.neighbour}
            pool = [
                a
                for a in self.candidates
                if a not in linked
                and a not in self.dialing
                and a not in self.backoff
                and a not in self.own_addrs
            ]
            for addr in self.rng.sample(pool, min(want, 3, len(pool))):
                self.dialing[addr] = now
                out.append(Dial(addr, urgent=degree == 0))
        short = degree < L.NEIGHBOURS_TARGET
        if now - self._last_lookup >= (t.lookup_fast_ms if short else t.lookup_ms):
            self._last_lookup = now
            out.append(Lookup())
        # forget old probe results
        if len(self._results) > 4 * L.NEIGHBOURS_MAX:
            since = now - t.health_window_ms
            self._results = {p: r for p, r in self._results.items() if r[0] >= since}
        return out

    def next_wakeup(self, now: int) -> int:
        """When ``tick`` next has something to do (at the latest)."""
        t = self.timing
        short = len(self._order) < L.NEIGHBOURS_TARGET
        soonest = min(
            self._next_probe if self._order else self._next_other,
            self._next_other,
            self._next_rewire,
            self._last_lookup + (t.lookup_fast_ms if short else t.lookup_ms),
        )
        if short:
            soonest = min(soonest, now + t.lookup_fast_ms // 4)  # dial again as candidates come
        for peer_id in self._troubled:
            link = self.links[peer_id]
            soonest = min(
                soonest, link.until, link.retry_at if link.state is LinkState.SUSPECT else link.until
            )
        return max(now + 1, soonest)
