"""systemd units: unit files, enablement, running state, restart on change.

``systemctl daemon-reload`` runs at most once per host and run: :class:`UnitFile` only marks the
reload as pending; the next :class:`Service` that needs systemctl yields it first, and the engine
appends :class:`DaemonReload` to every host's operations to flush a reload nobody consumed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from provisioner.commands import Command, Shell
from provisioner.facts.base import Fact
from provisioner.facts.systemd import UnitStates
from provisioner.operations.base import OpContext, Operation
from provisioner.operations.files import Absent, File

UNIT_DIR = "/etc/systemd/system"
RELOAD = Shell("systemctl", "daemon-reload")


@dataclass(frozen=True)
class UnitFile(Operation):
    """The unit file ``/etc/systemd/system/NAME`` with ``content``; marks a daemon-reload pending.

    Example: ``UnitFile("berth-agent.service", rendered_bytes)``.
    """

    name: str
    content: bytes = field(repr=False)

    @property
    def path(self) -> str:
        return f"{UNIT_DIR}/{self.name}"

    @property
    def id(self) -> str:
        return f"unit:{self.name}"

    def describe(self) -> str:
        return f"unit file {self.name}"

    def _file(self) -> File:
        return File(self.path, self.content, mode=0o644)

    def facts(self) -> tuple[Fact[Any], ...]:
        return self._file().facts()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        changes = list(self._file().commands(ctx))
        if changes:
            ctx.run.pending_daemon_reload = True
            yield from changes
        else:
            ctx.noop(f"unit file {self.name} is up to date")


@dataclass(frozen=True)
class Service(Operation):
    """A unit enabled/started as asked; restarted when it or anything in ``restart_on`` changed.

    ``enabled``/``running`` of ``None`` leave that aspect alone. ``restart_on`` holds operation ids
    (``file:/etc/berth/api.yaml``); the unit's own file (``unit:NAME``) always counts.
    Example: ``Service("berth-agent.service", restart_on=("file:/etc/berth/agent.yaml",))``.
    """

    name: str
    enabled: bool | None = True
    running: bool | None = True
    restart_on: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"service:{self.name}"

    def describe(self) -> str:
        return f"service {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (UnitStates((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(UnitStates((self.name,)))[self.name]
        wanted: list[Shell] = []
        if self.enabled is True and not state.is_enabled:
            wanted.append(Shell("systemctl", "enable", self.name))
        elif self.enabled is False and state.is_enabled:
            wanted.append(Shell("systemctl", "disable", self.name))
        triggers = {f"unit:{self.name}", *self.restart_on} & ctx.run.changed
        triggers -= ctx.run.started.get(self.name, frozenset())
        if self.running is True and not state.is_active:
            wanted.append(Shell("systemctl", "start", self.name))
        elif self.running is True and triggers:
            wanted.append(Shell("systemctl", "restart", self.name))
        elif self.running is False and state.is_active:
            wanted.append(Shell("systemctl", "stop", self.name))
        if not wanted:
            ctx.noop(f"service {self.name} is {state.active or 'unknown'}/{state.enabled or '-'}")
            return
        if wanted == [
            Shell("systemctl", "enable", self.name),
            Shell("systemctl", "start", self.name),
        ]:
            # one systemctl: `enable` reloads the manager itself (after linking the unit, before
            # `--now` starts it), which also serves a reload a changed unit file left pending.
            # A daemon-reload takes 0.5-1.5 s on a busy host: a new service used to cost two.
            ctx.run.pending_daemon_reload = False
            yield Shell("systemctl", "enable", "--now", self.name)
            return
        if ctx.run.pending_daemon_reload or state.needs_reload:
            ctx.run.pending_daemon_reload = False
            yield RELOAD
        yield from wanted


@dataclass(frozen=True)
class ServicesStarted(Operation):
    """The new units among ``names`` enabled and started together, by one
    ``systemctl enable --now A B C``: one manager reload for all of them (``enable`` reloads
    itself) and the services starting side by side, not one after another. A unit counts as new
    when it is neither enabled nor active; the others are left to their own :class:`Service`.

    Put it after the unit files and configs of ``names`` and before their :class:`Service`
    operations: those then see the units running and restart one only for a change made after
    this started it (:attr:`HostRun.started`).
    Example: ``ServicesStarted(("berth-agent.service", "berth-dns.service"))``.
    """

    names: tuple[str, ...]

    @property
    def id(self) -> str:
        return "services-started:" + ",".join(self.names)

    def describe(self) -> str:
        return "start new services " + ", ".join(self.names)

    def facts(self) -> tuple[Fact[Any], ...]:
        return (UnitStates(self.names),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        states = ctx.fact(UnitStates(self.names))
        new = [n for n in self.names if not states[n].is_enabled and not states[n].is_active]
        if not new:
            ctx.noop("no new service among " + ", ".join(self.names))
            return
        ctx.run.pending_daemon_reload = False  # `enable` reloads the manager itself
        ctx.run.started.update(dict.fromkeys(new, frozenset(ctx.run.changed)))
        yield Shell("systemctl", "enable", "--now", *new)


@dataclass(frozen=True)
class DaemonReload(Operation):
    """Flush a daemon-reload still pending at the end of a host's operations."""

    @property
    def id(self) -> str:
        return "systemd:daemon-reload"

    def describe(self) -> str:
        return "systemd daemon-reload"

    def facts(self) -> tuple[Fact[Any], ...]:
        return ()

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.run.pending_daemon_reload:
            ctx.run.pending_daemon_reload = False
            yield RELOAD
        else:
            ctx.noop("no unit file changed")


@dataclass(frozen=True)
class UnitAbsent(Operation):
    """The unit stopped, disabled and its file under /etc/systemd/system removed."""

    name: str

    @property
    def id(self) -> str:
        return f"unit-absent:{self.name}"

    def describe(self) -> str:
        return f"remove unit {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (UnitStates((self.name,)), *Absent(f"{UNIT_DIR}/{self.name}").facts())

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(UnitStates((self.name,)))[self.name]
        changed = False
        if state.is_active:
            changed = True
            yield Shell("systemctl", "stop", self.name)
        if state.enabled in ("enabled", "enabled-runtime"):
            changed = True
            yield Shell("systemctl", "disable", self.name)
        removed = list(Absent(f"{UNIT_DIR}/{self.name}").commands(ctx))
        if removed:
            changed = True
            ctx.run.pending_daemon_reload = True
            yield from removed
        if not changed:
            ctx.noop(f"unit {self.name} is not installed")
