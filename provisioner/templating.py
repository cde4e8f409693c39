"""Rendering jinja2 templates from ``templates/`` with undefined variables as errors.

A failure raises :class:`~provisioner.errors.TemplateError` naming the template, the line, and
the lines around it, so the operator can fix the template without a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from provisioner.errors import TemplateError

TEMPLATE_DIR = Path(__file__).resolve().parents[1] / "templates"


def _environment(root: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files and unit files, not HTML
    )


def _context_lines(source: str, line: int, around: int = 2) -> str:
    lines = source.splitlines()
    start, end = max(0, line - 1 - around), min(len(lines), line + around)
    return "\n".join(
        f"{'>' if n == line else ' '} {n:4d} | {lines[n - 1]}" for n in range(start + 1, end + 1)
    )


def _line_of(error: BaseException, name: str) -> int | None:
    if isinstance(error, jinja2.TemplateSyntaxError):
        return error.lineno
    tb = error.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render(name: str, context: Mapping[str, Any], *, root: Path | None = None) -> str:
    """Render template ``name`` (relative to ``root``, default ``templates/``) with ``context``."""
    base = root or TEMPLATE_DIR
    env = _environment(base)
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name} not found under {base}") from None
    except (jinja2.TemplateError, TypeError, ValueError) as error:
        line = _line_of(error, name)
        source_path = base / name
        where = f"{source_path}:{line}" if line else str(source_path)
        excerpt = ""
        if line and source_path.exists():
            excerpt = "\n" + _context_lines(source_path.read_text(), line)
        raise TemplateError(
            f"template {where}: {type(error).__name__}: {error}{excerpt}",
            hint="define the variable in the template context or fix the template",
        ) from None
