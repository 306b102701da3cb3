"""Market replication at the edge: the pure replication core (``core.replication.Replica``: the overlay,
gossip, failure detection, reconciliation, joining) fed with Grenache requests, replies, Grape lookups
and the clock, and its decisions carried out with ``PeerRPCClient``. Nothing here decides anything.

- requests on ``otc:market`` go to ``Replica.handle``; a deferred answer (an indirect probe) waits here;
- each ``Send`` becomes one RPC to one address, its reply (or failure) fed back to ``on_reply``;
- ``Lookup`` asks the Grape for ``otc:market`` (through the directory, which also vouches for what the
  Grape lists); ``AskMaker`` syncs with the maker itself on its own key;
- one timer loop ticks the core when it asks to be woken.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import msgspec

from grenache import GrenacheError, PeerRPCClient, RPCError

from ..core import errors as E
from ..core.book import Book
from ..core.desk import Desk
from ..core.messages import Head, Leave, MakerOffers, MarketRequest, Offer, OffersRequest, Ping, PingReq
from ..core.notices import Verifier
from ..core.replication import (
    REPLY_TYPES,
    Action,
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
    Silent,
)
from ..core.timing import Timing
from .clock import now_ms
from .config import PeerConfig
from .directory import MARKET, Directory
from .events import Listeners
from .tasks import Tasks
from .wire import decode

log = logging.getLogger("otc.node.market")
LIVENESS = (Ping, PingReq, Leave)  # sent on the probe client


class Market:
    def __init__(
        self,
        config: PeerConfig,
        desk: Desk,
        book: Book,
        client: PeerRPCClient,
        probe_client: PeerRPCClient,
        directory: Directory,
        tasks: Tasks,
        events: Listeners,
    ) -> None:
        self.config = config
        self.desk = desk
        self.book = book
        self.client = client  # gossip, reconciliation, pulls, snapshots, dials
        self.probe_client = probe_client  # probes and goodbyes: never queued behind the data above
        self.directory = directory
        self.tasks = tasks
        self.events = events
        self.addr = ""  # ours, as our heads announce it; set once the RPC server listens
        self.started = asyncio.Event()  # the join is done: we serve snapshots and reconcile
        self.join_ms = 0.0  # how long loading the book from other peers took at start
        self.replica = Replica(
            desk.identity, book, self._sign_head, desk.open_offers, rng=random.Random(), verifier=Verifier(),
            timing=Timing(),
        )  # fmt: skip
        self._deferred: dict[int, asyncio.Future[Any]] = {}
        self._wake = asyncio.Event()
        self._next_tick = 0
        self._join_started = 0.0
        self._begun = False  # the replica runs (reading the market, or as a member)
        self._syncing: dict[str, asyncio.Future[None]] = {}  # maker -> its sync in flight
        self._sync_backoff: dict[str, tuple[float, float]] = {}  # maker -> (not before, last wait)
        self._publishing: list[Offer] = []  # our changed offers, for the replica (``publish``)
        self._publish_soon = False

    @property
    def stats(self) -> dict[str, int]:
        """Message counters, and what says whether we are overloaded: our local health score (0-8,
        membership.py) and the connections our clients have opened (TLS handshakes)."""
        return {
            **self.replica.stats,
            "health_score": self.replica.membership.score,
            "connections_opened": self.client.opened + self.probe_client.opened,
        }

    def _sign_head(self, ts: int) -> Head:
        return self.desk.head(ts, self.addr)

    def start(self, addr: str) -> None:
        """Take part in the overlay, listening at ``addr``: sign our head, dial neighbours, push our
        updates (before this we only read the market: see ``join`` and node/recovery.py)."""
        self.addr = addr
        self._begin({addr, f"127.0.0.1:{addr.rsplit(':', 1)[1]}"})
        self._run(self.replica.become_member(now_ms()))

    def stop(self) -> None:
        for future in self._deferred.values():
            future.cancel()

    async def join(self, me: set[str]) -> None:
        """Load the book (a snapshot from the first of several peers to answer; see
        core/replication.py) and wait for it. ``me``: our own addresses, never asked. Reading only,
        unless ``start`` came first."""
        self._begin(me)
        await self.started.wait()

    def _begin(self, me: set[str]) -> None:
        self.replica.membership.own_addrs |= me
        if self._begun:
            return
        self._begun = True
        self._join_started = time.perf_counter()
        self._run(self.replica.start(now_ms(), me, member=False))
        self.tasks.loop(self._tick_loop)

    async def depart(self, timeout_s: float = 1.0) -> None:
        """Say goodbye once, when stopping on purpose: a death notice of our own newest head, signed by
        us, to every neighbour (and on through the overlay), so books hide our offers at once rather
        than after the failure detector's timeouts; they show again when we restart. Waits for the
        neighbours' answers at most ``timeout_s``: stopping never waits on a slow peer."""
        sends = [a for a in self.replica.depart(now_ms()) if isinstance(a, Send)]
        if sends:
            await asyncio.wait([asyncio.ensure_future(self._send(a)) for a in sends], timeout=timeout_s)

    # --- our own updates ------------------------------------------------------------------------------
    def publish(self, offers: list[Offer]) -> None:
        """Hand our desk's changed offers to the replica once the current callback is over: a maker
        answers the take or confirm that changed them before it signs a head and pushes it."""
        if not self._publish_soon:
            self._publish_soon = True
            asyncio.get_running_loop().call_soon(self._publish)
        self._publishing.extend(offers)

    def _publish(self) -> None:
        offers, self._publishing, self._publish_soon = self._publishing, [], False
        self._run(self.replica.publish(offers, now_ms()))

    def head(self) -> Head:
        return self.replica.head or self._sign_head(now_ms())

    def own_offers(self, req: OffersRequest) -> MakerOffers:
        """Our authoritative list, answered on our own key: the head that commits to it, and it (the head
        we last published: a fresh one here would hand a newer head of ours to whoever asks). None before
        we are a member: nothing signed leaves while our history is being checked (node/recovery.py)."""
        own = self.replica.own_record()
        if own is None:
            raise RPCError(E.ERR_NOT_READY, "not in the market yet")
        return own

    # --- carrying out the core's decisions ---------------------------------------------------------------
    async def on_request(self, payload: Any) -> Any:
        """The ``otc:market`` handler."""
        msg = decode(payload, MarketRequest)
        reply, actions = self.replica.handle(msg, now_ms())
        self._run(actions)
        if isinstance(reply, Deferred):
            future = self._deferred[reply.token] = asyncio.get_running_loop().create_future()
            try:  # the core answers within its own probe timeout; this bound only guards against an
                # overloaded loop (or a bug): the asker hears a timeout, the log no traceback
                async with asyncio.timeout(self.replica.timing.indirect_timeout_ms / 1000 + 1):
                    return await future
            except TimeoutError:
                raise RPCError("ERR_TIMEOUT", "the indirect probe did not finish in time") from None
            finally:
                self._deferred.pop(reply.token, None)
        if isinstance(reply, Refusal):
            raise RPCError(reply.code, reply.message)
        return reply

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                self.tasks.spawn(self._send(action))
            elif isinstance(action, Respond):
                future = self._deferred.get(action.token)
                if future is not None and not future.done():
                    future.set_result(action.reply)
            elif isinstance(action, Changed):
                for offer in action.offers:
                    self.events.emit({"type": "offer", "offer": offer})
                if action.book:
                    self.events.emit({"type": "book"})
            elif isinstance(action, Lookup):
                self.tasks.spawn(self._lookup())
            elif isinstance(action, AskMaker):
                self.tasks.spawn(self.sync_maker(action.maker))
            elif isinstance(action, Silent):
                self.directory.silent(action.peer_id)
            elif isinstance(action, Joined):
                self.join_ms = round((time.perf_counter() - self._join_started) * 1000, 1)
                self.started.set()
        hint = self.replica.wake_hint()
        if hint is not None and hint < self._next_tick:
            self._wake.set()

    async def _send(self, action: Send) -> None:
        result: Any
        try:
            client = self.probe_client if isinstance(action.msg, LIVENESS) else self.client
            result = await client.request_dest(
                action.addr,
                MARKET,
                action.msg,
                timeout=action.timeout_ms / 1000,
                result_type=REPLY_TYPES[type(action.msg)],
            )
        except RPCError as exc:
            result = Failure(exc.code)
        except GrenacheError as exc:
            result = Failure(exc.code or "ERR_REQUEST_GENERIC")
        except msgspec.ValidationError:
            result = Failure(E.ERR_INVALID_PAYLOAD)
        except Exception as exc:  # an address no socket can reach, ...: the core must hear back regardless
            log.debug("request to %s failed: %r", action.addr, exc)
            result = Failure("ERR_REQUEST_GENERIC")
        self._run(self.replica.on_reply(action.token, result, now_ms()))

    async def _lookup(self) -> None:
        dests = await self.directory.market_destinations()  # the last list while the Grape cannot answer
        self._run(self.replica.on_lookup(dests, now_ms()))

    async def _tick_loop(self) -> None:
        vouched_at = 0.0
        while True:
            now = now_ms()
            if self._next_tick and not self._wake.is_set():  # woken by the timer: how late?
                self.replica.membership.lagged(now - self._next_tick, now)
            self._run(self.replica.tick(now))
            if time.monotonic() - vouched_at > 2:
                vouched_at = time.monotonic()
                self.directory.forget_vouched()
            self._next_tick = self.replica.next_wakeup(now_ms())
            self._wake.clear()
            delay = max(0.005, min(1.0, (self._next_tick - now_ms()) / 1000))
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    # --- the maker's own list ------------------------------------------------------------------------------
    async def sync_maker(self, maker: str, *, force: bool = False) -> None:
        """Pull a maker's authoritative list from the maker itself. One at a time per maker (a caller
        arriving meanwhile waits for that one); after a failure the next try waits (doubling up to 30 s,
        jittered), unless ``force`` (a sweep that needs the answer)."""
        running = self._syncing.get(maker)
        if running is not None:
            await asyncio.shield(running)
            return
        if not force and time.monotonic() < self._sync_backoff.get(maker, (0.0, 0.0))[0]:
            return
        task = self._syncing[maker] = self.tasks.track(asyncio.ensure_future(self._pull_offers(maker)))
        task.add_done_callback(lambda _: self._syncing.pop(maker, None))
        await asyncio.shield(task)

    async def _pull_offers(self, maker: str) -> None:
        self.replica.stats["msgs_out"] += 1
        try:
            offers = await self.directory.ask(
                maker, OffersRequest(), timeout=self.config.rpc_timeout_s, result_type=MakerOffers
            )
            if offers.head.maker != maker:
                raise RPCError(E.ERR_INVALID_PAYLOAD, "answered for another maker")
            changed, actions = self.replica.on_maker_offers(offers, now_ms())
            self._run(actions)
            if changed is None:
                raise RPCError(E.ERR_INVALID_PAYLOAD, "a list its head does not vouch for")
            self._sync_backoff.pop(maker, None)
        except (GrenacheError, msgspec.ValidationError) as exc:
            log.debug("sync with %s failed: %s", maker[:8], exc)
            wait = min(30.0, 2 * self._sync_backoff.get(maker, (0.0, 0.5))[1])
            self._sync_backoff[maker] = (time.monotonic() + wait * (0.5 + random.random()), wait)
