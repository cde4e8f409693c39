"""Validation of a custom object against its compiled schema, worded as kube-apiserver.

Upstream runs kube-openapi's validator and turns its results into field errors
(``kubeOpenAPIResultToFieldErrors``): the field is the JSON path of the value
(``spec.replicas``, ``spec.items[0].name``), the detail repeats it with ``in body``. The
checks of one value run in upstream's order: type, allOf/anyOf/oneOf/not, string, format,
number, array, enum, object.
"""

from __future__ import annotations

from typing import Any

from berth.apiserver.errors import FieldError

from . import fielderrors as fe
from . import formats
from .schema import Schema

_PY_TYPES = {bool: "boolean", str: "string", int: "integer", float: "number", list: "array"}


def json_type(v: Any) -> str:
    if isinstance(v, dict):
        return "object"
    return _PY_TYPES.get(type(v), "object")


def _types(s: Schema) -> tuple[str, ...]:
    if s.int_or_string:
        return ("integer", "string")
    return (s.type,) if s.type else ()


def _bound(x: float, value: Any) -> str:
    """A min/max bound as upstream prints it: as an integer next to an integer value."""
    if isinstance(value, int) and x == int(x):
        return str(int(x))
    return fe.go_float(x)


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``True`` is not ``1``, ``1`` is ``1.0``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _path(path: str) -> str:
    return path


def validate(schema: Schema, value: Any) -> list[FieldError]:
    """All problems of ``value`` (a whole object) against ``schema``."""
    out: list[FieldError] = []
    _validate(schema, value, "", out)
    return out


def _type_error(s: Schema, path: str, value: Any, out: list[FieldError]) -> None:
    types = _types(s)
    if value is None:
        if types and not s.nullable:
            out.append(
                fe.type_invalid(
                    path, "null", f'{path} in body must be of type {",".join(types)}: "null"'
                )
            )
        return
    actual = json_type(value)
    ok = (
        actual in types
        or (actual == "number" and "integer" in types and float(value).is_integer())
        or (actual == "integer" and "number" in types)
    )
    if types and not ok:
        out.append(
            fe.type_invalid(
                path, actual, f'{path} in body must be of type {",".join(types)}: "{actual}"'
            )
        )


def _validate(s: Schema, value: Any, path: str, out: list[FieldError]) -> None:
    _type_error(s, path, value, out)
    if value is None:
        if s.enum:
            _enum(s, value, path, out)
        return
    if s.all_of or s.any_of or s.one_of or s.not_ is not None:
        _junctors(s, value, path, out)
    if isinstance(value, str):
        _string(s, value, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(s, value, path, out)
    elif isinstance(value, list):
        _array(s, value, path, out)
    if s.enum:
        _enum(s, value, path, out)
    if isinstance(value, dict):
        _object(s, value, path, out)


def _junctors(s: Schema, value: Any, path: str, out: list[FieldError]) -> None:
    for sub in s.all_of:
        _validate(sub, value, path, out)
    if s.any_of:
        results: list[list[FieldError]] = []
        for sub in s.any_of:
            errs: list[FieldError] = []
            _validate(sub, value, path, errs)
            if not errs:
                break
            results.append(errs)
        else:
            out.append(fe.invalid(path, "", f'"{path}" must validate at least one schema (anyOf)'))
            out.extend(sorted(results, key=len)[0])
    if s.one_of:
        valid = 0
        first_failure: list[FieldError] | None = None
        for sub in s.one_of:
            errs = []
            _validate(sub, value, path, errs)
            if errs:
                first_failure = first_failure or errs
            else:
                valid += 1
        if valid != 1:
            found = "Found none valid" if valid == 0 else f"Found {valid} valid alternatives"
            out.append(
                fe.invalid(
                    path, "", f'"{path}" must validate one and only one schema (oneOf). {found}'
                )
            )
            if valid == 0 and first_failure:
                out.extend(first_failure)
    if s.not_ is not None:
        errs = []
        _validate(s.not_, value, path, errs)
        if not errs:
            out.append(fe.invalid(path, "", f'"{path}" must not validate the schema (not)'))


def _string(s: Schema, value: str, path: str, out: list[FieldError]) -> None:
    # kube-openapi reports only the first of maxLength, minLength, pattern
    if s.max_length is not None and len(value) > s.max_length:
        out.append(fe.too_long(path, s.max_length))
    elif s.min_length is not None and len(value) < s.min_length:
        out.append(
            fe.invalid(path, value, f"{path} in body should be at least {s.min_length} chars long")
        )
    elif s.regex is not None and s.regex.search(value) is None:
        out.append(fe.invalid(path, value, f"{path} in body should match '{s.pattern}'"))
    if s.format and "integer" not in _types(s) and not formats.valid(s.format, value):
        out.append(
            fe.type_invalid(
                path, value, f"{path} in body must be of type {s.format}: {fe.go_value(value)}"
            )
        )


def _number(s: Schema, value: float, path: str, out: list[FieldError]) -> None:
    if s.multiple_of is not None and s.multiple_of > 0:
        q = value / s.multiple_of
        if q != int(q):
            out.append(
                fe.invalid(
                    path,
                    value,
                    f"{path} in body should be a multiple of {_bound(s.multiple_of, value)}",
                )
            )
    if s.minimum is not None:
        too_small = value <= s.minimum if s.exclusive_minimum else value < s.minimum
        if too_small:
            rel = "greater than" if s.exclusive_minimum else "greater than or equal to"
            out.append(
                fe.invalid(
                    path, value, f"{path} in body should be {rel} {_bound(s.minimum, value)}"
                )
            )
    if s.maximum is not None:
        too_big = value >= s.maximum if s.exclusive_maximum else value > s.maximum
        if too_big:
            rel = "less than" if s.exclusive_maximum else "less than or equal to"
            out.append(
                fe.invalid(
                    path, value, f"{path} in body should be {rel} {_bound(s.maximum, value)}"
                )
            )


def _array(s: Schema, value: list[Any], path: str, out: list[FieldError]) -> None:
    if s.items is not None:
        for i, item in enumerate(value):
            _validate(s.items, item, f"{path}[{i}]", out)
    if s.min_items is not None and len(value) < s.min_items:
        out.append(
            fe.invalid(path, len(value), f"{path} in body should have at least {s.min_items} items")
        )
    if s.max_items is not None and len(value) > s.max_items:
        out.append(fe.too_many(path, len(value), s.max_items))


def _enum(s: Schema, value: Any, path: str, out: list[FieldError]) -> None:
    assert s.enum is not None
    if any(_same(value, e) for e in s.enum):
        return
    supported = [e if isinstance(e, str) else fe.go_value(e) for e in s.enum]
    out.append(fe.not_supported(path, value, supported))


def _object(s: Schema, value: dict[str, Any], path: str, out: list[FieldError]) -> None:
    n = len(value)
    if s.min_properties is not None and n < s.min_properties:
        out.append(
            fe.invalid(
                path, n, f"{path} in body should have at least {s.min_properties} properties"
            )
        )
    if s.max_properties is not None and n > s.max_properties:
        out.append(fe.too_many(path, n, s.max_properties))
    if s.additional is False:
        for k in value:
            if k not in s.properties:
                out.append(fe.invalid(path, k, f"{path}.{k} in body is a forbidden property"))
    elif isinstance(s.additional, Schema):
        for k, v in value.items():
            if k not in s.properties:
                _validate(s.additional, v, fe.child(path, k), out)
    for name, sub in s.properties.items():
        if name in value:
            _validate(sub, value[name], fe.child(path, name), out)
    for name in s.required:
        if name not in value:
            out.append(fe.required(fe.child(path, name)))
