"""One problem in a spec, and how it is printed: ``FILE:LINE:COL: path.to.field: message``."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.spec.source import SourceMap

Path = tuple[str | int, ...]
"""A location inside the document, as pydantic reports it: ``("spec", "hosts", 0, "name")``."""


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE = _NoValue()
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class Problem:
    """What is wrong at ``path``: a message, the offending value (if any) and a hint."""

    path: Path
    message: str
    value: object = NO_VALUE
    hint: str | None = None
    at_key: bool = False  # point at the key itself (unknown or duplicate keys, bad label keys)
    position: tuple[int, int] | None = None  # (line, column) when the path cannot say it


def render_path(path: Path) -> str:
    """``spec.hosts[2].labels["example.com/zone"]``; the whole document is ``(document)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            # quoted, control characters escaped, other text kept readable
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or "(document)"


def render_value(value: object) -> str:
    """A short, YAML-flavoured rendering of an offending value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null (empty)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        if all(isinstance(v, str | int | float | bool) for v in value):
            short = "[" + ", ".join(str(v) for v in value) + "]"
            if len(short) <= 80:
                return short
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def position_of(problem: Problem, source: SourceMap) -> tuple[int, int]:
    """Where ``problem`` is in the file: (line, column), 1-based."""
    if problem.position is not None:
        return problem.position
    found = source.locate(problem.path, at_key=problem.at_key)
    return found.line, found.column


def render(problem: Problem, source: SourceMap) -> str:
    """The one line printed for ``problem``."""
    line_no, column = position_of(problem, source)
    line = f"{source.filename}:{line_no}:{column}: {render_path(problem.path)}: "
    line += problem.message
    if problem.value is not NO_VALUE:
        line += f" (got {render_value(problem.value)})"
    if problem.hint:
        line += f"; hint: {problem.hint}"
    # one problem, one line: no key or value may smuggle a line break in
    return line.replace("\r", "\\r").replace("\n", "\\n")
