"""Requests for quote, pure: the requester's requests and the quotes it receives; the maker's incoming
requests, its firm quotes, its quoting rules and its balance across quotes. No I/O; time is passed in.

Theory of operation
-------------------
A requester signs a ``QuoteRequest`` ("I want to buy 50 BTC", valid for a few seconds) and sends it to
each live peer on that peer's own key. A maker answers with firm ``Quote``s, signed, sent to the
requester's own key only: quotes never reach the market or any book. A maker answers by hand or through
its quoting rule (a fixed price, or a spread around its own best offer, up to a maximum size), which its
own peer runs.

A quote is a private firm offer. The maker holds each quote it gives as an offer of a second desk (the
*quote desk*, ``Quoter.desk``, the same ``core.desk.Desk``), which is never published and never part of
the maker's signed heads, and which only the quote's requester may take. Quote ids are that desk's offer
ids; its seqs start at ``QUOTE_SEQ_BASE``, so they never collide with the ids of the maker's offers.
The requester accepts with the ordinary maker-authoritative handshake (trade.py): a ``take`` whose
``offer_id`` is the quote id, then a ``confirm``. So every guarantee of offers holds for quotes: the maker
reserves and fills in one synchronous step (a quote is honoured at most up to its amount, however many
accept at once), a confirm after the quote's ``valid_until`` is refused (the desk refuses a confirm once
its offer has expired), requests are idempotent by trade id, and both sides end with the same receipt.
Refusals are the desk's, renamed for quotes (``quote_refusal``).

Balance across quotes. A quoting rule may carry a balance: what the maker will still trade through
quotes on that pair and side. Fills reduce it; every open quote commits its whole remaining amount; a
new quote (by hand or by rule) is given only if ``balance - committed`` covers it. So at every moment
fills since the balance was set plus open commitments stay within it: every quote given can be honoured
in full, and however many requesters accept at once the maker is never filled beyond its balance.

Lifecycles. A request is open until ``valid_until`` (then it takes no more quotes). A quote follows the
offer state machine (offer.py): open until used up (filled) or past ``valid_until`` (expired). Both are
bounded by core/limits.py, and what a peer is sent is validated before it is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import msgspec

from . import errors as E
from . import limits as L
from .desk import Desk, Effects, Refusal
from .errors import OTCError
from .identity import Identity
from .messages import Confirm, Offer, Quote, QuoteRequest, Take, TradeRefusal, TradeReply
from .money import CONTEXT, D, canonical, get_pair, parse_decimal
from .offer import OPEN
from .ratelimit import RateLimiter
from .signing import is_signed_by, sign
from .trade import MakerState

# Quote desk seqs (hence quote ids, see offer.offer_id) live in the upper half of the seq space; a
# maker's offers would need 2**52 updates to reach them.
QUOTE_SEQ_BASE = 2**52
Side = Literal["buy", "sell"]


def opposite(side: str) -> Side:
    return "sell" if side == "buy" else "buy"


# --- shared checks ------------------------------------------------------------------------------------
def _ttl(value: Any, default: int, maximum: int, what: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        raise OTCError(E.ERR_INVALID_TTL, f"{what} must be a whole number of ms in 1..{maximum}")
    return value


def _amount(
    value: Any, pair: str, field: str = "amount", maximum: Decimal | None = None, allow_zero: bool = False
) -> Decimal:
    p = get_pair(pair)
    return parse_decimal(
        value, code=E.ERR_INVALID_AMOUNT, field=field, places=p.amount_places,
        maximum=p.max_amount if maximum is None else maximum, allow_zero=allow_zero,
    )  # fmt: skip


def _price(value: Any, pair: str, field: str = "price", allow_zero: bool = False) -> Decimal:
    p = get_pair(pair)
    return parse_decimal(
        value, code=E.ERR_INVALID_PRICE, field=field, places=p.price_places, maximum=p.max_price,
        allow_zero=allow_zero,
    )  # fmt: skip


def _check_times(created_at: int, valid_until: int, now: int, max_ttl: int, what: str) -> None:
    if created_at > now + L.MAX_CLOCK_SKEW_MS:
        raise OTCError(E.ERR_INVALID_MESSAGE, f"{what} is dated in the future")
    if valid_until <= created_at or valid_until > now + max_ttl + L.MAX_CLOCK_SKEW_MS:
        raise OTCError(E.ERR_INVALID_MESSAGE, f"{what} must be valid for 1 ms to {max_ttl} ms")


def rank(quotes: Iterable[Quote]) -> list[Quote]:
    """Best first for the requester: the lowest price when makers sell, the highest when they buy;
    then the larger amount, then the earlier quote."""
    out = list(quotes)
    out.sort(key=lambda q: (D(q.price) if q.side == "sell" else -D(q.price), -D(q.amount), q.created_at))
    return out


def firm_offer(quote: Quote) -> Offer:
    """The requester's view of a quote as the offer it takes (what ``Taker.new_trade`` reads: id, maker,
    side, pair, price). Never signed or sent: the maker holds the real one in its quote desk."""
    return Offer(
        id=quote.quote_id,
        created_seq=QUOTE_SEQ_BASE,
        maker=quote.maker,
        maker_name=quote.maker_name,
        side=quote.side,
        pair=quote.pair,
        price=quote.price,
        amount=quote.amount,
        remaining=quote.amount,
        created_at=quote.created_at,
        expires_at=quote.valid_until,
        seq=QUOTE_SEQ_BASE,
    )


# --- the requester ------------------------------------------------------------------------------------
@dataclass
class SentRequest:
    request: QuoteRequest
    quotes: dict[str, Quote] = field(default_factory=dict)  # by quote id, as received
    delivered: int | None = None  # peers the request reached (None: still being sent)
    asked: set[str] = field(default_factory=set)  # the peers it was sent to: only they may quote


class Requester:
    """Our own requests for quote and the quotes makers sent us."""

    def __init__(self, identity: Identity, name: str) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.name = name
        self.requests: dict[str, SentRequest] = {}  # open ones and the latest closed ones
        self.quotes: dict[str, Quote] = {}  # every quote of a request held above, by quote id
        rate = L.QUOTES_PER_PEER_PER_MIN
        self.limiter = RateLimiter(rate, rate, L.PEERS_TRACKED)

    def load(self, requests: Iterable[QuoteRequest], quotes: Iterable[Quote]) -> None:
        for req in requests:
            self.requests[req.quote_req_id] = SentRequest(req, delivered=0)
        for q in quotes:
            held = self.requests.get(q.quote_req_id)
            if held is not None:
                held.quotes[q.quote_id] = q
                self.quotes[q.quote_id] = q

    def new_request(
        self, *, rfq_id: str, side: Any, amount: Any, pair: Any, ttl_ms: Any, now: int
    ) -> QuoteRequest:
        """Validate raw input and sign a new request; raises ``OTCError`` and changes nothing if invalid."""
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
        symbol = get_pair(pair).symbol
        amt = _amount(amount, symbol)
        ttl = _ttl(ttl_ms, L.RFQ_DEFAULT_TTL_MS, L.RFQ_MAX_TTL_MS, "ttl_ms")
        if sum(1 for s in self.requests.values() if s.request.valid_until > now) >= L.RFQ_MAX_OPEN_OUT:
            raise OTCError(E.ERR_TOO_MANY_RFQS, f"at most {L.RFQ_MAX_OPEN_OUT} open requests for quote")
        req = sign(
            self.identity,
            QuoteRequest(
                quote_req_id=rfq_id,
                requester=self.peer_id,
                requester_name=self.name,
                side=side,
                pair=symbol,
                amount=canonical(amt),
                created_at=now,
                valid_until=now + ttl,
            ),
        )
        self.requests[rfq_id] = SentRequest(req)
        self.forget(now)
        return req

    def receive(self, q: Quote, now: int) -> bool:
        """Check a quote a maker sent us and keep it; True if new, False for a repeat. Raises
        ``OTCError`` (and keeps nothing) for anything we did not ask for or cannot trust."""
        sent = self.requests.get(q.quote_req_id)
        if sent is None or q.requester != self.peer_id or q.maker not in sent.asked:
            # (a peer we did not ask has no business quoting: this keeps strangers from filling it)
            raise OTCError(E.ERR_RFQ_NOT_FOUND, "no request for quote of ours with that id was sent to you")
        held = sent.quotes.get(q.quote_id)
        if held is not None:
            if held != q:
                raise OTCError(E.ERR_INVALID_MESSAGE, "another quote was sent under that quote id")
            return False
        req = sent.request
        if q.maker == self.peer_id:
            raise OTCError(E.ERR_SELF_TRADE, "a quote from ourselves")
        if now >= req.valid_until:
            raise OTCError(E.ERR_RFQ_EXPIRED, "the request for quote has closed")
        if now >= q.valid_until:
            raise OTCError(E.ERR_QUOTE_EXPIRED, "the quote has expired")
        _check_times(q.created_at, q.valid_until, now, L.QUOTE_MAX_TTL_MS, "quote")
        if q.pair != req.pair or q.side != opposite(req.side):
            raise OTCError(E.ERR_INVALID_MESSAGE, "the quote is for another pair or side than requested")
        _amount(q.amount, q.pair, maximum=D(req.amount))
        _price(q.price, q.pair)
        if not is_signed_by(q, q.maker):
            raise OTCError(E.ERR_BAD_SIGNATURE, "quote is not signed by its maker")
        if not self.limiter.allow(q.maker, now):
            raise OTCError(E.ERR_RATE_LIMITED, f"more than {L.QUOTES_PER_PEER_PER_MIN} quotes a minute")
        if len(sent.quotes) >= L.QUOTES_PER_RFQ:
            raise OTCError(E.ERR_TOO_MANY_QUOTES, f"at most {L.QUOTES_PER_RFQ} quotes per request")
        if sum(1 for x in sent.quotes.values() if x.maker == q.maker) >= L.QUOTES_PER_MAKER_PER_RFQ:
            raise OTCError(E.ERR_TOO_MANY_QUOTES, f"at most {L.QUOTES_PER_MAKER_PER_RFQ} quotes per maker")
        sent.quotes[q.quote_id] = q
        self.quotes[q.quote_id] = q
        return True

    def acceptable(self, quote_id: str, now: int) -> Quote:
        """The quote to accept, if it can still be (the maker decides the rest)."""
        q = self.quotes.get(quote_id)
        if q is None:
            raise OTCError(E.ERR_QUOTE_NOT_FOUND, f"no quote {quote_id} was sent to us")
        if now >= q.valid_until:
            raise OTCError(E.ERR_QUOTE_EXPIRED, "the quote has expired")
        return q

    def forget(self, now: int, keep: int = L.QUOTES_KEEP_CLOSED) -> None:
        """Bound memory: open requests stay, and the latest ``keep`` closed ones (the store has all)."""
        closed = [s for s in self.requests.values() if s.request.valid_until <= now]
        if len(closed) > keep:
            for s in sorted(closed, key=lambda s: s.request.created_at)[: len(closed) - keep]:
                del self.requests[s.request.quote_req_id]
                for qid in s.quotes:
                    self.quotes.pop(qid, None)


# --- the maker ----------------------------------------------------------------------------------------
class Rule(msgspec.Struct, kw_only=True):
    """A maker's quoting rule for one pair and side (the maker's side: ``sell`` answers requests to buy).
    ``price`` (fixed) or ``spread`` (added to our best ask when selling, taken off our best bid when
    buying) makes it answer automatically; with neither it only caps quotes made by hand. ``balance``:
    what is left to trade through quotes on this pair and side (fills reduce it; None: no cap)."""

    pair: str
    side: Side
    price: str | None = None
    spread: str | None = None
    max_size: str | None = None
    balance: str | None = None
    ttl_ms: int = L.QUOTE_DEFAULT_TTL_MS

    @property
    def automatic(self) -> bool:
        return self.price is not None or self.spread is not None


def make_rule(
    *, pair: Any, side: Any, price: Any = None, spread: Any = None, max_size: Any = None, balance: Any = None,
    ttl_ms: Any = None,
) -> Rule:  # fmt: skip
    """Validate raw input into a rule; raises ``OTCError`` on anything invalid."""
    if side not in ("buy", "sell"):
        raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
    symbol = get_pair(pair).symbol
    if price is not None and spread is not None:
        raise OTCError(E.ERR_INVALID_PRICE, "give a fixed price or a spread, not both")
    return Rule(
        pair=symbol,
        side=side,
        price=None if price is None else canonical(_price(price, symbol)),
        spread=None if spread is None else canonical(_price(spread, symbol, "spread", allow_zero=True)),
        max_size=None if max_size is None else canonical(_amount(max_size, symbol, "max_size")),
        balance=None if balance is None else canonical(_amount(balance, symbol, "balance", allow_zero=True)),
        ttl_ms=_ttl(ttl_ms, L.QUOTE_DEFAULT_TTL_MS, L.QUOTE_MAX_TTL_MS, "ttl_ms"),
    )


@dataclass
class QuoteEffects:
    """What a quoting decision changed: to persist in one transaction before anyone hears of it."""

    desk: Effects = field(default_factory=Effects)
    quotes: list[Quote] = field(default_factory=list)  # new quotes
    rules: list[Rule] = field(default_factory=list)  # rules whose balance changed

    def __bool__(self) -> bool:
        return bool(self.desk or self.quotes or self.rules)


OWN_REFUSALS = {
    E.ERR_OFFER_NOT_FOUND: E.ERR_QUOTE_NOT_FOUND,
    E.ERR_OFFER_EXPIRED: E.ERR_QUOTE_EXPIRED,
    E.ERR_INSUFFICIENT_REMAINING: E.ERR_QUOTE_USED,
}


def quote_refusal(exc: OTCError, offer: Offer | None) -> OTCError:
    """The quote desk's refusal, said of a quote: used up, expired, or not found."""
    code = OWN_REFUSALS.get(exc.code, exc.code)
    if exc.code == E.ERR_OFFER_CLOSED:
        code = E.ERR_QUOTE_USED if offer is not None and offer.status == "filled" else E.ERR_QUOTE_EXPIRED
    message = exc.message.replace("offer", "quote")
    if isinstance(exc, Refusal):
        return Refusal(code, message, effects=exc.effects, available=exc.available)
    return OTCError(code, message, available=exc.available)


class Quoter:
    """The maker's side of RFQ: requests received, quotes given (the quote desk), rules, balances."""

    def __init__(self, identity: Identity, name: str, *, reserve_ms: int = 10_000) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.name = name
        self.desk = Desk(
            identity, name, seq=QUOTE_SEQ_BASE, reserve_ms=reserve_ms, max_open_offers=L.QUOTES_MAX_OPEN
        )
        self.incoming: dict[str, QuoteRequest] = {}  # live requests from others, by id
        self.quotes: dict[str, Quote] = {}  # quotes whose offer the quote desk holds, by quote id
        self.rules: dict[tuple[str, str], Rule] = {}
        rate = L.RFQ_PER_PEER_PER_MIN
        self.limiter = RateLimiter(rate, rate, L.PEERS_TRACKED)

    def load(
        self, offers: list[Offer], trades: Any, quotes: Iterable[Quote], rules: Iterable[Rule], seq: int
    ) -> None:
        self.desk.load(offers, trades, max(seq, QUOTE_SEQ_BASE))
        held = {o.id for o in offers}
        self.quotes.update((q.quote_id, q) for q in quotes if q.quote_id in held)
        self.rules.update(((r.pair, r.side), r) for r in rules)

    # requests received ---------------------------------------------------------------------------------
    def receive(self, req: QuoteRequest, now: int) -> bool:
        """Check a request for quote and hold it while it is open; True if new, False for a repeat."""
        held = self.incoming.get(req.quote_req_id)
        if held is not None:
            if held != req:
                raise OTCError(E.ERR_INVALID_MESSAGE, "another request was sent under that id")
            return False
        if req.requester == self.peer_id:
            raise OTCError(E.ERR_SELF_TRADE, "a request for quote from ourselves")
        if now >= req.valid_until:
            raise OTCError(E.ERR_RFQ_EXPIRED, "the request for quote has closed")
        _check_times(req.created_at, req.valid_until, now, L.RFQ_MAX_TTL_MS, "request for quote")
        _amount(req.amount, req.pair)
        if not is_signed_by(req, req.requester):
            raise OTCError(E.ERR_BAD_SIGNATURE, "request is not signed by its requester")
        if not self.limiter.allow(req.requester, now):
            raise OTCError(E.ERR_RATE_LIMITED, f"more than {L.RFQ_PER_PEER_PER_MIN} requests a minute")
        self.expire(now)
        if len(self.incoming) >= L.RFQ_MAX_OPEN_IN:
            raise OTCError(E.ERR_TOO_MANY_RFQS, f"holding {L.RFQ_MAX_OPEN_IN} open requests already")
        if sum(1 for r in self.incoming.values() if r.requester == req.requester) >= L.RFQ_MAX_OPEN_PER_PEER:
            raise OTCError(
                E.ERR_TOO_MANY_RFQS, f"at most {L.RFQ_MAX_OPEN_PER_PEER} open requests per requester"
            )
        self.incoming[req.quote_req_id] = req
        return True

    def expire(self, now: int) -> None:
        for rid in [rid for rid, r in self.incoming.items() if r.valid_until <= now]:
            del self.incoming[rid]

    def open_requests(self, now: int) -> list[QuoteRequest]:
        self.expire(now)
        return sorted(self.incoming.values(), key=lambda r: r.created_at)

    # quoting ---------------------------------------------------------------------------------------------
    def committed(self, pair: str, side: str) -> Decimal:
        """What our open quotes on a pair and side could still be filled for."""
        total = Decimal(0)
        for q in self.quotes.values():
            offer = self.desk.offers.get(q.quote_id)
            if offer is not None and offer.status == OPEN and offer.pair == pair and offer.side == side:
                total = CONTEXT.add(total, D(offer.remaining))
        return total

    def available(self, pair: str, side: str) -> Decimal | None:
        """What the rule's balance leaves for new quotes (None: no balance set)."""
        rule = self.rules.get((pair, side))
        if rule is None or rule.balance is None:
            return None
        return max(Decimal(0), CONTEXT.subtract(D(rule.balance), self.committed(pair, side)))

    def quote(
        self, rfq_id: str, *, price: Any, amount: Any = None, ttl_ms: Any = None, now: int
    ) -> tuple[Quote, QuoteEffects]:
        """A firm quote for an open request (validated; raises ``OTCError`` and changes nothing if not)."""
        self.expire(now)
        req = self.incoming.get(rfq_id)
        if req is None:
            raise OTCError(E.ERR_RFQ_NOT_FOUND, f"no open request for quote {rfq_id}")
        side = opposite(req.side)
        px = _price(price, req.pair)
        amt = _amount(req.amount if amount is None else amount, req.pair, maximum=D(req.amount))
        ttl = _ttl(ttl_ms, L.QUOTE_DEFAULT_TTL_MS, L.QUOTE_MAX_TTL_MS, "ttl_ms")
        if sum(1 for q in self.quotes.values() if q.quote_req_id == rfq_id) >= L.QUOTES_PER_MAKER_PER_RFQ:
            raise OTCError(E.ERR_TOO_MANY_QUOTES, f"at most {L.QUOTES_PER_MAKER_PER_RFQ} quotes per request")
        left = self.available(req.pair, side)
        if left is not None and amt > left:
            raise OTCError(
                E.ERR_INSUFFICIENT_BALANCE,
                f"the {req.pair} {side} balance leaves {canonical(left)} for new quotes",
            )
        offer, effects = self.desk.create(
            side=side, amount=canonical(amt), price=canonical(px), pair=req.pair, now=now, ttl_ms=ttl
        )
        assert offer.expires_at is not None
        quote = sign(
            self.identity,
            Quote(
                quote_id=offer.id,
                quote_req_id=req.quote_req_id,
                maker=self.peer_id,
                maker_name=self.name,
                requester=req.requester,
                side=side,
                pair=req.pair,
                price=offer.price,
                amount=offer.amount,
                created_at=offer.created_at,
                valid_until=offer.expires_at,
            ),
        )
        self.quotes[quote.quote_id] = quote
        return quote, QuoteEffects(desk=effects, quotes=[quote])

    def auto_quote(
        self, req: QuoteRequest, now: int, own_best: Callable[[str, str], str | None]
    ) -> tuple[Quote, QuoteEffects] | None:
        """What our rule answers to a request, if it answers: ``own_best(pair, side)`` is the price of
        our best open offer on that side."""
        side = opposite(req.side)
        rule = self.rules.get((req.pair, side))
        if rule is None or not rule.automatic:
            return None
        if rule.price is not None:
            price = D(rule.price)
        else:
            best = own_best(req.pair, side)
            if best is None:
                return None
            assert rule.spread is not None
            spread = D(rule.spread)
            price = CONTEXT.add(D(best), spread) if side == "sell" else CONTEXT.subtract(D(best), spread)
        size = D(req.amount)
        if rule.max_size is not None:
            size = min(size, D(rule.max_size))
        left = self.available(req.pair, side)
        if left is not None:
            size = min(size, left)
        if size <= 0 or price <= 0:
            return None
        try:
            return self.quote(
                req.quote_req_id, price=canonical(price), amount=canonical(size), ttl_ms=rule.ttl_ms, now=now
            )
        except OTCError:
            return None  # e.g. too many open quotes: a rule stays silent rather than fail

    def set_rule(self, rule: Rule) -> None:
        if (rule.pair, rule.side) not in self.rules and len(self.rules) >= L.QUOTING_RULES_MAX:
            raise OTCError(E.ERR_INVALID_PAYLOAD, f"at most {L.QUOTING_RULES_MAX} quoting rules")
        self.rules[(rule.pair, rule.side)] = rule

    def remove_rule(self, pair: Any, side: Any) -> Rule:
        rule = self.rules.pop((get_pair(pair).symbol, side), None)
        if rule is None:
            raise OTCError(E.ERR_RULE_NOT_FOUND, f"no quoting rule for {pair} {side}")
        return rule

    # accepting: the quote desk's handshake -----------------------------------------------------------------
    def take(self, req: Take, now: int) -> tuple[TradeReply, QuoteEffects]:
        """A requester's take of a quote (the caller recalls a quote the desk has forgotten first)."""
        if req.trade_id not in self.desk.trades:  # a repeat is answered by the desk, as it was first
            quote = self.quotes.get(req.offer_id)
            if quote is None:
                raise OTCError(E.ERR_QUOTE_NOT_FOUND, f"no quote {req.offer_id} here")
            if req.taker != quote.requester:
                raise OTCError(E.ERR_QUOTE_FOREIGN, "this quote was made for another requester")
        try:
            reply, effects = self.desk.take(req, now)
        except OTCError as exc:
            raise quote_refusal(exc, self.desk.offers.get(req.offer_id)) from None
        return reply, QuoteEffects(desk=effects)

    def confirm(self, req: Confirm, now: int) -> tuple[TradeReply, QuoteEffects]:
        trade = self.desk.trades.get(req.trade_id)
        offer = None if trade is None else self.desk.offers.get(trade.terms.offer_id)
        try:
            reply, effects = self.desk.confirm(req, now)
        except OTCError as exc:
            raise quote_refusal(exc, offer) from None
        out = QuoteEffects(desk=effects)
        for done in effects.trades:
            if done.state is MakerState.DONE:
                rule = self.rules.get((done.terms.pair, done.terms.side))
                if rule is not None and rule.balance is not None:
                    left = max(Decimal(0), CONTEXT.subtract(D(rule.balance), D(done.terms.amount)))
                    rule.balance = canonical(left)
                    out.rules.append(rule)
        return reply, out

    def refusal(self, req: Take | Confirm, exc: OTCError, now: int) -> TradeRefusal:
        """The signed answer to a take or confirm of a quote we refused (as the desk signs its own)."""
        return self.desk.refusal(req, exc, now)

    def tick(self, now: int) -> QuoteEffects:
        self.expire(now)
        return QuoteEffects(desk=self.desk.tick(now))

    def recall(self, *, quote: Quote | None = None, offer: Offer | None = None, trade: Any = None) -> None:
        """Take back a forgotten quote (with its closed offer) or settled trade from the store."""
        self.desk.recall(offer=offer, trade=trade)
        if quote is not None and quote.quote_id in self.desk.offers:
            self.quotes.setdefault(quote.quote_id, quote)

    def forget(self) -> None:
        """Bound memory like the main desk: recent closed quotes and settled trades only."""
        self.desk.forget_closed(L.QUOTES_KEEP_CLOSED)
        self.desk.forget_settled(L.QUOTES_KEEP_CLOSED * 10)
        for qid in [qid for qid in self.quotes if qid not in self.desk.offers]:
            del self.quotes[qid]
