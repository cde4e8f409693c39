"""Operations and facts the cluster phases need beyond the engine's generic ones."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.runtime.reference import parse_reference
from provisioner import hostlayout as layout
from provisioner.artifacts.berth_bundle import SUFFIX, Bundle
from provisioner.commands import Command, Raw, Shell, Upload
from provisioner.facts._sh import check_path, words
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import File


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
        tar = f"{layout.INCOMING}/{self.bundle.id}{SUFFIX}"
        scratch = f"{self.target}.partial"
        yield Upload(self.bundle.path.read_bytes(), tar, 0o600)
        yield Shell(
            "rm", "-rf", "--", scratch, Raw("&&"), "mkdir", "-m", "0755", scratch, Raw("&&"),
            "tar", "-C", scratch, "--no-same-owner", "-xf", tar, Raw("&&"),
            "touch", f"{scratch}/.complete", Raw("&&"), "rm", "-rf", "--", self.target,
            Raw("&&"), "mv", "-T", scratch, self.target, Raw("&&"), "rm", "-f", "--", tar,
        )  # fmt: skip


def image_record_path(reference: str) -> str:
    """Where the node runtime records an image it holds: ``<state>/images`` is its content
    store, whose ``images/`` holds one record per reference (``berth.runtime.store``)."""
    key = hashlib.sha256(str(parse_reference(reference)).encode()).hexdigest()
    return f"{layout.RUNTIME_STATE}/images/images/{key}.json"


@dataclass(frozen=True)
class ImageLoaded(Operation):
    """The OCI ``archive`` imported into the node's image store as ``reference`` (uploaded,
    verified and unpacked by the installed ``python3 -m berth.runtime load``, then removed)."""

    reference: str
    archive: bytes = field(repr=False, compare=False)
    ref_name: str

    @property
    def record(self) -> str:
        return image_record_path(self.reference)

    @property
    def id(self) -> str:
        return f"image:{self.reference}"

    def describe(self) -> str:
        return f"image {self.reference} in the node's image store"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.record,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(PathInfo((self.record,)))[self.record] is not None:
            ctx.noop(f"image {self.reference} is loaded")
            return
        upload = f"{layout.INCOMING_IMAGES}/{hashlib.sha256(self.archive).hexdigest()}.tar"
        yield Shell("mkdir", "-p", "-m", "0700", layout.INCOMING_IMAGES)
        yield Upload(self.archive, upload, 0o600)
        yield Shell(
            "env", f"PYTHONPATH={layout.SITE}", "python3", "-m", "berth.runtime",
            "--state-dir", layout.RUNTIME_STATE, "load", upload, "--reference", self.reference,
            "--ref-name", self.ref_name, Raw(">/dev/null"), Raw("&&"), "rm", "-f", "--", upload,
        )  # fmt: skip


CNI_STATE = "/var/lib/cni/networks/berth"
"""host-local IPAM's allocations for berth's pod network (one file per IP, plus bookkeeping)."""
NODE_LEFTOVER_PROBE = (
    "ip link show dev cni0 >/dev/null 2>&1 && echo 'pod bridge cni0'; "
    "nft list table ip berth >/dev/null 2>&1 && echo 'nftables table ip berth'; "
    "[ -n \"$(ip route show proto 199 2>/dev/null)\" ] && echo 'host-gw routes (proto 199)'; "
    "ip netns list 2>/dev/null | grep -q '^berth-' && echo 'pod network namespaces'; "
    f"[ -n \"$(runc --root {layout.RUNC_ROOT} list -q 2>/dev/null)\" ] && echo 'runc containers'; "
    f"ls -A {CNI_STATE} 2>/dev/null | grep -q '^[0-9a-f.:]*$' && echo 'CNI IP allocations'; "
    f"[ -d {CNI_STATE} ] && echo 'state {CNI_STATE}'; "
    f"[ -d {layout.RUNTIME_STATE} ] && echo 'state {layout.RUNTIME_STATE}'; true"
)
"""Prints one line per leftover (``state DIR``: a state directory that is still there)."""


@dataclass(frozen=True)
class NodeLeftovers(Fact[tuple[str, ...]]):
    """What a runc node's runtime and network left on the host (pod bridge, berth's nftables
    table, host-gw routes, pod network namespaces, runc containers, CNI IP allocations, the
    runtime state); empty when there is nothing."""

    def command(self) -> str:
        return NODE_LEFTOVER_PROBE

    def parse(self, output: str, exit_code: int) -> tuple[str, ...]:
        return tuple(line.strip() for line in output.splitlines() if line.strip())


@dataclass(frozen=True)
class NodeReset(Operation):
    """Tear the node's pods and network down with the installed berth
    (``python3 -m berth.runtime reset``; ``purge`` also deletes the runtime state). The agent
    must be stopped first, or it recreates the pods."""

    purge: bool = True

    @property
    def id(self) -> str:
        return "node-reset"

    def describe(self) -> str:
        return "remove pods, pod network, service rules and routes (berth.runtime reset)"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (NodeLeftovers(), PathInfo((f"{layout.SITE}/berth",)))

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        leftovers = ctx.fact(NodeLeftovers())
        if not self.purge:  # the runtime's state (images) stays with the data
            leftovers = tuple(i for i in leftovers if i != f"state {layout.RUNTIME_STATE}")
        if not leftovers:
            ctx.noop("no pods, pod network or service rules on the host")
            return
        installed = ctx.fact(PathInfo((f"{layout.SITE}/berth",)))[f"{layout.SITE}/berth"]
        if installed is not None:
            yield Shell(
                "env", f"PYTHONPATH={layout.SITE}", "PYTHONDONTWRITEBYTECODE=1", "python3", "-m",
                "berth.runtime", "--state-dir", layout.RUNTIME_STATE, "--runc-root",
                layout.RUNC_ROOT, "reset", *(("--purge",) if self.purge else ()),
                Raw(">/dev/null"),
            )  # fmt: skip
        elif f"state {CNI_STATE}" not in leftovers:
            # berth's code is gone (an interrupted destroy): the clean check names what is left
            ctx.noop("berth is not installed: berth.runtime reset cannot run")
        if f"state {CNI_STATE}" in leftovers:
            # host-local IPAM's bookkeeping (last reserved IP, lock) outlives every CNI DEL
            yield Shell("rm", "-rf", "--", CNI_STATE)
