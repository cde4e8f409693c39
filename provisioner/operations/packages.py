"""Debian packages installed from shipped ``.deb`` files (hosts need no package mirror).

Each ``.deb`` is uploaded once to a content-addressed path (``ARTIFACT_DIR/<sha256>.deb``) and
installed with one ``dpkg -i`` for every package not already at the wanted version, so dpkg
orders dependencies among them itself.

Durability: dpkg runs with ``--force-unsafe-io`` (no fsync of every unpacked file before its
rename, which made the unpack of a node's ~17 packages disk-bound), and one ``sync`` after it
puts everything on disk at once. Until that ``sync`` returned, a power cut or kernel crash could
leave dpkg's status database (which dpkg still fsyncs) saying "installed" over files that never
reached the disk. So every package of the install is first marked in
:data:`~provisioner.facts.packages.UNSYNCED_DIR` (one empty file each, the directory fsynced
before dpkg starts, so the marks are on disk before any status dpkg writes), and the marks are
removed only after the ``sync``: a marked package counts as not installed
(:class:`~provisioner.facts.packages.Packages`), so the next apply installs it again, whatever
dpkg's status says. A mark whose removal was lost costs one needless reinstall, nothing more.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.commands import Command, Raw, Shell, Upload, sha256_hex
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.packages import UNSYNCED_DIR, Packages, check_package_name
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
        names = tuple(d.name for d in self.debs)
        return (
            Packages(names),
            Packages(names, unsynced_missing=False),
            PathInfo((ARTIFACT_DIR, *(d.remote_path for d in self.debs))),
        )

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if not self.debs:
            ctx.noop("no packages to ship")
            return
        names = tuple(d.name for d in self.debs)
        # a package whose last install may not have reached the disk counts as not installed
        installed = ctx.fact(Packages(names))
        paths = ctx.fact(PathInfo((ARTIFACT_DIR, *(d.remote_path for d in self.debs))))
        todo = [d for d in self.debs if installed.get(d.name) != d.version]
        if not todo:
            ctx.noop(
                "packages " + ", ".join(f"{d.name}={d.version}" for d in self.debs) + " installed"
            )
            return
        # ...but one dpkg has (the host had it before berth) is not berth's to record
        has = ctx.fact(Packages(names, unsynced_missing=False))
        new = tuple(d.name for d in todo if has.get(d.name) is None)
        if self.record is not None and new:
            yield record_names(self.record, new)
        if paths[ARTIFACT_DIR] is None:
            yield Shell("mkdir", "-p", "-m", "0755", ARTIFACT_DIR)
        ship = [
            d
            for d in todo
            if (shipped := paths[d.remote_path]) is None or shipped.sha256 != d.sha256
        ]
        if len(ship) == 1:
            yield Upload(ship[0].source.read_bytes(), ship[0].remote_path, 0o644)
        elif ship:
            yield from upload_as_tar(ship)
        yield install_synced(tuple(d.remote_path for d in todo), tuple(d.name for d in todo))


def upload_as_tar(debs: Sequence[Deb]) -> Iterator[Command]:
    """``debs`` shipped as one tar (one upload, not one per file: a node's ~17 .debs took
    ~17 round trips each way) unpacked into :data:`ARTIFACT_DIR`, then removed. The members
    are named by their SHA-256 (nothing else reaches the host's paths); a member cut short by an
    interruption has the wrong digest, so the next apply ships it again, and the tar an
    interrupted apply left is removed with this one."""
    tar = _tar(debs)
    path = f"{ARTIFACT_DIR}/debs-{sha256_hex(tar)[:16]}.tar"
    yield Upload(tar, path, 0o600)
    yield Shell(
        "tar", "-x", "--no-same-owner", "-f", path, "-C", ARTIFACT_DIR, Raw("&&"),
        "rm", "-f", "--", Raw(f"{ARTIFACT_DIR}/debs-*.tar"),
    )  # fmt: skip


def _tar(debs: Sequence[Deb]) -> bytes:
    """An uncompressed tar of ``debs`` (.debs are compressed already) as ``<sha256>.deb``,
    root-owned, mode 0644, mtime 0: the same bytes for the same debs (plans compare digests)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for deb in debs:
            content = deb.source.read_bytes()
            info = tarfile.TarInfo(f"{deb.sha256}.deb")
            info.size, info.mode, info.mtime = len(content), 0o644, 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def install_synced(paths: tuple[str, ...], names: tuple[str, ...]) -> Shell:
    """``dpkg -i`` of ``paths`` without an fsync per file, made durable by one ``sync`` after
    it: ``names`` are marked unsynced (the marks fsynced) before, unmarked after (see the module
    docstring). A failed dpkg leaves the marks: the next apply installs those packages again."""
    marks = [f"{UNSYNCED_DIR}/{check_package_name(name)}" for name in names]
    parent = UNSYNCED_DIR.rsplit("/", 1)[0]
    return Shell(
        "mkdir", "-p", "-m", "0700", UNSYNCED_DIR, Raw("&&"), "touch", "--", *marks, Raw("&&"),
        "sync", "--", parent, UNSYNCED_DIR, Raw("&&"),
        "env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--force-unsafe-io", "-i", *paths,
        Raw(">/dev/null"), Raw("&&"), "sync", Raw("&&"), "rm", "-f", "--", *marks,
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
        return (Packages((self.name,), unsynced_missing=False),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(Packages((self.name,), unsynced_missing=False)).get(self.name) is None:
            ctx.noop(f"package {self.name} is not installed")
            return
        yield Shell("env", "DEBIAN_FRONTEND=noninteractive", "dpkg", "--purge", self.name)
