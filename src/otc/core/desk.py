"""The maker's desk: its own offers, reservations and trades. Pure: no I/O, time is passed in.

Every method runs to completion synchronously, so a take, a confirm, a cancel and an expiry are
serialised by construction; the caller persists the returned ``Effects`` before it answers anyone.
See trade.py for the protocol and offer.py for the offer lifecycle.

Reservations are free to ask for, so the desk bounds what each taker id may hold (limits.py). A taker it
has not traded with may *hold* at most a fifth of an offer (in at most two reservations) at once; beyond
that, its take is still answered with signed terms, but nothing is held for it (``held=False``): its
confirm is then filled only if the amount is still available at that moment, first confirm wins. An
honest newcomer confirms within a round trip and barely notices; a key that never confirms can keep at
most a fifth of an offer out of reach. A reservation that expires unconfirmed is a strike, and three
strikes suspend the taker for a while. What is held is published as a new state of the offer
(``reserved``), so books do not promise liquidity that is held: a new hold once it has lasted
``publish_holds_ms`` (an honest taker's confirm comes within a round trip, and its fill is published
anyway, with what is still held), a release at once. Refusals are signed (``refusal``): a taker trusts
no other "no".
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import errors as E
from . import limits
from .errors import OTCError
from .identity import Identity, verify
from .messages import Confirm, Head, Offer, Take, Terms, TradeRefusal, TradeReply
from .money import CONTEXT, D, canonical, get_pair, parse_decimal
from .offer import CLOSED, OPEN, DigestCache, OfferEvent, close, fill, hold, is_live, offer_id
from .ratelimit import RateLimiter
from .signing import is_signed, request_digest, sign, signing_bytes
from .trade import MakerEvent, MakerState, MakerTrade, maker_next

MAX_TTL_MS = 30 * 24 * 3600 * 1000


@dataclass
class Effects:
    """What a desk decision changed: to persist, then to publish (offers) or report (trades)."""

    offers: list[Offer] = field(default_factory=list)
    trades: list[MakerTrade] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.offers or self.trades)

    def extend(self, other: Effects) -> None:
        self.offers.extend(other.offers)
        self.trades.extend(other.trades)


@dataclass
class TakerRecord:
    """What a maker remembers of one taker id: whether it completes trades, and its strikes."""

    known: bool = False  # completed a trade here, with no strike since
    strikes: list[int] = field(default_factory=list)  # when its reservations expired unconfirmed
    suspended_until: int = 0
    suspensions: int = 0


class Desk:
    def __init__(
        self,
        identity: Identity,
        name: str,
        *,
        seq: int = 0,
        reserve_ms: int = 10_000,
        max_open_offers: int = 100_000,
        publish_holds_ms: int = 250,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.name = name
        self.seq = seq  # the last seq this maker signed; never reused, never goes back
        self.reserve_ms = reserve_ms
        self.max_open_offers = max_open_offers
        self.publish_holds_ms = publish_holds_ms
        self._unpublished: dict[str, int] = {}  # offer id -> since when what it holds is not published
        self.offers: dict[str, Offer] = {}
        self.trades: dict[str, MakerTrade] = {}
        # what timers act on, so a tick costs what is pending, not the whole history
        self._live: dict[str, MakerTrade] = {}  # reservations awaiting a confirm, by trade id
        self._expiring: dict[str, Offer] = {}  # open offers with an expiry, by offer id
        self.reserved: dict[str, Decimal] = {}  # offer id -> amount held by live reservations
        self._digests = DigestCache()  # of the open offers, as heads announce it
        self._open_count = 0
        self.takers: OrderedDict[str, TakerRecord] = OrderedDict()  # least recently seen first
        burst = limits.NEW_TAKER_TAKES_PER_MINUTE / 10
        self._new_takes = RateLimiter(limits.NEW_TAKER_TAKES_PER_MINUTE, burst, max_keys=1)

    # restore -----------------------------------------------------------------------------------------
    def load(self, offers: list[Offer], trades: list[MakerTrade], seq: int) -> None:
        for offer in offers:
            self._store(offer)
        for trade in sorted(trades, key=lambda t: t.terms.created_at):
            self.trades[trade.terms.id] = trade
            if trade.state is MakerState.RESERVED:
                self._live[trade.terms.id] = trade
                oid = trade.terms.offer_id
                if trade.held:
                    self.reserved[oid] = self.reserved.get(oid, Decimal(0)) + D(trade.terms.amount)
            elif trade.state is MakerState.DONE:
                self._taker(trade.terms.taker).known = True
            elif (trade.reason or "").startswith(E.ERR_RESERVATION_EXPIRED):
                self._strike(trade.terms.taker, trade.reserved_until)
        self.seq = max([self.seq, seq, *(o.seq for o in offers)])  # never goes back
        for oid, held in self.reserved.items():  # a restart: publish at the next tick what is held
            stored = self.offers.get(oid)
            if stored is not None and D(stored.reserved) != held:
                self._unpublished[oid] = 0

    # offers ------------------------------------------------------------------------------------------
    def create(
        self,
        *,
        side: Any,
        amount: Any,
        price: Any,
        pair: Any,
        now: int,
        min_fill: Any = None,
        ttl_ms: Any = None,
    ) -> tuple[Offer, Effects]:
        """Validate raw input and publish a new offer; raises ``OTCError`` and changes nothing if invalid."""
        if side not in ("buy", "sell"):
            raise OTCError(E.ERR_INVALID_SIDE, f"side must be 'buy' or 'sell', got {side!r}")
        p = get_pair(pair)
        amt = parse_decimal(
            amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=p.amount_places, maximum=p.max_amount
        )
        px = parse_decimal(
            price, code=E.ERR_INVALID_PRICE, field="price", places=p.price_places, maximum=p.max_price
        )
        mf = None
        if min_fill is not None:
            mf = parse_decimal(
                min_fill, code=E.ERR_INVALID_AMOUNT, field="min_fill", places=p.amount_places, maximum=amt
            )
        expires_at = None
        if ttl_ms is not None:
            if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) or not 0 < ttl_ms <= MAX_TTL_MS:
                raise OTCError(E.ERR_INVALID_TTL, f"ttl must be a whole number of ms in 1..{MAX_TTL_MS}")
            expires_at = now + ttl_ms
        if self._open_count >= self.max_open_offers:
            raise OTCError(E.ERR_TOO_MANY_OFFERS, f"at most {self.max_open_offers} open offers per maker")
        self.seq += 1
        offer = sign(
            self.identity,
            Offer(
                id=offer_id(self.peer_id, self.seq),
                created_seq=self.seq,
                maker=self.peer_id,
                maker_name=self.name,
                side=side,
                pair=p.symbol,
                price=canonical(px),
                amount=canonical(amt),
                remaining=canonical(amt),
                min_fill=None if mf is None else canonical(mf),
                created_at=now,
                expires_at=expires_at,
                status=OPEN,
                seq=self.seq,
            ),
        )
        self._store(offer)
        return offer, Effects(offers=[offer])

    def cancel(self, oid: str, now: int) -> tuple[Offer, Effects]:
        offer = self.offers.get(oid)
        if offer is None:
            raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no offer {oid} of yours")
        if offer.status in CLOSED:
            raise OTCError(E.ERR_OFFER_CLOSED, f"offer {oid} is already {offer.status}")
        effects = self._close(offer, OfferEvent.CANCEL, f"{E.ERR_OFFER_CLOSED}: the offer was cancelled", now)
        return self.offers[oid], effects

    def tick(self, now: int) -> Effects:
        """Release reservations past their deadline (one new state per offer they held) and close
        offers past their expiry."""
        effects = Effects()
        for offer in list(self._expiring.values()):
            if offer.expires_at is not None and now >= offer.expires_at:
                effects.extend(
                    self._close(offer, OfferEvent.EXPIRE, f"{E.ERR_OFFER_EXPIRED}: the offer expired", now)
                )
        released: set[str] = set()
        for trade in list(self._live.values()):
            if now >= trade.reserved_until:
                effects.trades.append(
                    self._release(
                        trade, MakerEvent.DEADLINE, f"{E.ERR_RESERVATION_EXPIRED}: not confirmed in time", now
                    )
                )
                if trade.held:
                    released.add(trade.terms.offer_id)
        due = {oid for oid, since in self._unpublished.items() if now - since >= self.publish_holds_ms}
        for oid in sorted(released | due):
            self._unpublished.pop(oid, None)
            state = self.offers.get(oid)
            if state is not None and state.status == OPEN and D(state.reserved) != self.reserved.get(oid, 0):
                effects.offers.append(self._restate(state))
        return effects

    def next_deadline(self) -> int | None:
        times = [t.reserved_until for t in self._live.values()]
        times += [o.expires_at for o in self._expiring.values() if o.expires_at is not None]
        times += [since + self.publish_holds_ms for since in self._unpublished.values()]
        return min(times, default=None)

    def digest(self) -> str:
        return self._digests.of(o for o in self.offers.values() if o.status == OPEN)

    @property
    def open_count(self) -> int:
        return self._open_count

    def open_offers(self) -> list[Offer]:
        return [o for o in self.offers.values() if o.status == OPEN]

    def head(self, now: int, addr: str) -> Head:
        return sign(
            self.identity,
            Head(
                maker=self.peer_id,
                name=self.name,
                addr=addr,
                head=self.seq,
                count=self._open_count,
                digest=self.digest(),
                ts=now,
            ),
        )

    # memory ------------------------------------------------------------------------------------------
    # The desk holds open offers, live reservations and recent history; the store holds everything.
    # Whoever forgets must recall: before the desk judges a take or confirm about a trade or offer it
    # no longer holds, the caller hands it the stored record (``recall``), so a retried request is
    # answered as the first one was, however old. An unknown trade id must mean a new trade.

    def forget_closed(self, keep: int = 1000) -> None:
        """Bound memory: keep only the most recent ``keep`` closed offers (the store has them all)."""
        closed = [o for o in self.offers.values() if o.status in CLOSED]
        if len(closed) > keep:
            for offer in sorted(closed, key=lambda o: o.seq)[: len(closed) - keep]:
                del self.offers[offer.id]

    def forget_settled(self, keep: int = 10_000) -> None:
        """Bound memory: keep only the most recent ``keep`` done or released trades."""
        settled = [t for t in self.trades.values() if t.state is not MakerState.RESERVED]
        if len(settled) > keep:
            for trade in sorted(settled, key=lambda t: t.terms.created_at)[: len(settled) - keep]:
                del self.trades[trade.terms.id]

    def recall(self, *, offer: Offer | None = None, trade: MakerTrade | None = None) -> None:
        """Take back a forgotten closed offer or settled trade from the store. Never overrides what the
        desk holds: its memory is newer than any record it was given."""
        if offer is not None and offer.id not in self.offers and offer.status in CLOSED:
            self.offers[offer.id] = offer
        if trade is not None and trade.terms.id not in self.trades and trade.state is not MakerState.RESERVED:
            self.trades[trade.terms.id] = trade

    # trades ------------------------------------------------------------------------------------------
    def take(self, req: Take, now: int) -> tuple[TradeReply, Effects]:
        known = self.trades.get(req.trade_id)
        if known is not None:
            if known.take != req:
                raise OTCError(
                    E.ERR_TRADE_ID_CONFLICT, f"trade id {req.trade_id} is taken by another request"
                )
            return self._reply(known), Effects()
        if not is_signed(req):
            raise OTCError(E.ERR_BAD_SIGNATURE, "take is not signed by its taker")
        if abs(now - req.ts) > limits.TAKE_MAX_AGE_MS:
            raise OTCError(
                E.ERR_TAKE_STALE,
                f"take is dated {(now - req.ts) // 1000} s from the maker's clock: a replay, or a clock "
                f"more than {limits.TAKE_MAX_AGE_MS // 1000} s off",
            )
        offer = self.offers.get(req.offer_id)
        if offer is None:
            raise OTCError(E.ERR_OFFER_NOT_FOUND, f"no offer {req.offer_id} here")
        if req.taker == self.peer_id:
            raise OTCError(E.ERR_SELF_TRADE, "you cannot take your own offer")
        if offer.status in CLOSED:
            raise OTCError(E.ERR_OFFER_CLOSED, f"offer is {offer.status}")
        if not is_live(offer, now):
            raise OTCError(E.ERR_OFFER_EXPIRED, "offer has expired")
        if req.price != offer.price:
            raise OTCError(E.ERR_PRICE_CHANGED, f"offer price is {offer.price}, not {req.price}")
        pair = get_pair(offer.pair)
        amount = parse_decimal(
            req.amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=pair.amount_places,
            maximum=pair.max_amount,
        )  # fmt: skip
        remaining = D(offer.remaining)
        available = CONTEXT.subtract(remaining, self.reserved.get(offer.id, Decimal(0)))
        if amount > available:
            raise Refusal(
                E.ERR_INSUFFICIENT_REMAINING,
                f"only {canonical(available)} of the {offer.remaining} remaining is available"
                + (" (the rest is reserved by other takers)" if available < remaining else ""),
                available=available,
            )
        if offer.min_fill is not None and amount < D(offer.min_fill) and amount != remaining:
            raise OTCError(E.ERR_BELOW_MIN_FILL, f"minimum fill is {offer.min_fill}")
        held = self._may_hold(req.taker, offer, amount, now)
        terms = Terms(
            id=req.trade_id,
            offer_id=offer.id,
            maker=self.peer_id,
            maker_name=self.name,
            taker=req.taker,
            taker_name=req.taker_name,
            side=offer.side,
            pair=offer.pair,
            price=offer.price,
            amount=canonical(amount),
            created_at=now,
        )
        trade = MakerTrade(
            take=req,
            terms=terms,
            maker_sig=self.identity.sign(signing_bytes(terms)),
            state=MakerState.RESERVED,
            reserved_until=now + self.reserve_ms,
            held=held,
        )
        self.trades[req.trade_id] = trade
        self._live[req.trade_id] = trade
        if not held:
            return self._reply(trade), Effects(trades=[trade])
        self.reserved[offer.id] = CONTEXT.add(self.reserved.get(offer.id, Decimal(0)), amount)
        self._unpublished.setdefault(offer.id, now)  # published by tick() if it outlasts a round trip
        return self._reply(trade), Effects(trades=[trade])

    def confirm(self, req: Confirm, now: int) -> tuple[TradeReply, Effects]:
        trade = self.trades.get(req.trade_id)
        if trade is None or trade.terms.taker != req.taker:
            raise OTCError(E.ERR_TRADE_NOT_FOUND, f"no trade {req.trade_id} for this taker")
        if trade.state is MakerState.DONE:
            if req.taker_sig != trade.taker_sig:
                raise OTCError(E.ERR_BAD_SIGNATURE, "confirmation does not match the trade")
            return self._reply(trade), Effects()
        if trade.state is MakerState.RELEASED:
            raise _released(trade)
        if not verify(req.taker, req.taker_sig, signing_bytes(trade.terms)):
            raise OTCError(E.ERR_BAD_SIGNATURE, "taker signature does not match the terms")
        effects = Effects()
        offer = self.offers[trade.terms.offer_id]
        if now >= trade.reserved_until:
            effects.extend(self.tick(now))  # releases this one (a strike), and whatever else is due
            raise Refusal(
                E.ERR_RESERVATION_EXPIRED, "confirmation arrived after the deadline", effects=effects
            )
        if not is_live(offer, now):
            effects.extend(
                self._close(offer, OfferEvent.EXPIRE, f"{E.ERR_OFFER_EXPIRED}: the offer expired", now)
            )
            raise Refusal(E.ERR_OFFER_EXPIRED, "offer expired before the confirmation", effects=effects)
        amount = D(trade.terms.amount)
        if not trade.held:
            # nothing was held for this taker: fill only what is still there, first confirm wins
            self._check_unheld(trade, offer, amount, effects)
        trade.state = maker_next(trade.state, MakerEvent.CONFIRM)
        self._live.pop(trade.terms.id, None)
        trade.taker_sig = req.taker_sig
        if trade.held:
            self._unreserve(offer.id, amount)
        self._taker(req.taker).known = True
        self.seq += 1
        filled = sign(self.identity, fill(offer, amount, self.seq, self.reserved.get(offer.id, Decimal(0))))
        self._store(filled)
        effects.offers.append(filled)
        effects.trades.append(trade)
        if filled.status != OPEN:  # reservations that held nothing may still be pending on it
            for other in [t for t in self._live.values() if t.terms.offer_id == offer.id]:
                reason = f"{E.ERR_OFFER_CLOSED}: the offer was filled"
                effects.trades.append(self._release(other, MakerEvent.OFFER_CLOSED, reason, now))
        return self._reply(trade), effects

    def refusal(self, req: Take | Confirm, exc: OTCError, now: int) -> TradeRefusal:
        """The signed answer to a request the desk refused: it names the exact request, so it cannot be
        forged by whoever sits in between nor passed off as the answer to another request."""
        available = exc.available
        return sign(
            self.identity,
            TradeRefusal(
                trade_id=req.trade_id,
                maker=self.peer_id,
                taker=req.taker,
                request=request_digest(req),
                code=exc.code,
                message=exc.message[:500],
                available=None if available is None else canonical(max(available, Decimal(0))),
                ts=now,
            ),
        )

    def prune_released(self, now: int) -> list[str]:
        """Forget released reservations older than ``limits.KEEP_RELEASED_MS`` (a take that old is
        refused as stale, so nothing can ask about them); returns their ids, to delete from the store."""
        cutoff = now - limits.KEEP_RELEASED_MS
        gone = [
            tid
            for tid, t in self.trades.items()
            if t.state is MakerState.RELEASED and t.reserved_until < cutoff
        ]
        for tid in gone:
            del self.trades[tid]
        return gone

    # takers ------------------------------------------------------------------------------------------
    def _taker(self, taker: str) -> TakerRecord:
        record = self.takers.get(taker)
        if record is None:
            record = self.takers[taker] = TakerRecord()
            while len(self.takers) > limits.TAKERS_TRACKED:
                self.takers.popitem(last=False)
        else:
            self.takers.move_to_end(taker)
        return record

    def _strike(self, taker: str, now: int) -> None:
        record = self._taker(taker)
        record.known = False
        record.strikes = [t for t in record.strikes if now - t < limits.STRIKE_WINDOW_MS] + [now]
        if len(record.strikes) >= limits.STRIKES_TO_SUSPEND:
            wait = min(limits.SUSPEND_MS * 2**record.suspensions, limits.MAX_SUSPEND_MS)
            record.suspended_until = now + wait
            record.suspensions += 1
            record.strikes = []

    def _may_hold(self, taker: str, offer: Offer, amount: Decimal, now: int) -> bool:
        """Whether to hold ``amount`` of ``offer`` for this taker's confirm (else the reservation holds
        nothing); refuses a taker that is suspended or has too many reservations pending."""
        record = self._taker(taker)
        if now < record.suspended_until:
            left_s = (record.suspended_until - now) // 1000
            raise OTCError(
                E.ERR_TAKER_SUSPENDED, f"too many reservations left unconfirmed: refused for {left_s} s"
            )
        if len(self._live) >= limits.MAX_LIVE_RESERVATIONS:
            raise OTCError(E.ERR_MAKER_BUSY, "too many pending reservations at this maker; try again shortly")
        mine = [t for t in self._live.values() if t.terms.taker == taker]
        here = [t for t in mine if t.terms.offer_id == offer.id]
        if record.known:
            if (
                len(here) >= limits.KNOWN_TAKER_RESERVATIONS_PER_OFFER
                or len(mine) >= limits.KNOWN_TAKER_RESERVATIONS
            ):
                raise OTCError(E.ERR_TOO_MANY_RESERVATIONS, "confirm your pending reservations first")
            return True
        if len(mine) >= limits.NEW_TAKER_RESERVATIONS:
            raise OTCError(
                E.ERR_TOO_MANY_RESERVATIONS,
                f"a taker new to this maker may have {limits.NEW_TAKER_RESERVATIONS} reservations pending",
            )
        if not self._new_takes.allow("", now):
            raise OTCError(E.ERR_MAKER_BUSY, "too many takes from new takers right now; try again shortly")
        holds = [t for t in mine if t.held]
        held_here = sum((D(t.terms.amount) for t in here if t.held), Decimal(0))
        cap = CONTEXT.multiply(D(offer.amount), limits.NEW_TAKER_SHARE)
        return len(holds) < limits.NEW_TAKER_HOLDS and CONTEXT.add(held_here, amount) <= cap

    def _check_unheld(self, trade: MakerTrade, offer: Offer, amount: Decimal, effects: Effects) -> None:
        """A confirm of a reservation that held nothing: refuse (and release it) unless the amount is
        still available and still a valid fill."""
        free = CONTEXT.subtract(D(offer.remaining), self.reserved.get(offer.id, Decimal(0)))
        if amount > free:
            code, why = E.ERR_INSUFFICIENT_REMAINING, f"only {canonical(free)} is still available"
        elif offer.min_fill is not None and amount < D(offer.min_fill) and amount != D(offer.remaining):
            code, why = E.ERR_BELOW_MIN_FILL, f"minimum fill is {offer.min_fill}"
        else:
            return
        trade.state = maker_next(trade.state, MakerEvent.LOST)
        trade.reason = f"{code}: {why}"
        self._live.pop(trade.terms.id, None)
        effects.trades.append(trade)
        raise Refusal(
            code,
            f"{why} (nothing was held for this trade, as for any taker this maker has not traded with "
            f"beyond {limits.NEW_TAKER_SHARE * 100:g} % of an offer)",
            effects=effects,
            available=max(free, Decimal(0)),
        )

    # internals ---------------------------------------------------------------------------------------
    def _reply(self, trade: MakerTrade) -> TradeReply:
        if trade.state is MakerState.RELEASED:
            raise _released(trade)
        return TradeReply(
            status="done" if trade.state is MakerState.DONE else "reserved",
            terms=trade.terms,
            maker_sig=trade.maker_sig,
            reserved_until=trade.reserved_until,
            taker_sig=trade.taker_sig,
        )

    def _close(self, offer: Offer, event: OfferEvent, reason: str, now: int) -> Effects:
        effects = Effects()
        for trade in list(self._live.values()):
            if trade.terms.offer_id == offer.id:
                effects.trades.append(self._release(trade, MakerEvent.OFFER_CLOSED, reason, now))
        self.seq += 1
        closed = sign(self.identity, close(offer, event, self.seq))
        self._store(closed)
        effects.offers.append(closed)
        return effects

    def _release(self, trade: MakerTrade, event: MakerEvent, reason: str, now: int) -> MakerTrade:
        trade.state = maker_next(trade.state, event)
        trade.reason = reason
        self._live.pop(trade.terms.id, None)
        if trade.held:
            self._unreserve(trade.terms.offer_id, D(trade.terms.amount))
        if event is MakerEvent.DEADLINE:
            self._strike(trade.terms.taker, now)
        return trade

    def _restate(self, offer: Offer) -> Offer:
        """Publish what is held of an open offer now (its ``reserved``), as its next signed state."""
        self._unpublished.pop(offer.id, None)
        self.seq += 1
        held = sign(self.identity, hold(offer, self.reserved.get(offer.id, Decimal(0)), self.seq))
        self._store(held)
        return held

    def _unreserve(self, oid: str, amount: Decimal) -> None:
        left = CONTEXT.subtract(self.reserved.get(oid, Decimal(0)), amount)
        if left > 0:
            self.reserved[oid] = left
        else:
            self.reserved.pop(oid, None)

    def _store(self, offer: Offer) -> None:
        old = self.offers.get(offer.id)
        if old is not None and old.status == OPEN:
            self._open_count -= 1
        if offer.status == OPEN:
            self._open_count += 1
        self._digests.invalidate()
        self.offers[offer.id] = offer
        if offer.status != OPEN or D(offer.reserved) == self.reserved.get(offer.id, 0):
            self._unpublished.pop(offer.id, None)  # this state says what is held: nothing to publish
        if offer.status == OPEN and offer.expires_at is not None:
            self._expiring[offer.id] = offer
        else:
            self._expiring.pop(offer.id, None)


def _released(trade: MakerTrade) -> OTCError:
    """The refusal a released trade answers with: why it was released (``reason`` is ``ERR_X: why``)."""
    code, _, why = (trade.reason or f"{E.ERR_RESERVATION_EXPIRED}: released").partition(": ")
    return OTCError(code, f"trade was released: {why}")


class Refusal(OTCError):
    """A refusal that still changed state (a late confirm releases its reservation): persist
    ``effects``, then refuse."""

    def __init__(
        self, code: str, message: str, *, effects: Effects | None = None, available: Decimal | None = None
    ) -> None:
        super().__init__(code, message, available=available)
        self.effects = effects if effects is not None else Effects()
