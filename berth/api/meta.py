"""ObjectMeta helpers: timestamps, UIDs and small accessors on plain JSON objects.

API objects travel as plain ``dict`` (decoded JSON) everywhere in berth: the wire format is
the model, and nothing is lost converting between typed models and JSON.
"""

from __future__ import annotations

import os
import re
import threading
import time
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


class _LastStamp:
    # One tuple, replaced whole: a reader in another thread never pairs a second with
    # another second's text.
    stamped: tuple[int, str] = (-1, "")


def format_now() -> str:
    """``format_time(now())``, formatted at most once a second: every create stamps the time
    twice (creationTimestamp, its managedFields entry), and formatting costs microseconds."""
    second = int(time.time())  # the clock datetime.now reads
    stamped = _LastStamp.stamped
    if stamped[0] == second:
        return stamped[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _LastStamp.stamped = (second, text)
    return text


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


class _RandomPool:
    """Bytes from ``os.urandom``, fetched 4 KiB at a time: every create draws a uid and a
    volume name, and a system call each (plus ``uuid``'s object) cost more than the rest of
    making them. Each byte is handed out once (under a lock); a forked child starts afresh,
    never repeating its parent's bytes."""

    SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            pos = self._pos
            if pos + n > len(self._buf):
                self._buf = os.urandom(max(self.SIZE, n))
                pos = 0
            self._pos = pos + n
            return self._buf[pos : pos + n]


_random = _RandomPool()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG (see :class:`_RandomPool`)."""
    return _random.take(n)


def new_uid() -> str:
    """A random (version 4, RFC 4122 variant) UUID, as ``str(uuid.uuid4())`` spells it."""
    b = bytearray(_random.take(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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
