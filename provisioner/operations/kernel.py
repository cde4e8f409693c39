"""Kernel settings: sysctls and modules, applied now and persisted for the next boot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioner.commands import Command, Raw, Shell
from provisioner.facts.base import Fact
from provisioner.facts.system import KernelModules, Sysctls
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import Absent, File

SYSCTL_DIR = "/etc/sysctl.d"
MODULES_DIR = "/etc/modules-load.d"


def _sysctl_file(key: str) -> str:
    return f"{SYSCTL_DIR}/90-berth-{key}.conf"


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
        return File(_sysctl_file(self.key), f"{self.key} = {self.value}\n".encode())

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
        return Absent(_sysctl_file(self.key)).facts()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        return Absent(_sysctl_file(self.key)).commands(ctx)


@dataclass(frozen=True)
class KernelModule(Operation):
    """The module ``name`` loaded now and listed in ``/etc/modules-load.d`` for reboots."""

    name: str
    persist: bool = True

    @property
    def id(self) -> str:
        return f"module:{self.name}"

    def describe(self) -> str:
        return f"kernel module {self.name}"

    def _file(self) -> File:
        return File(f"{MODULES_DIR}/berth-{self.name}.conf", f"{self.name}\n".encode())

    def facts(self) -> tuple[Fact[Any], ...]:
        return (KernelModules(), *(self._file().facts() if self.persist else ()))

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        changed = False
        if self.name not in ctx.fact(KernelModules()):
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
        return Absent(f"{MODULES_DIR}/berth-{self.name}.conf")

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
