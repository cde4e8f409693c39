"""The workflow framework: named, nested, skippable phases that receive narrow data.

A :class:`Phase` declares what it needs to do per host as :class:`~provisioner.operations.base.
Operation` values (the engine plans and applies them), optionally some operator-side work first
(``prepare``: e.g. generating PKI) and optionally host checks that report problems instead of
changing anything (``check``: preflight, verify). Phases get a :class:`PhaseData` — the inventory,
the spec, a cache directory and a way to read facts — and nothing else.

Names nest with ``/`` (``pki/ca``); ``--only`` and ``--skip`` accept a phase or any ancestor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provisioner.connectors.base import Connector, HostName, HostTarget
from provisioner.facts.base import Fact, FactSet
from provisioner.operations.base import Operation
from provisioner.spec import ClusterSpec


@dataclass(frozen=True)
class Inventory:
    """The hosts of one cluster, as the engine reaches them."""

    cluster: str
    hosts: tuple[HostTarget, ...]

    def host(self, name: str) -> HostTarget:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def with_roles(self, role: str) -> tuple[HostTarget, ...]:
        return tuple(h for h in self.hosts if role in h.roles)


class HostsRemoved(Protocol):
    """What tearing berth down on some hosts came to (``berth destroy``'s result)."""

    @property
    def ok(self) -> bool:
        """Every host is clean (none unreachable, none with leftovers)."""
        ...

    def lines(self) -> list[str]:
        """One line per host for the user."""
        ...


RemoveHostsFn = Callable[[str, Sequence[HostTarget], Path], HostsRemoved]
"""``remove_hosts(cluster, targets, cache_dir)``: tear berth down on ``targets`` (hosts outside
the inventory, e.g. those that left the spec) and check each is clean. Whoever builds the run
supplies it (the CLI: :func:`provisioner.destroy.remove_hosts`), so a phase can remove hosts
without importing the engine that does it."""


class PhaseData(Protocol):
    """What a phase may use (kept narrow so phases stay testable)."""

    @property
    def inventory(self) -> Inventory: ...

    @property
    def spec(self) -> ClusterSpec | None:
        """The cluster spec of this run (``None`` for phase sets that need none, and in tests)."""
        ...

    @property
    def state_dir(self) -> Path | None:
        """``--state-dir``: where the cluster state lives (``None``: the usual base)."""
        ...

    @property
    def cache_dir(self) -> Path:
        """Operator-side cache for artifacts (debs, bundles), shared between runs."""
        ...

    @property
    def dry_run(self) -> bool:
        """True while planning: ``prepare`` must not write anything outside the cache."""
        ...

    @property
    def remove_hosts(self) -> RemoveHostsFn | None:
        """Tears berth down on hosts outside the inventory (see :data:`RemoveHostsFn`);
        ``None`` when this run cannot (then the phase tells the user to run
        ``berth destroy``)."""
        ...

    def host_facts(self, host: HostName, facts: Sequence[Fact[Any]]) -> FactSet:
        """Facts of one host (gathered once per run and cached)."""
        ...


OperationsFn = Callable[[PhaseData, HostTarget], Sequence[Operation]]
CheckFn = Callable[[PhaseData, Mapping[HostName, Connector]], list[str]]
AfterFn = Callable[[PhaseData, Callable[[str], None]], int]
"""``after(data, report) -> changes``: report one line per change — made, or only predicted
while ``data.dry_run`` (planning) — and return how many there were."""


@dataclass(frozen=True)
class Phase:
    """One named step of a workflow (see the module docstring).

    Example::

        Phase("demo", "Install the demo service", operations=lambda data, host: [File(...)])
    """

    name: str
    summary: str
    operations: OperationsFn | None = None
    prepare: Callable[[PhaseData], None] | None = None
    check: CheckFn | None = None
    facts: Callable[[PhaseData, HostTarget], Sequence[Fact[Any]]] | None = None
    """Facts ``check`` or ``operations`` read through ``data.host_facts``; the engine gathers
    those of every selected phase on all hosts up front, in one round-trip per host."""
    applies_to: Callable[[HostTarget], bool] | None = None
    children: tuple[Phase, ...] = ()
    after: AfterFn | None = None
    """Operator-side work once the phase's host operations are done on every host (API calls,
    hosts outside the inventory): see :data:`AfterFn`."""

    def hosts(self, inventory: Inventory) -> tuple[HostTarget, ...]:
        if self.applies_to is None:
            return inventory.hosts
        return tuple(h for h in inventory.hosts if self.applies_to(h))


@dataclass(frozen=True)
class SelectedPhase:
    """A phase with its full path (``pki/ca``) after ``--only``/``--skip`` selection."""

    path: str
    phase: Phase = field(compare=False)


def flatten(phases: Iterable[Phase], prefix: str = "") -> list[SelectedPhase]:
    """Every phase in run order with its path; a parent runs before its children."""
    out: list[SelectedPhase] = []
    for phase in phases:
        path = f"{prefix}{phase.name}"
        out.append(SelectedPhase(path, phase))
        out.extend(flatten(phase.children, prefix=f"{path}/"))
    return out


def select(
    phases: Sequence[Phase], *, only: Sequence[str] = (), skip: Sequence[str] = ()
) -> list[SelectedPhase]:
    """The phases to run. Unknown names raise ``ValueError`` listing the known ones."""
    flat = flatten(phases)
    known = [p.path for p in flat]
    for name in (*only, *skip):
        if name not in known:
            raise ValueError(f"unknown phase {name!r}; phases are: {', '.join(known)}")

    def under(path: str, names: Sequence[str]) -> bool:
        return any(path == n or path.startswith(n + "/") or n.startswith(path + "/") for n in names)

    def skipped(path: str) -> bool:
        return any(path == n or path.startswith(n + "/") for n in skip)

    return [p for p in flat if (not only or under(p.path, only)) and not skipped(p.path)]
