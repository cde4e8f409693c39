"""Facts about Debian packages (dpkg's status database)."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

    def command(self) -> str:
        fmt = "'${Package}\\t${Version}\\t${db:Status-Status}\\n'"
        return f"dpkg-query -W -f={fmt} {words(self.names)}".rstrip()

    def parse(self, output: str, exit_code: int) -> dict[str, str | None]:
        installed: dict[str, str | None] = dict.fromkeys(self.names)
        for line in output.splitlines():
            fields = line.split("\t")
            if len(fields) == 3 and fields[2] == "installed":
                name = fields[0].split(":")[0]
                if not self.names or name in installed:
                    installed[name] = fields[1]
        return installed
