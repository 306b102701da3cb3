"""Exact money: trading pairs, their precision and bounds, and decimal parsing.

Amounts and prices are ``Decimal`` in memory and canonical decimal strings on the wire ("8000.5", never
"8000.50", "8.0005E+3" or a JSON number), so a signed message has exactly one byte representation.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import msgspec

from .errors import ERR_UNKNOWN_PAIR, OTCError

# canonical non-negative decimal: no sign, no exponent, no leading zeros, no trailing fractional zeros
CANONICAL = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{0,17}[1-9])?$"
Money = Annotated[str, msgspec.Meta(pattern=CANONICAL, max_length=40)]

CONTEXT = decimal.Context(prec=50, traps=[decimal.InvalidOperation, decimal.Overflow, decimal.DivisionByZero])


@dataclass(frozen=True, slots=True)
class Pair:
    symbol: str
    base: str
    quote: str
    amount_places: int
    price_places: int
    max_amount: Decimal
    max_price: Decimal

    @property
    def amount_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.amount_places)


PAIRS: dict[str, Pair] = {
    p.symbol: p
    for p in (
        Pair("BTC/USD", "BTC", "USD", 8, 2, Decimal(21_000_000), Decimal(100_000_000)),
        Pair("BTC/EUR", "BTC", "EUR", 8, 2, Decimal(21_000_000), Decimal(100_000_000)),
        Pair("BTC/USDT", "BTC", "USDT", 8, 2, Decimal(21_000_000), Decimal(100_000_000)),
        Pair("ETH/BTC", "ETH", "BTC", 8, 8, Decimal(200_000_000), Decimal(1_000)),
        Pair("ETH/USD", "ETH", "USD", 8, 2, Decimal(200_000_000), Decimal(10_000_000)),
    )
}
DEFAULT_PAIR = "BTC/USD"


def get_pair(symbol: Any) -> Pair:
    pair = PAIRS.get(symbol) if isinstance(symbol, str) else None
    if pair is None:
        raise OTCError(ERR_UNKNOWN_PAIR, f"unknown pair {symbol!r}; known: {', '.join(PAIRS)}")
    return pair


def canonical(value: Decimal) -> str:
    """The one string form of a finite decimal: '100', '0.5', '8000.25'."""
    text = format(value.normalize(CONTEXT), "f")
    return "0" if text in ("-0", "0") else text


def parse_decimal(
    value: Any, *, code: str, field: str, places: int, maximum: Decimal, allow_zero: bool = False
) -> Decimal:
    """Parse an input decimal strictly: a string (or int), finite, positive, at most ``places``
    fractional digits, at most ``maximum``. Floats are refused: they are not exact."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise OTCError(code, f"{field} must be a decimal string, got {type(value).__name__}")
    if isinstance(value, str) and (not value or len(value) > 40 or value != value.strip()):
        raise OTCError(code, f"{field} must be a decimal string like '1.5', got {value!r}")
    try:
        number = Decimal(value)
    except (decimal.InvalidOperation, ValueError):
        raise OTCError(code, f"{field} is not a number: {value!r}") from None
    if not number.is_finite():
        raise OTCError(code, f"{field} must be finite, got {value!r}")
    if number < 0 or (number == 0 and not allow_zero):
        raise OTCError(code, f"{field} must be positive, got {value!r}")
    if number > maximum:
        raise OTCError(code, f"{field} {value} exceeds the maximum {canonical(maximum)}")
    exponent = number.normalize(CONTEXT).as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > places:
        raise OTCError(code, f"{field} {value} has more than {places} decimal places")
    return Decimal(canonical(number))


def D(text: str) -> Decimal:
    """A wire decimal (already validated as canonical) as a Decimal."""
    return Decimal(text)
