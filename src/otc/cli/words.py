"""Refusals in plain words, with units, and whether a trade was made.

The peer answers ``ERR_CODE: message``; the code is the stable part (scripts test it, and it stays first
on the line), but a message written by a maker for any taker says neither the units nor what it means
for *this* take. Here each code a trader meets gets a sentence built from what the CLI knows: the offer
(from the book), the amount asked, what the maker said could be had.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..core import errors as E
from ..core import limits
from ..core.money import PAIRS
from . import numbers

NO_TRADE = "No trade was made."
UNKNOWN = "Whether a trade was made is not known yet"

Json = Mapping[str, Any]


def units(pair: str | None) -> tuple[str, str]:
    p = PAIRS.get(pair or "")
    return (p.base, p.quote) if p else ("", "")


def qty(value: str | Decimal | None, unit: str) -> str:
    if value is None:
        return "?"
    text = numbers.amount(value if isinstance(value, str) else format(value, "f"))
    return f"{text} {unit}".strip()


def whose(offer: Json | None) -> str:
    """``alice's offer 9b5e46ed``, or ``the offer`` when it is not in the book."""
    if offer is None:
        return "the offer"
    return f"{offer['maker_name']}'s offer {offer['id'][:8]} ({offer['maker'][:8]})"


def take_refusal(
    code: str,
    message: str,
    *,
    offer: Json | None = None,
    amount: str | None = None,
    available: str | None = None,
    offer_id: str = "",
) -> str:
    """What a refused take means, ending with whether a trade was made."""
    base = units(offer["pair"] if offer else None)[0]
    it = whose(offer)
    maker = offer["maker_name"] if offer else "the maker"
    asked = f"you asked for {qty(amount, base)}" if amount else "you asked for all of it"
    short = (offer["id"] if offer else offer_id)[:8]
    if code == E.ERR_INSUFFICIENT_REMAINING:
        free = available or _number(message)
        if "nothing was held" in message:
            share = f"{limits.NEW_TAKER_SHARE * 100:g} %"
            text = (
                f"another taker confirmed first: only {qty(free, base)} of {it} is still available, {asked}. "
                f"(A maker holds at most {share} of an offer for a taker it has not traded with; beyond "
                "that, the first confirm wins.)"
            )
        else:
            text = f"only {qty(free, base)} of {it} is available now, {asked}"
            if offer is not None and free is not None and Decimal(free) < Decimal(offer["remaining"]):
                held = Decimal(offer["remaining"]) - Decimal(free)
                text += (
                    f" ({qty(offer['remaining'], base)} remain; {qty(held, base)} is held for other "
                    "takers' confirms)"
                )
            text += "."
        hint = f" Take less: otc take {short} {numbers.amount(free)}" if free and Decimal(free) > 0 else ""
        return f"{text} {NO_TRADE}{hint}"
    if code == E.ERR_BELOW_MIN_FILL:
        least = offer.get("min_fill") if offer else _number(message)
        rest = f", or all that remains ({qty(offer['remaining'], base)})" if offer else ""
        return f"{it} takes at least {qty(least, base)} per take{rest}; {asked}. {NO_TRADE}"
    if code == E.ERR_OFFER_NOT_FOUND:
        return (
            f"no open offer {offer_id or short} in the book: it was filled, cancelled or expired, or its "
            f"maker has left. `otc book` shows what is open. {NO_TRADE}"
        )
    if code == E.ERR_OFFER_CLOSED:
        state = "filled" if "fill" in message else "cancelled" if "cancel" in message else "closed"
        return f"{it} was {state} before your take reached {maker}. {NO_TRADE}"
    if code == E.ERR_OFFER_EXPIRED:
        return f"{it} has expired. {NO_TRADE}"
    if code == E.ERR_SELF_TRADE:
        return f"{it} is your own: cancel it with `otc cancel {short}` instead. {NO_TRADE}"
    if code == E.ERR_PRICE_CHANGED:
        return f"{maker} says the price of {it} is not the one your peer saw. {NO_TRADE} Look again: otc book"
    if code == E.ERR_TAKE_STALE:
        return (
            f"{maker}'s clock and this machine's differ by more than "
            f"{limits.TAKE_MAX_AGE_MS // 1000} s (or the take was delayed that long): check the system "
            f"clock. {NO_TRADE}"
        )
    if code == E.ERR_TOO_MANY_RESERVATIONS:
        return (
            f"you already have takes waiting at {maker}; let them finish (a few seconds) and try again. "
            f"{NO_TRADE}"
        )
    if code == E.ERR_TAKER_SUSPENDED:
        wait = _number(message)
        when = f" for {_duration(wait)}" if wait else " for a while"
        return (
            f"{maker} refuses your takes{when}: several of your reservations there were never confirmed "
            f"(a peer stopped in the middle of takes?). {NO_TRADE}"
        )
    if code == E.ERR_MAKER_BUSY:
        return f"{maker} is handling too many takes right now; try again in a few seconds. {NO_TRADE}"
    if code == E.ERR_RATE_LIMITED:
        return f"{maker} is receiving too many requests from you; wait a moment and try again. {NO_TRADE}"
    if code == E.ERR_MAKER_UNREACHABLE:
        if "interrupted" in message:
            return f"your peer stopped before {maker} answered; nothing was confirmed, so {NO_TRADE.lower()}"
        return (
            f"{maker} did not answer in time: it has stopped or cannot be reached. Your take was never "
            f"confirmed, so {NO_TRADE.lower()}"
        )
    if code == E.ERR_TRADE_PENDING:
        trade = _hex(message)
        return (
            f"{maker} reserved {qty(amount, base) if amount else 'the amount'} for you but did not "
            f"answer your confirmation in time. {UNKNOWN}: your peer keeps asking {maker} and settles it "
            f"as soon as {maker} answers. `otc takes` shows the outcome"
            + (f" of trade {trade[:8]}." if trade else ".")
        )
    if code == E.ERR_RESERVATION_EXPIRED:
        return f"your confirmation reached {maker} after its hold had expired. {NO_TRADE}"
    if code == E.ERR_INVALID_AMOUNT:
        return f"{_amount_words(message, base)} {NO_TRADE}"
    if code == E.ERR_NOT_CONNECTED:
        return f"{message} {NO_TRADE}"
    return f"{message}. {NO_TRADE}" if not message.endswith(".") else f"{message} {NO_TRADE}"


def general(code: str, message: str, pair: str | None = None) -> str:
    """Plain words for refusals outside a take: schema jargon and bare numbers made readable."""
    base, quote = units(pair)
    if code in (E.ERR_INVALID_AMOUNT, E.ERR_INVALID_PRICE):
        return _amount_words(message, base if code == E.ERR_INVALID_AMOUNT else quote)
    if "Expected `str` of length >= 1" in message and "$.text" in message:
        return "a message needs some text"
    if "Expected `str` of length <=" in message and "$.text" in message:
        return f"a message is at most {_number(message)} characters"
    return message


def _amount_words(message: str, unit: str) -> str:
    m = re.match(r"min_fill (\S+) exceeds the maximum (\S+)", message)
    if m:
        return f"the minimum fill {qty(m[1], unit)} is more than the offer's amount {qty(m[2], unit)}."
    m = re.match(r"(amount|price|limit|min_fill) (\S+) has more than (\d+) decimal places", message)
    if m:
        what = {"min_fill": "minimum fill"}.get(m[1], m[1])
        return f"the {what} {m[2]} has more than {m[3]} decimal places ({unit or 'this pair'} allows {m[3]})."
    m = re.match(r"(amount|price|limit|min_fill) (\S+) exceeds the maximum (\S+)", message)
    if m:
        return f"the {m[1]} {m[2]} is more than the largest allowed, {qty(m[3], unit)}."
    return message if message.endswith(".") else f"{message}."


def _number(message: str) -> str | None:
    m = re.search(r"(?<![\w.])(\d+(?:\.\d+)?)(?![\w.])", message)
    return m[1] if m else None


def _hex(message: str) -> str | None:
    m = re.search(r"\b([0-9a-f]{32})\b", message)
    return m[1] if m else None


def _duration(seconds: str) -> str:
    s = int(Decimal(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s // 3600} h"


def skipped(code: str, message: str) -> str:
    """One line for an offer a sweep passed over."""
    if code == E.ERR_MAKER_UNREACHABLE:
        return "its maker does not answer"
    if code in (E.ERR_OFFER_CLOSED, E.ERR_OFFER_NOT_FOUND):
        return "gone (filled or cancelled) before we got to it"
    if code == E.ERR_INSUFFICIENT_REMAINING:
        return "taken by another taker first"
    if code == E.ERR_RESERVATION_EXPIRED:
        return "its maker's hold expired before our confirm"
    if code == E.ERR_TAKER_SUSPENDED:
        return "its maker refuses our takes for now"
    if code in (E.ERR_MAKER_BUSY, E.ERR_TOO_MANY_RESERVATIONS, E.ERR_RATE_LIMITED):
        return "its maker was too busy"
    if code == E.ERR_BELOW_MIN_FILL:
        return "its minimum fill is more than we still wanted"
    return message
