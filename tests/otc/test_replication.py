"""The replication core (core/replication.py, membership.py, fingerprint.py) driven in virtual time by
the simulator's engine and network: no sockets, deterministic, each test a few seconds of virtual time.
The whole-market invariants run in test_sim.py; here each behaviour is looked at on its own."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otc.core import fingerprint as F
from otc.core import limits as L
from otc.core.book import Book
from otc.core.desk import Desk
from otc.core.gossip import News, Outbox
from otc.core.identity import Identity
from otc.core.membership import Dead, Membership, Probe
from otc.core.messages import Confirm, Gossip, Neighbour, Offer, Pull, Records, SnapshotRequest, Take
from otc.core.notices import Verifier, sign_death
from otc.core.replication import Joined, Lookup, Refusal, Replica, Send, Silent
from otc.core.taker import Taker
from otc.core.timing import Timing
from otc.sim.market import Scenario, Sim, SimPeer

SECOND = 1000


def market(n: int, *, loss: float = 0.0, seed: int = 3) -> Sim:
    """``n`` peers holding one market, their overlay formed (10 s of virtual time)."""
    sim = Sim(Scenario(peers=n, seed=seed, loss=loss))
    sim.genesis()
    sim.engine.run_until(10 * SECOND)
    return sim


def post(sim: Sim, maker: SimPeer, price: str = "8000") -> Offer:
    offer, effects = maker.desk.create(
        side="sell", amount="1", price=price, pair="BTC/USD", now=sim.engine.now
    )
    sim.commit(maker, effects.offers)
    return offer


def holders(sim: Sim, offer: Offer) -> int:
    return sum(1 for p in sim.live() if p is not None and p.book.get(offer.id) == offer)


def shown(sim: Sim, maker: SimPeer) -> int:
    """How many live peers (other than the maker) show it alive."""
    return sum(1 for p in sim.live() if p is not maker and p.book.maker_alive(maker.peer_id, sim.engine.now))


# --- the overlay ---------------------------------------------------------------------------------------
def test_the_overlay_keeps_every_degree_within_bounds_and_the_graph_connected() -> None:
    sim = market(60)
    degrees = [p.replica.membership.degree() for p in sim.peers]
    assert min(degrees) >= L.NEIGHBOURS_TARGET - 1 and max(degrees) <= L.NEIGHBOURS_MAX
    links = {(p.peer_id, q) for p in sim.peers for q in p.replica.neighbours()}
    assert all((q, p) in links for p, q in links), "neighbours are mutual"
    seen, todo = {sim.peers[0].peer_id}, [sim.peers[0].peer_id]
    while todo:
        for q in sim.by_id[todo.pop()].replica.neighbours():
            if q not in seen:
                seen.add(q)
                todo.append(q)
    assert len(seen) == 60


def test_an_update_floods_the_overlay_with_its_head_and_little_duplication() -> None:
    sim = market(40)
    maker = sim.peers[5]
    offer = post(sim, maker)
    sim.engine.run_until(sim.engine.now + 500)  # a few hops of 20-80 ms
    assert holders(sim, offer) == 40
    head = maker.replica.head
    assert head is not None
    for p in sim.peers:
        if p is not maker:
            view = p.book.makers[maker.peer_id]
            assert view.head == head and view.in_step(head)  # the head rode along with the update
    received = sum(p.replica.stats["offers_in"] for p in sim.peers)
    assert received / 39 <= 10  # about the degree, not the market size


def test_idle_traffic_per_peer_does_not_grow_with_the_market() -> None:
    rates = []
    for n in (20, 80):
        sim = market(n)
        before = sum(p.replica.stats["msgs_in"] for p in sim.peers)
        sim.engine.run_until(sim.engine.now + 20 * SECOND)
        rates.append((sum(p.replica.stats["msgs_in"] for p in sim.peers) - before) / n / 20)
    assert all(r < 4 for r in rates), rates  # ~2 probes sent and ~2 received per second
    assert rates[1] < rates[0] * 1.3, rates


def fill_by(sim: Sim, maker: SimPeer, taker: Taker, offer: Offer, n: int) -> Offer:
    """One real trade of 0.001 on the maker's desk (take, confirm), committed as node/trading.py does."""
    now = sim.engine.now
    maker.desk._taker(taker.peer_id).known = True
    trade = taker.new_trade(maker.desk.offers[offer.id], "0.001", f"{n:032x}", now)
    req = taker.next_request(trade)
    assert isinstance(req, Take)
    reply, effects = maker.desk.take(req, now)
    trade = taker.on_reply(trade, reply, now)
    confirm = taker.next_request(trade)
    assert isinstance(confirm, Confirm)
    _, effects = maker.desk.confirm(confirm, now)
    sim.commit(maker, effects.offers)
    return maker.desk.offers[offer.id]


def test_a_busy_offer_costs_the_market_a_bounded_stream_and_new_offers_still_go_at_once() -> None:
    """200 fills in 2 s: the maker signs at most a head per publish_gap_ms, each neighbour gets at most a
    request per gossip_gap_ms of them, and every book ends with the last state. A new offer and a
    cancel posted in the middle of it go at once."""
    sim = market(30)
    t = Timing()
    maker, taker = sim.peers[3], Taker(Identity.from_seed(bytes([99]) * 32), "taker")
    busy = post(sim, maker)
    sim.engine.run_until(sim.engine.now + 500)
    sent = sum(p.replica.stats["msgs_out"] for p in sim.peers)
    heads = maker.replica.head
    assert heads is not None
    first_head, start = heads.ts, sim.engine.now
    last, fresh, posted, reached = busy, None, 0, None
    for n in range(200):
        last = fill_by(sim, maker, taker, busy, n)
        if n == 100:
            fresh, posted = post(sim, maker, price="9000"), sim.engine.now
        sim.engine.run_until(sim.engine.now + 10)
        if fresh is not None and reached is None and holders(sim, fresh) == 30:
            reached = sim.engine.now
    sim.engine.run_until(sim.engine.now + 2 * SECOND)
    assert fresh is not None and reached is not None and reached - posted <= 400, "at once: a few hops"
    assert holders(sim, last) == 30, "every book ends with the busy offer's last state"
    signed = maker.replica.head
    assert signed is not None
    # heads are dated by the maker's clock: count them by the ts span they cover
    assert (signed.ts - first_head) >= 2_000 - t.publish_gap_ms
    gossip = sum(p.replica.stats["msgs_out"] for p in sim.peers) - sent
    span_s = (sim.engine.now - start) / 1000
    degree_sum = sum(p.replica.membership.degree() for p in sim.peers)
    bound = degree_sum * (span_s * 1000 / t.gossip_gap_ms + 10) + 3 * 30 * span_s  # + probes
    assert gossip < bound, (gossip, bound)
    assert gossip < 200 * degree_sum / 4, "far fewer requests than one flood per fill"


def test_a_slow_neighbour_gets_bigger_batches_not_more_requests_except_for_new_offers() -> None:
    """At most GOSSIP_IN_FLIGHT requests to one neighbour carry heads, notices and fills; what comes
    meanwhile queues for the next one. A new or closed offer may go with up to GOSSIP_IN_FLIGHT_FRESH in
    flight (at 4 for everything, a 150-peer market on 2 cores never calmed down: test_scale.py)."""
    sim = market(5)
    maker = sim.peers[1]
    offer = post(sim, maker)
    sim.engine.run_until(sim.engine.now + SECOND)
    head = maker.replica.head
    assert head is not None
    box = Outbox()
    for _ in range(L.GOSSIP_IN_FLIGHT):
        assert box.room()
        box.in_flight += 1
    box.add(News(heads=[head]))  # a head alone (a refutation): urgent, but it waits for a reply
    assert box.urgent and not box.room()
    assert box.room(fresh=True)
    box.add(News(offers=[offer], fresh=True))
    while box.room():
        box.in_flight += 1
    assert box.in_flight == L.GOSSIP_IN_FLIGHT_FRESH
    sent = box.take(maker.peer_id)
    assert sent.heads == [head] and sent.offers == [offer], "one request carries everything queued"
    assert not box.fresh and not box.room(), "back to the ordinary limit once the new offer went"


def test_a_silent_neighbour_is_sent_at_most_the_in_flight_allowance() -> None:
    """A neighbour that stops answering holds at most GOSSIP_IN_FLIGHT of a maker's requests for fills
    (the rest queue, for one batch), and GOSSIP_IN_FLIGHT_FRESH while new offers wait: the pushes of a
    loaded market do not multiply with the slowness of whom they go to."""
    sim = market(10)
    maker, taker = sim.peers[0], Taker(Identity.from_seed(bytes([97]) * 32), "taker")
    silent_id = maker.replica.membership.neighbour_ids()[0]
    silent = next(p for p in sim.peers if p.peer_id == silent_id)
    busy = post(sim, maker)
    sim.engine.run_until(sim.engine.now + 500)
    box = maker.replica._outboxes[silent_id]
    assert box.in_flight == 0
    sim.net.group[silent.index] = 1  # cut off: requests to it go unanswered until they time out
    most = 0
    for n in range(40):  # 2 s of fills, inside the 3 s request timeout
        fill_by(sim, maker, taker, busy, n)
        sim.engine.run_until(sim.engine.now + 50)
        most = max(most, box.in_flight)
    assert most == L.GOSSIP_IN_FLIGHT and box.pending, "the rest waits, queued"
    for i in range(4):
        post(sim, maker, price=str(9000 + i))
        most = max(most, box.in_flight)
    assert most == L.GOSSIP_IN_FLIGHT_FRESH
    assert maker.replica._outboxes[silent_id] is box


def test_our_record_is_what_our_last_head_commits_to_while_a_fill_waits() -> None:
    """Between two heads the desk moves on: what we serve (pulls, snapshots, our own list) must still
    match the head we signed, or every asker would see us drift."""
    sim = market(5)
    maker, taker = sim.peers[0], Taker(Identity.from_seed(bytes([98]) * 32), "taker")
    busy = post(sim, maker)
    sim.engine.run_until(sim.engine.now + 500)
    fill_by(sim, maker, taker, busy, 1)  # published at once (the first after a quiet spell)
    fill_by(sim, maker, taker, busy, 2)  # within the gap: waits
    own = maker.replica.own_record()
    assert own is not None and maker.replica._unpublished
    due = maker.replica._publish_due
    assert due is not None and maker.replica.next_wakeup(sim.engine.now) <= due, "the tick comes in time"
    assert own.head.head == maker.desk.seq - 1
    assert Book("00" * 32).sync(own, sim.engine.now) == 1, "the list matches its head"
    sim.engine.run_until(sim.engine.now + Timing().publish_gap_ms + 50)
    own = maker.replica.own_record()
    assert own is not None and own.head.head == maker.desk.seq and not maker.replica._unpublished


# --- liveness ------------------------------------------------------------------------------------------
def test_a_dead_maker_vanishes_from_every_book_well_within_15_s() -> None:
    sim = market(50, loss=0.01)
    victim = sim.peers[7]
    died = sim.engine.now
    sim.kill(victim)
    gone_at = None
    while sim.engine.now < died + 15 * SECOND:
        sim.engine.run_until(sim.engine.now + 100)
        if shown(sim, victim) == 0:
            gone_at = sim.engine.now
            break
    assert gone_at is not None and gone_at - died < 11 * SECOND  # the budget in core/timing.py
    holders_ = [p for p in sim.live() if p.book.makers[victim.peer_id].death is not None]
    assert len(holders_) == 49  # by a notice, which every peer holds


def test_a_neighbour_that_stops_answering_is_reported_silent_by_those_that_probed_it() -> None:
    """Accusation or not (a peer that may be the one cut off accuses nobody), the failure detector's
    verdict reaches the edge as ``Silent``: the node shows that maker's offers unreachable at once."""
    sim = market(12)
    victim = sim.peers[4]
    silent: set[str] = set()
    run = sim._run

    def recording(peer: SimPeer, actions: Any) -> None:
        actions = list(actions)
        silent.update(peer.peer_id for a in actions if isinstance(a, Silent) and a.peer_id == victim.peer_id)
        run(peer, actions)

    sim._run = recording  # type: ignore[method-assign]
    neighbours = set(victim.replica.neighbours())
    sim.kill(victim)
    sim.engine.run_until(sim.engine.now + 12 * SECOND)
    assert neighbours and neighbours <= silent, (neighbours, silent)


def test_a_false_accusation_is_refuted_and_its_accuser_ignored_after_three() -> None:
    sim = market(30)
    liar, victim, observer = sim.peers[1], sim.peers[2], sim.peers[3]
    others = [p for p in sim.peers if p not in (liar, victim)]
    for strike in range(5):
        now = sim.engine.now
        head = victim.replica.head
        assert head is not None
        death = sign_death(liar.desk.identity, head, now)
        sim._run(liar, liar.replica.handle(Gossip(sender="", deaths=[death]), now)[1])
        hidden = 0
        for _ in range(20):
            sim.engine.run_until(sim.engine.now + 100)
            hidden = max(hidden, sum(1 for p in others if not p.book.maker_alive(victim.peer_id, 0)))
        if strike < 3:
            assert hidden > 0  # believed, until the victim's newer head came by
        else:
            assert hidden == 0, f"round {strike}: the ignored accuser still hid the victim somewhere"
        assert all(p.book.maker_alive(victim.peer_id, 0) for p in others)  # refuted everywhere
    assert observer.replica._ignored(liar.peer_id, sim.engine.now)


def test_a_paused_peer_is_hidden_then_comes_back_by_itself() -> None:
    sim = market(30)
    sleeper = sim.peers[4]
    sleeper.alive = False  # SIGSTOP: silent, but it keeps its state
    sim.engine.run_until(sim.engine.now + 15 * SECOND)
    assert shown(sim, sleeper) == 0
    sleeper.alive = True  # SIGCONT: its probes learn it was declared dead, and it refutes
    sleeper.wake = -1
    sim._run(sleeper, sleeper.replica.tick(sim.engine.now))
    sim.engine.run_until(sim.engine.now + 10 * SECOND)
    assert shown(sim, sleeper) == 29
    assert sleeper.replica.membership.degree() >= L.NEIGHBOURS_TARGET - 1


def test_a_goodbye_hides_the_maker_everywhere_at_once_and_its_restart_brings_it_back() -> None:
    """``depart``: a notice of its own newest head, signed by the maker, floods like any other; the
    maker refutes nothing afterwards, and its next newer head (a restart) revives it, striking nobody."""
    sim = market(30)
    leaver = sim.peers[6]
    now = sim.engine.now
    sim._run(leaver, leaver.replica.depart(now))
    leaver.alive = False  # it stops
    sim.engine.run_until(now + 500)  # flooding only: far below the failure detector's seconds
    assert shown(sim, leaver) == 0
    assert all(p.book.makers[leaver.peer_id].death.accuser == leaver.peer_id for p in sim.live())  # type: ignore[union-attr]
    assert leaver.replica.depart(sim.engine.now) == []  # once
    # it comes back (a restart: a newer head of the same key)
    leaver.alive, leaver.wake = True, -1
    leaver.replica.departed = False
    leaver.replica.head = None
    sim._run(leaver, leaver.replica.become_member(sim.engine.now))
    sim._run(leaver, leaver.replica.tick(sim.engine.now))
    sim.engine.run_until(sim.engine.now + 10 * SECOND)
    assert shown(sim, leaver) == 29
    assert not any(p.replica._strikes.get(leaver.peer_id) for p in sim.peers)


def test_a_goodbye_about_an_older_head_or_in_another_name_hides_nobody() -> None:
    sim = market(10)
    maker, observer, stranger = sim.peers[2], sim.peers[3], Identity.generate()
    older = maker.replica.head
    assert older is not None
    post(sim, maker)  # a newer head
    sim.engine.run_until(sim.engine.now + SECOND)
    now = sim.engine.now
    replayed = sign_death(maker.desk.identity, older, now)  # the maker's own, about a head it moved past
    forged = msgspec.structs.replace(sign_death(stranger, maker.replica.head, now), accuser=maker.peer_id)  # type: ignore[arg-type]
    for bad in (replayed, forged):
        observer.replica.handle(Gossip(sender="", deaths=[bad]), now)
        assert observer.book.maker_alive(maker.peer_id, now), bad


def test_a_peer_not_yet_a_member_reads_the_market_and_signs_nothing() -> None:
    """Started with ``member=False`` (its own history still being checked, node/recovery.py), a peer
    joins the book but has no head, publishes nothing, dials nobody and refuses neighbours."""
    identity = Identity.from_seed(bytes([7]) * 32)
    desk = Desk(identity, "checking")
    replica = Replica(
        identity, Book(identity.peer_id), lambda ts: desk.head(ts, "127.0.0.1:2"), desk.open_offers,
        rng=random.Random(2), verifier=Verifier(),
    )  # fmt: skip
    assert replica.start(0, {"127.0.0.1:2"}, member=False) == [Lookup()]
    replica.on_lookup(["127.0.0.1:3", "127.0.0.1:4"], 1)
    _, effects = desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=2)
    assert replica.publish(effects.offers, 2) == [] and replica.head is None
    other = Identity.from_seed(bytes([8]) * 32)
    reply, _ = replica.handle(Neighbour(head=Desk(other, "x").head(3, "127.0.0.1:3")), 3)
    assert isinstance(reply, Refusal) and reply.code == "ERR_NOT_READY"
    sent = replica.tick(20 * SECOND)
    assert not any(isinstance(a, Send) and isinstance(a.msg, Neighbour) for a in sent)
    assert replica.become_member(21 * SECOND) == [] and replica.head is not None
    assert replica.head.head == desk.head(0, "").head  # commits to what the desk did meanwhile
    dials = replica.tick(22 * SECOND)
    assert any(isinstance(a, Send) and isinstance(a.msg, Neighbour) for a in dials)


# --- repair and joining --------------------------------------------------------------------------------
def test_reconciliation_repairs_an_update_that_never_arrived() -> None:
    sim = market(20)
    maker, deaf = sim.peers[0], sim.peers[9]
    offer, effects = maker.desk.create(
        side="buy", amount="2", price="7000", pair="BTC/USD", now=sim.engine.now
    )
    maker.book.apply(offer)
    maker.replica.publish(effects.offers, sim.engine.now)  # decisions dropped: nobody hears of it
    sim.engine.run_until(sim.engine.now + 500)
    assert holders(sim, offer) == 1
    sim.engine.run_until(sim.engine.now + 1_000)  # settled: the fingerprints tell
    assert deaf.replica.fp.root() != maker.replica.fp.root()
    sim.engine.run_until(sim.engine.now + 10 * SECOND)
    assert holders(sim, offer) == 20  # pulled through reconciliation
    roots = {(p.replica.fp.root().count, p.replica.fp.root().fp) for p in sim.peers}
    assert len(roots) == 1


def test_a_newcomer_joins_from_a_snapshot_past_silent_sources() -> None:
    sim = market(20)
    offers = [post(sim, sim.peers[i], str(8000 + i)) for i in range(5)]
    sim.engine.run_until(sim.engine.now + SECOND)
    for _ in range(30):  # announced, never answering: Grape lists them like any other
        sim._announce(f"10.9.9.{len(sim.announced) % 250}:1")
    sim.join()
    newcomer = sim.peers[-1]
    started = sim.engine.now
    while newcomer.joined_at is None:
        sim.engine.run_until(sim.engine.now + 50)
    assert newcomer.joined_at - started < 5 * SECOND
    sim.engine.run_until(sim.engine.now + 5 * SECOND)
    assert all(newcomer.book.get(o.id) == o for o in offers)
    assert len(newcomer.book.peers(sim.engine.now)) == 20
    assert shown(sim, newcomer) == 20  # its head reached everyone


def test_snapshot_and_pull_pages_are_bounded_in_bytes_and_by_a_budget() -> None:
    sim = market(4)
    big = sim.peers[0]
    now = sim.engine.now
    offers = []
    for i in range(L.MAX_OFFERS_PER_MAKER):
        _, effects = big.desk.create(side="sell", amount="1", price=str(9000 + i), pair="BTC/USD", now=now)
        offers += effects.offers
    sim.commit(big, offers)
    sim.engine.run_until(now + 5 * SECOND)
    server = sim.peers[1].replica
    page, _ = server.handle(SnapshotRequest(after=""), sim.engine.now)
    assert isinstance(page, Records)
    size = len(msgspec.json.encode(page))
    assert size <= L.PAGE_BYTES and sum(len(r.offers or []) for r in page.records) == L.MAX_OFFERS_PER_MAKER
    pulled, _ = server.handle(Pull(makers=[p.peer_id for p in sim.peers]), sim.engine.now)
    assert isinstance(pulled, Records) and len(msgspec.json.encode(pulled)) <= L.PAGE_BYTES
    answers = [server.handle(SnapshotRequest(after=""), sim.engine.now)[0] for _ in range(200)]
    busy = [a for a in answers if isinstance(a, Refusal)]
    assert busy and busy[0].code == "ERR_BUSY"
    served = sum(len(msgspec.json.encode(a)) for a in answers if isinstance(a, Records))
    assert served <= L.SERVE_BYTES_BURST + L.PAGE_BYTES


# --- bounds and equivocation ---------------------------------------------------------------------------
def test_strangers_introduce_new_makers_only_within_their_allowance() -> None:
    sim = market(3)
    victim = sim.peers[0]
    now = sim.engine.now
    junk = []
    for i in range(100):
        desk = Desk(Identity.from_seed(bytes([i + 1]) * 32), f"junk{i}")
        offer, _ = desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=now)
        junk.append(Gossip(offers=[offer], heads=[desk.head(now, "127.0.0.1:1")]))
    for msg in junk:
        victim.replica.handle(msg, now)
    assert len(victim.book.makers) == 3 + L.NEW_MAKERS_STRANGER_BURST
    # a minute later the allowance has refilled by NEW_MAKERS_STRANGER_PER_MINUTE
    for msg in junk:
        victim.replica.handle(msg, now + 60 * SECOND)
    assert len(victim.book.makers) == 3 + L.NEW_MAKERS_STRANGER_BURST + L.NEW_MAKERS_STRANGER_PER_MINUTE


def test_an_equivocating_maker_is_proven_and_hidden_everywhere() -> None:
    sim = market(30)
    cheat = sim.peers[0]
    offer = post(sim, cheat, "7000")
    sim.engine.run_until(sim.engine.now + SECOND)
    twin = msgspec.structs.replace(offer, price="7100", sig="")
    from otc.core.signing import sign

    twin = sign(cheat.desk.identity, twin)
    now = sim.engine.now
    # the second version goes to one peer only, as a stranger would push it
    sim._run(sim.peers[17], sim.peers[17].replica.handle(Gossip(offers=[twin]), now)[1])
    sim.engine.run_until(now + 2 * SECOND)
    for p in sim.peers[1:]:
        view = p.book.makers[cheat.peer_id]
        assert view.proof is not None and not p.book.maker_alive(cheat.peer_id, now)
        assert p.book.get(offer.id) is None


def test_a_neighbour_request_without_a_signed_head_is_refused() -> None:
    sim = market(3)
    replica = sim.peers[0].replica
    head = sim.peers[1].replica.head
    assert head is not None
    forged = msgspec.structs.replace(head, name="someone-else")
    reply, _ = replica.handle(Neighbour(head=forged), sim.engine.now)
    assert isinstance(reply, Refusal) and reply.code == "ERR_INVALID_PAYLOAD"


# --- fingerprints --------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), max_size=80))
def test_fingerprints_always_equal_a_recount(ops: list[tuple[int, int]]) -> None:
    keys = [f"{random.Random(i).getrandbits(256):064x}" for i in range(31)]
    fp = F.Fingerprints()
    held: dict[str, int] = {}
    for k, v in ops:
        key = keys[k]
        new = 0 if v == 0 else F.item_hash(key, v, v, F.IN_STEP)
        fp.update(key, held.get(key, 0), new)
        if new:
            held[key] = new
        else:
            held.pop(key, None)
    for prefix in ["", *F.children(""), *(p + c for p in "0af" for c in "0123456789abcdef")]:
        inside = [h for key, h in held.items() if key.startswith(prefix)]
        assert fp.range(prefix) == F.Range(prefix, len(inside), sum(inside) & F.MASK)


def test_replica_starts_by_looking_the_market_up() -> None:
    identity = Identity.from_seed(bytes([9]) * 32)
    desk = Desk(identity, "solo")
    replica = Replica(
        identity,
        Book(identity.peer_id),
        lambda ts: desk.head(ts, "127.0.0.1:1"),
        desk.open_offers,
        rng=random.Random(1),
        verifier=Verifier(),
    )
    assert replica.start(0, {"127.0.0.1:1"}) == [Lookup()]
    assert Joined() in replica.on_lookup([], 1)  # nobody else: the join is over at once
    assert replica.phase.value == "running"
    offer, effects = desk.create(side="sell", amount="1", price="1", pair="BTC/USD", now=2)
    assert replica.publish(effects.offers, 2) == []  # no neighbours to push to yet
    assert replica.head is not None and replica.head.head == offer.seq


@pytest.mark.parametrize("n", [1, 2])
def test_tiny_markets_work(n: int) -> None:
    sim = market(n)
    offer = post(sim, sim.peers[0])
    sim.engine.run_until(sim.engine.now + SECOND)
    assert holders(sim, offer) == n


def _probe_to_death(m: Membership, start: int) -> Dead:
    """Tick ``m`` on from ``start``, no probe of its one neighbour ever answered, until it is dropped."""
    now = start
    while now < start + 120 * SECOND:
        for intent in m.tick(now):
            if isinstance(intent, Dead):
                return intent
            if isinstance(intent, Probe):
                m.probed(intent.peer_id, None, now)
        now += 100
    raise AssertionError("never dropped")


@pytest.mark.parametrize("starved", ["lagged", "accused", "neither"])
def test_a_peer_starved_of_cpu_lately_accuses_nobody(starved: str) -> None:
    """A peer whose own loop ran late, or who was itself accused, within health_window_ms drops a
    neighbour that stops answering but accuses nobody: each false accusation costs the market two
    floods, and on a saturated machine those floods kept it saturated (tests/scale)."""
    t = Timing()
    m = Membership("me", random.Random(1), t)
    assert m.accept("gone", "127.0.0.1:1", 0)
    start = 30 * SECOND
    if starved == "lagged":
        m.lagged(250, start)
    elif starved == "accused":
        m.accused(start)
    if starved != "neither":
        m.score = 0  # answered probes brought the score down: the recent starvation still counts
    dead = _probe_to_death(m, start)
    assert dead.peer_id == "gone"
    assert dead.accuse is (starved == "neither")
    if starved != "neither":  # once a health window passes quietly, its verdicts count again
        later = start + 2 * t.health_window_ms
        m._results.clear()  # (the first neighbour's failed probes are not what this looks at)
        assert m.accept("gone2", "127.0.0.1:2", later)
        m.score = 0
        assert _probe_to_death(m, later).accuse
