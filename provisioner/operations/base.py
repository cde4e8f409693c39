"""Operations: generators from (desired state, facts) to typed, quoted commands.

An :class:`Operation` is a frozen dataclass of its desired state. :meth:`Operation.facts` names
every fact it reads (the engine gathers them all in one round-trip per host), and
:meth:`Operation.commands` yields only the commands needed to close the gap. When nothing needs
doing it yields nothing and says why with :meth:`OpContext.noop`.

Operations of one host in one run share a :class:`HostRun`: which resources changed (so a service
restarts only when its unit or config changed) and whether systemd must reload its unit files
(done once per host, before the first ``systemctl`` that needs it, or at the end).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from provisioner.commands import Command
from provisioner.connectors.base import HostName
from provisioner.facts.base import Fact, FactSet

T = TypeVar("T")


@dataclass
class HostRun:
    """State shared by the operations of one host during one plan or apply."""

    changed: set[str] = field(default_factory=set)
    """Ids of operations that yielded commands (``file:/etc/x``, ``unit:api.service``)."""
    pending_daemon_reload: bool = False
    started: dict[str, frozenset[str]] = field(default_factory=dict)
    """Units :class:`~provisioner.operations.systemd.ServicesStarted` started in this run, each
    with the ids in ``changed`` when it did: a fresh start already runs those changes, so its
    :class:`~provisioner.operations.systemd.Service` restarts it only for later ones."""


@dataclass
class OpContext:
    """What an operation sees while generating commands."""

    host: HostName
    facts: FactSet
    run: HostRun
    noop_reason: str | None = None

    def fact(self, fact: Fact[T]) -> T:
        return self.facts.get(fact)

    def noop(self, reason: str) -> None:
        """Record why the operation yields nothing."""
        self.noop_reason = reason


class Operation(ABC):
    """Base of every operation (subclasses are ``@dataclass(frozen=True)``)."""

    @property
    @abstractmethod
    def id(self) -> str:
        """A stable id naming the resource, e.g. ``file:/etc/berth/api.yaml``."""

    def describe(self) -> str:
        return self.id

    @abstractmethod
    def facts(self) -> tuple[Fact[Any], ...]:
        """Every fact :meth:`commands` reads."""

    @abstractmethod
    def commands(self, ctx: OpContext) -> Iterator[Command]:
        """Yield the commands that bring the host to the desired state (nothing if it is)."""


@dataclass(frozen=True)
class Outcome:
    """An operation's commands for one host, or why there are none."""

    op: Operation
    commands: tuple[Command, ...]
    noop_reason: str | None

    @property
    def changed(self) -> bool:
        return bool(self.commands)


def evaluate(op: Operation, ctx: OpContext) -> Outcome:
    """Run ``op``'s generator against ``ctx`` and record the outcome in the shared run state."""
    ctx.noop_reason = None
    commands = tuple(op.commands(ctx))
    if commands:
        ctx.run.changed.add(op.id)
        return Outcome(op, commands, None)
    return Outcome(op, (), ctx.noop_reason or f"{op.describe()} is already in the desired state")
