"""Market replication: this peer's copy of every maker's offers (``core.book.Book``) kept in step with
the network, and our own offers and heartbeats pushed to it.

- Our updates are pushed to every market peer (``map``), one batch in flight at a time.
- Our signed head goes out on a fixed schedule: liveness, drift detection, and one signature that
  authenticates our whole list wherever it is relayed.
- A heartbeat whose digest our copy does not match (twice in a row for a live maker, at once for one
  coming back) makes us pull that maker's authoritative list (``sync_maker``).
- A newcomer pages through the books of a few peers (``join``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import time
from typing import Any

import msgspec

from grenache import GrenacheError, PeerRPCClient, RPCError

from ..core import errors as E
from ..core.book import Applied, Book
from ..core.desk import Desk
from ..core.messages import (
    Head,
    Heartbeat,
    MakerOffers,
    MakerSeen,
    MarketRequest,
    Offer,
    OffersRequest,
    Snapshot,
    SnapshotRequest,
    Updates,
)
from ..core.signing import offer_is_valid
from .clock import now_ms
from .config import PeerConfig
from .directory import MARKET, Directory
from .events import Listeners
from .tasks import Tasks
from .wire import decode

log = logging.getLogger("otc.node.market")
VERIFY_THREADS = max(2, os.cpu_count() or 2)
BATCH = 2000  # offers per pushed update request


class Market:
    def __init__(
        self,
        config: PeerConfig,
        desk: Desk,
        book: Book,
        client: PeerRPCClient,
        directory: Directory,
        tasks: Tasks,
        events: Listeners,
    ) -> None:
        self.config = config
        self.desk = desk
        self.book = book
        self.client = client
        self.directory = directory
        self.tasks = tasks
        self.events = events
        self.addr = ""  # ours, as our heads announce it; set once the RPC server listens
        self.started = asyncio.Event()  # the join is done: we serve snapshots and repair drift
        self.join_ms = 0.0  # how long loading the book from other peers took at start
        self._outbox: list[Offer] = []
        self._outbox_event = asyncio.Event()
        self._syncing: dict[str, asyncio.Future[None]] = {}  # maker -> its sync in flight
        self._sync_backoff: dict[str, tuple[float, float]] = {}  # maker -> (not before, last wait)
        self._drifting: set[str] = set()  # makers whose last heartbeat showed drift
        self._verifier = concurrent.futures.ThreadPoolExecutor(VERIFY_THREADS, thread_name_prefix="verify")
        # market RPC requests received and sent, and offer copies received (duplicates included)
        self.stats = {"msgs_in": 0, "msgs_out": 0, "offers_in": 0}

    def start(self, addr: str) -> None:
        self.addr = addr
        self.tasks.loop(self._heartbeat_loop)
        self.tasks.loop(self._flush_loop)

    def stop(self) -> None:
        self._verifier.shutdown(wait=False, cancel_futures=True)

    # --- pushing ours ---------------------------------------------------------------------------------
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
            for start in range(0, len(batch), BATCH):
                await self._broadcast(Updates(offers=batch[start : start + BATCH]))

    async def _heartbeat_loop(self) -> None:
        # on a fixed schedule: a slow peer or a slow Grape delays one send, never the next heartbeat
        beats = 0
        while True:
            self.tasks.spawn(self._broadcast(Heartbeat(head=self.head())))
            self.book.forget_tombstones()
            self.directory.forget_vouched()
            beats += 1
            if beats % 30 == 0:
                for maker in self.book.forget_silent(now_ms(), self.config.forget_after_ms):
                    self._drifting.discard(maker)
                    self._sync_backoff.pop(maker, None)
            await asyncio.sleep(self.config.heartbeat_s * (0.75 + random.random() / 2))

    def head(self) -> Head:
        return self.desk.head(now_ms(), self.addr)

    async def _broadcast(self, msg: Updates | Heartbeat) -> None:
        """``map`` to every market peer: those the Grape lists, and the live makers whose heartbeats we
        hear. A restarted Grape forgets announcements until they are repeated, and then lists only part
        of the market, or nothing (then we fall back to what it listed last): without the heartbeat
        addresses, peers it forgot would drop out of others' books."""
        dests = set(await self.directory.market_destinations())
        dests.update(p.addr for p in self.book.peers(now_ms()) if self.directory.is_listed(p.addr))
        dests.discard(self.addr)
        if dests:
            self.stats["msgs_out"] += len(dests)
            await self.client.map_dests(sorted(dests), MARKET, msg)

    # --- serving the market -------------------------------------------------------------------------
    async def on_request(self, payload: Any) -> Any:
        """The ``otc:market`` handler: pushed updates, heartbeats, snapshot requests."""
        msg = decode(payload, MarketRequest)
        now = now_ms()
        self.stats["msgs_in"] += 1
        if isinstance(msg, Updates):
            self.stats["offers_in"] += len(msg.offers)
            # updates prove nothing about liveness (anyone can relay a signed update): heads do
            applied = await self._receive_many(msg.offers, now)
            for offer in applied:
                self.events.emit({"type": "offer", "offer": offer})
            return {"applied": len(applied)}
        if isinstance(msg, Heartbeat):
            self._on_heartbeat(msg.head, now)
            return {"ok": True}
        if not self.started.is_set():
            # a half-loaded book would end the asker's join early with a partial copy
            raise RPCError(E.ERR_NOT_READY, "still joining the market")
        return self._snapshot(msg)

    def _on_heartbeat(self, head: Head, now: int) -> None:
        maker = head.maker
        view = self.book.makers.get(maker)
        newcomer = view is None or view.head is None
        returning = not self.book.maker_alive(maker, now)
        drifted = self.book.on_head(head, now)
        accepted = (held := self.book.makers.get(maker)) is not None and held.head is head
        if newcomer and accepted:
            # a fresh signed head: our cached destinations lack this peer; ask the Grape now, so
            # its address is vouched for before anything needs it
            self.directory.refresh()
            self.tasks.spawn(self.directory.market_destinations())
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
            self.tasks.spawn(self.sync_maker(maker))

    def _snapshot(self, req: SnapshotRequest) -> Snapshot:
        now = now_ms()
        offers, cursor = self.book.page(req.after, req.limit)
        makers: list[MakerSeen] = []
        if not req.after:
            makers.append(MakerSeen(head=self.head(), age_ms=0))
            for view in self.book.makers.values():
                if view.head is not None and view.last_seen is not None:
                    makers.append(MakerSeen(head=view.head, age_ms=max(0, now - view.last_seen)))
        return Snapshot(offers=offers, makers=makers, next=cursor)

    def own_offers(self, req: OffersRequest) -> MakerOffers:
        """Our authoritative list, answered on our own key: the head that commits to it, and it."""
        return MakerOffers(head=self.head(), offers=self.desk.open_offers())

    # --- repairing drift ----------------------------------------------------------------------------
    async def sync_maker(self, maker: str, *, force: bool = False) -> None:
        """Pull a maker's authoritative list. One at a time per maker (a caller arriving meanwhile
        waits for that one); after a failure the next try waits (doubling up to 30 s, jittered, so
        the peers of a market do not retry in step), unless ``force`` (a sweep that needs the answer)."""
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
        self.stats["msgs_out"] += 1
        try:
            offers = await self.directory.ask(
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

    # --- late join ----------------------------------------------------------------------------------
    async def join(self, me: set[str]) -> None:
        """Late join: page through the books of a few peers at once, merged by seq, signatures checked.
        Done when one source has been read in full; the others merge in as they arrive, so a paused or
        slow source does not hold the join up, and a failed one is replaced by the next peer listed
        (the Grape lists stopped peers for a while). ``me``: our own addresses, never asked."""
        started = time.perf_counter()
        try:
            await self._join(me)
        finally:
            self.join_ms = round((time.perf_counter() - started) * 1000, 1)
            self.started.set()

    async def _join(self, me: set[str]) -> None:
        try:
            dests = await self.directory.link.lookup(MARKET, cache=False)
        except GrenacheError:
            return
        candidates = iter(random.sample(dests, len(dests)))
        pending: set[asyncio.Future[bool]] = set()

        def ask_next() -> None:
            for dest in candidates:
                if dest not in me:
                    pending.add(self.tasks.track(asyncio.ensure_future(self._load_snapshot(dest))))
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


def _valid_flags(offers: list[Offer]) -> list[bool]:
    return [offer_is_valid(o) for o in offers]
