"""Requests for quote at the I/O edge: sending our requests to every live peer, receiving quotes, and as
a maker receiving requests, answering them (by hand or by rule), and honouring accepted quotes.

The pure core (``core.rfq``) decides; here every decision is persisted before anyone hears of it, as in
trading.py. The fan-out of a request goes straight to each live peer's own key (``Directory.ask``), with
bounded concurrency and a short timeout, failures ignored: it does not depend on market replication.
A quote goes to its requester's own key only. Accepting a quote is the taker's ordinary handshake
(``Trading.take_offer``); its take and confirm reach us on our own key and are routed here (``route``)
to the quote desk when they are about a quote.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from grenache import GrenacheError, RPCError

from ..core import errors as E
from ..core import limits as L
from ..core.book import Book
from ..core.desk import Desk, Refusal
from ..core.errors import OTCError
from ..core.identity import Identity
from ..core.messages import Confirm, Quote, QuoteRequest, Receipt, Take, TradeAnswer
from ..core.money import D
from ..core.offer import is_live
from ..core.rfq import QuoteEffects, Quoter, Requester, Rule, SentRequest, firm_offer, make_rule, rank
from ..core.signing import receipt_of
from ..core.trade import MakerState
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .events import Listeners
from .store import Store
from .tasks import Tasks, deadline_loop
from .trading import Trading

log = logging.getLogger("otc.node.rfq")
# failures that say nothing of the requester's answer: the quote goes again while it is valid
RETRY = frozenset({"ERR_TIMEOUT", "ERR_REQUEST_GENERIC", "ERR_UNKNOWN_SERVICE", "ERR_REPLY_EMPTY"})
TRIM_EVERY_S = 60.0


def public(msg: msgspec.Struct) -> dict[str, Any]:
    """A signed message as the API and notifications show it (without the signature and wire tag)."""
    out = msgspec.to_builtins(msg)
    assert isinstance(out, dict)
    out.pop("sig", None)
    out.pop("type", None)
    return out


class RFQ:
    def __init__(
        self,
        config: PeerConfig,
        identity: Identity,
        book: Book,
        desk: Desk,
        store: Store,
        directory: Directory,
        tasks: Tasks,
        events: Listeners,
        trading: Trading,
    ) -> None:
        self.config = config
        self.peer_id = identity.peer_id
        self.book = book
        self.desk = desk  # our public desk: our best offers (for spread rules) and its trade ids
        self.store = store
        self.directory = directory
        self.tasks = tasks
        self.events = events
        self.trading = trading
        self.requester = Requester(identity, config.name)
        self.quoter = Quoter(identity, config.name, reserve_ms=config.reserve_ms)
        # why quoting is refused now (node/recovery.py: a store that lost history signs nothing)
        self.blocked: Callable[[], OTCError | None] = lambda: None
        self._timer_event = asyncio.Event()
        tables = store.rfq
        offers = tables.open_offers()
        self.quoter.load(
            offers,
            tables.trades_to_load(L.QUOTES_KEEP_CLOSED * 10),
            tables.given([o.id for o in offers]),
            tables.rules(),
            tables.seq(),
        )
        sent = tables.sent(L.QUOTES_KEEP_CLOSED)
        self.requester.load(sent, tables.received(r.quote_req_id for r in sent))

    def start(self) -> None:
        self.tasks.loop(self._timer_loop)
        self.tasks.loop(self._trim_loop)

    # --- requester ----------------------------------------------------------------------------------
    def request(self, side: Any, amount: Any, pair: Any, ttl_ms: Any = None) -> QuoteRequest:
        """Sign and store a request for quote, and send it to every live peer in the background."""
        req = self.requester.new_request(
            rfq_id=uuid.uuid4().hex, side=side, amount=amount, pair=pair, ttl_ms=ttl_ms, now=now_ms()
        )
        self.store.rfq.save(requests=[req])
        self.tasks.spawn(self._fan_out(req))
        return req

    async def _fan_out(self, req: QuoteRequest) -> None:
        gate = asyncio.Semaphore(L.RFQ_FANOUT_CONCURRENCY)

        async def send(peer_id: str) -> bool:
            async with gate:
                try:
                    await self.directory.ask(peer_id, req, timeout=L.RFQ_SEND_TIMEOUT_S)
                    return True
                except GrenacheError as exc:  # refused (rate, full), gone, slow: its loss
                    log.debug("rfq %s to %s: %s", req.quote_req_id[:8], peer_id[:8], exc)
                    return False

        peers = [p.peer_id for p in self.book.peers(now_ms())]
        held = self.requester.requests.get(req.quote_req_id)
        if held is not None:
            held.asked.update(peers)  # before the first send: an answer may come back at once
        reached = await asyncio.gather(*(send(p) for p in peers))
        if held is not None:
            held.delivered = sum(reached)

    def on_quote(self, quote: Quote) -> dict[str, Any]:
        """A maker's quote for one of our requests, on our own key."""
        if self.requester.receive(quote, now_ms()):
            self.store.rfq.save(received=[quote])
            self.events.emit({"type": "quote", "data": public(quote)})
        return {"ok": True}

    async def accept(self, quote_id: str, amount: Any = None) -> Receipt:
        """Trade on a quote we were sent: the ordinary take/confirm handshake with its maker."""
        quote = self.requester.acceptable(self._quote_id(quote_id), now_ms())
        return await self.trading.take_offer(firm_offer(quote), amount)

    def _quote_id(self, qid: str) -> str:
        if qid in self.requester.quotes or len(qid) < 4:
            return qid
        matches = [q for q in self.requester.quotes if q.startswith(qid)]
        if len(matches) > 1:
            raise OTCError(E.ERR_AMBIGUOUS_ID, f"quote id prefix {qid!r} matches {len(matches)} quotes")
        return matches[0] if matches else qid

    # --- maker ----------------------------------------------------------------------------------------
    def on_request(self, req: QuoteRequest) -> dict[str, Any]:
        """A request for quote on our own key: hold it, tell our watchers, and let our rule answer."""
        now = now_ms()
        if self.quoter.receive(req, now):
            self.events.emit({"type": "rfq", "data": public(req)})
            answer = self.quoter.auto_quote(req, now, self._own_best)
            if answer is not None:
                quote, effects = answer
                self.commit(effects)
                self.tasks.spawn(self._deliver(quote))
        return {"ok": True}

    async def give_quote(
        self, rfq_id: str, *, price: Any, amount: Any = None, ttl_ms: Any = None
    ) -> tuple[Quote, bool]:
        """Quote by hand; returns the quote and whether its requester received it."""
        if (blocked := self.blocked()) is not None:
            raise blocked
        quote, effects = self.quoter.quote(
            self._rfq_id(rfq_id), price=price, amount=amount, ttl_ms=ttl_ms, now=now_ms()
        )
        self.commit(effects)
        return quote, await self._deliver(quote)

    def _rfq_id(self, rid: str) -> str:
        if rid in self.quoter.incoming or len(rid) < 4:
            return rid
        matches = [r for r in self.quoter.incoming if r.startswith(rid)]
        if len(matches) > 1:
            raise OTCError(E.ERR_AMBIGUOUS_ID, f"request id prefix {rid!r} matches {len(matches)} requests")
        return matches[0] if matches else rid

    async def _deliver(self, quote: Quote) -> bool:
        """Send a quote to its requester, retrying transient failures while the quote is valid."""
        backoff = 0.05
        while (left := (quote.valid_until - now_ms()) / 1000) > 0:
            try:
                await self.directory.ask(quote.requester, quote, timeout=min(self.config.rpc_timeout_s, left))
                return True
            except GrenacheError as exc:
                if isinstance(exc, RPCError) and exc.code not in RETRY:  # the requester said no
                    log.info("quote %s refused by %s: %s", quote.quote_id[:8], quote.requester[:8], exc)
                    return False
                await asyncio.sleep(min(backoff, max(0.0, left)))
                backoff = min(backoff * 2, 1.0)
        return False

    def _own_best(self, pair: str, side: str) -> str | None:
        now = now_ms()
        prices = [
            D(o.price)
            for o in self.desk.open_offers()
            if o.pair == pair and o.side == side and is_live(o, now)
        ]
        if not prices:
            return None
        best: Decimal = min(prices) if side == "sell" else max(prices)
        return str(best)

    def set_rule(self, **fields: Any) -> Rule:
        rule = make_rule(**fields)
        self.quoter.set_rule(rule)
        self.store.rfq.save(rules=[rule])
        return rule

    def remove_rule(self, pair: Any, side: Any) -> Rule:
        rule = self.quoter.remove_rule(pair, side)
        self.store.rfq.save(removed_rules=[(rule.pair, rule.side)])
        return rule

    def commit(self, effects: QuoteEffects) -> None:
        """Persist, then tell: a quote given is a promise that must survive a crash."""
        if not effects:
            return
        try:
            self.store.rfq.save(
                seq=self.quoter.desk.seq,
                offers=effects.desk.offers,
                given=effects.quotes,
                trades=effects.desk.trades,
                rules=effects.rules,
            )
        except Exception:
            log.critical("cannot persist a quoting decision; stopping the peer", exc_info=True)
            os._exit(70)
        for trade in effects.desk.trades:
            if trade.state is MakerState.DONE:
                assert trade.taker_sig is not None
                self.events.emit(
                    {"type": "trade", "receipt": receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)}
                )
        self._timer_event.set()

    # --- the quote desk's handshake, routed from our own key ---------------------------------------------
    def route(self, msg: Take | Confirm) -> TradeAnswer | None:
        """Answer a take or confirm about a quote (the reply, or a signed refusal of that very request,
        as trading.py answers about offers); None if it is about one of our offers (the caller hands it
        to trading). Trade ids are unique across both desks: a trade id one of them knows is refused by
        the other (``ERR_TRADE_ID_CONFLICT``), so a receipt's id names one trade."""
        now = now_ms()
        conflict = OTCError(E.ERR_TRADE_ID_CONFLICT, f"trade id {msg.trade_id} is taken by another request")
        if isinstance(msg, Take):
            if msg.offer_id in self.desk.offers or not self._holds_quote(msg.offer_id):
                if msg.trade_id not in self.desk.trades and self._quote_trade(msg.trade_id):
                    return self.desk.refusal(msg, conflict, now)
                return None
            if msg.trade_id not in self.quoter.desk.trades and self._public_trade(msg.trade_id):
                return self.quoter.refusal(msg, conflict, now)
        elif msg.trade_id in self.desk.trades or not self._quote_trade(msg.trade_id):
            return None
        self._recall(msg.trade_id)
        try:
            reply, effects = (
                self.quoter.take(msg, now) if isinstance(msg, Take) else self.quoter.confirm(msg, now)
            )
        except OTCError as exc:
            if isinstance(exc, Refusal):
                self.commit(QuoteEffects(desk=exc.effects))  # a late confirm still released its reservation
            return self.quoter.refusal(msg, exc, now)
        self.commit(effects)
        return reply

    def _holds_quote(self, quote_id: str) -> bool:
        if quote_id in self.quoter.desk.offers:
            return True
        offer = self.store.rfq.offer(quote_id)
        if offer is None:
            return False
        given = self.store.rfq.given([quote_id])
        self.quoter.recall(quote=given[0] if given else None, offer=offer)
        return True

    def _quote_trade(self, trade_id: str) -> bool:
        return trade_id in self.quoter.desk.trades or self.store.rfq.trade(trade_id) is not None

    def _public_trade(self, trade_id: str) -> bool:
        return trade_id in self.desk.trades or self.store.maker_trade(trade_id) is not None

    def _recall(self, trade_id: str) -> None:
        if trade_id not in self.quoter.desk.trades:
            trade = self.store.rfq.trade(trade_id)
            if trade is not None:
                offer = self.quoter.desk.offers.get(trade.terms.offer_id) or self.store.rfq.offer(
                    trade.terms.offer_id
                )
                self.quoter.recall(offer=offer, trade=trade)

    async def _timer_loop(self) -> None:
        # releases and expiries sign new states: not while trading is blocked
        await deadline_loop(
            self._timer_event,
            self.quoter.desk.next_deadline,
            lambda: self.blocked(),  # (reassigned by the peer)
            lambda now: self.commit(self.quoter.tick(now)),
        )

    async def _trim_loop(self) -> None:
        # as trading.py does for our offers: released reservations nobody can ask about go from disk too
        while True:
            await asyncio.sleep(TRIM_EVERY_S)
            self.store.rfq.delete_trades(self.quoter.desk.prune_released(now_ms()))
            self.quoter.forget()
            self.requester.forget(now_ms())

    # --- views ----------------------------------------------------------------------------------------
    def sent(self, rfq_id: str) -> SentRequest:
        """One of our requests with the quotes it got (from memory, or the store for an old one)."""
        held = self.requester.requests.get(rfq_id)
        if held is None and len(rfq_id) >= 4:
            matches = [s for r, s in self.requester.requests.items() if r.startswith(rfq_id)]
            held = matches[0] if len(matches) == 1 else None
        if held is not None:
            return held
        req = self.store.rfq.request(rfq_id)
        if req is None:
            raise OTCError(E.ERR_RFQ_NOT_FOUND, f"no request for quote {rfq_id}")
        quotes = self.store.rfq.received([rfq_id])
        return SentRequest(req, {q.quote_id: q for q in quotes}, delivered=None)

    def received(self, rfq_id: str) -> tuple[QuoteRequest, list[Quote]] | None:
        """A request we received, if still open, with the quotes we gave it."""
        req = self.quoter.incoming.get(self._rfq_id(rfq_id))
        if req is None:
            return None
        return req, self.store.rfq.given(rfq_id=req.quote_req_id)

    def given_state(self, quote: Quote) -> tuple[str, str]:
        """(status, remaining) of a quote we gave: its quote desk offer's."""
        offer = self.quoter.desk.offers.get(quote.quote_id) or self.store.rfq.offer(quote.quote_id)
        if offer is None:
            return "unknown", "0"
        status = "expired" if offer.status == "open" and not is_live(offer, now_ms()) else offer.status
        return status, offer.remaining

    def ranked(self, sent: SentRequest) -> list[Quote]:
        return rank(sent.quotes.values())

    def receipts(self) -> list[tuple[str, Receipt]]:
        """Our trades as the maker of a quote (as the requester they are among the taker trades)."""
        return [
            ("maker", receipt_of(t.terms, t.maker_sig, t.taker_sig))
            for t in self.store.rfq.done_trades()
            if t.taker_sig is not None
        ]
