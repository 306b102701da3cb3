"""Trading, both roles, at the I/O edge.

As maker: the desk (``core.desk``) decides every take, confirm, cancel and expiry synchronously; here we
persist each decision before anyone hears of it (``commit``), then publish the offers it changed, and
run the timer that releases reservations and expires offers.

As taker: the taker (``core.taker``) builds signed requests and checks the maker's answers; here we
persist the trade before each request, send it until the maker answers definitively (its reply, or its
signed refusal of that very request: any other failure is transient), and finish trades left pending
by lost messages or a restart (``reconcile``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

import msgspec

from grenache import GrenacheError

from ..core import errors as E
from ..core import limits
from ..core.book import Book
from ..core.desk import Desk, Effects, Refusal
from ..core.errors import OTCError
from ..core.messages import Confirm, Offer, Receipt, Take, TradeAnswer, TradeRefusal
from ..core.money import D, canonical
from ..core.offer import available
from ..core.signing import receipt_of
from ..core.taker import Taker, receipt
from ..core.trade import MakerState, TakerState, TakerTrade
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .events import Listeners
from .market import Market
from .store import Store
from .tasks import Tasks, deadline_loop

log = logging.getLogger("otc.node.trading")
KEEP_SETTLED = 10_000  # settled trades a maker keeps in memory; older ones are recalled from the store
KEEP_CLOSED = 1000  # closed offers a maker keeps in memory; likewise
TRIM_EVERY_S = 60.0
# refusals that mean "not now": our own other reservations at that maker, or its load, stand in the way;
# they clear within a round trip for an honest taker, so a take tries again (as a new trade) until its
# deadline rather than failing
BUSY = frozenset({E.ERR_TOO_MANY_RESERVATIONS, E.ERR_MAKER_BUSY})


class Trading:
    def __init__(
        self,
        config: PeerConfig,
        desk: Desk,
        taker: Taker,
        book: Book,
        store: Store,
        market: Market,
        directory: Directory,
        tasks: Tasks,
        events: Listeners,
    ) -> None:
        self.config = config
        self.desk = desk
        self.taker = taker
        self.book = book
        self.store = store
        self.market = market
        self.directory = directory
        self.tasks = tasks
        self.events = events
        self.peer_id = desk.peer_id
        self._timer_event = asyncio.Event()
        # why trading is refused now (node/recovery.py: a store that lost history signs nothing)
        self.blocked: Callable[[], OTCError | None] = lambda: None
        self._driving: set[str] = set()
        # our takes not yet done or failed (the store holds them all): memory grows with what is in
        # flight, never with history
        self.open_takes: dict[str, TakerTrade] = {}
        self.closing = False  # stopping: no new takes (see wind_down)
        self._takes: set[asyncio.Future[TakerTrade]] = set()  # takes being driven for a caller
        store.on_failure = lambda exc: _cannot_persist()
        for trade in store.taker_trades(open_only=True):
            if trade.state is TakerState.REQUESTED:  # its take call died with the last process
                trade = taker.give_up(trade, f"{E.ERR_MAKER_UNREACHABLE}: interrupted", now_ms())
                store.save(taker_trades=[trade])
            else:
                self.open_takes[trade.take.trade_id] = trade

    def start(self) -> None:
        self.tasks.loop(self._timer_loop)
        self.tasks.loop(self._trim_loop)
        self.tasks.loop(self._reconcile_loop)
        self.market.publish(self.desk.open_offers())  # after a restart: our open offers again

    # --- maker: own offers --------------------------------------------------------------------------
    def _require_open(self) -> None:
        blocked = self.blocked()
        if blocked is not None:
            raise blocked

    def post_offer(self, **fields: Any) -> Offer:
        self._require_open()
        offer, effects = self.desk.create(now=now_ms(), **fields)
        self.commit(effects)
        return offer

    def cancel_offer(self, oid: str) -> Offer:
        self._require_open()
        self._recall(offer_id=oid)  # closed long ago (or before a restart): say so, not "not found"
        offer, effects = self.desk.cancel(self._own_offer_id(oid), now_ms())
        self.commit(effects)
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

    def commit(self, effects: Effects) -> None:
        """Persist, then apply to our own book and publish: the order that makes crashes safe."""
        if not effects:
            return
        try:
            self.store.save(**self._rows(effects))
        except Exception:
            _cannot_persist()
        self._apply(effects)

    async def commit_soon(self, effects: Effects) -> None:
        """``commit`` in the group commit of this turn of the event loop (``Store.save_soon``): returns
        once it is on disk, so that only then is anyone told. Our book and watchers hear of it at once
        (nobody outside this process does before the disk has it: a failed commit stops the peer
        before any other callback runs, see ``__init__``); the market after the commit. With nothing
        to save (a repeated take or confirm) it still waits for the commit in progress: the first
        answer's decision may be in it."""
        if not effects:
            pending = self.store.pending()
            if pending is not None:
                await asyncio.shield(pending)
            return
        done = self.store.save_soon(**self._rows(effects))
        self._apply(effects)  # its publish runs in a later callback than the commit (both call_soon)
        await asyncio.shield(done)  # (a failed commit has stopped the peer already: Store.on_failure)

    def _rows(self, effects: Effects) -> dict[str, Any]:
        now = now_ms()
        # a counterparty, under the name it traded as: chat.py never gives that name to another id
        contacts = [
            (t.terms.taker, t.terms.taker_name, now) for t in effects.trades if t.state is MakerState.DONE
        ]
        return {
            "seq": self.desk.seq, "offers": effects.offers, "maker_trades": effects.trades,
            "contacts": contacts,
        }  # fmt: skip

    def _apply(self, effects: Effects) -> None:
        for offer in effects.offers:
            self.book.apply(offer)
            self.events.emit({"type": "offer", "offer": offer})
        for trade in effects.trades:
            if trade.state is MakerState.DONE:
                assert trade.taker_sig is not None
                self.events.emit(
                    {"type": "trade", "receipt": receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)}
                )
        if effects.offers:  # a reservation alone changes no offer we publish (see Desk.take)
            self.market.publish(effects.offers)
        self._timer_event.set()

    async def _timer_loop(self) -> None:
        # releases and expiries sign new states: not while trading is blocked
        await deadline_loop(
            self._timer_event,
            self.desk.next_deadline,
            lambda: self.blocked(),  # (reassigned by the peer)
            lambda now: self.commit(self.desk.tick(now)),
        )

    async def _trim_loop(self) -> None:
        # the store keeps all history, but for reservations released long enough ago that nobody can
        # ask about them again; memory keeps the recent part
        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            self.store.delete_maker_trades(self.desk.prune_released(now_ms()))
            self.store.prune_contacts(limits.CONTACTS_MAX)
            self.desk.forget_closed(KEEP_CLOSED)
            self.desk.forget_settled(KEEP_SETTLED)

    # --- maker: answering takers --------------------------------------------------------------------
    async def on_take(self, msg: Take) -> TradeAnswer:
        self._recall(trade_id=msg.trade_id, offer_id=msg.offer_id)
        return await self._answer(msg)

    async def on_confirm(self, msg: Confirm) -> TradeAnswer:
        self._recall(trade_id=msg.trade_id)
        return await self._answer(msg)

    async def _answer(self, msg: Take | Confirm) -> TradeAnswer:
        """The desk's decision, persisted, as the reply or as a signed refusal of this very request."""
        now = now_ms()
        blocked = self.blocked()
        if blocked is not None and not self._answered_before(msg):
            # a store that lost history refuses takes for good (signed); while we check or rebuild it,
            # and to any confirm, the answer is not our final word (unsigned): the taker asks again
            if isinstance(msg, Take) and blocked.code == E.ERR_RECOVERY_NEEDED:
                return self.desk.refusal(msg, blocked, now)
            raise blocked
        try:
            reply, effects = (
                self.desk.take(msg, now) if isinstance(msg, Take) else self.desk.confirm(msg, now)
            )
        except OTCError as exc:
            if isinstance(exc, Refusal):
                await self.commit_soon(exc.effects)  # a late confirm still released its reservation
            return self.desk.refusal(msg, exc, now)
        await self.commit_soon(effects)
        return reply

    def _answered_before(self, msg: Take | Confirm) -> bool:
        """Whether answering repeats an answer given before and decides nothing new: a take we know,
        a confirm of a trade already done or released."""
        known = self.desk.trades.get(msg.trade_id)
        return known is not None and (isinstance(msg, Take) or known.state is not MakerState.RESERVED)

    def _recall(self, *, trade_id: str | None = None, offer_id: str | None = None) -> None:
        """Hand the desk the stored records it has forgotten (see ``Desk.recall``): a primary-key read."""
        if trade_id is not None and trade_id not in self.desk.trades:
            self.desk.recall(trade=self.store.maker_trade(trade_id))
        if offer_id is not None and offer_id not in self.desk.offers:
            self.desk.recall(offer=self.store.offer(offer_id))

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

    async def take(self, oid: str, amount: Any = None, *, deadline_s: float | None = None) -> Receipt:
        """Take ``amount`` (default: all that is available) of an offer; returns the done receipt."""
        return await self.take_offer(self.find_offer(oid), amount, deadline_s=deadline_s)

    async def take_offer(
        self, offer: Offer, amount: Any = None, *, deadline_s: float | None = None
    ) -> Receipt:
        """Take an offer we hold (from the book, or a quote's firm offer, see node/rfq.py).

        A refusal that means "not now" (``BUSY``: our other reservations at that maker, or its load)
        is tried again as a new trade until the take's deadline (``take_deadline_s``, or less); every
        other refusal is final."""
        if self.closing:
            raise OTCError(E.ERR_NOT_READY, "the peer is stopping: it takes nothing more")
        self._require_open()
        if amount is None:
            amount = canonical(available(offer))
        limit_s = (
            self.config.take_deadline_s
            if deadline_s is None
            else min(deadline_s, self.config.take_deadline_s)
        )
        deadline = time.monotonic() + max(0.0, limit_s)
        wait = 0.02
        while True:
            trade = self.taker.new_trade(offer, amount, uuid.uuid4().hex, now_ms())
            # shielded: if our caller goes away (an API client disconnects), the trade still runs to a
            # definite state instead of being left half-asked
            task = self.tasks.track(asyncio.ensure_future(self._take_to_end(trade, deadline)))
            self._takes.add(task)
            task.add_done_callback(self._takes.discard)
            trade = await asyncio.shield(task)
            if trade.state is TakerState.DONE:
                return receipt(trade)
            if trade.state is not TakerState.FAILED:
                raise OTCError(
                    E.ERR_TRADE_PENDING,
                    f"the maker did not answer in time; trade {trade.take.trade_id} is retried in the "
                    "background",
                )
            assert trade.error is not None
            code, _, message = trade.error.partition(": ")
            more = None if trade.available is None else D(trade.available)
            # "not now" helps only while the maker may yet see us differently: it is loaded, or
            # other takes of ours with it are in flight (their confirms make us a known taker)
            hope = code == E.ERR_MAKER_BUSY or (code in BUSY and self._in_flight(offer.maker))
            if not hope or time.monotonic() + wait >= deadline:
                raise OTCError(code, message, available=more)
            await asyncio.sleep(wait)
            wait = min(wait * 2, 0.5)

    def _in_flight(self, maker: str) -> bool:
        return any(t.maker == maker for t in self.open_takes.values())

    async def _take_to_end(self, trade: TakerTrade, deadline: float) -> TakerTrade:
        # the take goes out before its record is committed (in this same turn of the loop, see
        # Store.save_soon), and nothing is done with the answer before it is: a take lost with a crash
        # in between signs nothing more than the take, whose reservation the maker lets expire
        requested = self._note_taker(trade)
        trade = await self._drive(trade, deadline - time.monotonic(), requested)
        if trade.state is TakerState.REQUESTED:
            trade = self.taker.give_up(trade, f"{E.ERR_MAKER_UNREACHABLE}: no answer", now_ms())
            await self._save_taker(trade)
        return trade

    async def _drive(
        self, trade: TakerTrade, deadline_s: float, saving: asyncio.Future[None] | None = None
    ) -> TakerTrade:
        """Send the trade's next request until it is final or the deadline passes (idempotent). Only
        the maker's answer moves the trade: its reply, or its signed refusal of this very request.
        Every other outcome (no answer, an unsigned error from whoever answered on the maker's name,
        a reply we cannot accept) is transient: the same request goes again after a backoff."""
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
                    try:
                        answer = await self.directory.ask(
                            trade.maker,
                            req,
                            timeout=min(self.config.rpc_timeout_s, remaining),
                            result_type=TradeAnswer,
                        )
                    finally:
                        if saving is not None:  # our record of the request is on disk first
                            await asyncio.shield(saving)
                            saving = None
                    if isinstance(answer, TradeRefusal):
                        new = self.taker.on_refusal(trade, answer, now_ms())
                    else:
                        new = self.taker.on_reply(trade, answer, now_ms())
                except (GrenacheError, OTCError, msgspec.ValidationError) as exc:
                    # not the maker's word on this request: never final, and we sign nothing of it
                    level = logging.DEBUG if isinstance(exc, GrenacheError) else logging.WARNING
                    log.log(level, "take %s: no answer from its maker: %s", tid[:8], exc)
                    await asyncio.sleep(min(backoff, max(0.0, deadline - time.monotonic())))
                    backoff = min(backoff * 2, 1.0)
                    continue
                if new is not trade:
                    trade = new
                    await self._save_taker(trade)  # on disk before the confirm that follows goes
            return trade
        finally:
            self._driving.discard(tid)

    def _note_taker(self, trade: TakerTrade) -> asyncio.Future[None]:
        """Save a take's new state in this turn's group commit (the future: on disk), and track it."""
        done = trade.state is TakerState.DONE and trade.terms is not None
        contacts = [(trade.terms.maker, trade.terms.maker_name, now_ms())] if done and trade.terms else []
        saved = self.store.save_soon(taker_trades=[trade], contacts=contacts)
        if trade.state in (TakerState.REQUESTED, TakerState.RESERVED):
            self.open_takes[trade.take.trade_id] = trade
        else:
            self.open_takes.pop(trade.take.trade_id, None)
        return saved

    async def _save_taker(self, trade: TakerTrade) -> None:
        await asyncio.shield(self._note_taker(trade))
        if trade.state is TakerState.DONE:
            self.events.emit({"type": "trade", "receipt": receipt(trade)})

    async def _reconcile_loop(self) -> None:
        """Finish trades left pending by lost messages, a timeout or a restart."""
        while True:
            for trade in list(self.open_takes.values()):
                if trade.state is TakerState.RESERVED and trade.take.trade_id not in self._driving:
                    self.tasks.spawn(self._drive(trade, self.config.take_deadline_s))
            await asyncio.sleep(1.0)

    async def wind_down(self, timeout_s: float) -> None:
        """Before stopping: take nothing more, and give the takes in flight up to ``timeout_s`` to get
        their maker's answer, so whoever asked for one hears the outcome rather than a closed
        connection. (One still unanswered then is settled at the next start: see ``__init__``.)"""
        self.closing = True
        running = [t for t in self._takes if not t.done()]
        if running:
            await asyncio.wait(running, timeout=timeout_s)

    # --- views --------------------------------------------------------------------------------------
    def receipts(self) -> list[tuple[str, Receipt]]:
        """Every done trade, as ``(role, receipt)``, oldest first."""
        out: list[tuple[str, Receipt]] = []
        for mt in self.store.maker_trades():
            if mt.state is MakerState.DONE and mt.taker_sig:
                out.append(("maker", receipt_of(mt.terms, mt.maker_sig, mt.taker_sig)))
        for tt in self.store.taker_trades():
            if tt.state is TakerState.DONE:
                out.append(("taker", receipt(tt)))
        out.sort(key=lambda r: (r[1].created_at, r[1].id))
        return out

    def pending_trades(self) -> list[TakerTrade]:
        return list(self.open_takes.values())


def _cannot_persist() -> NoReturn:
    # the desk already holds a decision the disk does not: answering anyone now could make maker and
    # taker disagree after a restart. Stop at once; the disk is the truth.
    log.critical("cannot persist a decision; stopping the peer", exc_info=True)
    os._exit(70)
