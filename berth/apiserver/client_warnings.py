"""Warnings for the client, sent as HTTP ``Warning`` headers as kube-apiserver does.

Code serving a request calls :func:`add_warning`; :meth:`ApiServer.handle` collects them for
the request (:func:`collecting`) and writes one header per warning, ``299 - "<text>"``, which
kubectl prints as ``Warning: <text>`` and client libraries hand to their warning handlers.
Outside a request (controllers, startup) a warning goes nowhere.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar, Token

from aiohttp import web

MAX_WARNING_CHARS = 1024
"""One warning's length bound (its text comes partly from the request: names, values)."""
MAX_TOTAL_CHARS = 4096
"""Bound on all warnings of one response together (kube-apiserver also caps at 4 KiB)."""

_current: ContextVar[list[str] | None] = ContextVar("berth_apiserver_warnings", default=None)


def add_warning(text: str) -> None:
    """Warn the client of the request being served (once per distinct text)."""
    collected = _current.get()
    if collected is not None and text not in collected:
        collected.append(text)


def begin() -> tuple[list[str], Token[list[str] | None]]:
    """Start collecting the warnings of one request: the list they go to, and the token
    to give :func:`end` (in a ``finally``). The API server's entry point uses this pair
    rather than :func:`collecting`, whose generator-based context manager costs more than
    the ContextVar itself on every request."""
    collected: list[str] = []
    return collected, _current.set(collected)


def end(token: Token[list[str] | None]) -> None:
    _current.reset(token)


@contextlib.contextmanager
def collecting() -> Iterator[list[str]]:
    """Collect the warnings added while the block runs (one request)."""
    collected, token = begin()
    try:
        yield collected
    finally:
        end(token)


def _clean(text: str) -> str:
    # A header value cannot hold line breaks or other control characters.
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else " " for ch in text)
    if len(text) > MAX_WARNING_CHARS:
        text = text[: MAX_WARNING_CHARS - 3] + "..."
    return text


@functools.lru_cache(maxsize=256)
def header_value(text: str) -> str:
    """``299 - "text"`` with ``"`` and ``\\`` escaped (RFC 7234 warn-text, as Kubernetes).

    Remembered: the same warning (a Pod Security one for every pod of a template) comes
    back on request after request."""
    escaped = _clean(text).replace("\\", "\\\\").replace('"', '\\"')
    return f'299 - "{escaped}"'


def attach(response: web.StreamResponse, warnings: list[str]) -> None:
    """Add the warnings to a response not yet sent (a streamed one has sent its headers)."""
    if not warnings or response.prepared:
        return
    total = 0
    for text in warnings:
        value = header_value(text)
        total += len(value)
        if total > MAX_TOTAL_CHARS:
            break
        response.headers.add("Warning", value)
