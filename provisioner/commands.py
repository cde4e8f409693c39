"""Commands are data: typed, quoted, and printable.

Operations never build shell strings by hand. They yield one of these types and the engine turns
them into bytes on the wire:

* :class:`Shell` — an argv; every element is quoted with :func:`shlex.quote` unless it is a
  :class:`Raw` (the one deliberate escape hatch, for ``&&``, ``|`` or a redirection).
* :class:`Upload` — content to place at a path, atomically, with a mode and an owner.

Each command has a stable :meth:`describe` (what the plan shows) and a :meth:`digest` (what a saved
plan records, so ``berth apply PLAN`` can prove it runs exactly what was shown).
"""

from __future__ import annotations

import functools
import hashlib
import shlex
from dataclasses import dataclass, field


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of ``data`` (the digest facts and plans compare)."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Raw:
    """Shell text inserted verbatim. Use only for operators (``&&``, ``|``, ``>``), never data."""

    text: str


@dataclass(frozen=True, init=False)
class Shell:
    """A shell command given as argv; each element is quoted unless it is :class:`Raw`.

    >>> Shell("echo", "a b", Raw("&&"), "true").render()
    "echo 'a b' && true"
    """

    argv: tuple[str | Raw, ...]

    def __init__(self, *argv: str | Raw) -> None:
        if not argv:
            raise ValueError("Shell needs at least one argument")
        object.__setattr__(self, "argv", argv)

    def render(self) -> str:
        """The command line sent to ``sh -c`` on the host."""
        return " ".join(a.text if isinstance(a, Raw) else shlex.quote(a) for a in self.argv)

    def describe(self) -> str:
        return self.render()

    def digest(self) -> str:
        return sha256_hex(self.render().encode())

    def __str__(self) -> str:
        return self.render()


@dataclass(frozen=True)
class Upload:
    """Place ``content`` at ``path`` atomically (temp file in the same directory, then rename)."""

    content: bytes = field(repr=False)
    path: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @functools.cached_property
    def sha256(self) -> str:
        # once per upload: describe() and digest() both want it, and the bundle is megabytes
        return sha256_hex(self.content)

    def describe(self) -> str:
        return (
            f"upload {self.path} ({len(self.content)} bytes, sha256 {self.sha256[:12]}, "
            f"mode {self.mode:04o}, {self.owner}:{self.group})"
        )

    def digest(self) -> str:
        return (
            sha256_hex(f"{self.path}\0{self.mode}\0{self.owner}\0{self.group}\0".encode())[:32]
            + self.sha256[:32]
        )


Command = Shell | Upload
"""Everything an operation may yield."""


def join(*commands: Shell) -> Shell:
    """Chain shell commands with ``&&`` into one command (one round-trip)."""
    argv: list[str | Raw] = []
    for index, command in enumerate(commands):
        if index:
            argv.append(Raw("&&"))
        argv.extend(command.argv)
    return Shell(*argv)
