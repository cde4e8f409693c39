"""Rendering jinja2 templates shipped as package data, with undefined variables as errors.

The unit and config templates live in ``provisioner/templates/`` and are read through
:mod:`importlib.resources`, so they are found the same way in a checkout, an editable install
and an installed wheel (never relative to a source tree).

A failure raises :class:`~provisioner.errors.TemplateError` naming the template, the line, and
the lines around it, so the operator can fix the template without a traceback.

A template is compiled once per process and root (jinja2's lexing, parsing and code generation
cost ~1 ms each time; a run renders the same few templates for every host with another
context): each use reads the template's source again and compiles it anew if it changed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

import jinja2

from provisioner.errors import TemplateError

TEMPLATES: Traversable = files("provisioner") / "templates"
"""The cluster's templates (package data)."""


class _TraversableLoader(jinja2.BaseLoader):
    """Loads ``a/b.j2`` from ``root / "a" / "b.j2"``: a directory or any importlib resource."""

    def __init__(self, root: Traversable) -> None:
        self.root = root

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        parts = template.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise jinja2.TemplateNotFound(template)
        path = self.root.joinpath(*parts)
        if not path.is_file():
            raise jinja2.TemplateNotFound(template)
        source = path.read_text(encoding="utf-8")

        def uptodate() -> bool:
            # asked by the environment's cache at each use of the compiled template
            try:
                return path.is_file() and path.read_text(encoding="utf-8") == source
            except (OSError, UnicodeDecodeError):
                return False

        # the name given as "filename": tracebacks then end in the template's own name
        return source, template, uptodate


_environments: dict[tuple[type[Traversable], str], jinja2.Environment] = {}
_environments_lock = threading.Lock()


def _environment(root: Traversable) -> jinja2.Environment:
    """The environment of ``root``, kept for the process: it caches the compiled templates
    (each checked against its source at every use, see :class:`_TraversableLoader`)."""
    key = (type(root), str(root))
    with _environments_lock:
        env = _environments.get(key)
        if env is None:
            env = _environments[key] = jinja2.Environment(
                loader=_TraversableLoader(root),
                undefined=jinja2.StrictUndefined,
                keep_trailing_newline=True,
                autoescape=False,  # noqa: S701 - config files and unit files, not HTML
                auto_reload=True,  # ask the loader's uptodate() before using a cached template
            )
        return env


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


def render(name: str, context: Mapping[str, Any], *, root: Traversable | None = None) -> str:
    """Render template ``name`` (relative to ``root``, default :data:`TEMPLATES`)."""
    base = root or TEMPLATES
    env = _environment(base)
    try:
        return env.get_template(name).render(**context)
    except jinja2.TemplateNotFound:
        raise TemplateError(f"template {name} not found under {base}") from None
    except (jinja2.TemplateError, TypeError, ValueError) as error:
        line = _line_of(error, name)
        source_path = base.joinpath(*name.split("/"))
        where = f"{source_path}:{line}" if line else str(source_path)
        excerpt = ""
        if line and source_path.is_file():
            excerpt = "\n" + _context_lines(source_path.read_text(encoding="utf-8"), line)
        raise TemplateError(
            f"template {where}: {type(error).__name__}: {error}{excerpt}",
            hint="define the variable in the template context or fix the template",
        ) from None
