"""The seam between the node agent and whatever runs containers.

The agent speaks only this :class:`Runtime` protocol: create a pod sandbox, start and stop
containers, read their status and logs, list what exists (to recover after an agent restart)
and run probes. :mod:`berth.agent.simulated` implements it without processes (kwok-style, for
tests and scale runs); a runc-backed implementation plugs in behind the same calls.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

ContainerPhase = Literal["created", "running", "exited"]
ProbeKind = Literal["startup", "liveness", "readiness"]


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    namespace: str
    name: str
    uid: str
    node: str
    pod_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)  # the pod's full API spec (volumes, ...)
    # ConfigMap/Secret volume contents resolved by the agent: {volume name: {path: bytes}}.
    volume_files: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    name: str
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    init: bool = False
    spec: Mapping[str, Any] = field(default_factory=dict)  # the container's full API spec


@dataclass(frozen=True, slots=True)
class ContainerStatus:
    id: str
    sandbox_id: str
    name: str
    image: str
    phase: ContainerPhase
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    attempt: int = 0
    image_id: str = ""  # the runtime's id of the image it runs (e.g. sha256:<config digest>)


@dataclass(frozen=True, slots=True)
class SandboxStatus:
    id: str
    config: SandboxConfig
    ready: bool
    containers: tuple[ContainerStatus, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """A usage sample: cumulative CPU nanoseconds and working-set memory bytes (``None``:
    this node cannot tell)."""

    cpu_ns: int | None
    memory_bytes: int | None


@dataclass(frozen=True, slots=True)
class UsageSample:
    """The node's usage and each asked-for container's, read at ``time``."""

    time: datetime
    node: Usage
    containers: Mapping[str, Usage] = field(default_factory=dict)


class ImagePullFailed(Exception):
    """A container's image could not be made present (reported as ``ErrImagePull`` /
    ``ImagePullBackOff``, or ``ErrImageNeverPull`` when ``never_pull``)."""

    def __init__(self, message: str, *, never_pull: bool = False) -> None:
        super().__init__(message)
        self.never_pull = never_pull


class Runtime(Protocol):
    name: str  # e.g. "simulated", reported as containerRuntimeVersion
    # True when the runtime's network plugin picks pod IPs (the agent then reads the IP back
    # with :meth:`sandbox_ip` instead of choosing one).
    assigns_pod_ips: bool

    async def create_sandbox(self, config: SandboxConfig) -> str:
        """Make the pod's sandbox, or find it when it is there and ready. One that is dead
        (listed not ready: the node rebooted) is replaced by a new one, the pod's volumes
        kept; its containers stay known as exited."""
        ...

    async def sandbox_ip(self, sandbox_id: str) -> str:
        """The pod IP the sandbox got ("" for host-network pods)."""
        ...

    async def update_volume_files(
        self, sandbox_id: str, volume_files: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        """Rewrite the content of the sandbox's ConfigMap/Secret/projected volumes (renewed
        service-account tokens), through the same path that wrote them at creation."""
        ...

    async def remove_sandbox(self, sandbox_id: str) -> None:
        """Stop everything in the sandbox and forget it (idempotent)."""
        ...

    async def start_container(
        self, sandbox_id: str, config: ContainerConfig, *, attempt: int
    ) -> str:
        """Create and start a container; returns its id. Raises :class:`ImagePullFailed` when
        the image cannot be made present."""
        ...

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds`` (idempotent)."""
        ...

    async def container_status(self, container_id: str) -> ContainerStatus | None: ...

    async def list_sandboxes(self) -> list[SandboxStatus]: ...

    def logs(
        self, container_id: str, *, tail_lines: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]: ...

    async def probe(
        self, container_id: str, kind: ProbeKind, probe: Mapping[str, Any], *, pod_ip: str
    ) -> bool:
        """Run an exec/httpGet/tcpSocket probe against the container; True = success."""
        ...

    async def usage(self, container_ids: Sequence[str]) -> UsageSample:
        """CPU and memory usage of the node and of the given containers (those the runtime
        does not know are left out)."""
        ...
