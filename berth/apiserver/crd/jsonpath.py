"""The JSONPath subset CRDs use: printer columns and the scale subresource's paths.

``.spec.replicas``, ``.status.conditions[0].type``, ``.metadata.labels['app.kubernetes.io/name']``
and ``.spec.items[*].name`` (the first match, as upstream's printer takes the first result).
Paths are parsed once, when the CRD is loaded.
"""

from __future__ import annotations

from typing import Any

Segment = str | int | None  # None: [*]

MAX_PATH_SEGMENTS = 64


class PathError(ValueError):
    pass


def parse(path: str) -> tuple[Segment, ...]:
    """Segments of ``path``; raises PathError for anything outside the subset."""
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1]
    if p.startswith("$"):
        p = p[1:]
    if not p.startswith(".") and not p.startswith("["):
        raise PathError(f"unrecognized path {path!r}")
    out: list[Segment] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == ".":
            j = i + 1
            while j < len(p) and p[j] not in ".[":
                j += 1
            name = p[i + 1 : j]
            if name:
                out.append(name)
            elif j < len(p) and p[j] != "[":
                raise PathError(f"empty field name in {path!r}")
            i = j
        elif c == "[":
            end = p.find("]", i)
            if end < 0:
                raise PathError(f"unterminated [ in {path!r}")
            inner = p[i + 1 : end].strip()
            if inner == "*":
                out.append(None)
            elif len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
                out.append(inner[1:-1])
            else:
                try:
                    out.append(int(inner))
                except ValueError as exc:
                    raise PathError(f"unsupported index {inner!r} in {path!r}") from exc
            i = end + 1
        else:
            raise PathError(f"unexpected {c!r} in {path!r}")
        if len(out) > MAX_PATH_SEGMENTS:
            raise PathError(f"path {path!r} is too deep")
    return tuple(out)


_MISSING = object()


def find(obj: Any, segments: tuple[Segment, ...]) -> Any:
    """The first value at ``segments``, or ``MISSING``."""
    return _find(obj, segments, 0)


def _find(v: Any, segs: tuple[Segment, ...], i: int) -> Any:
    while i < len(segs):
        s = segs[i]
        if s is None:
            if not isinstance(v, list):
                return _MISSING
            for item in v:
                r = _find(item, segs, i + 1)
                if r is not _MISSING:
                    return r
            return _MISSING
        if isinstance(s, int):
            if not isinstance(v, list):
                return _MISSING
            idx = s if s >= 0 else len(v) + s
            if not 0 <= idx < len(v):
                return _MISSING
            v = v[idx]
        else:
            if not isinstance(v, dict) or s not in v:
                return _MISSING
            v = v[s]
        i += 1
    return v


MISSING = _MISSING


def dotted_fields(path: str) -> list[str]:
    """``.spec.replicas`` as ``["spec", "replicas"]`` (the scale paths: upstream splits them
    on dots after dropping the leading one)."""
    return path.removeprefix(".").split(".")
