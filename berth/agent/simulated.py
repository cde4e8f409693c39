"""A runtime whose containers run without processes (kwok-style), so one process can host
hundreds of simulated nodes.

A started container is ``created`` for ``start_delay`` seconds, then ``running`` until a test
(or a scripted exit) ends it: :meth:`SimulatedRuntime.exit` makes a container exit with a code;
:meth:`script_exit` makes every future start of a container exit after a delay (crash loops);
:meth:`set_probe` scripts probe outcomes. Init containers exit 0 right after starting unless
scripted otherwise. Logs are lines the runtime writes at start/stop plus whatever a test
appends.

Concurrency contract: single event loop; state changes happen in clock callbacks or method
bodies without awaits, so a status read never sees a half-applied transition. Listeners
(``on_change``) are called synchronously after each transition.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from berth.agent.runtime import (
    ContainerConfig,
    ContainerStatus,
    ImagePullFailed,
    ProbeKind,
    SandboxConfig,
    SandboxStatus,
    Usage,
    UsageSample,
)
from berth.machinery.clock import Clock, Timer


@dataclass(slots=True)
class _Container:
    status: ContainerStatus
    config: ContainerConfig
    log: list[bytes] = field(default_factory=list)
    # Simulated usage: CPU burnt at ``cpu_rate`` cores since ``cpu_since`` on top of
    # ``cpu_ns``; a steady working set.
    cpu_rate: float = 0.001
    cpu_ns: int = 0
    cpu_since: float = 0.0
    memory_bytes: int = 1 << 20
    timers: list[Timer] = field(default_factory=list)
    waiters: list[asyncio.Event] = field(default_factory=list)


@dataclass(slots=True)
class _Sandbox:
    id: str
    config: SandboxConfig
    containers: dict[str, _Container] = field(default_factory=dict)
    ready: bool = True  # False once the node "rebooted" (see SimulatedRuntime.reboot)


def _exited(c: _Container) -> bool:
    return c.status.phase == "exited"


class SimulatedRuntime:
    name = "simulated"
    assigns_pod_ips = False

    def __init__(self, clock: Clock, *, start_delay: float = 0.0, stop_delay: float = 0.0) -> None:
        self.clock = clock
        self.start_delay = start_delay
        self.stop_delay = stop_delay
        self._ids = itertools.count(1)
        self._sandboxes: dict[str, _Sandbox] = {}
        self._containers: dict[str, _Container] = {}
        self._exits: dict[tuple[str, str, str], tuple[float, int]] = {}  # (ns, pod, c)
        self._probes: dict[tuple[str, str, str, str], bool] = {}
        self._image_probes: dict[tuple[str, str], bool] = {}
        self.on_change: list[Callable[[SandboxConfig], None]] = []
        self._pull_failures: dict[str, str] = {}

    # ---- scripting (tests) --------------------------------------------------------------
    def exit(self, namespace: str, pod: str, container: str, *, code: int = 0) -> None:
        """Make the running instance of ``container`` exit now with ``code`` (or record the
        code of an exit :meth:`exit_unrecorded` left without one)."""
        c = self._find(namespace, pod, container)
        if c is not None and (c.status.phase != "exited" or c.status.exit_code is None):
            self._finish(c, code, "Completed" if code == 0 else "Error")

    def exit_unrecorded(self, namespace: str, pod: str, container: str) -> None:
        """Make ``container`` end without a recorded exit code, as a runtime reports one
        whose exit is still being written or was lost (``ContainerStatusUnknown``)."""
        c = self._find(namespace, pod, container)
        if c is None or c.status.phase == "exited":
            return
        for t in c.timers:
            t.cancel()
        c.status = replace(
            c.status,
            phase="exited",
            exit_code=None,
            reason="ContainerStatusUnknown",
            message="no exit code recorded",
            started_at=c.status.started_at or self.clock.now(),
        )
        sb = self._sandboxes.get(c.status.sandbox_id)
        if sb is not None:
            self._notify(sb.config)

    def script_exit(
        self, namespace: str, pod: str, container: str, *, after: float, code: int
    ) -> None:
        """Every start of ``container`` from now on exits with ``code`` after ``after``s."""
        self._exits[(namespace, pod, container)] = (after, code)

    def set_probe(self, namespace: str, pod: str, container: str, *, kind: str, ok: bool) -> None:
        self._probes[(namespace, pod, container, kind)] = ok

    def set_image_probe(self, image: str, *, kind: str, ok: bool) -> None:
        """Script ``kind`` probes of every container running ``image`` (a per-container
        :meth:`set_probe` wins)."""
        self._image_probes[(image, kind)] = ok

    def fail_pulls(self, image: str, message: str | None) -> None:
        """Script image pulls of ``image`` to fail with ``message`` (None: succeed again)."""
        if message is None:
            self._pull_failures.pop(image, None)
        else:
            self._pull_failures[image] = message

    def set_usage(
        self,
        namespace: str,
        pod: str,
        container: str,
        *,
        cpu_cores: float | None = None,
        memory_bytes: int | None = None,
    ) -> None:
        """From now on the running ``container`` burns ``cpu_cores`` and holds
        ``memory_bytes`` of working set (what the stats endpoint reports)."""
        c = self._find(namespace, pod, container)
        if c is None:
            raise KeyError(f"{namespace}/{pod}/{container} is not running")
        if cpu_cores is not None:
            c.cpu_ns = self._cpu_ns(c)
            c.cpu_since = self.clock.monotonic()
            c.cpu_rate = cpu_cores
        if memory_bytes is not None:
            c.memory_bytes = memory_bytes

    def _cpu_ns(self, c: _Container) -> int:
        return c.cpu_ns + int(c.cpu_rate * max(0.0, self.clock.monotonic() - c.cpu_since) * 1e9)

    def append_log(self, namespace: str, pod: str, container: str, *, line: str) -> None:
        c = self._find(namespace, pod, container)
        if c is not None:
            self._log(c, line)

    def sandbox_of(self, namespace: str, pod: str) -> SandboxConfig | None:
        """The sandbox config of ``pod`` (IP, spec, resolved volume files)."""
        for sb in self._sandboxes.values():
            if sb.config.namespace == namespace and sb.config.name == pod:
                return sb.config
        return None

    def config_of(self, namespace: str, pod: str, container: str) -> ContainerConfig | None:
        """What the latest instance of ``container`` was started with (env, command, ...)."""
        c = self._find(namespace, pod, container)
        return c.config if c is not None else None

    def running(self) -> int:
        return sum(1 for c in self._containers.values() if c.status.phase == "running")

    # ---- Runtime ------------------------------------------------------------------------
    async def create_sandbox(self, config: SandboxConfig) -> str:
        dead: _Sandbox | None = None
        for sb in self._sandboxes.values():
            if sb.config.uid == config.uid:
                if sb.ready:
                    return sb.id
                dead = sb
        sid = f"sb-{next(self._ids)}"
        new = _Sandbox(sid, config)
        if dead is not None:
            # A dead sandbox is replaced, as the runc runtime does; its exited containers
            # stay known (their statuses and logs) and go with the new sandbox's removal.
            del self._sandboxes[dead.id]
            new.containers.update(dead.containers)
        self._sandboxes[sid] = new
        return sid

    def reboot(self) -> None:
        """What a node's reboot or power cut leaves: every sandbox dead (not ready), every
        container ended without a recorded exit (no code), nothing notified."""
        for sb in self._sandboxes.values():
            sb.ready = False
            for c in sb.containers.values():
                for t in c.timers:
                    t.cancel()
                c.timers.clear()
                if c.status.phase != "exited":
                    c.status = replace(
                        c.status,
                        phase="exited",
                        exit_code=None,
                        reason="",
                        started_at=c.status.started_at or self.clock.now(),
                    )

    async def sandbox_ip(self, sandbox_id: str) -> str:
        sb = self._sandboxes.get(sandbox_id)
        return sb.config.pod_ip if sb is not None else ""

    async def update_volume_files(
        self, sandbox_id: str, volume_files: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        sb = self._sandboxes.get(sandbox_id)
        if sb is not None:
            sb.config = replace(sb.config, volume_files=volume_files)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        sb = self._sandboxes.pop(sandbox_id, None)
        if sb is None:
            return
        for cid, c in sb.containers.items():
            for t in c.timers:
                t.cancel()
            if c.status.phase != "exited":
                self._finish(c, 137, "Error", notify=False)
            self._containers.pop(cid, None)

    async def start_container(
        self, sandbox_id: str, config: ContainerConfig, *, attempt: int
    ) -> str:
        sb = self._sandboxes[sandbox_id]
        failure = self._pull_failures.get(config.image)
        if failure is not None:
            raise ImagePullFailed(failure)
        cid = f"{sandbox_id}-{config.name}-{attempt}-{next(self._ids)}"
        now = self.clock.now()
        c = _Container(
            ContainerStatus(
                id=cid,
                sandbox_id=sandbox_id,
                name=config.name,
                image=config.image,
                phase="created",
                created_at=now,
                attempt=attempt,
                image_id=_simulated_image_id(config.image),
            ),
            config,
        )
        sb.containers[cid] = c
        self._containers[cid] = c

        def started() -> None:
            if c.status.phase != "created":
                return
            c.status = replace(c.status, phase="running", started_at=self.clock.now())
            c.cpu_since = self.clock.monotonic()
            self._log(c, f"started {config.name} ({config.image})")
            scripted = self._exits.get((sb.config.namespace, sb.config.name, config.name))
            if scripted is not None:
                after, code = scripted
                c.timers.append(
                    self.clock.call_later(
                        after, lambda: self._finish(c, code, "Completed" if code == 0 else "Error")
                    )
                )
            elif config.init:
                self._finish(c, 0, "Completed")
            self._notify(sb.config)

        if self.start_delay > 0:
            c.timers.append(self.clock.call_later(self.start_delay, started))
        else:
            started()
        return cid

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        c = self._containers.get(container_id)
        if c is None or c.status.phase == "exited":
            return
        delay = min(self.stop_delay, grace_seconds)
        if delay > 0:
            await self.clock.sleep(delay)
        if not _exited(c):
            # Honoured SIGTERM within the grace period: a clean exit (137 when it took all).
            killed = self.stop_delay > grace_seconds
            self._finish(c, 137 if killed else 0, "Error" if killed else "Completed")

    async def container_status(self, container_id: str) -> ContainerStatus | None:
        c = self._containers.get(container_id)
        return c.status if c is not None else None

    async def usage(self, container_ids: Sequence[str]) -> UsageSample:
        found = {
            cid: Usage(self._cpu_ns(c), c.memory_bytes)
            for cid in container_ids
            if (c := self._containers.get(cid)) is not None
        }
        running = [c for c in self._containers.values() if c.status.phase == "running"]
        node = Usage(
            sum(self._cpu_ns(c) for c in running) + int(self.clock.monotonic() * 1e7),
            sum(c.memory_bytes for c in running) + (256 << 20),
        )
        return UsageSample(self.clock.now(), node, found)

    async def list_sandboxes(self) -> list[SandboxStatus]:
        return [
            SandboxStatus(
                sb.id, sb.config, sb.ready, tuple(c.status for c in sb.containers.values())
            )
            for sb in self._sandboxes.values()
        ]

    async def logs(
        self, container_id: str, *, tail_lines: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]:
        c = self._containers.get(container_id)
        if c is None:
            return
        lines = c.log if tail_lines is None else c.log[-tail_lines:] if tail_lines else []
        sent = len(c.log)
        for line in list(lines):
            yield line
        while follow and c.status.phase != "exited":
            ev = asyncio.Event()
            c.waiters.append(ev)
            await ev.wait()
            for line in c.log[sent:]:
                yield line
            sent = len(c.log)

    async def probe(
        self, container_id: str, kind: ProbeKind, probe: Mapping[str, Any], *, pod_ip: str
    ) -> bool:
        c = self._containers.get(container_id)
        if c is None or c.status.phase != "running":
            return False
        sb = self._sandboxes[c.status.sandbox_id]
        scripted = self._probes.get((sb.config.namespace, sb.config.name, c.config.name, kind))
        if scripted is not None:
            return scripted
        return self._image_probes.get((c.config.image, kind), True)

    # ---- internals ----------------------------------------------------------------------
    def _find(self, namespace: str, pod: str, container: str) -> _Container | None:
        for sb in self._sandboxes.values():
            if sb.config.namespace == namespace and sb.config.name == pod:
                live = [c for c in sb.containers.values() if c.config.name == container]
                if live:
                    return max(live, key=lambda c: c.status.attempt)
        return None

    def _finish(self, c: _Container, code: int, reason: str, *, notify: bool = True) -> None:
        for t in c.timers:
            t.cancel()
        c.status = replace(
            c.status,
            phase="exited",
            exit_code=code,
            reason=reason,
            finished_at=self.clock.now(),
            started_at=c.status.started_at or self.clock.now(),
        )
        self._log(c, f"exited {c.config.name} with code {code}")
        sb = self._sandboxes.get(c.status.sandbox_id)
        if notify and sb is not None:
            self._notify(sb.config)

    def _log(self, c: _Container, line: str) -> None:
        stamp = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S")
        c.log.append(f"{stamp} {line}\n".encode())
        for ev in c.waiters:
            ev.set()
        c.waiters.clear()

    def _notify(self, config: SandboxConfig) -> None:
        for cb in self.on_change:
            cb(config)


def _simulated_image_id(image: str) -> str:
    """A stable, digest-shaped id per image name (no image exists to take one from)."""
    return "sha256:" + hashlib.sha256(image.encode()).hexdigest()
