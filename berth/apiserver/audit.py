"""The API server's audit log: one JSON line per audited request, with its annotations (as
kube-apiserver's audit events carry ``pod-security.kubernetes.io/audit-violations``).

Lines go to standard error (journald under systemd), prefixed ``AUDIT``, written directly
rather than through :mod:`logging`: with the default policy nearly every pod create is audited,
and a log record costs several times the line itself.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson


class AuditLog:
    """Writes audit events; ``write`` never raises (an audit line must not fail a request)."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        # The stamp has a one-second resolution: format it once a second, not once a line.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
        return self._stamp

    def write(self, event: dict[str, Any]) -> None:
        line = orjson.dumps({"time": self._now(), **event}).decode()
        try:
            stream = sys.stderr  # looked up each time: tests and supervisors may replace it
            stream.write(f"AUDIT {line}\n")
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
