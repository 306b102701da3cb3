"""The maker's desk: its own offers, reservations and trades. Pure: no I/O, time is passed in.

Every method runs to completion synchronously, so a take, a confirm, a cancel and an expiry are
serialised by construction; the caller persists the returned ``Effects`` before it answers anyone.
See trade.py for the protocol and offer.py for the offer lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from . import errors as E
from .errors import OTCError
from .identity import Identity, verify
from .messages import Confirm, Head, Offer, Take, Terms, TradeReply
from .money import CONTEXT, D, canonical, get_pair, parse_decimal
from .offer import CLOSED, OPEN, DigestCache, OfferEvent, close, fill, is_live, offer_id
from .signing import is_signed, sign, signing_bytes
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


class Desk:
    def __init__(
        self,
        identity: Identity,
        name: str,
        *,
        seq: int = 0,
        reserve_ms: int = 10_000,
        max_open_offers: int = 100_000,
    ) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.name = name
        self.seq = seq  # the last seq this maker signed; never reused, never goes back
        self.reserve_ms = reserve_ms
        self.max_open_offers = max_open_offers
        self.offers: dict[str, Offer] = {}
        self.trades: dict[str, MakerTrade] = {}
        # what timers act on, so a tick costs what is pending, not the whole history
        self._live: dict[str, MakerTrade] = {}  # reservations awaiting a confirm, by trade id
        self._expiring: dict[str, Offer] = {}  # open offers with an expiry, by offer id
        self.reserved: dict[str, Decimal] = {}  # offer id -> amount held by live reservations
        self._digests = DigestCache()  # of the open offers, as heads announce it
        self._open_count = 0

    # restore -----------------------------------------------------------------------------------------
    def load(self, offers: list[Offer], trades: list[MakerTrade], seq: int) -> None:
        for offer in offers:
            self._store(offer)
        for trade in trades:
            self.trades[trade.terms.id] = trade
            if trade.state is MakerState.RESERVED:
                self._live[trade.terms.id] = trade
                oid = trade.terms.offer_id
                self.reserved[oid] = self.reserved.get(oid, Decimal(0)) + D(trade.terms.amount)
        self.seq = max([self.seq, seq, *(o.seq for o in offers)])  # never goes back

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
        effects = self._close(offer, OfferEvent.CANCEL, f"{E.ERR_OFFER_CLOSED}: the offer was cancelled")
        return self.offers[oid], effects

    def tick(self, now: int) -> Effects:
        """Release reservations past their deadline and close offers past their expiry."""
        effects = Effects()
        for trade in list(self._live.values()):
            if now >= trade.reserved_until:
                effects.trades.append(
                    self._release(
                        trade, MakerEvent.DEADLINE, f"{E.ERR_RESERVATION_EXPIRED}: not confirmed in time"
                    )
                )
        for offer in list(self._expiring.values()):
            if offer.expires_at is not None and now >= offer.expires_at:
                effects.extend(
                    self._close(offer, OfferEvent.EXPIRE, f"{E.ERR_OFFER_EXPIRED}: the offer expired")
                )
        return effects

    def next_deadline(self) -> int | None:
        times = [t.reserved_until for t in self._live.values()]
        times += [o.expires_at for o in self._expiring.values() if o.expires_at is not None]
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
            raise OTCError(
                E.ERR_INSUFFICIENT_REMAINING,
                f"only {canonical(available)} of {offer.remaining} is available"
                + (" (the rest is reserved by other takers)" if available < remaining else ""),
            )
        if offer.min_fill is not None and amount < D(offer.min_fill) and amount != remaining:
            raise OTCError(E.ERR_BELOW_MIN_FILL, f"minimum fill is {offer.min_fill}")
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
        )
        self.trades[req.trade_id] = trade
        self._live[req.trade_id] = trade
        self.reserved[offer.id] = CONTEXT.add(self.reserved.get(offer.id, Decimal(0)), amount)
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
            effects.trades.append(
                self._release(
                    trade, MakerEvent.DEADLINE, f"{E.ERR_RESERVATION_EXPIRED}: not confirmed in time"
                )
            )
            effects.extend(self.tick(now))
            raise Refusal(E.ERR_RESERVATION_EXPIRED, "confirmation arrived after the deadline", effects)
        if not is_live(offer, now):
            effects.extend(self._close(offer, OfferEvent.EXPIRE, f"{E.ERR_OFFER_EXPIRED}: the offer expired"))
            raise Refusal(E.ERR_OFFER_EXPIRED, "offer expired before the confirmation", effects)
        trade.state = maker_next(trade.state, MakerEvent.CONFIRM)
        self._live.pop(trade.terms.id, None)
        trade.taker_sig = req.taker_sig
        amount = D(trade.terms.amount)
        self._unreserve(offer.id, amount)
        self.seq += 1
        filled = sign(self.identity, fill(offer, amount, self.seq))
        self._store(filled)
        effects.offers.append(filled)
        effects.trades.append(trade)
        return self._reply(trade), effects

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

    def _close(self, offer: Offer, event: OfferEvent, reason: str) -> Effects:
        effects = Effects()
        for trade in list(self._live.values()):
            if trade.terms.offer_id == offer.id:
                effects.trades.append(self._release(trade, MakerEvent.OFFER_CLOSED, reason))
        self.seq += 1
        closed = sign(self.identity, close(offer, event, self.seq))
        self._store(closed)
        effects.offers.append(closed)
        return effects

    def _release(self, trade: MakerTrade, event: MakerEvent, reason: str) -> MakerTrade:
        trade.state = maker_next(trade.state, event)
        trade.reason = reason
        self._live.pop(trade.terms.id, None)
        self._unreserve(trade.terms.offer_id, D(trade.terms.amount))
        return trade

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
        if offer.status == OPEN and offer.expires_at is not None:
            self._expiring[offer.id] = offer
        else:
            self._expiring.pop(offer.id, None)


def _released(trade: MakerTrade) -> OTCError:
    """The refusal a released trade answers with: why it was released (``reason`` is ``ERR_X: why``)."""
    code, _, why = (trade.reason or f"{E.ERR_RESERVATION_EXPIRED}: released").partition(": ")
    return OTCError(code, f"trade was released: {why}")


class Refusal(OTCError):
    """A refusal that still changed state (a late confirm releases its reservation): persist, then refuse."""

    def __init__(self, code: str, message: str, effects: Effects) -> None:
        super().__init__(code, message)
        self.effects = effects
