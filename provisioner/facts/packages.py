"""Facts about Debian packages (dpkg's status database)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.facts._sh import words
from provisioner.facts.base import Fact

_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]+")


def check_package_name(name: str) -> str:
    """``name`` if it is a Debian package name (lower-case letters, digits, ``+ - .``, two or
    more, starting alphanumeric: never a path, an option or shell syntax), else ValueError."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a package name: {name!r}")
    return name


UNSYNCED_DIR = "/var/lib/berth/dpkg-unsynced"
"""One empty file per package whose ``dpkg -i`` ran with ``--force-unsafe-io`` and whose files
are not yet known to be on disk: made (and its directory fsynced) before dpkg starts, removed
after dpkg and a ``sync`` returned (:class:`~provisioner.operations.packages.DebPackages`). A
package named here counts as not installed (:class:`Packages`), so the next apply installs it
again after a crash left dpkg's status saying "installed" over files that never reached disk."""


@dataclass(frozen=True)
class Packages(Fact[dict[str, str | None]]):
    """Installed version of each package in ``names`` (``None``: not installed).

    With ``names=()`` every installed package is returned (used to resolve .deb dependencies).
    A package with a mark in :data:`UNSYNCED_DIR` (its install may not have reached the disk)
    counts as not installed, unless ``unsynced_missing`` is false: removals ask that way, so a
    package dpkg has is purged whether or not its files were synced.
    """

    names: tuple[str, ...] = ()
    unsynced_missing: bool = True

    def __post_init__(self) -> None:
        for name in self.names:
            check_package_name(name)

    combinable = True

    @classmethod
    def combine(cls, facts: Sequence[Fact[Any]]) -> Packages:
        """One ``dpkg-query`` for every Packages fact of a batch: all packages if any of them
        asks for all, else every name asked for."""
        asked = [f for f in facts if isinstance(f, Packages)]
        if any(not f.names for f in asked):
            return Packages()
        return Packages(tuple(sorted({name for f in asked for name in f.names})))

    def portion(self, output: str) -> str:
        # only what parse reads (installed packages, one line each, sorted): the same text
        # whether dpkg-query listed every package or some, so digests of it compare
        wanted = set(self.names)
        lines = set()
        for line in output.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[2] in ("installed", "unsynced"):
                name = fields[0].split(":")[0]
                if not wanted or name in wanted:
                    lines.add(f"{name}\t{fields[1]}\t{fields[2]}")
        return "".join(f"{line}\n" for line in sorted(lines))

    def command(self) -> str:
        # exit status 0 even when a name is unknown (dpkg-query says 1): the status is not
        # read, and a combined query must not answer differently from a single one
        fmt = "'${Package}\\t${Version}\\t${db:Status-Status}\\n'"
        query = f"dpkg-query -W -f={fmt} {words(self.names)}".rstrip() + " || true"
        # then one "NAME\t-\tunsynced" line per mark (none, and no process, without marks)
        marks = (
            f'for m in {UNSYNCED_DIR}/*; do [ -e "$m" ] && '
            "printf '%s\\t-\\tunsynced\\n' \"${m##*/}\"; done; true"
        )
        return f"{{ {query}; }}; {marks}"

    def parse(self, output: str, exit_code: int) -> dict[str, str | None]:
        installed: dict[str, str | None] = dict.fromkeys(self.names)
        unsynced: set[str] = set()
        for line in output.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[2] == "installed":
                name = fields[0].split(":")[0]
                if not self.names or name in installed:
                    installed[name] = fields[1]
            elif len(fields) == 3 and fields[2] == "unsynced":
                unsynced.add(fields[0])
        if self.unsynced_missing:
            for name in unsynced & installed.keys():
                installed[name] = None
        return installed
