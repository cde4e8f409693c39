"""Kernel settings: sysctls and modules, applied now and persisted for the next boot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioner.commands import Command, Raw, Shell
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo
from provisioner.facts.system import KernelModules, Sysctls
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import Absent, File

SYSCTL_DIR = "/etc/sysctl.d"
MODULES_DIR = "/etc/modules-load.d"


def sysctl_file(key: str) -> str:
    """Where berth persists the sysctl ``key`` (read by systemd-sysctl at every boot)."""
    return f"{SYSCTL_DIR}/90-berth-{key}.conf"


def module_file(name: str) -> str:
    """Where berth lists the module ``name`` (loaded by systemd-modules-load at every boot)."""
    return f"{MODULES_DIR}/berth-{name}.conf"


@dataclass(frozen=True)
class Sysctl(Operation):
    """The kernel parameter ``key`` set to ``value`` now and in ``/etc/sysctl.d`` for reboots.

    Example: ``Sysctl("net.ipv4.ip_forward", "1")``.
    """

    key: str
    value: str
    persist: bool = True

    @property
    def id(self) -> str:
        return f"sysctl:{self.key}"

    def describe(self) -> str:
        return f"sysctl {self.key}={self.value}"

    def _file(self) -> File:
        return File(sysctl_file(self.key), f"{self.key} = {self.value}\n".encode())

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Sysctls((self.key,)), *(self._file().facts() if self.persist else ()))

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        current = ctx.fact(Sysctls((self.key,)))[self.key]
        wanted = " ".join(self.value.split())
        changed = False
        if current != wanted:
            changed = True
            proc = "/proc/sys/" + self.key.replace(".", "/")
            yield Shell("printf", "%s\\n", self.value, Raw(">"), proc)
        if self.persist:
            for command in self._file().commands(ctx):
                changed = True
                yield command
        if not changed:
            ctx.noop(f"sysctl {self.key} is {wanted}")


@dataclass(frozen=True)
class SysctlAbsent(Operation):
    """No berth-managed persisted setting for ``key`` (the running value is left alone)."""

    key: str

    @property
    def id(self) -> str:
        return f"sysctl-absent:{self.key}"

    def describe(self) -> str:
        return f"remove sysctl file for {self.key}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return Absent(sysctl_file(self.key)).facts()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        return Absent(sysctl_file(self.key)).commands(ctx)


@dataclass(frozen=True)
class KernelModule(Operation):
    """The module ``name`` loaded now and listed in ``/etc/modules-load.d`` for reboots.

    ``provides``: a path that exists once the module's function is in the kernel. A module built
    into the kernel has no ``/sys/module`` entry unless it takes parameters (``br_netfilter``
    built in shows only as ``/proc/sys/net/bridge``), and a container sees its host's kernel
    without its modules or ``modprobe``: there the path, not ``modprobe``, says it is present.
    """

    name: str
    persist: bool = True
    provides: str = ""

    @property
    def id(self) -> str:
        return f"module:{self.name}"

    def describe(self) -> str:
        return f"kernel module {self.name}"

    def _file(self) -> File:
        return File(module_file(self.name), f"{self.name}\n".encode())

    def _provided(self) -> tuple[PathInfo, ...]:
        return (PathInfo((self.provides,)),) if self.provides else ()

    def facts(self) -> tuple[Fact[Any], ...]:
        persisted = self._file().facts() if self.persist else ()
        return (KernelModules(), *self._provided(), *persisted)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        changed = False
        present = self.name in ctx.fact(KernelModules()) or any(
            ctx.fact(fact)[self.provides] is not None for fact in self._provided()
        )
        if not present:
            changed = True
            yield Shell("modprobe", self.name)
        if self.persist:
            for command in self._file().commands(ctx):
                changed = True
                yield command
        if not changed:
            ctx.noop(f"kernel module {self.name} is loaded")


@dataclass(frozen=True)
class KernelModuleAbsent(Operation):
    """The module ``name`` unloaded and not loaded at boot by berth."""

    name: str

    @property
    def id(self) -> str:
        return f"module-absent:{self.name}"

    def describe(self) -> str:
        return f"unload kernel module {self.name}"

    def _absent(self) -> Absent:
        return Absent(module_file(self.name))

    def facts(self) -> tuple[Fact[Any], ...]:
        return (KernelModules(), *self._absent().facts())

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        changed = False
        if self.name in ctx.fact(KernelModules()):
            changed = True
            yield Shell("modprobe", "-r", self.name)
        for command in self._absent().commands(ctx):
            changed = True
            yield command
        if not changed:
            ctx.noop(f"kernel module {self.name} is not loaded")
