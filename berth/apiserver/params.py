"""Query-string and header parsing shared by the handlers."""

from __future__ import annotations

from collections.abc import Mapping

from .errors import bad_request

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
"""Integer parameters are int64 in the API (Go ``strconv.ParseInt(v, 10, 64)``)."""


def parse_bool(value: str | None, name: str, default: bool = False) -> bool:
    """Go ``strconv.ParseBool`` spellings (the Python client sends ``watch=True``)."""
    if value is None or value == "":
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise bad_request(f"invalid boolean value {value!r} for parameter {name!r}")


def parse_int(value: str | None, name: str, *, minimum: int | None = None) -> int | None:
    if value is None or value == "":
        return None
    try:
        n = int(value)
    except ValueError as exc:
        raise bad_request(f"invalid integer value {value!r} for parameter {name!r}") from exc
    if not INT64_MIN <= n <= INT64_MAX:
        raise bad_request(
            f"invalid integer value {value!r} for parameter {name!r}: out of the 64-bit range"
        )
    if minimum is not None and n < minimum:
        raise bad_request(f"parameter {name!r} must be at least {minimum}, got {n}")
    return n


def table_version(accept: str) -> str | None:
    """``meta.k8s.io/v1`` or ``v1beta1`` when the client asks for a Table, else ``None``."""
    for part in accept.split(","):
        if "as=Table" in part and "g=meta.k8s.io" in part:
            return "meta.k8s.io/v1beta1" if "v=v1beta1" in part else "meta.k8s.io/v1"
    return None


def wants_metadata_only(accept: str) -> bool:
    """First acceptable type is ``as=PartialObjectMetadata[List]`` (metadata informers)."""
    first = accept.split(",", 1)[0]
    return "as=PartialObjectMetadata" in first


def first(query: Mapping[str, str], name: str) -> str | None:
    return query.get(name)
