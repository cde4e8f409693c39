"""Schema ``pattern``s run on RE2, as upstream's Go ``regexp`` does.

RE2 matches in time linear in the input, so a pattern a CRD author wrote cannot be turned into
a catastrophic backtracking attack by whoever writes the custom objects (Python's ``re`` could),
and the accepted syntax is the one kube-apiserver accepts.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Protocol

import re2  # type: ignore[import-untyped]


class Pattern(Protocol):
    def search(self, text: str) -> object | None: ...


class PatternError(ValueError):
    pass


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Pattern:
    """A compiled pattern (cached: the same schemas are compiled for every CRD reload)."""
    try:
        compiled: Pattern = re2.compile(pattern)
    except Exception as exc:  # re2 raises its own error class
        raise PatternError(str(exc)) from exc
    return compiled
