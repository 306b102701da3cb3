"""The peer: the I/O shell around the pure core. It wires the desk (own offers, trades as maker), the
taker, and the replicated book to Grenache RPC, timers and SQLite.

Grenache service names (see docs/protocol.md):
- ``otc:market``      announced by every peer; receives pushed updates, heartbeats, snapshot requests.
- ``otc:peer:<id>``   announced by each peer for itself; receives takes, confirms, offer-list requests, chat.

Everything that mutates the core runs synchronously inside one event-loop callback, and is persisted
before any answer leaves, so the core's decisions are atomic and survive a crash.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import logging
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from grenache import GrenacheError, Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.client import ERR_REQUEST_GENERIC, ERR_TIMEOUT
from grenache.server import ERR_UNKNOWN_SERVICE

from ..core import errors as E
from ..core.book import Applied, Book
from ..core.desk import Desk, Effects, Refusal
from ..core.errors import OTCError
from ..core.messages import (
    Chat,
    Confirm,
    Head,
    Heartbeat,
    MakerOffers,
    MakerSeen,
    MarketRequest,
    Offer,
    OffersRequest,
    PeerRequest,
    Receipt,
    Snapshot,
    SnapshotRequest,
    Take,
    TradeReply,
    Updates,
)
from ..core.money import CONTEXT, DEFAULT_PAIR, canonical, get_pair, parse_decimal
from ..core.signing import is_signed, offer_is_valid, receipt_of, sign
from ..core.sweep import Skipped, SweepResult, plan
from ..core.taker import TRANSIENT, Taker, receipt
from ..core.trade import MakerState, TakerState, TakerTrade
from .keyfile import load_or_create
from .store import Store

log = logging.getLogger("otc.node.peer")

T = TypeVar("T")
MARKET = "otc:market"
VERIFY_THREADS = max(2, os.cpu_count() or 2)
KEEP_SETTLED = 10_000  # settled trades a maker keeps in memory; older ones are recalled from the store


def peer_key(peer_id: str) -> str:
    return f"otc:peer:{peer_id}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class PeerConfig:
    grape: str = "http://127.0.0.1:30001"
    name: str = "anon"
    data_dir: Path | None = None
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 0
    default_pair: str = DEFAULT_PAIR
    heartbeat_s: float = 2.0
    liveness_ms: int = 8000  # offers of a silent maker vanish from books after this (+ one heartbeat)
    forget_after_ms: int = 600_000  # a maker silent this long is forgotten, offers and all
    reserve_ms: int = 10_000
    rpc_timeout_s: float = 3.0
    take_deadline_s: float = 10.0
    announce_interval_s: float = 30.0
    snapshot_sources: int = 2


@dataclass
class Listeners:
    """Hooks for the API's live stream; each gets an event dict."""

    callbacks: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    def emit(self, event: dict[str, Any]) -> None:
        for cb in list(self.callbacks):
            cb(event)


class Peer:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="otc-peer-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # one process per data directory: two desks on one key and one database would overfill
        self._lock = open(self.data_dir / "lock", "a+")  # noqa: SIM115 - held for the peer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another peer is running on the data directory {self.data_dir}") from None
        self.identity = load_or_create(self.data_dir / "identity.key")
        self.peer_id = self.identity.peer_id
        self.name = config.name
        self.store = Store(self.data_dir / "peer.sqlite")
        self.desk = Desk(self.identity, self.name, reserve_ms=config.reserve_ms)
        self.desk.load(
            self.store.open_offers(), self.store.maker_trades_to_load(KEEP_SETTLED), self.store.seq()
        )
        self.taker = Taker(self.identity, self.name)
        self.taker_trades: dict[str, TakerTrade] = {}
        for trade in self.store.taker_trades():
            if trade.state is TakerState.REQUESTED:  # its take call died with the last process
                trade = self.taker.give_up(trade, f"{E.ERR_MAKER_UNREACHABLE}: interrupted", now_ms())
                self.store.save(taker_trades=[trade])
            self.taker_trades[trade.take.trade_id] = trade
        self.book = Book(self.peer_id, liveness_ms=config.liveness_ms)
        for offer in self.desk.open_offers():
            self.book.apply(offer)
        self.link = Link(config.grape, announce_interval=config.announce_interval_s)
        self.server = PeerRPCServer(self.link, host=config.rpc_host)
        self.client = PeerRPCClient(self.link, timeout=config.rpc_timeout_s)
        self.events = Listeners()
        self._outbox: list[Offer] = []
        self._outbox_event = asyncio.Event()
        self._timer_event = asyncio.Event()
        self._syncing: dict[str, asyncio.Future[None]] = {}  # maker -> its sync in flight
        self._sync_backoff: dict[str, tuple[float, float]] = {}  # maker -> (not before, last wait)
        self._drifting: set[str] = set()  # makers whose last heartbeat showed drift
        self._market_dests: list[str] = []
        # addresses the DHT has listed for the market, and when it last did: a maker's signed heartbeat
        # address is used directly only if the Grape vouched for it (no aiming the market at a stranger)
        self._vouched: dict[str, float] = {}
        self._listed_at = 0.0  # monotonic time of the last market lookup that worked
        self._driving: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Future[Any]] = set()
        self.started = asyncio.Event()
        self._stopping = False
        self.join_ms = 0.0  # how long loading the book from other peers took at start
        self._verifier = concurrent.futures.ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify")

    @property
    def rpc_port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return f"{self.config.rpc_host}:{self.server.port}"

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.link.start()
        self.server.add_handler(MARKET, self._on_market)
        self.server.add_handler(peer_key(self.peer_id), self._on_peer)
        await self.server.listen(self.config.rpc_port)
        self.store.set_meta("name", self.name)
        first = [self.server.announce(peer_key(self.peer_id)), self.server.announce(MARKET)]
        await asyncio.gather(*first)
        for loop in (self._heartbeat_loop, self._flush_loop, self._timer_loop, self._reconcile_loop):
            self._tasks.append(asyncio.create_task(self._forever(loop), name=loop.__name__))
        # re-publish our open offers (after a restart) and load the book from peers already here
        self.publish(self.desk.open_offers())
        started = time.perf_counter()
        await self._join()
        self.join_ms = round((time.perf_counter() - started) * 1000, 1)
        self.started.set()
        log.info("peer %s (%s) serving RPC on %s", self.name, self.peer_id[:8], self.addr)

    async def stop(self) -> None:
        self._stopping = True  # no new background work from here on
        await self.server.stop()  # first: no handler may start work on what we are closing
        for task in self._tasks + list(self._background):
            task.cancel()
        for task in self._tasks + list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.client.stop()
        await self.link.stop()
        self.store.close()
        self._verifier.shutdown(wait=False, cancel_futures=True)
        self._lock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._stopping:
            coro.close()
            return
        self._track(asyncio.ensure_future(coro))

    def _track(self, task: asyncio.Future[T]) -> asyncio.Future[T]:
        """Keep a background task referenced until done, and cancelled by stop()."""
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _forever(self, loop: Callable[[], Awaitable[None]]) -> None:
        """Run a background loop; an unexpected error is logged and the loop started again, because a
        dead heartbeat or timer loop would silently take this peer out of the market."""
        while True:
            try:
                await loop()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s failed; restarting it", loop.__name__)
                await asyncio.sleep(1.0)

    # --- maker: own offers --------------------------------------------------------------------------
    def post_offer(self, **fields: Any) -> Offer:
        offer, effects = self.desk.create(now=now_ms(), **fields)
        self._commit(effects)
        return offer

    def cancel_offer(self, oid: str) -> Offer:
        self._recall(offer_id=oid)  # closed long ago (or before a restart): say so, not "not found"
        offer, effects = self.desk.cancel(self._own_offer_id(oid), now_ms())
        self._commit(effects)
        return offer

    def _own_offer_id(self, oid: str) -> str:
        if oid in self.desk.offers:
            return oid
        matches = [o for o in self.desk.offers if o.startswith(oid)] if len(oid) >= 4 else []
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise OTCError(E.ERR_AMBIGUOUS_ID, f"id prefix {oid!r} matches {len(matches)} of your offers")
        held = self.book.get(oid)
        others = [held] if held is not None else self.book.find(oid) if len(oid) >= 4 else []
        if any(o.maker != self.peer_id for o in others):
            raise OTCError(E.ERR_NOT_MAKER, "only its maker can cancel an offer")
        raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no offer {oid} of yours")

    def _commit(self, effects: Effects) -> None:
        """Persist, then apply to our own book and publish: the order that makes crashes safe."""
        if not effects:
            return
        try:
            self.store.save(seq=self.desk.seq, offers=effects.offers, maker_trades=effects.trades)
        except Exception:
            # the desk already holds a decision the disk does not: answering anyone now could make
            # maker and taker disagree after a restart. Stop at once; the disk is the truth.
            log.critical("cannot persist a decision; stopping the peer", exc_info=True)
            os._exit(70)
        for offer in effects.offers:
            self.book.apply(offer)
            self.events.emit({"type": "offer", "offer": offer})
        for trade in effects.trades:
            if trade.state is MakerState.DONE:
                assert trade.taker_sig is not None
                self.events.emit(
                    {"type": "trade", "receipt": receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)}
                )
        self.publish(effects.offers)
        self._timer_event.set()

    def publish(self, offers: list[Offer]) -> None:
        if offers:
            self._outbox.extend(offers)
            self._outbox_event.set()

    async def _flush_loop(self) -> None:
        # one batch in flight at a time: idle -> sent at once, busy -> batched by what queued meanwhile
        while True:
            await self._outbox_event.wait()
            self._outbox_event.clear()
            batch, self._outbox = self._outbox, []
            for start in range(0, len(batch), 2000):
                await self._broadcast(Updates(offers=batch[start : start + 2000]))

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.desk.next_deadline()
            delay = 1.0 if deadline is None else max(0.0, min(1.0, (deadline - now_ms()) / 1000))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._timer_event.wait()
            self._timer_event.clear()
            self._commit(self.desk.tick(now_ms()))

    async def _heartbeat_loop(self) -> None:
        # on a fixed schedule: a slow peer or a slow Grape delays one send, never the next heartbeat
        beats = 0
        while True:
            self._spawn(self._send_heartbeat(self.desk.head(now_ms(), self.addr)))
            self.book.forget_tombstones()
            self._forget_vouched()
            beats += 1
            if beats % 30 == 0:  # the store keeps all history; memory keeps the recent part
                self.desk.forget_closed()
                self.desk.forget_settled(KEEP_SETTLED)
                for maker in self.book.forget_silent(now_ms(), self.config.forget_after_ms):
                    self._drifting.discard(maker)
                    self._sync_backoff.pop(maker, None)
            await asyncio.sleep(self.config.heartbeat_s * (0.75 + random.random() / 2))

    async def _send_heartbeat(self, head: Head) -> None:
        await self._broadcast(Heartbeat(head=head))

    async def _broadcast(self, msg: Updates | Heartbeat) -> None:
        """``map`` to every market peer: those the Grape lists, and the live makers whose heartbeats we
        hear. A restarted Grape forgets announcements until they are repeated, and then lists only part
        of the market, or nothing (then we fall back to what it listed last): without the heartbeat
        addresses, peers it forgot would drop out of others' books."""
        dests = set(await self._market_destinations())
        dests.update(p.addr for p in self.book.peers(now_ms()) if self.is_listed(p.addr))
        dests.discard(self.addr)
        if dests:
            await self.client.map_dests(sorted(dests), MARKET, msg)

    async def _market_destinations(self) -> list[str]:
        """What the Grape lists for the market (the last list while it cannot answer)."""
        try:
            listed = await self.link.lookup(MARKET)
        except GrenacheError:
            return self._market_dests
        self._market_dests = listed
        self._listed_at = seen = time.monotonic()
        for dest in listed:
            self._vouched[dest] = seen
        return listed

    def is_listed(self, addr: str) -> bool:
        """Whether a Grape has listed this address for the market (recently enough to use it directly)."""
        return addr in self._vouched

    def _forget_vouched(self, older_than_s: float = 600.0) -> None:
        # counted from the last lookup that worked: while the Grapes are down, what they listed stands
        cutoff = self._listed_at - older_than_s
        for dest in [d for d, t in self._vouched.items() if t < cutoff]:
            del self._vouched[dest]

    async def _ask(self, peer_id: str, msg: Any, *, timeout: float, result_type: Any = None) -> Any:
        """A request to one peer's own service (``otc:peer:<id>``): first straight to the address its
        signed heartbeat gives, when the Grape has listed it (no lookup, works while a Grape has
        forgotten the name, and a squatter on the name cannot intercept it); then through the DHT, if
        that address is gone (the peer restarted on another port) or we have none."""
        deadline = time.monotonic() + timeout
        view = self.book.makers.get(peer_id)
        addr = view.head.addr if view is not None and view.head is not None else None
        if addr is not None and self.is_listed(addr):
            try:
                return await self.client.request_dest(
                    addr, peer_key(peer_id), msg, timeout=timeout, result_type=result_type
                )
            except RPCError as exc:
                # every request to a peer is idempotent, so sending it again elsewhere is safe
                if exc.code not in (ERR_REQUEST_GENERIC, ERR_UNKNOWN_SERVICE):
                    raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise RPCError(ERR_TIMEOUT, f"{peer_id[:12]} did not answer in time")
        return await self.client.request(peer_key(peer_id), msg, timeout=left, result_type=result_type)

    # --- market RPC: updates, heartbeats, snapshots ---------------------------------------------------
    async def _on_market(self, payload: Any) -> Any:
        msg = _decode(payload, MarketRequest)
        now = now_ms()
        if isinstance(msg, Updates):
            # updates prove nothing about liveness (anyone can relay a signed update): heads do
            applied = await self._receive_many(msg.offers, now)
            for offer in applied:
                self.events.emit({"type": "offer", "offer": offer})
            return {"applied": len(applied)}
        if isinstance(msg, Heartbeat):
            maker = msg.head.maker
            view = self.book.makers.get(maker)
            newcomer = view is None or view.head is None
            returning = not self.book.maker_alive(maker, now)
            drifted = self.book.on_head(msg.head, now)
            accepted = (held := self.book.makers.get(maker)) is not None and held.head is msg.head
            if newcomer and accepted:
                # a fresh signed head: our cached destinations lack this peer; ask the Grape now, so
                # its address is vouched for before anything needs it
                self.link.forget(MARKET)
                self._spawn(self._market_destinations())
            # A live maker's drift is repaired from the second heartbeat in a row that shows it: pushes
            # in flight often arrive just after a heartbeat that already counts them. A maker coming
            # back (hidden until its copy is repaired) is synced at once. While joining, every maker
            # seems to drift (the book is half loaded): wait until the join is done.
            if not drifted:
                self._drifting.discard(maker)
                if accepted:
                    self._sync_backoff.pop(maker, None)  # in step again: a later drift is synced at once
            elif maker not in self._drifting and not returning:
                self._drifting.add(maker)
            elif self.started.is_set():
                self._spawn(self._sync_maker(maker))
            return {"ok": True}
        if not self.started.is_set():
            # a half-loaded book would end the asker's join early with a partial copy
            raise RPCError(E.ERR_NOT_READY, "still joining the market")
        return self._snapshot(msg)

    def _snapshot(self, req: SnapshotRequest) -> Snapshot:
        now = now_ms()
        offers, cursor = self.book.page(req.after, req.limit)
        makers: list[MakerSeen] = []
        if not req.after:
            makers.append(MakerSeen(head=self.desk.head(now, self.addr), age_ms=0))
            for view in self.book.makers.values():
                if view.head is not None and view.last_seen is not None:
                    makers.append(MakerSeen(head=view.head, age_ms=max(0, now - view.last_seen)))
        return Snapshot(offers=offers, makers=makers, next=cursor)

    async def _sync_maker(self, maker: str, *, force: bool = False) -> None:
        """Pull a maker's authoritative list. One at a time per maker (a caller arriving meanwhile
        waits for that one); after a failure the next try waits (doubling up to 30 s, jittered, so
        the peers of a market do not retry in step), unless ``force`` (a sweep that needs the answer)."""
        running = self._syncing.get(maker)
        if running is not None:
            await asyncio.shield(running)
            return
        if not force and time.monotonic() < self._sync_backoff.get(maker, (0.0, 0.0))[0]:
            return
        task = self._syncing[maker] = self._track(asyncio.ensure_future(self._pull_offers(maker)))
        task.add_done_callback(lambda _: self._syncing.pop(maker, None))
        await asyncio.shield(task)

    async def _pull_offers(self, maker: str) -> None:
        try:
            offers = await self._ask(
                maker, OffersRequest(), timeout=self.config.rpc_timeout_s, result_type=MakerOffers
            )
            if offers.head.maker != maker:
                raise RPCError(E.ERR_INVALID_PAYLOAD, "answered for another maker")
            changed = self.book.sync(offers, now_ms(), answered=True)
            if changed is None:
                raise RPCError(E.ERR_INVALID_PAYLOAD, "a list its head does not vouch for")
            if changed:
                self.events.emit({"type": "book"})
            self._drifting.discard(maker)
            self._sync_backoff.pop(maker, None)
        except (GrenacheError, msgspec.ValidationError) as exc:
            log.debug("sync with %s failed: %s", maker[:8], exc)
            wait = min(30.0, 2 * self._sync_backoff.get(maker, (0.0, 0.5))[1])
            self._sync_backoff[maker] = (time.monotonic() + wait * (0.5 + random.random()), wait)

    async def _receive_many(self, offers: list[Offer], now: int) -> list[Offer]:
        """Verify and apply a batch; returns the offers that changed the book. Large batches (a late
        join, a republish) are checked on every core: libsodium releases the GIL."""
        news = [o for o in offers if self.book.is_news(o)]
        flags = await self._verify(news)
        changed = (Applied.NEW, Applied.UPDATED, Applied.CLOSED)
        return [o for o, ok in zip(news, flags, strict=True) if ok and self.book.apply(o) in changed]

    async def _verify(self, offers: list[Offer]) -> list[bool]:
        """``offer_is_valid`` for each offer; a large batch on every core (libsodium releases the GIL)."""
        if len(offers) < 256:
            return _valid_flags(offers)
        loop = asyncio.get_running_loop()
        chunk = -(-len(offers) // VERIFY_THREADS)
        parts = [offers[i : i + chunk] for i in range(0, len(offers), chunk)]
        results = await asyncio.gather(
            *(loop.run_in_executor(self._verifier, _valid_flags, p) for p in parts)
        )
        return [flag for part in results for flag in part]

    async def _join(self) -> None:
        """Late join: page through the books of a few peers at once, merged by seq, signatures checked.
        Done when one source has been read in full; the others merge in as they arrive, so a paused or
        slow source does not hold the join up, and a failed one is replaced by the next peer listed
        (the Grape lists stopped peers for a while)."""
        try:
            dests = await self.link.lookup(MARKET, cache=False)
        except GrenacheError:
            return
        candidates = iter(random.sample(dests, len(dests)))
        pending: set[asyncio.Future[bool]] = set()
        me = {self.addr, f"127.0.0.1:{self.rpc_port}"}

        def ask_next() -> None:
            for dest in candidates:
                if dest not in me:
                    pending.add(self._track(asyncio.ensure_future(self._load_snapshot(dest))))
                    return

        for _ in range(self.config.snapshot_sources):
            ask_next()
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.result():
                    return
                ask_next()

    async def _load_snapshot(self, dest: str) -> bool:
        """Page through one peer's book and load it; True if it was read to the end."""
        now = now_ms()
        offers: list[Offer] = []
        makers: list[MakerSeen] = []
        after = ""
        complete = False
        try:
            while True:
                snap = await self.client.request_dest(
                    dest, MARKET, SnapshotRequest(after=after), timeout=30, result_type=Snapshot
                )
                makers.extend(snap.makers)
                offers.extend(snap.offers)
                if snap.next is None or snap.next <= after:
                    complete = True
                    break
                after = snap.next
        except (GrenacheError, msgspec.ValidationError) as exc:
            log.info("snapshot from %s failed: %s", dest, exc)
        await self._load(offers, {seen.head.maker: seen.head for seen in makers}, now)
        for seen in makers:  # after the offers: liveness is granted only where our copy matches
            self.book.on_seen(seen, now)
        return complete

    async def _load(self, offers: list[Offer], heads: dict[str, Head], now: int) -> None:
        """Load a relayed snapshot. Each maker's offers that match its signed head are authenticated by
        that one signature (``Book.sync``); the rest are checked one by one."""
        by_maker: dict[str, list[Offer]] = {}
        for offer in offers:
            by_maker.setdefault(offer.maker, []).append(offer)
        rest: list[Offer] = []
        for maker, group in by_maker.items():
            head = heads.get(maker)
            news = [o for o in group if self.book.is_news(o)]
            if not news:
                continue
            if head is None or self.book.sync(MakerOffers(head=head, offers=group), now) is None:
                rest.extend(news)
        await self._receive_many(rest, now)

    # --- peer RPC: trades, offer lists, chat ---------------------------------------------------------
    async def _on_peer(self, payload: Any) -> Any:
        msg = _decode(payload, PeerRequest)
        now = now_ms()
        try:
            if isinstance(msg, Take):
                self._recall(trade_id=msg.trade_id, offer_id=msg.offer_id)
                reply, effects = self.desk.take(msg, now)
                self._commit(effects)
                return reply
            if isinstance(msg, Confirm):
                self._recall(trade_id=msg.trade_id)
                try:
                    reply, effects = self.desk.confirm(msg, now)
                except Refusal as refusal:
                    self._commit(refusal.effects)
                    raise
                self._commit(effects)
                return reply
            if isinstance(msg, OffersRequest):
                return MakerOffers(head=self.desk.head(now, self.addr), offers=self.desk.open_offers())
            return self._receive_chat(msg)
        except OTCError as exc:
            raise RPCError(exc.code, exc.message) from None

    def _recall(self, *, trade_id: str | None = None, offer_id: str | None = None) -> None:
        """Hand the desk the stored records it has forgotten (see ``Desk.recall``): a primary-key read."""
        if trade_id is not None and trade_id not in self.desk.trades:
            self.desk.recall(trade=self.store.maker_trade(trade_id))
        if offer_id is not None and offer_id not in self.desk.offers:
            self.desk.recall(offer=self.store.offer(offer_id))

    def _receive_chat(self, msg: Chat) -> dict[str, Any]:
        if msg.to != self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "message is addressed to another peer")
        if not is_signed(msg):
            raise OTCError(E.ERR_BAD_SIGNATURE, "message is not signed by its sender")
        if self.store.add_message(msg, "in"):
            self.events.emit({"type": "message", "message": msg})
        return {"ok": True}

    # --- taker --------------------------------------------------------------------------------------
    def find_offer(self, oid: str) -> Offer:
        offer = self.book.get(oid)
        if offer is None and len(oid) >= 4:
            matches = self.book.find(oid)
            if len(matches) > 1:
                raise OTCError(E.ERR_AMBIGUOUS_ID, f"id prefix {oid!r} is ambiguous: {len(matches)} offers")
            offer = matches[0] if matches else None
        if offer is None or not self.book.is_visible(offer, now_ms()):
            raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no open offer {oid} in the book")
        return offer

    async def take(self, oid: str, amount: Any = None) -> Receipt:
        """Take ``amount`` (default: all that remains) of an offer; returns the done receipt."""
        offer = self.find_offer(oid)
        if amount is None:
            amount = offer.remaining
        trade = self.taker.new_trade(offer, amount, uuid.uuid4().hex, now_ms())
        self._save_taker(trade)
        # shielded: if our caller goes away (an API client disconnects), the trade still runs to a
        # definite state instead of being left half-asked
        trade = await asyncio.shield(self._track(asyncio.ensure_future(self._take_to_end(trade))))
        if trade.state is TakerState.DONE:
            return receipt(trade)
        if trade.state is TakerState.FAILED:
            assert trade.error is not None
            code, _, message = trade.error.partition(": ")
            raise OTCError(code, message)
        raise OTCError(
            E.ERR_TRADE_PENDING,
            f"the maker did not answer in time; trade {trade.take.trade_id} is retried in the background",
        )

    async def _take_to_end(self, trade: TakerTrade) -> TakerTrade:
        trade = await self._drive(trade, self.config.take_deadline_s)
        if trade.state is TakerState.REQUESTED:
            trade = self.taker.give_up(trade, f"{E.ERR_MAKER_UNREACHABLE}: no answer", now_ms())
            self._save_taker(trade)
        return trade

    async def _drive(self, trade: TakerTrade, deadline_s: float) -> TakerTrade:
        """Send the trade's next request until it is final or the deadline passes (idempotent)."""
        tid = trade.take.trade_id
        self._driving.add(tid)
        try:
            deadline = time.monotonic() + deadline_s
            backoff = 0.05
            while (req := self.taker.next_request(trade)) is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    reply = await self._ask(
                        trade.maker,
                        req,
                        timeout=min(self.config.rpc_timeout_s, remaining),
                        result_type=TradeReply,
                    )
                    new = self.taker.on_reply(trade, reply, now_ms())
                except RPCError as exc:
                    new = self.taker.on_refused(trade, exc.code, exc.message, now_ms())
                    if exc.code in TRANSIENT:
                        await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                        backoff = min(backoff * 2, 1.0)
                except GrenacheError as exc:  # the Grape failed the lookup: transient
                    log.debug("take %s: %s", tid[:8], exc)
                    await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                    backoff = min(backoff * 2, 1.0)
                    continue
                except (OTCError, msgspec.ValidationError) as exc:
                    # the maker answered something we cannot accept: we never sign it; retry later
                    log.warning("take %s: unacceptable answer: %s", tid[:8], exc)
                    break
                if new is not trade:
                    trade = new
                    self._save_taker(trade)
            return trade
        finally:
            self._driving.discard(tid)

    def _save_taker(self, trade: TakerTrade) -> None:
        self.store.save(taker_trades=[trade])
        self.taker_trades[trade.take.trade_id] = trade
        if trade.state is TakerState.DONE:
            self.events.emit({"type": "trade", "receipt": receipt(trade)})

    async def _reconcile_loop(self) -> None:
        """Finish trades left pending by lost messages, a timeout or a restart."""
        while True:
            for trade in list(self.taker_trades.values()):
                if trade.state is TakerState.RESERVED and trade.take.trade_id not in self._driving:
                    self._spawn(self._drive(trade, self.config.take_deadline_s))
            await asyncio.sleep(1.0)

    # --- chat ---------------------------------------------------------------------------------------
    def resolve_peer(self, who: str) -> str:
        """A peer id, id prefix or name -> a peer id; ambiguity is an error, never a guess."""
        now = now_ms()
        peers = self.book.peers(now)
        if len(who) == 64 and all(c in "0123456789abcdef" for c in who):
            return who
        by_name = [p for p in peers if p.name == who]
        by_prefix = [p for p in peers if len(who) >= 4 and p.peer_id.startswith(who)]
        found = by_name or by_prefix
        if not found:
            raise OTCError(E.ERR_PEER_NOT_FOUND, f"no live peer named {who!r}")
        if len(found) > 1:
            ids = ", ".join(p.peer_id[:12] for p in found)
            raise OTCError(E.ERR_AMBIGUOUS_PEER, f"{len(found)} peers match {who!r}: {ids}; use an id")
        return found[0].peer_id

    async def send_message(self, to: str, text: Any) -> Chat:
        if not isinstance(text, str) or not text.strip() or len(text) > 2000:
            raise OTCError(E.ERR_INVALID_MESSAGE, "text must be 1 to 2000 characters")
        peer_id = self.resolve_peer(to)
        if peer_id == self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "you cannot message yourself")
        msg = sign(
            self.identity,
            Chat(
                id=uuid.uuid4().hex,
                sender=self.peer_id,
                sender_name=self.name,
                to=peer_id,
                text=text,
                ts=now_ms(),
            ),
        )
        try:
            await self._ask(peer_id, msg, timeout=self.config.rpc_timeout_s)
        except GrenacheError as exc:
            code = E.ERR_PEER_NOT_FOUND if "LOOKUP_EMPTY" in exc.code else E.ERR_MAKER_UNREACHABLE
            raise OTCError(code, f"could not deliver to {peer_id[:12]}: {exc}") from None
        self.store.add_message(msg, "out")
        return msg

    # --- views for the API --------------------------------------------------------------------------
    def receipts(self) -> list[tuple[str, Receipt]]:
        out: list[tuple[str, Receipt]] = []
        for mt in self.store.maker_trades():
            if mt.state is MakerState.DONE and mt.taker_sig:
                out.append(("maker", receipt_of(mt.terms, mt.maker_sig, mt.taker_sig)))
        for tt in self.taker_trades.values():
            if tt.state is TakerState.DONE:
                out.append(("taker", receipt(tt)))
        out.sort(key=lambda r: (r[1].created_at, r[1].id))
        return out

    def pending_trades(self) -> list[TakerTrade]:
        return [
            t for t in self.taker_trades.values() if t.state in (TakerState.REQUESTED, TakerState.RESERVED)
        ]

    # --- sweep orders (see sweep.py) ------------------------------------------------------------------
    async def sweep(self, side: Any, amount: Any, limit: Any, pair: Any, post: bool = False) -> SweepResult:
        """Take the best offers of other makers, best price first, up to ``amount`` and the ``limit``
        price, one P2P trade per offer; with ``post``, rest what is left unfilled as a new offer at the
        limit. An offer lost to another taker is skipped (after one retry with its fresh remaining, on
        ERR_INSUFFICIENT_REMAINING) and the plan is redone from the fresh book. Input errors raise
        ``OTCError`` before anything is taken; refusals of single takes never raise."""
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
        p = get_pair(self.config.default_pair if pair is None else pair)
        want = parse_decimal(
            amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=p.amount_places, maximum=p.max_amount
        )
        lim = parse_decimal(
            limit, code=E.ERR_INVALID_PRICE, field="limit", places=p.price_places, maximum=p.max_price
        )
        result = SweepResult(side=side, pair=p.symbol, amount=want, limit=lim)
        # offer id -> the seq up to which the book's copy is known to be stale or the offer unusable
        stale: dict[str, int] = {}
        retried: set[str] = set()
        gone = 2**63
        left = want
        while left > 0:
            bids, asks = self.book.view(p.symbol, now_ms())
            fresh = [o for o in (asks if side == "buy" else bids) if o.seq > stale.get(o.id, 0)]
            candidates = plan(side, fresh, left, lim, self.peer_id)
            if not candidates:
                break
            offer, take = candidates[0]
            try:
                done = await self.take(offer.id, canonical(take))
            except OTCError as exc:
                if exc.code == E.ERR_TRADE_PENDING:  # it may still complete: count it, never overfill
                    result.pending = CONTEXT.add(result.pending, take)
                    left = CONTEXT.subtract(left, take)
                    stale[offer.id] = gone
                    result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                elif exc.code == E.ERR_INSUFFICIENT_REMAINING and offer.id not in retried:
                    # someone took or holds part of it: ask its maker for the fresh state, and retry it
                    # once if that shows a new remaining (holds by other takers are not published)
                    retried.add(offer.id)
                    await self._sync_maker(offer.maker, force=True)
                    latest = self.book.get(offer.id)
                    if latest is not None and latest.seq > offer.seq:
                        stale[offer.id] = offer.seq
                    else:
                        stale[offer.id] = gone
                        result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                else:
                    stale[offer.id] = gone
                    result.skipped.append(Skipped(offer.id, exc.code, exc.message))
                continue
            result.fills.append(done)
            left = CONTEXT.subtract(left, take)
            stale[offer.id] = offer.seq  # our copy predates this fill; wait for the maker's update
        if post and left > 0:
            result.posted = self.post_offer(
                side=side, amount=canonical(left), price=canonical(lim), pair=p.symbol
            )
        return result


def _valid_flags(offers: list[Offer]) -> list[bool]:
    return [offer_is_valid(o) for o in offers]


def _decode(payload: Any, kind: Any) -> Any:
    try:
        return msgspec.convert(payload, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise RPCError(E.ERR_INVALID_PAYLOAD, str(exc)) from None
