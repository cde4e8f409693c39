"""The lab's state file: what ``up`` created, recorded *before* each step so ``down`` can undo
everything even after a crash half-way through ``up``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from provisioner.errors import LabError

ResourceKind = Literal["bridge", "netns", "veth", "tap", "mount", "cgroup", "nft-table", "dir"]


class Resource(BaseModel):
    """One thing on the machine the lab made (``id`` is a name or a path)."""

    kind: ResourceKind
    id: str


class HostState(BaseModel):
    """What the lab knows about one host."""

    name: str
    address: str
    netns: str  # empty for a VM (its network stack is its own kernel's)
    veth: str  # the machine-side end of its cable on the bridge: a veth, or a VM's tap
    release: str = "bookworm"  # the Debian codename of the rootfs it boots
    machine: str
    pid: int | None = None  # the host's systemd-nspawn (or QEMU) process, while it runs
    pid_start: int | None = None  # its start time (clock ticks), so a reused PID is not mistaken
    frozen: bool = False
    cut: bool = False


class LabState(BaseModel):
    """The whole state of one lab, saved as JSON in the lab directory."""

    name: str
    kind: Literal["nspawn", "vm"] = "nspawn"
    accel: str = ""  # a VM lab's QEMU accelerator (kvm or tcg), chosen at ``up``
    subnet: str = ""
    bridge: str = ""
    gateway: str = ""  # the bridge's own address: how the machine reaches the hosts
    rootfs: str = ""
    unified_cgroups: bool = True  # False: hosts boot on the machine's hybrid (v1) hierarchies
    hosts: dict[str, HostState] = Field(default_factory=dict)
    partitions: list[tuple[str, str]] = Field(default_factory=list)
    resources: list[Resource] = Field(default_factory=list)

    def record(self, kind: ResourceKind, ident: str, path: Path) -> None:
        """Note a resource (if new) and save at once, before the caller creates it."""
        if not any(r.kind == kind and r.id == ident for r in self.resources):
            self.resources.append(Resource(kind=kind, id=ident))
            self.save(path)

    def forget(self, kind: ResourceKind, ident: str, path: Path) -> None:
        """Drop a resource that no longer exists, and save."""
        self.resources = [r for r in self.resources if not (r.kind == kind and r.id == ident)]
        self.save(path)

    def save(self, path: Path) -> None:
        """Write atomically (temp file + rename): a crash never leaves half a state file."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> LabState:
        """Read a state file written by :meth:`save`."""
        try:
            return cls.model_validate_json(path.read_text())
        except (OSError, ValueError) as exc:
            raise LabError(
                f"{path}: unreadable lab state: {exc}",
                hint="remove the lab by hand (see `berth lab down --help`) or delete the file",
            ) from exc
