"""Waiting, in synchronous tests, for something a server or controller brings about on its
own time (there is no event to wait on from the test's side)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    what: str, check: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.1
) -> T:
    """Call ``check`` every ``interval`` seconds until it returns something truthy, and return
    that; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what} (last: {result!r})"
        time.sleep(interval)
