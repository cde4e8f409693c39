"""ObjectMeta helpers: timestamps, UIDs and small accessors on plain JSON objects.

API objects travel as plain ``dict`` (decoded JSON) everywhere in berth: the wire format is
the model, and nothing is lost converting between typed models and JSON.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now() -> datetime:
    return datetime.now(UTC)


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes ``metav1.Time``."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str) -> datetime | None:
    """Parse an RFC 3339 timestamp; ``None`` when it is not one."""
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
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
