"""Facts about Debian packages (dpkg's status database)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.facts._sh import words
from provisioner.facts.base import Fact

_NAME = re.compile(r"[a-z0-9][a-z0-9+.\-]+")


@dataclass(frozen=True)
class Packages(Fact[dict[str, str | None]]):
    """Installed version of each package in ``names`` (``None``: not installed).

    With ``names=()`` every installed package is returned (used to resolve .deb dependencies).
    """

    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.names:
            if not _NAME.fullmatch(name):
                raise ValueError(f"not a package name: {name!r}")

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
            if len(fields) == 3 and fields[2] == "installed":
                name = fields[0].split(":")[0]
                if not wanted or name in wanted:
                    lines.add(f"{name}\t{fields[1]}\tinstalled")
        return "".join(f"{line}\n" for line in sorted(lines))

    def command(self) -> str:
        # exit status 0 even when a name is unknown (dpkg-query says 1): the status is not
        # read, and a combined query must not answer differently from a single one
        fmt = "'${Package}\\t${Version}\\t${db:Status-Status}\\n'"
        return f"dpkg-query -W -f={fmt} {words(self.names)}".rstrip() + " || true"

    def parse(self, output: str, exit_code: int) -> dict[str, str | None]:
        installed: dict[str, str | None] = dict.fromkeys(self.names)
        for line in output.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[2] == "installed":
                name = fields[0].split(":")[0]
                if not self.names or name in installed:
                    installed[name] = fields[1]
        return installed
