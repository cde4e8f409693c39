"""Operations and facts the cluster phases need beyond the engine's generic ones."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.artifacts.berth_bundle import Bundle
from provisioner.commands import Command, Raw, Shell, Upload
from provisioner.facts._sh import check_path, words
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import File
from provisioner.phases.cluster import layout


@dataclass(frozen=True)
class DirEntries(Fact[tuple[str, ...] | None]):
    """Names in directory ``path`` (``None`` when it does not exist)."""

    path: str

    def __post_init__(self) -> None:
        check_path(self.path)

    def command(self) -> str:
        quoted = words((self.path,))
        return f"[ -d {quoted} ] || exit 3; ls -1A -- {quoted}"

    def parse(self, output: str, exit_code: int) -> tuple[str, ...] | None:
        if exit_code == 3:
            return None
        return tuple(sorted(line for line in output.splitlines() if line))


@dataclass(frozen=True)
class HostCapacity:
    cpus: int
    memory_kib: int


@dataclass(frozen=True)
class Capacity(Fact[HostCapacity]):
    """CPUs and memory the host offers (what its Node advertises)."""

    def command(self) -> str:
        return "nproc; awk '/^MemTotal:/ {print $2}' /proc/meminfo"

    def parse(self, output: str, exit_code: int) -> HostCapacity:
        cpus, memory = output.split()[:2]
        return HostCapacity(int(cpus), int(memory))


@dataclass(frozen=True)
class StateFile(Operation):
    """A file whose content comes from the operator's cluster state (read when the operation
    runs, so a plan made before the PKI exists still applies what ``prepare`` generated).

    Same id as :class:`File` (``file:PATH``), so services can restart on it.
    """

    path: str
    source: Path
    mode: int = 0o600

    @property
    def id(self) -> str:
        return f"file:{self.path}"

    def describe(self) -> str:
        if not self.source.exists():
            # a saved plan of a new cluster cannot show the content; `certs ensure` fixes that
            return (
                f"file {self.path} (not in the cluster state yet: the apply generates it; "
                "run `berth certs ensure` first for an exact plan)"
            )
        return f"file {self.path} (from the cluster state)"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        try:
            content = self.source.read_bytes()
        except FileNotFoundError:
            # planning a new cluster: the state is generated when the apply starts
            yield Upload(b"", self.path, self.mode)
            return
        changes = list(File(self.path, content, mode=self.mode).commands(ctx))
        yield from changes
        if not changes:
            ctx.noop(f"file {self.path} is up to date")


@dataclass(frozen=True)
class BundleInstalled(Operation):
    """The bundle unpacked in ``/opt/berth/versions/<id>/`` (complete, or not there at all).

    The tar is uploaded next to the versions (atomically), unpacked into a temporary directory
    that is renamed into place only after a ``.complete`` marker is written, then removed; a
    version directory without its marker (an interrupted unpack) is replaced.
    """

    bundle: Bundle

    @property
    def target(self) -> str:
        return layout.version_dir(self.bundle.id)

    @property
    def marker(self) -> str:
        return f"{self.target}/.complete"

    @property
    def id(self) -> str:
        return f"bundle:{self.bundle.id}"

    def describe(self) -> str:
        return f"berth bundle {self.bundle.id}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.marker,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(PathInfo((self.marker,)))[self.marker] is not None:
            ctx.noop(f"bundle {self.bundle.id} is installed")
            return
        tar = f"{layout.INCOMING}/{self.bundle.id}.tar"
        scratch = f"{self.target}.partial"
        yield Upload(self.bundle.path.read_bytes(), tar, 0o600)
        yield Shell(
            "rm", "-rf", "--", scratch, Raw("&&"), "mkdir", "-m", "0755", scratch, Raw("&&"),
            "tar", "-C", scratch, "--no-same-owner", "-xf", tar, Raw("&&"),
            "touch", f"{scratch}/.complete", Raw("&&"), "rm", "-rf", "--", self.target,
            Raw("&&"), "mv", "-T", scratch, self.target, Raw("&&"), "rm", "-f", "--", tar,
        )  # fmt: skip
