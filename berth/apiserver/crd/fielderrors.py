"""Field errors worded as apimachinery's ``field.Error`` renders them.

The values in messages follow Go's rendering: strings quoted with double quotes, numbers and
booleans bare, anything else as compact JSON (upstream marshals complex values to JSON).
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from berth.apiserver.errors import FieldError


def go_float(x: float) -> str:
    """``x`` as Go's ``%v`` prints a float64: the shortest digits, in exponent form from
    1e6 up or below 1e-4 (``1e+06``), as strconv's 'g' with the shortest precision."""
    if math.isnan(x) or math.isinf(x):
        return {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}[repr(x)]
    if x == 0:
        return "0"
    d = Decimal(repr(x))
    sign, digits, exp = d.as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits)).rstrip("0") or "0"
    point = len(digits) + exp  # position of the decimal point in ``digits``
    e = point - 1
    neg = "-" if sign else ""
    if e < -4 or e >= 6:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        return f"{neg}{mant}e{'+' if e >= 0 else '-'}{abs(e):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text}"
    if point >= len(text):
        return f"{neg}{text}{'0' * (point - len(text))}"
    return f"{neg}{text[:point]}.{text[point:]}"


def go_value(v: Any) -> str:
    """A bad value as ``field.Error.ErrorBody`` prints it."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=str)


def _with_detail(body: str, detail: str) -> str:
    return f"{body}: {detail}" if detail else body


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("FieldValueRequired", path, _with_detail("Required value", detail))


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError("FieldValueForbidden", path, _with_detail("Forbidden", detail))


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(
        "FieldValueInvalid", path, _with_detail(f"Invalid value: {go_value(value)}", detail)
    )


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(
        "FieldValueTypeInvalid", path, _with_detail(f"Invalid value: {go_value(value)}", detail)
    )


def not_supported(path: str, value: Any, supported: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(json.dumps(s) for s in supported) if supported else ""
    return FieldError(
        "FieldValueNotSupported",
        path,
        _with_detail(f"Unsupported value: {go_value(value)}", detail),
    )


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("FieldValueDuplicate", path, f"Duplicate value: {go_value(value)}")


def too_long(path: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(
        "FieldValueTooLong", path, f"Too long: may not be more than {max_length} {unit}"
    )


def too_many(path: str, actual: int, max_items: int) -> FieldError:
    unit = "item" if max_items == 1 else "items"
    return FieldError(
        "FieldValueTooMany", path, f"Too many: {actual}: must have at most {max_items} {unit}"
    )


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def key(path: str, k: str) -> str:
    """``field.Path.Key``: ``properties[spec]``."""
    return f"{path}[{k}]"


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"
