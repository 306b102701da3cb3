"""Recovery of our own history at the I/O edge (the decisions are core/recovery.py's).

- ``open_store`` reads what the data directory says before anything is signed: the key existed but the
  store did not, the store was never initialised, the last run left no WAL behind it, the file is
  damaged or another identity's (``--recover`` moves it aside). It leaves markers in the main database
  file (checkpointed at once, so losing the WAL cannot take them along): ``lifecycle`` ("open" while a
  peer runs, "closed" after a clean stop, when SQLite has folded the WAL in and deleted it) and
  ``recovery`` (why a start found a loss, until ``--recover`` has rebuilt the store).
- ``Recovery.start`` asks a few peers, on their own keys, what they hold of us (``held``: our head and
  offers in their book; ``receipts``: their receipts of trades with us, a request only we can sign),
  bounded in peers and time, and decides: trade, refuse (``needs_recovery``), or rebuild
  (``--recover``, in the background: every peer known is asked, the plan applied in one step).
- ``on_held`` / ``on_receipts`` answer other peers' questions about themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from grenache import GrenacheError, RPCError

from ..core import errors as E
from ..core import limits
from ..core.book import Book
from ..core.desk import Desk, Effects
from ..core.errors import OTCError
from ..core.identity import Identity
from ..core.messages import Held, HeldRequest, HeldTrade, HeldTrades, Offer, ReceiptsRequest
from ..core.ratelimit import RateLimiter
from ..core.recovery import (
    Event,
    Evidence,
    Finding,
    Local,
    Ours,
    Plan,
    Report,
    Standing,
    check_receipts_request,
    findings,
    next_standing,
    parse_cursor,
    plan,
    quote_seq_floor,
    refusal,
    verdict,
)
from ..core.rfq import QuoteEffects
from ..core.signing import receipt_of, sign
from ..core.taker import receipt
from ..core.trade import MakerTrade
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .market import Market
from .store import Store, StoreDamaged
from .tasks import Tasks
from .trading import Trading

if TYPE_CHECKING:
    from .rfq import RFQ

log = logging.getLogger("otc.node.recovery")

LIFECYCLE = "lifecycle"  # "open" while a peer runs on the store, "closed" after a clean stop
PENDING = "recovery"  # why a start found the store lacking, until --recover rebuilt it
OWNER = "peer_id"  # whose history this is
RECOVERED = "recovered"  # what the last --recover did (JSON of the report)


# --- the data directory ---------------------------------------------------------------------------------
def open_store(
    path: Path, peer_id: str, *, had_key: bool, ran_before: bool = True, recover: bool = False
) -> tuple[Store, Local]:
    """Open the store and read the local evidence (``core.recovery.Local``). A damaged or foreign store
    raises ``StoreDamaged`` (nothing changed), or with ``recover`` is moved aside for a new one.

    ``had_key``: identity.key existed before this start; ``ran_before``: a peer has run in this data
    directory (its lock file exists). A key found in a directory where no peer ever ran was put there by
    hand (a new key, or one moved from elsewhere): nothing local says it had a store here, so the
    network decides."""
    existed = path.exists()
    wal_existed = _wal(path).exists()
    damaged: str | None = None
    try:
        store = _open(path, peer_id)
    except StoreDamaged as exc:
        if not recover:
            raise
        aside = _move_aside(path)
        damaged = f"{exc.why} (moved aside to {aside.name})"
        log.warning("peer.sqlite is damaged (%s); moved aside to %s", exc.why, aside)
        store = _open(path, peer_id)
        existed = wal_existed = False
    initialised = store.is_initialised()
    local = Local(
        new_identity=not had_key,
        store_missing=had_key and ran_before and not existed and damaged is None,
        store_empty=had_key and ran_before and existed and not initialised,
        wal_missing=existed and not wal_existed and store.meta(LIFECYCLE) == "open",
        damaged=damaged,
        pending=store.meta(PENDING),
        seq=store.seq(),
    )
    found = local.findings()
    store.set_meta(OWNER, peer_id)
    store.set_meta(LIFECYCLE, "open")
    if found and local.pending is None:
        store.set_meta(PENDING, "; ".join(f.text for f in found))
    store.checkpoint()
    return store, local


def _open(path: Path, peer_id: str) -> Store:
    store = Store(path)
    owner = store.meta(OWNER)
    if owner is None:  # a store from before the owner was recorded: its offers say whose it is
        row = store.db.execute("SELECT body FROM offers LIMIT 1").fetchone()
        owner = None if row is None else msgspec.json.decode(row[0], type=Offer).maker
    if owner is not None and owner != peer_id:
        store.db.close()
        raise StoreDamaged(path, f"it holds the history of peer {owner[:16]}, not of this identity.key's")
    return store


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _move_aside(path: Path) -> Path:
    """Keep a damaged store (and its WAL and shared memory) under a dated name: never delete history."""
    aside = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    for suffix in ("", "-wal", "-shm"):
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.replace(aside.with_name(aside.name + suffix))
    return aside


# --- the running peer -----------------------------------------------------------------------------------
class Recovery:
    def __init__(
        self,
        config: PeerConfig,
        identity: Identity,
        local: Local,
        store: Store,
        desk: Desk,
        book: Book,
        directory: Directory,
        trading: Trading,
        market: Market,
        tasks: Tasks,
        quotes: RFQ | None = None,
    ) -> None:
        self.config = config
        self.identity = identity
        self.peer_id = identity.peer_id
        self.local = local
        self.store = store
        self.desk = desk
        self.book = book
        self.directory = directory
        self.trading = trading
        self.market = market
        self.tasks = tasks
        self.quotes = quotes  # the quote desk (node/rfq.py): its trades are ours too, and its seq
        self.state = Standing.CHECKING
        self.report = Report(stored_seq=local.seq, seq=local.seq)
        self._held = RateLimiter(limits.HELD_PER_MINUTE, limits.HELD_PER_MINUTE / 10, max_keys=1)
        self._receipts = RateLimiter(limits.RECEIPTS_PER_MINUTE, limits.RECEIPTS_BURST, limits.PEERS_TRACKED)
        self._receipts_all = RateLimiter(limits.RECEIPTS_PER_MINUTE_ALL, limits.RECEIPTS_BURST, max_keys=1)
        self._seen: OrderedDict[str, int] = OrderedDict()  # signed requests answered: sig -> ts
        self._on_trading: Callable[[], None] = lambda: None

    def blocked(self) -> OTCError | None:
        """Why trading is refused now (None: it is not)."""
        return refusal(self.state, self.report)

    def _move(self, event: Event) -> None:
        self.state = next_standing(self.state, event)
        self.report.state = self.state.value

    # --- at start -----------------------------------------------------------------------------------
    def start(self, joined: asyncio.Event, on_trading: Callable[[], None]) -> asyncio.Future[None]:
        """Decide whether we may trade; ``on_trading`` is called once we may (at once for a new
        identity; after the check; or when ``--recover``, which goes on in the background, is done),
        never if trading stays refused. A known identity is checked alongside the late join: once the
        join is done (``joined``, waited for at most limits.CHECK_JOIN_WAIT_S), a few peers are asked
        what they hold of us (limits.CHECK_PEERS, at most limits.CHECK_TIMEOUT_S in all)."""
        self._on_trading = on_trading
        if self.local.new_identity:
            self._decide(Evidence())
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return self.tasks.track(asyncio.ensure_future(self._check(joined)))

    async def _check(self, joined: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limits.CHECK_JOIN_WAIT_S):
                await joined.wait()
        ev = Evidence()
        started = time.monotonic()
        peers = self._candidates(limits.CHECK_PEERS)
        await self._gather(ev, peers, started + limits.CHECK_TIMEOUT_S, pages=1)
        self.report.check_ms = round((time.monotonic() - started) * 1000, 1)
        self._decide(ev)

    def _decide(self, ev: Evidence) -> None:
        found = findings(self.peer_id, self.local, ev, self._ours(ev))
        self._note(ev, found)
        event = verdict(self.local, found, self.config.recover)
        self._move(event)
        if event is Event.LOSS:
            self.report.reason = "; ".join(f.text for f in found)
            if self.store.meta(PENDING) is None:
                self.store.set_meta(PENDING, self.report.reason)
                self.store.checkpoint()
            log.warning(
                "trading refused: this peer's store lacks history it signed (%s). Restart it with "
                "`otc peer --recover` to rebuild what the network holds.",
                self.report.reason,
            )
        elif event is Event.RECOVER:
            self.report.reason = "asking the peers we know what they hold of us"
            log.warning("recovering this peer's history from the network (--recover)")
            self.tasks.spawn(self._recover())
        else:
            self._on_trading()

    def _note(self, ev: Evidence, found: list[Finding]) -> None:
        self.report.findings = [f.text for f in found]
        self.report.asked = ev.asked
        self.report.answered = ev.answered
        self.report.network_seq = ev.network_seq

    def _candidates(self, limit: int) -> list[str]:
        """Peers to ask: those whose signed heads we hold (the join's snapshot brings them), latest first."""
        views = [(v.head.ts, pid) for pid, v in self.book.makers.items() if pid != self.peer_id and v.head]
        return [pid for _, pid in heapq.nlargest(limit, views)]

    def _ours(self, ev: Evidence) -> Ours:
        ours = Ours()
        for oid in ev.offers:
            if (offer := self.store.offer(oid)) is not None:
                ours.offers[oid] = offer
        for tid in ev.trades:
            if (mt := self.store.maker_trade(tid) or self.store.rfq.trade(tid)) is not None:
                ours.maker[tid] = mt.state
            if (tt := self.store.taker_trade(tid)) is not None:
                ours.taker[tid] = tt.state
        return ours

    # --- asking -------------------------------------------------------------------------------------
    async def _gather(
        self, ev: Evidence, peers: list[str], deadline: float | None, pages: int | None
    ) -> None:
        """Ask each peer what it holds of us (``held``, then up to ``pages`` pages of ``receipts``), a
        bounded number at a time, all by ``deadline``; verified answers go into ``ev``."""
        ev.asked += len(peers)
        gate = asyncio.Semaphore(limits.RECOVER_CONCURRENCY)

        async def ask(peer: str) -> None:
            async with gate:
                await self._ask(ev, peer, deadline, pages)

        tasks = [asyncio.ensure_future(ask(p)) for p in peers]
        if not tasks:
            return
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _timeout(self, deadline: float | None) -> float:
        left = self.config.rpc_timeout_s if deadline is None else deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return min(self.config.rpc_timeout_s, left)

    async def _ask(self, ev: Evidence, peer: str, deadline: float | None, pages: int | None) -> None:
        try:
            held = await self.directory.ask(
                peer, HeldRequest(maker=self.peer_id), timeout=self._timeout(deadline), result_type=Held
            )
            ev.add_held(self.peer_id, peer, held)
            before, page, waits = "", 0, 0
            while page < (limits.RECOVER_PAGES_PER_PEER if pages is None else pages):
                req = sign(
                    self.identity,
                    ReceiptsRequest(
                        peer=self.peer_id, to=peer, before=before, limit=limits.RECEIPTS_PAGE_MAX,
                        ts=now_ms(), nonce=uuid.uuid4().hex,
                    ),
                )  # fmt: skip
                try:
                    got = await self.directory.ask(
                        peer, req, timeout=self._timeout(deadline), result_type=HeldTrades
                    )
                except RPCError as exc:
                    if exc.code == E.ERR_RATE_LIMITED and deadline is None and waits < 30:
                        waits += 1  # its limit on our pages (2 a second): the next one comes soon
                        await asyncio.sleep(1.0)
                        continue
                    raise
                known = len(ev.trades)
                ev.add_trades(self.peer_id, got.trades)
                page += 1
                if got.next is None or len(ev.trades) == known:
                    break  # the end, or a page with nothing new of ours (repeated, forged): stop
                before = got.next
        except (GrenacheError, msgspec.ValidationError, TimeoutError) as exc:
            # silent, slow, garbage, or a peer that does not know these requests: no evidence from it
            log.debug("recovery: %s answered nothing usable: %s", peer[:8], exc)

    # --- --recover ----------------------------------------------------------------------------------
    async def _recover(self) -> None:
        try:
            await self._rebuild()
        except Exception as exc:  # never sit in "recovering" without saying why
            log.exception("recovery failed")
            self.report.reason = f"recovery failed ({exc!r}); trading stays refused: restart with --recover"

    async def _rebuild(self) -> None:
        while True:
            ev = Evidence()
            peers = self._candidates(limits.RECOVER_PEERS)
            self.report.reason = f"asking {len(peers)} peers what they hold of us"
            await self._gather(ev, peers, None, pages=None)
            if ev.answered:
                break
            self.report.asked, self.report.answered = ev.asked, 0
            self.report.reason = (
                "no peer has answered yet; waiting for one (without an answer there is no knowing which "
                "seqs this identity signed)"
            )
            await asyncio.sleep(limits.RECOVER_RETRY_S)
        found = findings(self.peer_id, self.local, ev, self._ours(ev))
        self._note(ev, found)
        self._apply(plan(self.peer_id, self.local, ev, self._ours(ev), found, self.desk.open_offers()))

    def _apply(self, p: Plan) -> None:
        """The plan, in one synchronous step: nothing is signed with the old seq once this begins, and
        every change is persisted before it is published (``Trading.commit``)."""
        now = now_ms()
        self.desk.load(p.cancel, [], p.seq)  # the newest copy of each offer to cancel, and the new seq
        effects = Effects()
        for offer in p.cancel:
            effects.extend(self.desk.cancel(offer.id, now)[1])
        # after the cancels released every live reservation: receipts as maker, done
        self.desk.load([], p.maker_trades, 0)
        effects.trades.extend(p.maker_trades)
        self.trading.commit(effects)
        self.store.save(seq=self.desk.seq, taker_trades=p.taker_trades)
        for trade in p.taker_trades:
            self.trading.open_takes.pop(trade.take.trade_id, None)
        self.market.publish(p.republish)
        if self.quotes is not None:
            self._rebuild_quotes(p, now)
        self.report.receipts_recovered = p.receipts
        self.report.offers_cancelled = [o.id for o in p.cancel]
        self.report.seq = self.desk.seq
        self.report.reason = (
            f"recovered: seq {self.desk.seq}, {p.receipts} receipts restored, {len(p.cancel)} open offers "
            "cancelled (post again what you still want)"
        )
        self.store.delete_meta(PENDING)
        self.store.set_meta(RECOVERED, msgspec.json.encode(self.report).decode())
        self.store.checkpoint()
        self._move(Event.RECOVERED)
        log.warning("%s", self.report.reason)
        self._on_trading()

    def _rebuild_quotes(self, p: Plan, now: int) -> None:
        """The quote desk after a loss: its seq from the clock (``quote_seq_floor``: no quote id is
        given twice), its open quotes cancelled (like offers, their true state may be what was lost),
        and receipts of quotes restored to it."""
        assert self.quotes is not None
        desk = self.quotes.quoter.desk
        effects = Effects()
        if p.lost:
            desk.load([], [], quote_seq_floor(desk.seq, now))
            for offer in desk.open_offers():
                effects.extend(desk.cancel(offer.id, now)[1])
        desk.load([], p.quote_trades, 0)
        effects.trades.extend(p.quote_trades)
        self.quotes.commit(QuoteEffects(desk=effects))
        self.store.rfq.save(seq=desk.seq)

    # --- answering others ---------------------------------------------------------------------------
    def on_held(self, msg: HeldRequest) -> Held:
        """Our book's copy of a maker: its latest signed head and its open offers (newest first)."""
        if not self._held.allow("", now_ms()):
            raise OTCError(E.ERR_RATE_LIMITED, "too many held requests right now")
        view = self.book.makers.get(msg.maker)
        if view is None or msg.maker == self.peer_id:
            return Held()
        offers = heapq.nlargest(limits.HELD_OFFERS_MAX, view.offers.values(), key=lambda o: o.seq)
        return Held(head=view.head, offers=offers)

    def on_receipts(self, msg: ReceiptsRequest) -> HeldTrades:
        """A page of our receipts of trades with the asker: only for the asker itself, signed and fresh."""
        now = now_ms()
        check_receipts_request(self.peer_id, msg, now)
        if msg.sig in self._seen:
            raise OTCError(E.ERR_REQUEST_STALE, "this request was answered before: a replay")
        self._remember(msg.sig, now)
        if not self._receipts.allow(msg.peer, now):
            raise OTCError(E.ERR_RATE_LIMITED, "too many receipts requests from this peer right now")
        if not self._receipts_all.allow("", now):
            raise OTCError(E.ERR_RATE_LIMITED, "too many receipts requests right now")
        rows = self.store.done_trades_with(msg.peer, parse_cursor(msg.before), msg.limit)
        trades = []
        for trade, _, quote in rows:
            if isinstance(trade, MakerTrade):
                assert trade.taker_sig is not None
                done = receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)
                trades.append(HeldTrade(take=trade.take, receipt=done, quote=quote))
            else:  # our take: of a quote if it is one we received
                quote = self.store.rfq.received_quote(trade.take.offer_id) is not None
                trades.append(HeldTrade(take=trade.take, receipt=receipt(trade), quote=quote))
        cursor = None
        if len(rows) == msg.limit:
            cursor = f"{rows[-1][1]}:{trades[-1].receipt.id}"
        return HeldTrades(trades=trades, next=cursor)

    def _remember(self, sig: str, now: int) -> None:
        self._seen[sig] = now
        while self._seen:
            oldest_sig, at = next(iter(self._seen.items()))
            if len(self._seen) <= limits.REPLAYS_TRACKED and now - at <= 2 * limits.SIGNED_REQUEST_MAX_AGE_MS:
                break
            del self._seen[oldest_sig]
