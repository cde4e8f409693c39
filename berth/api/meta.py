"""ObjectMeta helpers: timestamps, UIDs and small accessors on plain JSON objects.

API objects travel as plain ``dict`` (decoded JSON) everywhere in berth: the wire format is
the model, and nothing is lost converting between typed models and JSON.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]

# RFC 3339 as Go's time.RFC3339 layout reads it (what metav1.Time and MicroTime accept):
# date, "T", time, optional fraction, "Z" or a numeric offset.
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$")


def now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes ``metav1.Time`` (the
    fraction is dropped, not rounded)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(t: datetime) -> str:
    """RFC 3339 in UTC with six fractional digits, as Kubernetes writes ``metav1.MicroTime``
    (Lease renew times, Event series)."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: Any) -> datetime | None:
    """An RFC 3339 timestamp (``metav1.Time`` or ``MicroTime``) as an aware datetime;
    ``None`` when ``text`` is empty or not one. Digits beyond microseconds are dropped."""
    if not isinstance(text, str):
        return None
    m = _RFC3339.match(text)
    if m is None:
        return None
    fraction = f".{m.group(2)[:6]}" if m.group(2) else ""
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    try:
        return datetime.fromisoformat(m.group(1) + fraction + zone)
    except ValueError:  # e.g. month 13
        return None


def new_uid() -> str:
    return str(uuid.uuid4())


def meta(obj: Obj) -> Obj:
    """The object's ``metadata``, created empty when absent."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = {}
        obj["metadata"] = m
    return m


def name_of(obj: Obj) -> str:
    m = obj.get("metadata")
    return str(m.get("name", "")) if isinstance(m, dict) else ""


def namespace_of(obj: Obj) -> str:
    m = obj.get("metadata")
    return str(m.get("namespace", "")) if isinstance(m, dict) else ""


def labels_of(obj: Obj) -> dict[str, str]:
    m = obj.get("metadata")
    if isinstance(m, dict):
        labels = m.get("labels")
        if isinstance(labels, dict):
            return labels
    return {}


def get_path(obj: Any, *path: str) -> Any:
    """``obj[path[0]][path[1]]...`` or ``None`` when any step is missing."""
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur
