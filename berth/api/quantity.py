"""Resource quantities (``250m``, ``64Mi``, ``1.5``, ``1e3``) with upstream's semantics.

As apimachinery's ``resource.Quantity``:

- the grammar is ``<sign>? <digits>[.<digits>] <suffix>`` where the suffix is a binary SI one
  (``Ki`` .. ``Ei``), a decimal SI one (``n``, ``u``, ``m``, ``""``, ``k``, ``M``, ``G``,
  ``T``, ``P``, ``E``) or a decimal exponent (``e3``, ``E-2``); JSON numbers are read as their
  text;
- a value more precise than a nano unit is rounded up (away from zero) to the next nano unit
  (``0.1n`` is ``1n``), and a binary SI value is capped at 2^63-1;
- :meth:`Quantity.value` and :meth:`Quantity.milli_value` round up (away from zero): a CPU
  request of ``0.1m`` is 1 millicore, ``1.5`` bytes is 2;
- :meth:`Quantity.canonical` is the canonical form the API server writes: no fractional
  digits, the largest suffix of the parsed format that loses no precision (``1.5`` is
  ``1500m``, ``1.5Gi`` is ``1536Mi``, ``0.5Ki`` is ``512``).

A quantity is held exactly, as an integer number of nano units, never as a float.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

DECIMAL_SI = "DecimalSI"
BINARY_SI = "BinarySI"
DECIMAL_EXPONENT = "DecimalExponent"

_NANO = 10**9
_MAX_INT64 = 2**63 - 1
# Inputs longer than this, or with an exponent beyond this, are refused: a bound on the work
# one parsed value can cost (upstream would build a number of that many digits).
MAX_LENGTH = 128
MAX_EXPONENT = 1000

_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9}
_DECIMAL_SUFFIXES |= {"T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {e: s for s, e in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_POWER = {p // 10: s for s, p in _BINARY_SUFFIXES.items()} | {0: ""}

_NUMBER = re.compile(r"^([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")


class QuantityError(ValueError):
    """Not a quantity."""


def _ceil_div(n: int, d: int) -> int:
    """``n / d`` rounded away from zero (``d`` > 0)."""
    q, r = divmod(abs(n), d)
    q += 1 if r else 0
    return q if n >= 0 else -q


@dataclass(frozen=True, slots=True)
class Quantity:
    """An exact quantity: ``nanos`` nano units, printed in ``format``."""

    nanos: int
    format: str = DECIMAL_SI

    def scaled_value(self, exponent: int) -> int:
        """The value in units of 10^``exponent``, rounded up away from zero."""
        shift = exponent + 9
        if shift <= 0:
            return self.nanos * int(10 ** (-shift))
        return _ceil_div(self.nanos, 10**shift)

    def value(self) -> int:
        """The value rounded up (away from zero) to an integer: bytes, pod counts, cores."""
        return self.scaled_value(0)

    def milli_value(self) -> int:
        """The value in thousandths rounded up (away from zero): CPU in millicores."""
        return self.scaled_value(-3)

    def is_zero(self) -> bool:
        return self.nanos == 0

    def canonical(self) -> str:
        """The canonical string (see the module docstring)."""
        if self.nanos == 0:
            return "0"
        if self.format == BINARY_SI and abs(self.nanos) >= 1024 * _NANO:
            whole, frac = divmod(abs(self.nanos), _NANO)
            if not frac:
                power = 0
                while whole % 1024 == 0 and power < max(_BINARY_BY_POWER):
                    whole //= 1024
                    power += 1
                sign = "-" if self.nanos < 0 else ""
                return f"{sign}{whole}{_BINARY_BY_POWER[power]}"
        # decimal: mantissa * 10^exponent with the exponent a multiple of 3 and no trailing
        # zeros beyond it (a binary value that is fractional or under 1Ki is shown so too)
        mantissa, exponent = abs(self.nanos), -9
        while mantissa % 10 == 0:
            mantissa //= 10
            exponent += 1
        while exponent % 3:
            mantissa *= 10
            exponent -= 1
        sign = "-" if self.nanos < 0 else ""
        if self.format == DECIMAL_EXPONENT:
            return f"{sign}{mantissa}" + (f"e{exponent}" if exponent else "")
        while exponent > max(_DECIMAL_BY_EXPONENT):
            mantissa *= 1000
            exponent -= 3
        return f"{sign}{mantissa}{_DECIMAL_BY_EXPONENT[exponent]}"

    def __str__(self) -> str:
        return self.canonical()


def parse_quantity(text: Any) -> Quantity:
    """Parse a quantity (a string, or a JSON number); raises :class:`QuantityError`."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise QuantityError(f"quantities must be strings or numbers, not {type(text).__name__}")
    s = text if isinstance(text, str) else _number_text(text)
    if not s or len(s) > MAX_LENGTH:
        raise QuantityError(f"invalid quantity {s[:MAX_LENGTH]!r}")
    m = _NUMBER.match(s)
    if m is None:  # pragma: no cover - the pattern matches every string
        raise QuantityError(f"invalid quantity {s!r}")
    sign, whole, frac, suffix = m.group(1), m.group(2), m.group(3) or "", m.group(4)
    if not whole and not frac and m.group(3) is None:
        raise QuantityError(f"quantities must match <number><suffix>: {s!r}")
    if suffix in _DECIMAL_SUFFIXES:
        base, exponent, fmt = 10, _DECIMAL_SUFFIXES[suffix], DECIMAL_SI
    elif suffix in _BINARY_SUFFIXES:
        base, exponent, fmt = 2, _BINARY_SUFFIXES[suffix], BINARY_SI
    elif (e := _EXPONENT.match(suffix)) is not None:
        base, exponent, fmt = 10, int(e.group(1)), DECIMAL_EXPONENT
        if abs(exponent) > MAX_EXPONENT:
            raise QuantityError(f"quantity exponent out of range: {s!r}")
    else:
        raise QuantityError(f"unable to parse quantity's suffix: {s!r}")
    # the number as digits / 10^len(frac), scaled to nano units and rounded up
    digits = int((whole or "0") + frac)
    numerator, denominator = digits * _NANO, 10 ** len(frac)
    if base == 10:
        if exponent >= 0:
            numerator *= 10**exponent
        else:
            denominator *= 10 ** (-exponent)
    else:
        numerator <<= exponent
    nanos = _ceil_div(numerator, denominator)
    if fmt == BINARY_SI:
        nanos = min(nanos, _MAX_INT64 * _NANO)
        if 0 < nanos < _NANO:
            fmt = DECIMAL_SI  # under one: shown as decimal rather than rounded
    return Quantity(-nanos if sign == "-" else nanos, fmt)


def _number_text(n: int | float) -> str:
    if isinstance(n, int):
        return str(n)
    if not math.isfinite(n):
        raise QuantityError(f"invalid quantity {n!r}")
    text = repr(n)  # shortest round-trip form, as a JSON encoder writes it
    return text.replace("e+", "e")


def quantity_errors(value: Any) -> list[str]:
    """Why ``value`` is not a quantity (empty when it is), for validation messages."""
    try:
        parse_quantity(value)
    except QuantityError as exc:
        return [str(exc)]
    return []


def milli_value(value: Any) -> int:
    """``parse_quantity(value).milli_value()``: CPU in millicores."""
    return parse_quantity(value).milli_value()


def int_value(value: Any) -> int:
    """``parse_quantity(value).value()``: memory in bytes, pod counts."""
    return parse_quantity(value).value()
