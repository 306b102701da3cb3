"""The one error type of the exchange: a stable ``ERR_*`` code plus a human message.

Codes travel unchanged through RPC replies and the control API, so a refusal reads the same wherever
it surfaces.
"""

from __future__ import annotations

from decimal import Decimal


class OTCError(Exception):
    """``available``: with a refusal about an amount, how much could be had instead (a maker says so
    in its signed refusal), so a sweep can take that rather than guess."""

    def __init__(self, code: str, message: str, *, available: Decimal | None = None) -> None:
        assert code.startswith("ERR_"), code
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.available = available


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
ERR_TAKE_STALE = "ERR_TAKE_STALE"  # a take dated too far from the maker's clock: a replay, or a bad clock
ERR_TOO_MANY_RESERVATIONS = "ERR_TOO_MANY_RESERVATIONS"  # confirm (or lose) pending reservations first
ERR_TAKER_SUSPENDED = "ERR_TAKER_SUSPENDED"  # too many reservations left unconfirmed
ERR_MAKER_BUSY = "ERR_MAKER_BUSY"  # the maker holds as many reservations as it allows at all
ERR_RATE_LIMITED = "ERR_RATE_LIMITED"  # too many requests from this sender (or in all) right now
ERR_NOT_READY = "ERR_NOT_READY"  # a peer still joining does not serve its (partial) book

# --- requests for quote, settlement, notifications (issue 12) ------------------------------------------
ERR_RFQ_NOT_FOUND = "ERR_RFQ_NOT_FOUND"
ERR_RFQ_EXPIRED = "ERR_RFQ_EXPIRED"
ERR_TOO_MANY_RFQS = "ERR_TOO_MANY_RFQS"
ERR_QUOTE_NOT_FOUND = "ERR_QUOTE_NOT_FOUND"
ERR_QUOTE_EXPIRED = "ERR_QUOTE_EXPIRED"
ERR_QUOTE_USED = "ERR_QUOTE_USED"  # honoured already (up to its amount)
ERR_QUOTE_FOREIGN = "ERR_QUOTE_FOREIGN"  # the quote was made for another requester
ERR_TOO_MANY_QUOTES = "ERR_TOO_MANY_QUOTES"
ERR_INSUFFICIENT_BALANCE = "ERR_INSUFFICIENT_BALANCE"  # past the quoting rule's balance
ERR_RULE_NOT_FOUND = "ERR_RULE_NOT_FOUND"
ERR_SETTLEMENT_STEP = "ERR_SETTLEMENT_STEP"  # not a step the settlement's state allows
ERR_NOT_ENTITLED = "ERR_NOT_ENTITLED"  # the step belongs to the other party
ERR_INVALID_WEBHOOK = "ERR_INVALID_WEBHOOK"
ERR_TOO_MANY_WEBHOOKS = "ERR_TOO_MANY_WEBHOOKS"
ERR_WEBHOOK_NOT_FOUND = "ERR_WEBHOOK_NOT_FOUND"
# recovery of a peer's own history (issue 8 item 7; core/recovery.py)
ERR_RECOVERY_NEEDED = "ERR_RECOVERY_NEEDED"  # our store lost history: trading waits for `otc peer --recover`
ERR_RECOVERING = "ERR_RECOVERING"  # checking or rebuilding our history from the network: trading waits
ERR_STORE_DAMAGED = "ERR_STORE_DAMAGED"  # peer.sqlite cannot be read, or belongs to another identity
ERR_REQUEST_STALE = "ERR_REQUEST_STALE"  # a signed request dated too far from our clock, or replayed
ERR_NOT_CONNECTED = "ERR_NOT_CONNECTED"  # the peer reaches no Grape and hears no other peer: no market
ERR_BUSY = "ERR_BUSY"  # a bounded budget (limits.py) is spent for now: ask again later
