"""Quantities as apimachinery's resource.Quantity reads, rounds and prints them."""

from __future__ import annotations

import pytest

from berth.api.quantity import (
    BINARY_SI,
    DECIMAL_EXPONENT,
    DECIMAL_SI,
    QuantityError,
    int_value,
    milli_value,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("0", "0"),
        ("1", "1"),
        ("1.5", "1500m"),
        ("1500m", "1500m"),
        ("1000m", "1"),
        ("0.5m", "500u"),
        ("1.5Gi", "1536Mi"),
        ("100Mi", "100Mi"),
        ("0.5Ki", "512"),  # binary under 1Ki prints as decimal
        ("1.5Ki", "1536"),
        ("1Ki", "1Ki"),
        ("2048Ki", "2Mi"),
        ("1e3", "1e3"),
        ("1E-3", "1e-3"),
        ("12e6", "12e6"),
        ("1k", "1k"),
        ("1000k", "1M"),
        ("-1.5", "-1500m"),
        ("+7", "7"),
        (".5", "500m"),
        ("1.G", "1G"),
        ("0.1n", "1n"),  # more precise than nano: rounded up
        ("1000E", "1000E"),  # past the largest suffix: no precision is dropped
        (128, "128"),
        (0.25, "250m"),
    ],
)
def test_canonical_form(text: str | int | float, canonical: str) -> None:
    assert parse_quantity(text).canonical() == canonical


def test_formats() -> None:
    assert parse_quantity("1Mi").format == BINARY_SI
    assert parse_quantity("1M").format == DECIMAL_SI
    assert parse_quantity("1e6").format == DECIMAL_EXPONENT
    assert parse_quantity("0.5n").format == DECIMAL_SI


def test_values_round_up_away_from_zero() -> None:
    assert milli_value("250m") == 250
    assert milli_value("1.5") == 1500
    assert milli_value(2) == 2000
    assert milli_value("0.1m") == 1  # some CPU is never none
    assert milli_value("1n") == 1
    assert int_value("128Mi") == 128 * 2**20
    assert int_value("1G") == 10**9
    assert int_value("1.5") == 2
    assert int_value("100m") == 1
    assert int_value("-1.5") == -2
    assert parse_quantity("2.5Gi").value() == 5 * 2**29
    assert parse_quantity("3").scaled_value(3) == 1  # in thousands, rounded up


def test_binary_values_are_capped_at_int64() -> None:
    assert int_value("9Ei") == 2**63 - 1


@pytest.mark.parametrize(
    "bad",
    ["", "12 apples", "1x", "1e", "Mi", "1Mi5", " 1", "1.5.5", "--1", "1e1001", "9" * 200, True],
)
def test_bad_quantities(bad: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(bad)
