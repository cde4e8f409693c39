"""Put renewed certificates on the hosts one host at a time (``berth certs renew``).

Each host gets its own run of the engine over the phases that carry credentials and restart
the units using them (``pki``, ``etcd``, ``lb``, ``control-plane``, ``agents``), restricted to
that host: the phases' own ``restart_on`` decides what restarts, so nothing of their logic is
repeated here. Control-plane hosts go first. After a host whose units restarted, the next host
waits until it is healthy again (its API server answers ``/readyz``, its Node is Ready with a
fresh heartbeat), so clients that retry never lose the whole API at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.clusterapi import admin_kubeconfig_path, get_node, node_not_ready, readyz
from provisioner.commands import Shell
from provisioner.connectors.base import CommandResult, Connector, HostName, HostTarget
from provisioner.engine.runner import Engine, RunContext, ssh_connect
from provisioner.errors import OperationError
from provisioner.phases.cluster.install import cluster_install_phases
from provisioner.reporting import Event, Reporter
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.workflow import Inventory, SelectedPhase, select
from provisioner.workflow.inventory import inventory_from_spec

CREDENTIAL_PHASES = ("pki", "etcd", "lb", "control-plane", "agents")
"""The cluster phases that upload certificates/kubeconfigs or restart the units using them."""
HEARTBEAT_SLACK = dt.timedelta(seconds=2)
"""Tolerated clock difference between the operator and a host when judging a heartbeat."""


@dataclass
class HostOutcome:
    """What one host's step changed."""

    host: str
    changed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    healthy_after: float | None = None
    """Seconds from the end of the step until the host was healthy (None: nothing restarted)."""


class _Recorder:
    """Forwards events to the user's reporter and keeps each host's ``done`` operations."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.done: dict[str, list[tuple[str, str]]] = {}
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if event.kind == "done" and event.host:
            with self._lock:
                self.done.setdefault(event.host, []).append(
                    (str(event.data.get("op", "")), event.message)
                )
        self.inner.emit(event)


class _Shared:
    """A connection kept open across the per-host engine runs (the engines' ``close`` is a
    no-op; the rollout closes the real connection at the end)."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner

    @property
    def host(self) -> HostName:
        return self.inner.host

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        return self.inner.run(command, stdin=stdin, timeout=timeout)

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        self.inner.put(content, path, mode=mode, owner=owner, group=group)

    def get(self, path: str) -> bytes:
        return self.inner.get(path)

    def close(self) -> None:
        pass


def rollout_order(hosts: tuple[HostTarget, ...]) -> list[HostTarget]:
    """Control-plane hosts first, then the others, each group in spec order."""
    return sorted(hosts, key=lambda h: "control-plane" not in h.roles)


def _only_host(phases: list[SelectedPhase], name: str) -> list[SelectedPhase]:
    def narrowed(selected: SelectedPhase) -> SelectedPhase:
        wider = selected.phase.applies_to

        def applies(host: HostTarget) -> bool:
            return host.name == name and (wider is None or wider(host))

        return SelectedPhase(selected.path, dataclasses.replace(selected.phase, applies_to=applies))

    return [narrowed(p) for p in phases]


@dataclass
class Rollout:
    """Distribute the state's current credentials to every host, one host at a time."""

    spec: ClusterSpec
    state: ClusterState
    state_dir: Path | None
    cache_dir: Path
    reporter: Reporter
    health_timeout: float = 180.0
    say: Callable[[str], None] = print
    connect: Callable[[HostTarget], Connector] = ssh_connect

    def run(self) -> list[HostOutcome]:
        """Roll out host by host; stops at the first host that fails or stays unhealthy."""
        opened: dict[HostName, Connector] = {}

        def connect(target: HostTarget) -> Connector:
            if target.name not in opened:
                opened[target.name] = self.connect(target)
            return _Shared(opened[target.name])

        try:
            return [self._step(host, connect) for host in self._order()]
        finally:
            for connector in opened.values():
                connector.close()

    def _order(self) -> list[HostTarget]:
        return rollout_order(self._inventory().hosts)

    def _inventory(self) -> Inventory:
        return inventory_from_spec(self.spec, known_hosts=self.state.known_hosts)

    def _step(self, host: HostTarget, connect: Callable[[HostTarget], Connector]) -> HostOutcome:
        phases = _only_host(select(cluster_install_phases(), only=CREDENTIAL_PHASES), host.name)
        recorder = _Recorder(self.reporter)
        ctx = RunContext(
            inventory=self._inventory(), cache_dir=self.cache_dir, spec=self.spec,
            phase_set="cluster", state_dir=self.state_dir,
        )  # fmt: skip
        # a restarted agent posts its status when it registers: a heartbeat newer than the
        # step's start is (almost always) the new process's
        started = dt.datetime.now(dt.UTC)
        with Engine(ctx, phases, connect=connect, reporter=recorder, parallel=1) as engine:
            engine.connect_all()
            engine.apply()
        done = recorder.done.get(host.name, [])
        outcome = HostOutcome(
            host.name,
            changed=[message for _, message in done],
            restarted=[op.removeprefix("service:") for op, _ in done if _is_service(op)],
        )
        if outcome.restarted:
            outcome.healthy_after = self.wait_healthy(host, since=started)
        self.say(_describe(outcome))
        return outcome

    # -- health ------------------------------------------------------------------------------

    def wait_healthy(self, host: HostTarget, *, since: dt.datetime) -> float:
        """Seconds until ``host`` is healthy; :class:`OperationError` after the timeout."""
        start = time.monotonic()
        deadline = start + self.health_timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem(host, since=since)
            if not problem:
                return time.monotonic() - start
            time.sleep(1.0)
        raise OperationError(
            f"{host.name}: not healthy {self.health_timeout:.0f}s after its restart: {problem}",
            hint="the other hosts were left untouched; fix this host, then run "
            "`berth certs renew` (or `berth apply`) again",
        )

    def _problem(self, host: HostTarget, *, since: dt.datetime) -> str:
        if "control-plane" in host.roles:
            status = self._readyz(host.address)
            if status != 200:
                return f"API server /readyz answered {status or 'nothing'}"
        problem = node_not_ready(self._node(host.name), since=since - HEARTBEAT_SLACK)
        if problem is None:
            return ""
        return {
            "missing": "its Node could not be read",
            "no-condition": "its Node has no Ready condition",
            "not-ready": "its Node is not Ready",
            "stale": "its Node has no heartbeat since the restart",
        }[problem.reason]

    def _readyz(self, address: str) -> int | None:
        return readyz(admin_kubeconfig_path(self.state), address, self.spec.api_port).status

    def _node(self, name: str) -> dict[str, Any] | None:
        return get_node(admin_kubeconfig_path(self.state), name, user_agent="berth-certs-renew")


def _is_service(op_id: str) -> bool:
    return op_id.startswith("service:")


def _describe(outcome: HostOutcome) -> str:
    if not outcome.changed:
        return f"{outcome.host}: nothing to change"
    restarted = ", ".join(outcome.restarted) or "none"
    line = f"{outcome.host}: {len(outcome.changed)} change(s); restarted: {restarted}"
    if outcome.healthy_after is not None:
        line += f"; healthy after {outcome.healthy_after:.1f}s"
    return line
