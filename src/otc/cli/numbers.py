"""Numbers for people: each pair's own precision, thousands separators, rounded totals.

Only what the CLI prints goes through here; ``--json`` prints the API's exact decimal strings. Prices are
shown with their pair's precision (``8,000.00`` USD, ``0.05123000`` BTC), amounts exactly as they are,
totals rounded to the quote currency's precision. Nothing is ever cut: a column that cannot fit a number
is dropped whole (see fit.py).
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from ..core.money import CONTEXT, PAIRS, canonical

SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def places(pair: str) -> int:
    """Fractional digits of the pair's prices, and of totals in its quote currency (2 for fiat)."""
    p = PAIRS.get(pair)
    return p.price_places if p else 8


def group(text: str) -> str:
    """Thousands separators in a plain decimal string: ``1234567.5`` -> ``1,234,567.5``."""
    sign = "-" if text.startswith("-") else ""
    whole, dot, frac = text.lstrip("-").partition(".")
    return f"{sign}{int(whole):,}{dot}{frac}" if whole.isdigit() else text


def fixed(value: Decimal | str, digits: int) -> str:
    """``value`` with exactly ``digits`` fractional digits (rounded half to even), grouped."""
    exact = Decimal(value)
    shown = exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_EVEN, context=CONTEXT)
    return group(format(shown, "f"))


def price(value: str, pair: str) -> str:
    """A price in its pair's precision: ``8,000.00`` (USD), ``0.05123000`` (ETH/BTC)."""
    return fixed(value, places(pair))


def amount(value: str) -> str:
    """An amount exactly, grouped: ``1,000``, ``2.33333333``."""
    return group(value)


def total(value: Decimal | str, pair: str) -> str:
    """Quote currency (price x amount) rounded to the quote's precision: ``18,666.67``."""
    return fixed(value, places(pair))


def is_rounded(value: Decimal | str, pair: str) -> bool:
    exact = Decimal(value)
    return exact != exact.quantize(Decimal(1).scaleb(-places(pair)), rounding=ROUND_HALF_EVEN)


def product(a: str, b: str) -> Decimal:
    return CONTEXT.multiply(Decimal(a), Decimal(b))


def plain(text: str) -> str | None:
    """A number typed in scientific notation (``1e3``) as the plain decimal it means, else None."""
    if not SCIENTIFIC.match(text.strip()):
        return None
    try:
        return canonical(Decimal(text.strip()))
    except (InvalidOperation, ValueError):
        return None
