"""The trade state machines: the maker's reservation, and the taker's view of the same trade.

Theory of operation
-------------------
The maker alone decides. A taker sends a signed ``take`` (trade id chosen by the taker, amount, the
price it saw). The maker checks and *reserves* the amount in one synchronous step, so nothing can
interleave between the check and the reservation; it answers with the trade terms signed by itself and
a deadline. The taker countersigns the terms (``confirm``); if that arrives before the deadline, the
maker fills the offer and the trade is *done*: both hold a receipt with both signatures. A reservation
that is not confirmed in time, or whose offer closes first, is *released*.

Every request is idempotent by trade id: a repeated take or confirm is answered with the trade's
current state and never trades twice. The taker therefore simply repeats its last request until it
gets a definitive answer (done or a refusal), which is how maker and taker agree despite lost or
duplicated messages; the maker's record is the truth the taker converges to. Once the taker has sent
its confirm it must keep asking until it knows; before that it may give up, because without its
countersignature the maker can only ever release the reservation.

Maker side::

    state      event                                    next
    ---------  ---------------------------------------  --------
    reserved   confirm, before deadline, offer open     done
    reserved   deadline passed                          released
    reserved   offer cancelled or expired               released
    reserved   confirm, nothing held, amount gone       released   (a newcomer's reservation beyond
                                                                    what the maker holds for it)
    done / released: final.

Taker side::

    state      event (the maker's answer)               next
    ---------  ---------------------------------------  --------
    requested  reserved                                 reserved   (then send confirm)
    requested  done                                     done       (a retry found it finished)
    requested  its signed refusal of the take           failed
    requested  gave up (no answer by the deadline)      failed     (safe: only a confirm can
                                                                    make a trade done)
    reserved   reserved (duplicate)                     reserved
    reserved   done                                     done
    reserved   its signed refusal of the confirm        failed
    done       done (duplicate)                         done
    done / failed: final.
"""

from __future__ import annotations

from enum import Enum, StrEnum

import msgspec

from .errors import ERR_INVALID_MESSAGE, OTCError
from .messages import Take, Terms


class MakerState(StrEnum):
    RESERVED = "reserved"
    DONE = "done"
    RELEASED = "released"


class MakerEvent(Enum):
    CONFIRM = "confirm"
    DEADLINE = "deadline"
    OFFER_CLOSED = "offer_closed"
    LOST = "lost"  # confirmed, but nothing was held and the amount is gone: first confirm won


MAKER_TRANSITIONS: dict[tuple[MakerState, MakerEvent], MakerState] = {
    (MakerState.RESERVED, MakerEvent.CONFIRM): MakerState.DONE,
    (MakerState.RESERVED, MakerEvent.DEADLINE): MakerState.RELEASED,
    (MakerState.RESERVED, MakerEvent.OFFER_CLOSED): MakerState.RELEASED,
    (MakerState.RESERVED, MakerEvent.LOST): MakerState.RELEASED,
}


class TakerState(StrEnum):
    REQUESTED = "requested"
    RESERVED = "reserved"
    DONE = "done"
    FAILED = "failed"


class TakerEvent(Enum):
    RESERVED = "reserved"
    DONE = "done"
    REFUSED = "refused"
    GAVE_UP = "gave_up"


TAKER_TRANSITIONS: dict[tuple[TakerState, TakerEvent], TakerState] = {
    (TakerState.REQUESTED, TakerEvent.RESERVED): TakerState.RESERVED,
    (TakerState.REQUESTED, TakerEvent.DONE): TakerState.DONE,
    (TakerState.REQUESTED, TakerEvent.REFUSED): TakerState.FAILED,
    (TakerState.REQUESTED, TakerEvent.GAVE_UP): TakerState.FAILED,
    (TakerState.RESERVED, TakerEvent.RESERVED): TakerState.RESERVED,
    (TakerState.RESERVED, TakerEvent.DONE): TakerState.DONE,
    (TakerState.RESERVED, TakerEvent.REFUSED): TakerState.FAILED,
    (TakerState.DONE, TakerEvent.DONE): TakerState.DONE,
}


def maker_next(state: MakerState, event: MakerEvent) -> MakerState:
    try:
        return MAKER_TRANSITIONS[(state, event)]
    except KeyError:
        raise OTCError(ERR_INVALID_MESSAGE, f"trade is {state.value}: cannot {event.value}") from None


def taker_next(state: TakerState, event: TakerEvent) -> TakerState:
    try:
        return TAKER_TRANSITIONS[(state, event)]
    except KeyError:
        raise OTCError(ERR_INVALID_MESSAGE, f"trade is {state.value}: unexpected {event.value}") from None


class MakerTrade(msgspec.Struct, kw_only=True):
    """The maker's record of one trade (persisted before any answer leaves)."""

    take: Take
    terms: Terms
    maker_sig: str
    state: MakerState
    reserved_until: int
    taker_sig: str | None = None
    reason: str | None = None  # why it was released, as "ERR_X: why" (the code a late confirm gets)
    held: bool = True  # the amount is held for the confirm; if not, a confirm gets what is left


class TakerTrade(msgspec.Struct, kw_only=True):
    """The taker's record of one trade (persisted before each request is sent)."""

    take: Take
    maker: str
    side: str  # of the offer taken, as the taker saw it: checked against the terms before signing
    pair: str
    state: TakerState
    terms: Terms | None = None
    maker_sig: str | None = None
    taker_sig: str | None = None
    error: str | None = None  # the refusal, once failed
    available: str | None = None  # what the maker said could be had instead, with an amount refusal
    updated_at: int = 0
