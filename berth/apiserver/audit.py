"""The API server's audit log: one JSON line per audited request, with its annotations (as
kube-apiserver's audit events carry ``pod-security.kubernetes.io/audit-violations``).

Lines go to standard error (journald under systemd), prefixed ``AUDIT``, written directly
rather than through :mod:`logging`: with the default policy nearly every pod create is audited,
and a log record costs several times the line itself. Each line is flushed to the file
descriptor before :meth:`AuditLog.write` returns: no line waits in a buffer for a later one.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import orjson

UTF8 = ("utf-8", "utf8")


class AuditLog:
    """Writes audit events; ``write`` never raises (an audit line must not fail a request)."""

    def __init__(self) -> None:
        self._second = -1
        self._stamp = ""
        self._head = b""  # b'AUDIT {"time":"<stamp>",' for the current second

    def _now(self) -> str:
        # The stamp has a one-second resolution: format it once a second, not once a line.
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
            self._head = b"AUDIT " + orjson.dumps({"time": self._stamp})[:-1] + b","
        return self._stamp

    def _line(self, event: dict[str, Any]) -> bytes:
        """``AUDIT {"time": ..., **event}`` as JSON, with its newline: the event is encoded
        as it is and spliced after the time (no merged dict built for every line)."""
        stamp = self._now()
        if not event or "time" in event:
            data = orjson.dumps({"time": stamp, **event}, option=orjson.OPT_APPEND_NEWLINE)
            return b"AUDIT " + data
        # '{' + members + '}' + '\n': the members follow the time's
        return self._head + orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE)[1:]

    def write(self, event: dict[str, Any]) -> None:
        line = self._line(event)
        try:
            stream = sys.stderr  # looked up each time: tests and supervisors may replace it
            buffer = getattr(stream, "buffer", None)
            if (
                buffer is not None
                and getattr(stream, "write_through", False)
                and getattr(stream, "encoding", "").lower() in UTF8
            ):
                # Python's own stderr (and pytest's capture) pass text straight through to
                # their UTF-8 byte buffer: nothing of the stream's own waits ahead of this
                # line, so its bytes go there as they are, not decoded and encoded again.
                buffer.write(line)
                buffer.flush()
            else:
                stream.write(line.decode())
                stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
