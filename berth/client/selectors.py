"""Label and field selectors: the string forms of the REST API (``app=web,tier!=db``,
``env in (a,b)``, ``!legacy``; fields ``spec.nodeName=n1``) and the structured
``LabelSelector`` of workload specs (``matchLabels`` + ``matchExpressions``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SET_RE = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


class SelectorError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist, Gt, Lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op == "Exists":
            return self.key in labels
        if op == "DoesNotExist":
            return self.key not in labels
        if op == "In":
            return self.key in labels and labels[self.key] in self.values
        if op == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if op in ("Gt", "Lt"):
            if self.key not in labels or len(self.values) != 1:
                return False
            try:
                have, want = int(labels[self.key]), int(self.values[0])
            except ValueError:
                return False
            return have > want if op == "Gt" else have < want
        raise SelectorError(f"unknown selector operator {op!r}")


@dataclass(frozen=True, slots=True)
class Selector:
    """A conjunction of requirements; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={r.values[0]}")
            elif r.operator == "NotIn" and len(r.values) == 1:
                parts.append(f"{r.key}!={r.values[0]}")
            elif r.operator == "Exists":
                parts.append(r.key)
            elif r.operator == "DoesNotExist":
                parts.append(f"!{r.key}")
            else:
                op = r.operator.lower()
                parts.append(f"{r.key} {op} ({','.join(r.values)})")
        return ",".join(parts)


def _split_top(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


def parse_label_selector(text: str | None) -> Selector:
    """Parse the query-string form of a label selector."""
    reqs: list[Requirement] = []
    for part in _split_top(text or ""):
        for op, kind in (("!=", "NotIn"), ("==", "In"), ("=", "In")):
            if op in part and "(" not in part:
                key, _, value = part.partition(op)
                reqs.append(Requirement(key.strip(), kind, (value.strip(),)))
                break
        else:
            m = _SET_RE.match(part)
            if not m:
                raise SelectorError(f"invalid label selector term {part!r}")
            neg, key, setop, values = m.groups()
            if setop:
                vals = tuple(v.strip() for v in values.split(",") if v.strip())
                reqs.append(Requirement(key, "In" if setop == "in" else "NotIn", vals))
            else:
                reqs.append(Requirement(key, "DoesNotExist" if neg else "Exists"))
    return Selector(tuple(reqs))


def from_label_selector(spec: Mapping[str, Any] | None) -> Selector:
    """Build a :class:`Selector` from a structured ``LabelSelector`` (a workload's
    ``spec.selector``). ``None`` selects nothing in Kubernetes; callers decide; here it is
    the empty selector."""
    if not spec:
        return Selector()
    reqs = [
        Requirement(str(k), "In", (str(v),)) for k, v in (spec.get("matchLabels") or {}).items()
    ]
    for expr in spec.get("matchExpressions") or ():
        reqs.append(
            Requirement(
                str(expr["key"]),
                str(expr["operator"]),
                tuple(str(v) for v in expr.get("values") or ()),
            )
        )
    return Selector(tuple(reqs))


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


@dataclass(frozen=True, slots=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_lookup(obj, path) == value) == eq for path, eq, value in self.terms)


def parse_field_selector(text: str | None) -> FieldSelector:
    terms: list[tuple[str, bool, str]] = []
    for part in _split_top(text or ""):
        if "!=" in part:
            path, _, value = part.partition("!=")
            terms.append((path.strip(), False, value.strip()))
        else:
            path, _, value = part.replace("==", "=").partition("=")
            if not _:
                raise SelectorError(f"invalid field selector term {part!r}")
            terms.append((path.strip(), True, value.strip()))
    return FieldSelector(tuple(terms))
