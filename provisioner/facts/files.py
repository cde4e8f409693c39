"""Facts about paths: type, mode, owner, size, SHA-256 of regular files, symlink targets."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from provisioner.facts._sh import check_path, words
from provisioner.facts.base import Fact

PathKind = Literal["file", "directory", "symlink", "other"]
_KINDS: dict[str, PathKind] = {"f": "file", "d": "directory", "l": "symlink"}
_DIGEST = re.compile(r"[0-9a-f]{64}  /.*")
"""A line of ``sha256sum FILE...`` (our paths are absolute, without backslashes or newlines,
so sha256sum never escapes them)."""


@dataclass(frozen=True)
class PathState:
    """What is at a path. ``sha256`` only for regular files, ``target`` only for symlinks."""

    kind: PathKind
    mode: int
    owner: str
    group: str
    size: int
    sha256: str | None = None
    target: str | None = None


@dataclass(frozen=True)
class PathInfo(Fact[dict[str, PathState | None]]):
    """State of each path in ``paths`` (``None`` when absent); symlinks are not followed.

    Example: ``PathInfo(("/etc/hosts",))`` → ``{"/etc/hosts": PathState(kind="file", ...)}``.
    Covers file digests, directory existence and symlink targets in one command.
    """

    paths: tuple[str, ...]

    def __post_init__(self) -> None:
        for path in self.paths:
            check_path(path)

    combinable = True

    @classmethod
    def combine(cls, facts: Sequence[Fact[Any]]) -> PathInfo:
        """Every path of ``facts`` (each a PathInfo) in one fact: one ``find`` and one
        ``sha256sum`` for all of a host's paths instead of two processes per file."""
        paths = (p for f in facts if isinstance(f, PathInfo) for p in f.paths)
        return PathInfo(tuple(dict.fromkeys(paths)))

    def portion(self, output: str) -> str:
        # the lines of this fact's own paths, in its own order (stat lines, then digests):
        # the same text however the host's paths were combined, so digests of it compare
        stats: dict[str, str] = {}
        digests: dict[str, str] = {}
        for line in output.splitlines():
            if line.startswith("P\t"):
                stats.setdefault(line.split("\t", 2)[1], line)
            elif _DIGEST.fullmatch(line):
                digests.setdefault(line[66:], line)
        lines = [stats[p] for p in self.paths if p in stats]
        lines += [digests[p] for p in self.paths if p in digests]
        return "".join(f"{line}\n" for line in lines)

    def command(self) -> str:
        # one sha256sum for every regular file (its "<hex>  <path>" lines are parsed as they
        # are): no process per file on the host (a no-op re-apply reads every managed file);
        # a file it cannot read gets no line (no digest: it differs from any wanted content)
        quoted = words(self.paths)
        return (
            f"find {quoted} -maxdepth 0 -printf 'P\\t%p\\t%y\\t%m\\t%u\\t%g\\t%s\\t%l\\n'; "
            f'set --; for p in {quoted}; do [ -f "$p" ] && [ ! -L "$p" ] && set -- "$@" "$p"; '
            f'done; [ "$#" = 0 ] || sha256sum -- "$@"; true'
        )

    def parse(self, output: str, exit_code: int) -> dict[str, PathState | None]:
        rows: dict[str, list[str]] = {}
        digests: dict[str, str] = {}
        for line in output.splitlines():
            fields = line.split("\t")
            if fields[0] == "P":
                rows[fields[1]] = fields[2:]
            elif _DIGEST.fullmatch(line):
                digests[line[66:]] = line[:64]  # sha256sum's own "<hex>  <path>"
            elif fields[0] == "H":
                # earlier berths: "H<tab>path<tab><hex>  -" (or the digest cut to "<hex>")
                digests[fields[1]] = fields[2].split(" ", 1)[0]
        result: dict[str, PathState | None] = {}
        for path in self.paths:
            row = rows.get(path)
            if row is None:
                result[path] = None
                continue
            kind_code, mode, owner, group, size, target = row
            kind = _KINDS.get(kind_code, "other")
            result[path] = PathState(
                kind=kind,
                mode=int(mode, 8),
                owner=owner,
                group=group,
                size=int(size),
                sha256=digests.get(path) if kind == "file" else None,
                target=target if kind == "symlink" else None,
            )
        return result
