"""The one error type of the exchange: a stable ``ERR_*`` code plus a human message.

Codes travel unchanged through RPC replies and the control API, so a refusal reads the same wherever
it surfaces.
"""

from __future__ import annotations


class OTCError(Exception):
    def __init__(self, code: str, message: str) -> None:
        assert code.startswith("ERR_"), code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# input
ERR_INVALID_PAYLOAD = "ERR_INVALID_PAYLOAD"
ERR_INVALID_AMOUNT = "ERR_INVALID_AMOUNT"
ERR_INVALID_PRICE = "ERR_INVALID_PRICE"
ERR_INVALID_SIDE = "ERR_INVALID_SIDE"
ERR_INVALID_TTL = "ERR_INVALID_TTL"
ERR_UNKNOWN_PAIR = "ERR_UNKNOWN_PAIR"
ERR_BAD_SIGNATURE = "ERR_BAD_SIGNATURE"
ERR_INVALID_OFFER = "ERR_INVALID_OFFER"
# offers and trades
ERR_OFFER_NOT_FOUND = "ERR_OFFER_NOT_FOUND"
ERR_OFFER_CLOSED = "ERR_OFFER_CLOSED"
ERR_OFFER_EXPIRED = "ERR_OFFER_EXPIRED"
ERR_NOT_MAKER = "ERR_NOT_MAKER"
ERR_INSUFFICIENT_REMAINING = "ERR_INSUFFICIENT_REMAINING"
ERR_BELOW_MIN_FILL = "ERR_BELOW_MIN_FILL"
ERR_PRICE_CHANGED = "ERR_PRICE_CHANGED"
ERR_SELF_TRADE = "ERR_SELF_TRADE"
ERR_TRADE_NOT_FOUND = "ERR_TRADE_NOT_FOUND"
ERR_TRADE_ID_CONFLICT = "ERR_TRADE_ID_CONFLICT"
ERR_RESERVATION_EXPIRED = "ERR_RESERVATION_EXPIRED"
ERR_TOO_MANY_OFFERS = "ERR_TOO_MANY_OFFERS"
ERR_MAKER_UNREACHABLE = "ERR_MAKER_UNREACHABLE"
ERR_TRADE_PENDING = "ERR_TRADE_PENDING"
ERR_PEER_NOT_FOUND = "ERR_PEER_NOT_FOUND"
ERR_AMBIGUOUS_PEER = "ERR_AMBIGUOUS_PEER"
ERR_AMBIGUOUS_ID = "ERR_AMBIGUOUS_ID"
ERR_INVALID_MESSAGE = "ERR_INVALID_MESSAGE"
ERR_NOT_READY = "ERR_NOT_READY"  # a peer still joining does not serve its (partial) book
ERR_BUSY = "ERR_BUSY"  # a bounded budget (limits.py) is spent for now: ask again later
