"""The connector seam: what every transport offers, and the narrow input that names a host.

A :class:`Connector` runs a command and returns a :class:`CommandResult`, puts a file atomically
(temporary file in the same directory, then ``rename``, so a reader never sees half a file), gets a
file, and closes. Everything above this layer (facts, operations, the engine) speaks only this
protocol, so the same code runs over SSH, against a local directory, or against a fake.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NewType, Protocol, runtime_checkable

from provisioner.commands import Raw, Shell
from provisioner.errors import OperationError

HostName = NewType("HostName", str)

COMMAND_TIMEOUT = 1800.0
"""Seconds any command may run when its caller gave no timeout (package installs included) on a
host that still answers; a host that stops answering fails much sooner (see
:mod:`provisioner.connectors.ssh`). Here, not there: the multiplexer's client needs it without
loading paramiko."""
"""A host's name in the spec (``n1``), used in every message about it."""


class HostKeyPolicy(StrEnum):
    """What to do with a host key that is not pinned yet."""

    STRICT = "strict"  # unknown or changed key: refuse
    ACCEPT_NEW = "accept-new"  # unknown key: pin it on first use; changed key: refuse


@dataclass(frozen=True)
class JumpHost:
    """A bastion reached first; the target is then reached through a ``direct-tcpip`` channel."""

    address: str
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None


@dataclass(frozen=True)
class HostTarget:
    """Everything needed to reach one host (built from the cluster spec)."""

    name: HostName
    address: str
    port: int = 22
    user: str = "root"
    identity_file: Path | None = None
    known_hosts: Path | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.STRICT
    connect_timeout: float = 10.0
    retries: int = 3
    jump: JumpHost | None = None
    roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommandResult:
    """The outcome of one command on a host."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self, host: str, what: str) -> CommandResult:
        """Return self, or raise :class:`OperationError` naming the host, command and stderr."""
        if not self.ok:
            tail = (self.stderr.strip() or self.stdout.strip())[-800:]
            raise OperationError(f"{host}: {what} failed (exit {self.exit_code}): {tail}")
        return self


@runtime_checkable
class Connector(Protocol):
    """One open connection to one host."""

    @property
    def host(self) -> HostName: ...

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run ``command`` (a :class:`Shell` or an already-rendered script) with ``sh -c``."""
        ...

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        """Write ``content`` to ``path`` atomically (temp file in the same dir, then rename)."""
        ...

    def get(self, path: str) -> bytes:
        """Read the file at ``path``."""
        ...

    def close(self) -> None: ...


def render(command: Shell | str) -> str:
    return command if isinstance(command, str) else command.render()


def atomic_put_script(
    path: str, tmp: str, *, mode: int, owner: str | None, group: str | None
) -> Shell:
    """The command that finishes an upload already written to ``tmp``: chmod, chown, rename,
    then remove temp files an earlier, interrupted upload of the same path left behind."""
    argv: list[str | Raw] = ["chmod", f"{mode:o}", tmp, Raw("&&")]
    if owner or group:
        argv += ["chown", f"{owner or ''}:{group or ''}".rstrip(":"), tmp, Raw("&&")]
    argv += ["mv", "-fT", tmp, path]
    parent, _, name = path.rpartition("/")
    leftovers = shlex.quote(f"{parent}/.{name}.berth-") + "*"
    argv += [Raw("&&"), "rm", "-f", "--", Raw(leftovers)]
    return Shell(*argv)
