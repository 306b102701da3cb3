"""Second thoughts before an order that is probably a typo.

``1e3`` is a valid number, and 80000 a valid price, but typed where 1 and 8000 were meant they cost real
money. An order whose amount or price is in scientific notation, or whose price is far from the market
(more than ``FAR`` from the reference price), is shown in plain numbers and needs a yes: asked in a
terminal, ``--yes`` otherwise. An offer that would cross the book is posted, with a warning: offers are
not matched automatically, and a sweep is the way to take the other side.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

import click

from . import numbers, render

FAR = Decimal("0.10")  # more than 10 % from the market: ask first
Json = dict[str, Any]


class Output(Protocol):
    as_json: bool


class Declined(click.ClickException):
    exit_code = 1


@dataclass
class Order:
    """An offer (``price``) or a sweep (``price`` is its limit), as typed and in plain numbers."""

    side: str
    typed_amount: str
    typed_price: str
    pair: str
    sweep: bool = False
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.side = self.side.lower()
        base, quote = render.units(self.pair)
        self.amount = self._plain(self.typed_amount, base, "amount")
        self.price = self._plain(self.typed_price, quote, "limit" if self.sweep else "price")

    def _plain(self, typed: str, unit: str, what: str) -> str:
        plain = numbers.plain(typed)
        if plain is None:
            return typed
        self.notes.append(
            f"the {what} {typed} is scientific notation for {numbers.amount(plain)} {unit}".rstrip()
        )
        return plain

    def _decimal(self, text: str) -> Decimal | None:
        try:
            value = Decimal(text)
        except (InvalidOperation, ValueError):
            return None
        return value if value.is_finite() and value > 0 else None

    def describe(self) -> str:
        base, quote = render.units(self.pair)
        amount = numbers.amount(self.amount) if self._decimal(self.amount) else self.amount
        price = numbers.price(self.price, self.pair) if self._decimal(self.price) else self.price
        if not self.sweep:
            return f"{self.side} {amount} {base} at {price} {quote}"
        bound = "paying at most" if self.side == "buy" else "receiving at least"
        return f"{self.side} up to {amount} {base}, {bound} {price} {quote} each"

    def concerns(self, book: Json) -> list[str]:
        """What to confirm: scientific notation, and a price far from the market."""
        out = list(self.notes)
        price = self._decimal(self.price)
        if price is None:
            return out
        quote = render.units(self.pair)[1]
        bid = _best([o for o in book["bids"] if not o.get("mine")])  # the market: other makers
        ask = _best([o for o in book["asks"] if not o.get("mine")])
        if self.sweep:
            ref, name = (ask, "the best ask") if self.side == "buy" else (bid, "the best bid")
            if ref is None:
                return out
            worse = price > ref * (1 + FAR) if self.side == "buy" else price < ref * (1 - FAR)
            if worse:
                out.append(
                    f"the limit {numbers.price(self.price, self.pair)} {quote} is {_pct(price, ref)} "
                    f"{'above' if price > ref else 'below'} {name} ({numbers.price(str(ref), self.pair)} "
                    f"{quote}): the sweep may trade at up to that price"
                )
            return out
        if bid is not None and ask is not None:
            ref, name = (bid + ask) / 2, "the middle of the best bid and ask"
        elif bid is not None or ask is not None:
            ref = bid if bid is not None else ask
            name = "the best bid" if bid is not None else "the best ask"
        else:
            return out
        assert ref is not None
        if abs(price - ref) > ref * FAR:
            shown = numbers.price(format(ref.quantize(Decimal("1e-8")), "f"), self.pair)
            out.append(
                f"the price {numbers.price(self.price, self.pair)} {quote} is {_pct(price, ref)} "
                f"{'above' if price > ref else 'below'} the market ({shown} {quote}, {name})"
            )
        return out

    def crosses(self, book: Json) -> str | None:
        """A warning when this offer would cross other makers' offers."""
        price = self._decimal(self.price)
        if price is None or self.sweep:
            return None
        quote = render.units(self.pair)[1]
        other = [o for o in book["asks" if self.side == "buy" else "bids"] if not o.get("mine")]
        if not other:
            return None
        best = other[0]
        best_price = Decimal(best["price"])
        if (self.side == "buy" and price < best_price) or (self.side == "sell" and price > best_price):
            return None
        mine, theirs = ("bid", "ask") if self.side == "buy" else ("ask", "bid")
        sweep = "buy" if self.side == "buy" else "sell"
        return (
            f"this {mine} at {numbers.price(self.price, self.pair)} {quote} crosses {best['maker_name']}'s "
            f"{theirs} at {numbers.price(best['price'], self.pair)} {quote}. Offers are not matched "
            f"automatically: both now rest in the book. To {sweep} from the {theirs}s up to your price and "
            f"rest the remainder: otc {sweep} {self.amount} --limit {self.price} --post"
            + ("" if self.pair == "BTC/USD" else f" --pair {self.pair}")
        )


def _best(offers: list[Json]) -> Decimal | None:
    return Decimal(offers[0]["price"]) if offers else None


def _pct(price: Decimal, ref: Decimal) -> str:
    return f"{abs(price - ref) / ref * 100:.0f}%"


def check(out: Output, concerns: list[str], action: str, yes: bool) -> None:
    """Go ahead if there is nothing to confirm, or ``--yes``; else ask in a terminal, or refuse (exit 2)
    saying to add ``--yes``."""
    if not concerns or yes:
        return
    text = "; ".join(concerns)
    if sys.stdin.isatty():
        click.echo(f"Check: {text}.", err=True)
        if click.confirm(f"{action[0].upper()}{action[1:]}?", default=False, err=True):
            return
        raise Declined("Nothing was done.")
    raise click.UsageError(f"{text}. To {action} anyway, add --yes.")


def plain_number(out: Output, typed: str, what: str, yes: bool) -> str:
    """A number given in scientific notation, confirmed and in plain digits; others as typed."""
    plain = numbers.plain(typed)
    if plain is None:
        return typed
    check(
        out, [f"the {what} {typed} is scientific notation for {numbers.amount(plain)}"], f"use {plain}", yes
    )
    return plain
