"""Exact money: strict decimal parsing, the one canonical string form, and the pair table."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otc.core import errors as E
from otc.core.errors import OTCError
from otc.core.money import CANONICAL, PAIRS, Money, canonical, get_pair, parse_decimal

BTC_USD = get_pair("BTC/USD")


def amount(value: Any) -> Decimal:
    """Parse as a BTC/USD amount (8 places, at most 21M)."""
    return parse_decimal(
        value, code=E.ERR_INVALID_AMOUNT, field="amount", places=8, maximum=BTC_USD.max_amount
    )


def price(value: Any) -> Decimal:
    """Parse as a BTC/USD price (2 places, at most 100M)."""
    return parse_decimal(value, code=E.ERR_INVALID_PRICE, field="price", places=2, maximum=BTC_USD.max_price)


def refused(parse: Any, value: Any, code: str = E.ERR_INVALID_AMOUNT) -> OTCError:
    with pytest.raises(OTCError) as info:
        parse(value)
    assert info.value.code == code, info.value
    return info.value


# --- what is refused -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1.5, 0.1, 1.0, float("nan"), float("inf")])
def test_floats_are_refused(value: float) -> None:
    refused(amount, value)
    refused(price, value, E.ERR_INVALID_PRICE)


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_refused_although_they_are_ints(value: bool) -> None:
    refused(amount, value)


@pytest.mark.parametrize("value", [None, Decimal("1.5"), b"1.5", ["1"], {"v": "1"}, object()])
def test_other_types_are_refused(value: Any) -> None:
    refused(amount, value)


@pytest.mark.parametrize("value", ["NaN", "nan", "-NaN", "sNaN", "snan"])
def test_nan_is_refused(value: str) -> None:
    refused(amount, value)


@pytest.mark.parametrize("value", ["Infinity", "-Infinity", "inf", "-inf", "Inf", "+Infinity"])
def test_infinity_is_refused(value: str) -> None:
    refused(amount, value)
    refused(price, value, E.ERR_INVALID_PRICE)


@pytest.mark.parametrize("value", ["-1", "-0.5", "-0.00000001", -1, "-1e3"])
def test_negatives_are_refused(value: Any) -> None:
    refused(amount, value)


@pytest.mark.parametrize("value", ["0", "0.0", "0.00000000", "-0", "+0", "0e5", 0])
def test_zero_is_refused_unless_allowed(value: Any) -> None:
    refused(amount, value)
    zero = parse_decimal(
        value, code=E.ERR_INVALID_AMOUNT, field="x", places=8, maximum=Decimal(1), allow_zero=True
    )
    assert zero == 0 and canonical(zero) == "0"


def test_too_many_decimal_places_is_refused() -> None:
    refused(amount, "1.123456789")  # 9 places for an 8-place amount
    refused(amount, "0.000000001")
    refused(price, "1.001", E.ERR_INVALID_PRICE)  # 3 places for a 2-place price
    refused(price, "30000.005", E.ERR_INVALID_PRICE)
    refused(price, "1e-3", E.ERR_INVALID_PRICE)  # the exponent form cannot sneak extra places in


def test_trailing_zeros_do_not_count_as_places() -> None:
    assert amount("1.1234567800") == Decimal("1.12345678")
    assert price("1.000000") == Decimal(1)
    assert canonical(price("30000.50")) == "30000.5"


def test_exactly_the_allowed_places_is_accepted() -> None:
    assert amount("0.00000001") == Decimal("0.00000001")
    assert price("0.01") == Decimal("0.01")


@pytest.mark.parametrize("value", ["21000000.00000001", "21000001", "1e8", "1E+30", "9" * 30, 10**30])
def test_absurd_amounts_are_refused(value: Any) -> None:
    refused(amount, value)


def test_maximum_itself_is_accepted() -> None:
    assert amount("21000000") == Decimal(21_000_000)
    assert amount(21_000_000) == Decimal(21_000_000)
    assert price("100000000") == Decimal(100_000_000)
    refused(price, "100000000.01", E.ERR_INVALID_PRICE)


@pytest.mark.parametrize("value", ["", " ", "\t", "\n", " 1", "1 ", " 1.5 ", "1\n", "\u00a01"])
def test_empty_and_whitespace_strings_are_refused(value: str) -> None:
    refused(amount, value)


@pytest.mark.parametrize("value", ["abc", "1.2.3", "1,5", "0x10", "1/2", "--1", "1e", "e5", ".", "$1"])
def test_non_numbers_are_refused(value: str) -> None:
    refused(amount, value)


def test_overlong_strings_are_refused() -> None:
    refused(amount, "1." + "0" * 39)  # 41 characters, numerically just 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1e2", "100"),
        ("1E2", "100"),
        ("1.5E+3", "1500"),
        ("150e-2", "1.5"),
        ("8.0005E+3", "8000.5"),
        ("1e-8", "0.00000001"),
        ("0.5e1", "5"),
    ],
)
def test_exponent_forms_are_normalised(value: str, expected: str) -> None:
    parsed = amount(value)
    assert parsed == Decimal(expected)
    assert canonical(parsed) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("5", "5"), (5, "5"), ("+5", "5"), ("05", "5"), ("0.50", "0.5")]
)
def test_accepted_inputs_come_back_canonical(value: Any, expected: str) -> None:
    assert canonical(amount(value)) == expected


def test_error_carries_code_and_message() -> None:
    err = refused(price, "1.001", E.ERR_INVALID_PRICE)
    assert "price" in err.message
    assert str(err).startswith("ERR_INVALID_PRICE: ")


def test_the_code_is_the_callers() -> None:
    with pytest.raises(OTCError) as info:
        parse_decimal("x", code=E.ERR_INVALID_PAYLOAD, field="f", places=2, maximum=Decimal(10))
    assert info.value.code == E.ERR_INVALID_PAYLOAD


# --- canonical ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("8000.50", "8000.5"),
        ("8.0005E+3", "8000.5"),
        ("100", "100"),
        ("1E+2", "100"),
        ("100.000", "100"),
        ("0.50", "0.5"),
        ("0", "0"),
        ("-0", "0"),
        ("0E-8", "0"),
        ("0.00", "0"),
        ("0.00000001", "0.00000001"),
        ("1E-8", "0.00000001"),
        ("21000000", "21000000"),
        ("2.1E+7", "21000000"),
        ("123456789.12345678", "123456789.12345678"),
    ],
)
def test_canonical_forms(value: str, expected: str) -> None:
    assert canonical(Decimal(value)) == expected
    assert re.match(CANONICAL, expected)


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(21_000_000), places=8, allow_nan=False),
    st.integers(min_value=-3, max_value=3),
)
def test_any_valid_amount_round_trips_through_its_canonical_form(value: Decimal, shift: int) -> None:
    text = canonical(value)
    assert re.match(CANONICAL, text), text
    # the same number written differently parses to the same canonical value
    spelled = f"{value.scaleb(-shift):f}e{shift}"
    if len(spelled) <= 40:
        assert canonical(amount(spelled)) == text
    assert canonical(amount(text)) == text
    assert amount(text) == value
    assert msgspec.json.decode(msgspec.json.encode(text), type=Money) == text


@pytest.mark.parametrize("text", ["8000.50", "8.0005E+3", "08000.5", "-1", "1.", ".5", "+1", "1e2", " 1"])
def test_the_wire_schema_accepts_only_canonical_strings(text: str) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(text), type=Money)


def test_the_wire_schema_refuses_json_numbers() -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b"8000.5", type=Money)


# --- pairs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "symbol", ["BTC/XYZ", "btc/usd", "BTCUSD", "", " BTC/USD", "USD/BTC", None, 1, ["BTC/USD"]]
)
def test_unknown_pair(symbol: Any) -> None:
    with pytest.raises(OTCError) as info:
        get_pair(symbol)
    assert info.value.code == E.ERR_UNKNOWN_PAIR


def test_known_pairs() -> None:
    for symbol, pair in PAIRS.items():
        assert get_pair(symbol) is pair
        assert pair.symbol == symbol == f"{pair.base}/{pair.quote}"
    assert BTC_USD.amount_places == 8 and BTC_USD.price_places == 2
    assert BTC_USD.amount_step == Decimal("0.00000001")
    assert get_pair("ETH/BTC").price_places == 8
