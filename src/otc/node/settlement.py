"""Settlement at the I/O edge: a settlement for every done trade, our steps signed and stored, the other
party's steps received, and a background loop that brings both sides level and flags deadlines.

The state machine is ``core.settlement``; here each change is stored (one row per trade, SQLite) before
anyone hears of it. Bringing the two sides level is one exchange: we send our signed ``SettleSync``
(every step we hold) to the other party's own key, it merges what it lacks and answers with every step it
holds, which we merge. The loop re-sends, with backoff, while the other party has not acknowledged a step
of ours (it is offline, or the answer was lost), so a peer that was away catches up when it returns; and
it flags a settlement overdue, once per state, when the state's deadline passes (both sides compute the
deadline from the same signed times).

Settlements are opened from the peer's trade events (our maker desk's, the quote desk's, our takes'),
written in batches off the trading path; at start the done trades that have no settlement yet (a crash
in between) are opened too. Memory holds nothing per trade: the store is scanned by index.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import msgspec

from grenache import GrenacheError

from ..core import errors as E
from ..core import limits as L
from ..core.errors import OTCError
from ..core.identity import Identity
from ..core.messages import Receipt, SettleSteps, SettleSync
from ..core.ratelimit import RateLimiter
from ..core.settlement import DEFAULT_DEADLINES_MS, Record, Settlement, State
from ..core.signing import is_signed_by, receipt_of, sign
from ..core.taker import receipt
from ..core.trade import MakerState, MakerTrade, TakerState, TakerTrade
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .events import Listeners
from .store import Store
from .tasks import IDLE_WAKE_S, Tasks

log = logging.getLogger("otc.node.settlement")


OPEN_BATCH = 256  # new trades whose settlement rows are written at once, at most a loop interval later


def deadlines_of(config: PeerConfig) -> dict[State, int]:
    out = dict(DEFAULT_DEADLINES_MS)
    for name, ms in config.settlement_deadlines_ms.items():
        out[State(name)] = ms
    return out


def _receipt_of(trade: MakerTrade | TakerTrade) -> Receipt | None:
    if isinstance(trade, MakerTrade):
        if trade.state is MakerState.DONE and trade.taker_sig is not None:
            return receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)
        return None
    return receipt(trade) if trade.state is TakerState.DONE else None


class Settlements:
    def __init__(
        self,
        config: PeerConfig,
        identity: Identity,
        store: Store,
        directory: Directory,
        tasks: Tasks,
        events: Listeners,
    ) -> None:
        self.config = config
        self.identity = identity
        self.me = identity.peer_id
        self.store = store
        self.directory = directory
        self.tasks = tasks
        self.events = events
        self.deadlines = deadlines_of(config)
        rate = L.SETTLE_SYNCS_PER_PEER_PER_MIN
        self.limiter = RateLimiter(rate, rate, L.PEERS_TRACKED)
        self._opening: list[Receipt] = []
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self._retry: dict[str, tuple[float, float]] = {}  # trade id -> (not before, last wait), monotonic
        events.callbacks.append(self._on_event)

    def start(self) -> None:
        missing = [r for r in map(_receipt_of, self.store.settlements.missing()) if r is not None]
        self._open(missing)
        self.tasks.loop(self._loop)

    def _on_event(self, event: dict[str, Any]) -> None:
        # rows for new trades are written in batches by the loop (within settle_interval_s): a trade
        # must not pay for a transaction of its own here, and until its row exists get() derives it
        if event["type"] == "trade":
            self._opening.append(event["receipt"])
            if len(self._opening) >= OPEN_BATCH:
                self._wake.set()
            elif len(self._opening) == 1:  # the loop may sleep long: have it open these in time
                asyncio.get_running_loop().call_later(self.config.settle_interval_s, self._wake.set)

    def _open(self, receipts: list[Receipt]) -> None:
        """Start settlements for done trades (those already started are left as they are)."""
        fresh = [r for r in receipts if self.store.settlements.get(r.id) is None]
        rows = [Settlement(Record(receipt=r), self.me, self.deadlines).columns() for r in fresh]
        if rows:
            self.store.settlements.save(rows)

    # --- reading --------------------------------------------------------------------------------------
    def get(self, trade_id: str) -> Settlement:
        record = self.store.settlements.get(trade_id)
        if record is None:
            found = self._find_receipt(trade_id)
            if found is None:
                raise OTCError(E.ERR_TRADE_NOT_FOUND, f"no done trade {trade_id} of ours")
            record = Record(receipt=found)
        return Settlement(record, self.me, self.deadlines)

    def _find_receipt(self, trade_id: str) -> Receipt | None:
        """A done trade whose settlement row is not written yet (it is, a moment after the trade)."""
        tables = self.store
        for trade in (
            tables.settlements.taker_trade(trade_id),
            tables.maker_trade(trade_id),
            tables.rfq.trade(trade_id),
        ):
            if trade is not None and (found := _receipt_of(trade)) is not None:
                return found
        return None

    def all(self, *, open_only: bool = False) -> list[Settlement]:
        records = self.store.settlements.all(open_only=open_only)
        return [Settlement(r, self.me, self.deadlines) for r in records]

    def _save(self, settlement: Settlement) -> None:
        self.store.settlements.save([settlement.columns()])

    def _tell(self, settlement: Settlement, kind: str, **extra: Any) -> None:
        self.events.emit({"type": kind, "data": {**settlement.summary(now_ms()), **extra}})

    # --- our steps ------------------------------------------------------------------------------------
    def step(self, trade_id: str, step: Any, note: Any = None) -> Settlement:
        """Make a settlement step as this party (idempotent), store it, and send it to the other party."""
        settlement = self.get(trade_id)
        made = settlement.act(self.identity, step, now_ms(), note)
        if made is not None:
            self._save(settlement)
            self._tell(settlement, "settlement", step=msgspec.to_builtins(made), by="me")
            self._retry.pop(trade_id, None)
            self.tasks.spawn(self._exchange(trade_id))
        return settlement

    # --- the exchange ---------------------------------------------------------------------------------
    def on_sync(self, msg: SettleSync) -> SettleSteps:
        """The other party's steps, on our own key: merge what we lack, answer with what we hold."""
        now = now_ms()
        try:
            settlement = self.get(msg.trade_id)
        except OTCError:
            raise OTCError(E.ERR_TRADE_NOT_FOUND, f"no done trade {msg.trade_id} here") from None
        # strangers learn nothing: not even whether the trade exists
        if msg.sender != settlement.other:
            raise OTCError(E.ERR_TRADE_NOT_FOUND, f"no done trade {msg.trade_id} here")
        if abs(now - msg.ts) > 2 * L.MAX_CLOCK_SKEW_MS:
            raise OTCError(E.ERR_INVALID_MESSAGE, "the exchange is not fresh: check your clock")
        if not is_signed_by(msg, msg.sender):
            raise OTCError(E.ERR_BAD_SIGNATURE, "the exchange is not signed by its sender")
        if not self.limiter.allow(msg.sender, now):
            raise OTCError(E.ERR_RATE_LIMITED, f"more than {L.SETTLE_SYNCS_PER_PEER_PER_MIN} a minute")
        self._absorb(settlement, msg.steps, now)
        return SettleSteps(steps=settlement.steps())

    def _absorb(self, settlement: Settlement, steps: list[Any], now: int) -> None:
        new = settlement.merge(steps, now)
        acked = settlement.acknowledge(steps)
        if new or acked or self.store.settlements.get(settlement.trade_id) is None:
            self._save(settlement)
            self._wake.set()  # its deadline may now be the next one
        for step in new:
            self._tell(settlement, "settlement", step=msgspec.to_builtins(step), by="them")

    async def _exchange(self, trade_id: str) -> None:
        if trade_id in self._in_flight:
            return
        self._in_flight.add(trade_id)
        try:
            settlement = self.get(trade_id)
            msg = sign(
                self.identity,
                SettleSync(trade_id=trade_id, sender=self.me, steps=settlement.steps(), ts=now_ms()),
            )
            try:
                reply = await self.directory.ask(
                    settlement.other, msg, timeout=self.config.rpc_timeout_s, result_type=SettleSteps
                )
            except (GrenacheError, OTCError, msgspec.ValidationError) as exc:
                self._back_off(trade_id)
                log.debug("settlement %s: %s", trade_id[:8], exc)
                return
            settlement = self.get(trade_id)  # what changed meanwhile is in the store
            try:
                self._absorb(settlement, reply.steps, now_ms())
            except OTCError as exc:
                log.warning("settlement %s: the other party answered %s", trade_id[:8], exc)
                self._back_off(trade_id)
                return
            self._retry.pop(trade_id, None)
        finally:
            self._in_flight.discard(trade_id)
            self._wake.set()  # whatever the outcome, the loop sees what is left (it may sleep long)

    def _back_off(self, trade_id: str) -> None:
        wait = min(L.SETTLE_RETRY_MAX_S, 2 * self._retry.get(trade_id, (0.0, 0.25))[1])
        self._retry[trade_id] = (time.monotonic() + wait * (0.5 + random.random() / 2), wait)

    # --- the background loop --------------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sleep()):
                    await self._wake.wait()
            self._wake.clear()
            self.tick()

    def _sleep(self) -> float:
        """Until there is something to do: every settle_interval_s while steps wait for the other party
        (their retries back off on their own), else until the next deadline, at most IDLE_WAKE_S. An
        idle peer so costs one wake-up a minute here rather than two queries a second."""
        interval = self.config.settle_interval_s
        if self._opening or self._in_flight:
            return interval
        due = self.store.settlements.next_due()
        sleep = IDLE_WAKE_S if due is None else (due - now_ms()) / 1000
        if self._retry or self.store.settlements.any_unacked():
            soonest = min((at for at, _ in self._retry.values()), default=0.0)
            sleep = min(sleep, soonest - time.monotonic())
        return min(IDLE_WAKE_S, max(interval, sleep))

    def tick(self) -> None:
        """Open settlements for new trades, flag deadlines passed, re-send what is unacknowledged."""
        opening, self._opening = self._opening, []
        if opening:
            self._open(opening)
        now = now_ms()
        for record in self.store.settlements.due(now, L.SETTLE_BATCH):
            settlement = Settlement(record, self.me, self.deadlines)
            if settlement.flag_overdue(now):
                self._save(settlement)
                self._tell(settlement, "overdue")
            elif not settlement.is_overdue(now):
                self._save(settlement)  # its row's deadline is stale (the settings changed): refresh
        mono = time.monotonic()
        unacked = self.store.settlements.unacked(L.SETTLE_BATCH)
        if len(unacked) < L.SETTLE_BATCH:  # all of them: forget the backoff of those acknowledged since
            waiting = {r.receipt.id for r in unacked}
            self._retry = {k: v for k, v in self._retry.items() if k in waiting}
        for record in unacked:
            trade_id = record.receipt.id
            if trade_id not in self._in_flight and self._retry.get(trade_id, (0.0, 0.0))[0] <= mono:
                self.tasks.spawn(self._exchange(trade_id))
