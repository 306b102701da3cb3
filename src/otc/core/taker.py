"""The taker's side of a trade, pure: builds the signed requests and checks the maker's answers.

The adapter persists the ``TakerTrade`` before sending each request, sends ``next_request(trade)``,
and feeds the answer back through ``on_reply`` or ``on_refusal``. Only the maker's signed refusal of
that very request is a final "no"; anything else (a lost message, a timeout, the maker down, an
unsigned error from whoever answered on the maker's name) changes nothing: the same request is simply
sent again later, which the maker answers idempotently. See trade.py for the state table.
"""

from __future__ import annotations

from decimal import Decimal

import msgspec

from . import errors as E
from .errors import OTCError
from .identity import Identity, verify
from .messages import Confirm, Offer, Receipt, Take, TradeRefusal, TradeReply
from .money import canonical, get_pair, parse_decimal
from .signing import is_signed, receipt_of, request_digest, sign, signing_bytes
from .trade import TakerEvent, TakerState, TakerTrade, taker_next


class Taker:
    def __init__(self, identity: Identity, name: str) -> None:
        self.identity = identity
        self.peer_id = identity.peer_id
        self.name = name

    def new_trade(self, offer: Offer, amount: object, trade_id: str, now: int) -> TakerTrade:
        pair = get_pair(offer.pair)
        amt: Decimal = parse_decimal(
            amount, code=E.ERR_INVALID_AMOUNT, field="amount", places=pair.amount_places,
            maximum=pair.max_amount,
        )  # fmt: skip
        if offer.maker == self.peer_id:
            raise OTCError(E.ERR_SELF_TRADE, "you cannot take your own offer")
        take = sign(
            self.identity,
            Take(
                trade_id=trade_id,
                offer_id=offer.id,
                amount=canonical(amt),
                price=offer.price,
                taker=self.peer_id,
                taker_name=self.name,
                ts=now,
            ),
        )
        return TakerTrade(
            take=take,
            maker=offer.maker,
            side=offer.side,
            pair=offer.pair,
            state=TakerState.REQUESTED,
            updated_at=now,
        )

    def next_request(self, trade: TakerTrade) -> Take | Confirm | None:
        if trade.state is TakerState.REQUESTED:
            return trade.take
        if trade.state is TakerState.RESERVED:
            assert trade.taker_sig is not None
            return Confirm(trade_id=trade.take.trade_id, taker=self.peer_id, taker_sig=trade.taker_sig)
        return None

    def on_reply(self, trade: TakerTrade, reply: TradeReply, now: int) -> TakerTrade:
        """Check the maker's answer against what we asked for, then advance. A reply that does not
        match (wrong terms, bad signature) is refused: we never sign or record terms we did not ask."""
        t, take = reply.terms, trade.take
        if (
            t.id != take.trade_id
            or t.offer_id != take.offer_id
            or t.amount != take.amount
            or t.price != take.price
            or t.taker != self.peer_id
            or t.maker != trade.maker
            or t.side != trade.side
            or t.pair != trade.pair
        ):
            raise OTCError(E.ERR_INVALID_MESSAGE, "maker answered with terms we did not ask for")
        if trade.terms == t and trade.maker_sig == reply.maker_sig and trade.taker_sig is not None:
            own_sig = trade.taker_sig  # the very terms and signature we checked and signed before
        else:
            data = signing_bytes(t)
            if not verify(t.maker, reply.maker_sig, data):
                raise OTCError(E.ERR_BAD_SIGNATURE, "maker signature does not match the terms")
            own_sig = self.identity.sign(data)  # Ed25519 is deterministic: same sig every time
        if reply.status == "done":
            if reply.taker_sig != own_sig:
                raise OTCError(E.ERR_BAD_SIGNATURE, "receipt carries a taker signature that is not ours")
            event = TakerEvent.DONE
        else:
            event = TakerEvent.RESERVED
        return msgspec.structs.replace(
            trade,
            state=taker_next(trade.state, event),
            terms=t,
            maker_sig=reply.maker_sig,
            taker_sig=own_sig,
            updated_at=now,
        )

    def on_refusal(self, trade: TakerTrade, refusal: TradeRefusal, now: int) -> TakerTrade:
        """The maker's signed refusal of the request we are waiting on: the trade failed. Anything else
        dressed as a refusal (unsigned, signed by another key, naming another trade or another request,
        e.g. a take's refusal replayed as the answer to our confirm) raises and changes nothing."""
        request = self.next_request(trade)
        if (
            request is None
            or refusal.trade_id != trade.take.trade_id
            or refusal.taker != self.peer_id
            or refusal.maker != trade.maker
            or refusal.request != request_digest(request)
        ):
            raise OTCError(E.ERR_INVALID_MESSAGE, "a refusal that does not answer our request")
        if not is_signed(refusal):
            raise OTCError(E.ERR_BAD_SIGNATURE, "a refusal not signed by the maker")
        return msgspec.structs.replace(
            trade,
            state=taker_next(trade.state, TakerEvent.REFUSED),
            error=f"{refusal.code}: {refusal.message}",
            available=refusal.available,
            updated_at=now,
        )

    def give_up(self, trade: TakerTrade, reason: str, now: int) -> TakerTrade:
        """Abandon a take the maker never answered (only before our confirm has been sent)."""
        return msgspec.structs.replace(
            trade, state=taker_next(trade.state, TakerEvent.GAVE_UP), error=reason, updated_at=now
        )


def receipt(trade: TakerTrade) -> Receipt:
    assert trade.state is TakerState.DONE and trade.terms and trade.maker_sig and trade.taker_sig
    return receipt_of(trade.terms, trade.maker_sig, trade.taker_sig)
