"""Host paths built from API data never leave their directory.

Pod uids, volume names, ConfigMap/Secret item paths and container names come from the API
server, i.e. from whoever may create a pod. The API validates them, but the node does not
rely on that (a compromised or older API server, a bug in validation): every place the agent
or the runtime joins such a value into a host path goes through :func:`child` (one path
element, e.g. a volume name) or :func:`relative_parts` (a relative path of several elements,
e.g. an item ``path``). Both refuse, with :class:`UnsafePath`, anything that could name a
location outside ``base``: empty names, ``.``, ``..``, a ``/`` in a single element, absolute
paths, NUL bytes.

These are pure checks on the string: ``base`` itself is trusted (the node's own state
directory). Symlinks *inside* ``base`` are the callers' concern where a container can write
there (see :mod:`berth.runtime.inroot` for reading inside an untrusted tree).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from berth.runtime.errors import NodeRuntimeError

# Linux NAME_MAX: a longer element cannot be created anyway; say so clearly instead.
MAX_ELEMENT = 255


class UnsafePath(NodeRuntimeError, ValueError):
    """A name taken from API data would make a host path leave its directory."""


def check_element(name: str, *, what: str) -> str:
    """``name`` if it is one harmless path element, else :class:`UnsafePath`."""
    if not isinstance(name, str) or not name:
        raise UnsafePath(f"{what} is empty: it must be a single file name")
    if name in (".", ".."):
        raise UnsafePath(f"{what} {name!r} is not allowed: it must name a file, not '.' or '..'")
    if "/" in name or "\x00" in name:
        raise UnsafePath(f"{what} {name!r} must be a single file name (no '/' or NUL)")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_ELEMENT:
        raise UnsafePath(f"{what} {name[:40]!r}... is longer than {MAX_ELEMENT} bytes")
    return name


def child(base: Path, *names: str, what: str) -> Path:
    """``base / name1 / name2 ...`` where every name is a single safe element."""
    for name in names:
        check_element(name, what=what)
    return base.joinpath(*names)


def relative_parts(path: str, *, what: str) -> tuple[str, ...]:
    """The elements of a relative path such as an item ``path`` (``dir/file``), refusing an
    absolute path and any ``..`` element (``.`` elements and doubled slashes are dropped)."""
    if not isinstance(path, str) or not path:
        raise UnsafePath(f"{what} is empty: it must be a relative path")
    if path.startswith("/"):
        raise UnsafePath(f"{what} {path!r} must be relative (no leading '/')")
    if "\x00" in path:
        raise UnsafePath(f"{what} {path!r} must not contain NUL")
    parts = tuple(p for p in PurePosixPath(path).parts if p not in ("", "."))
    if not parts:
        raise UnsafePath(f"{what} {path!r} names no file")
    for part in parts:
        if part == "..":
            raise UnsafePath(f"{what} {path!r} must not contain '..'")
        check_element(part, what=what)
    return parts
