"""Small helpers for building fact snippets safely."""

from __future__ import annotations

import shlex
from collections.abc import Iterable


def words(items: Iterable[str]) -> str:
    """Quote each item for ``sh`` and join them with spaces."""
    return " ".join(shlex.quote(item) for item in items)


def check_path(path: str) -> str:
    """Reject paths our line-oriented parsers could not represent."""
    if not path.startswith("/") or any(c in path for c in "\n\t\\"):
        raise ValueError(f"path must be absolute without tabs, newlines or backslashes: {path!r}")
    return path
