"""Debian packages installed from shipped ``.deb`` files (hosts need no package mirror).

Each ``.deb`` is uploaded once to a content-addressed path (``ARTIFACT_DIR/<sha256>.deb``) and
installed with one ``dpkg -i`` for every package not already at the wanted version, so dpkg
orders dependencies among them itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.commands import Command, Raw, Shell, Upload
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.packages import Packages
from provisioner.operations.base import OpContext, Operation

ARTIFACT_DIR = "/var/lib/berth/artifacts"


@dataclass(frozen=True)
class Deb:
    """One ``.deb`` on this machine: package name, version, and its SHA-256."""

    name: str
    version: str
    sha256: str
    source: Path

    @property
    def remote_path(self) -> str:
        return f"{ARTIFACT_DIR}/{self.sha256}.deb"


@dataclass(frozen=True)
class DebPackages(Operation):
    """Every package in ``debs`` installed at exactly its version (``dpkg -i`` only if not)."""

    debs: tuple[Deb, ...]
    record: str | None = None
    """A list file (one name a line) the names of packages this installs that were not
    installed at all are added to, before ``dpkg -i`` (the host's footprint: destroy removes
    exactly those)."""

    @property
    def id(self) -> str:
        return "debs:" + ",".join(d.name for d in self.debs)

    def describe(self) -> str:
        return "packages " + ", ".join(f"{d.name}={d.version}" for d in self.debs)

    def facts(self) -> tuple[Fact[Any], ...]:
        if not self.debs:
            return ()  # nothing to ship (every package installed): nothing to read either
        return (
            Packages(tuple(d.name for d in self.debs)),
            PathInfo((ARTIFACT_DIR, *(d.remote_path for d in self.debs))),
        )

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if not self.debs:
            ctx.noop("no packages to ship")
            return
        installed = ctx.fact(Packages(tuple(d.name for d in self.debs)))
        paths = ctx.fact(PathInfo((ARTIFACT_DIR, *(d.remote_path for d in self.debs))))
        todo = [d for d in self.debs if installed.get(d.name) != d.version]
        if not todo:
            ctx.noop(
                "packages " + ", ".join(f"{d.name}={d.version}" for d in self.debs) + " installed"
            )
            return
        new = tuple(d.name for d in todo if installed.get(d.name) is None)
        if self.record is not None and new:
            yield record_names(self.record, new)
        if paths[ARTIFACT_DIR] is None:
            yield Shell("mkdir", "-p", "-m", "0755", ARTIFACT_DIR)
        for deb in todo:
            shipped = paths[deb.remote_path]
            if shipped is None or shipped.sha256 != deb.sha256:
                yield Upload(deb.source.read_bytes(), deb.remote_path, 0o644)
        yield Shell(
            "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "-i", *(d.remote_path for d in todo),
            Raw(">/dev/null"),
        )  # fmt: skip


def record_names(path: str, names: tuple[str, ...]) -> Shell:
    """Add ``names`` to the list file ``path`` (one a line, sorted, no duplicates), atomically:
    merged into a temp file beside it that is renamed over it (its directory is made 0700)."""
    temp = f"{path}.tmp"
    directory = path.rsplit("/", 1)[0] or "/"
    return Shell(
        "mkdir", "-p", "-m", "0700", directory, Raw("&&"), Raw("{"), "cat", path,
        Raw("2>/dev/null;"), "printf", r"%s\n", *names, Raw(";"), Raw("}"), Raw("|"), "sort",
        "-u", Raw(">"), temp, Raw("&&"), "mv", "-f", "--", temp, path,
    )  # fmt: skip


@dataclass(frozen=True)
class PackageAbsent(Operation):
    """The package ``name`` not installed (``dpkg --purge``)."""

    name: str

    @property
    def id(self) -> str:
        return f"package-absent:{self.name}"

    def describe(self) -> str:
        return f"remove package {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Packages((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(Packages((self.name,))).get(self.name) is None:
            ctx.noop(f"package {self.name} is not installed")
            return
        yield Shell("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", self.name)
