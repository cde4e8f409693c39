"""Label and field selectors, parsed from query strings and evaluated against objects.

Label selector grammar (the ``-l`` flag and ``labelSelector=``): comma-separated requirements
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a)``, ``k`` (exists), ``!k`` (absent).
Field selectors: ``f=v``, ``f==v``, ``f!=v`` joined by commas, over the fields each kind
supports (``metadata.name``, ``spec.nodeName`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj, get_path

from .errors import ApiError, bad_request

_KEY_RE = re.compile(
    r"^([a-zA-Z0-9]([-a-zA-Z0-9.]*[a-zA-Z0-9])?/)?[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$"
)
_VALUE_RE = re.compile(r"^([a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?)?$")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op == "=":
            return present and labels[self.key] == self.values[0]
        if self.op == "!=":
            return not present or labels[self.key] != self.values[0]
        if self.op == "in":
            return present and labels[self.key] in self.values
        # notin
        return not present or labels[self.key] not in self.values


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


EVERYTHING = LabelSelector(())


def _split_top_level(s: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise bad_request(f"unable to parse requirement: unbalanced ')' in {s!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise bad_request(f"unable to parse requirement: unbalanced '(' in {s!r}")
    parts.append("".join(cur))
    return parts


def _check_key(key: str, whole: str) -> str:
    if not _KEY_RE.match(key) or len(key) > 316:
        raise bad_request(f"unable to parse requirement: invalid label key {key!r} in {whole!r}")
    return key


def _check_value(value: str, whole: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise bad_request(
            f"unable to parse requirement: invalid label value {value!r} in {whole!r}"
        )
    return value


_SET_RE = re.compile(r"^\s*(\S+?)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_label_selector(s: str | None) -> LabelSelector:
    """Parse ``labelSelector``; raises a 400 :class:`ApiError` on bad syntax."""
    if s is None or not s.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for raw in _split_top_level(s):
        part = raw.strip()
        if not part:
            raise bad_request(f"unable to parse requirement: empty requirement in {s!r}")
        m = _SET_RE.match(part)
        if m:
            key, op, vals = m.group(1), m.group(2), m.group(3)
            values = tuple(_check_value(v.strip(), s) for v in vals.split(",") if v.strip())
            if not values and op == "in":
                raise bad_request(f"unable to parse requirement: {op} needs values in {s!r}")
            reqs.append(Requirement(_check_key(key, s), op, values))
            continue
        for op_text, op in (("!=", "!="), ("==", "="), ("=", "=")):
            if op_text in part:
                key, _, value = part.partition(op_text)
                reqs.append(
                    Requirement(_check_key(key.strip(), s), op, (_check_value(value.strip(), s),))
                )
                break
        else:
            if part.startswith("!"):
                reqs.append(Requirement(_check_key(part[1:].strip(), s), "!"))
            else:
                reqs.append(Requirement(_check_key(part, s), "exists"))
    return LabelSelector(tuple(reqs))


def selector_from_label_selector_object(sel: Any) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (matchLabels/matchExpressions) to a selector."""
    if not isinstance(sel, dict):
        return EVERYTHING
    reqs: list[Requirement] = []
    for k, v in (sel.get("matchLabels") or {}).items():
        reqs.append(Requirement(str(k), "=", (str(v),)))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in sel.get("matchExpressions") or []:
        if isinstance(expr, dict) and expr.get("operator") in ops:
            values = tuple(str(x) for x in expr.get("values") or [])
            reqs.append(Requirement(str(expr.get("key", "")), ops[expr["operator"]], values))
    return LabelSelector(tuple(reqs))


def selector_to_string(sel: Any) -> str:
    """``metav1.LabelSelector`` rendered in the string form (``app=web``) for Scale/tables."""
    if not isinstance(sel, dict):
        return ""
    parts = [f"{k}={v}" for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for expr in sel.get("matchExpressions") or []:
        if not isinstance(expr, dict):
            continue
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(str(v) for v in expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# --- field selectors -------------------------------------------------------------------------


def field_string(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def path_getter(*path: str) -> Callable[[Obj], str]:
    return lambda obj: field_string(get_path(obj, *path))


FieldGetter = Callable[[Obj], str]
"""Reads one selectable field of an object, as the string a field selector compares."""

COMMON_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": path_getter("metadata", "name"),
    "metadata.namespace": path_getter("metadata", "namespace"),
}


@dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


@dataclass(frozen=True, slots=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...]
    getters: tuple[Callable[[Obj], str], ...]

    def matches(self, obj: Obj) -> bool:
        for req, getter in zip(self.requirements, self.getters, strict=True):
            if (getter(obj) == req.value) == req.negate:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements

    def exact_name(self) -> str | None:
        """The name when the selector pins ``metadata.name=X`` (lets a list read one key)."""
        for r in self.requirements:
            if r.field == "metadata.name" and not r.negate:
                return r.value
        return None


NO_FIELDS = FieldSelector((), ())


def _field_terms(s: str) -> Iterator[tuple[str, str, str]]:
    """``(field, operator, value)`` of each term of a field selector (operator ``""`` for a
    term without one)."""
    for raw in s.split(","):
        part = raw.strip()
        if not part:
            continue
        op = next((o for o in ("!=", "==", "=") if o in part), "")
        if not op:
            yield part, "", ""
            continue
        field, _, value = part.partition(op)
        yield field.strip(), op, value.strip()


def pinned_field_value(s: str, field: str) -> str | None:
    """The value field selector ``s`` requires ``field`` to equal (``field=v`` or
    ``field==v``), read as :func:`parse_field_selector` reads it; ``None`` when ``s`` does not
    pin the field. Other terms, unknown fields and malformed terms are ignored."""
    for name, op, value in _field_terms(s):
        if name == field and op in ("=", "=="):
            return value
    return None


def parse_field_selector(s: str | None, fields: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse ``fieldSelector`` over ``metadata.name``, ``metadata.namespace`` and ``fields``
    (the kind's own selectable fields, from its strategy); unknown fields are a 400."""
    if s is None or not s.strip():
        return NO_FIELDS
    supported = {**COMMON_FIELDS, **fields}
    reqs: list[FieldRequirement] = []
    getters: list[Callable[[Obj], str]] = []
    for field, op, value in _field_terms(s):
        if not op:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{field}'")
        negate = op == "!="
        getter = supported.get(field)
        if getter is None:
            raise ApiError(
                400,
                "BadRequest",
                f'"{field}" is not a known field selector: only "'
                + '", "'.join(sorted(supported))
                + '"',
            )
        reqs.append(FieldRequirement(field, negate, value))
        getters.append(getter)
    return FieldSelector(tuple(reqs), tuple(getters))
