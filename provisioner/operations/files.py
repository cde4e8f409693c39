"""Files, directories and symlinks: content compared by SHA-256, written atomically."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from typing import Any

from provisioner.commands import Command, Raw, Shell, Upload, sha256_hex
from provisioner.errors import OperationError
from provisioner.facts.base import Fact
from provisioner.facts.files import PathInfo, PathState
from provisioner.operations.base import OpContext, Operation
from provisioner.templating import render


def _attrs(path: str, state: PathState, mode: int, owner: str, group: str) -> Iterator[Shell]:
    if state.mode != mode:
        yield Shell("chmod", f"{mode:04o}", path)
    if (state.owner, state.group) != (owner, group):
        yield Shell("chown", f"{owner}:{group}", path)


@dataclass(frozen=True)
class File(Operation):
    """A regular file with exactly ``content``, ``mode`` and ``owner:group``.

    Uploads only when the SHA-256 differs (atomically: temp file + rename); fixes mode and owner
    in place otherwise. The parent directory must exist (see :class:`Directory`).
    Example: ``File("/etc/berth/agent.yaml", b"node: n1\\n", mode=0o600)``.
    """

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"

    @property
    def id(self) -> str:
        return f"file:{self.path}"

    def describe(self) -> str:
        return f"file {self.path}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(PathInfo((self.path,)))[self.path]
        if state is not None and state.kind == "directory":
            raise OperationError(f"{ctx.host}: {self.path} is a directory, expected a file")
        digest = sha256_hex(self.content)
        if state is None or state.kind != "file" or state.sha256 != digest:
            yield Upload(self.content, self.path, self.mode, self.owner, self.group)
            return
        changes = list(_attrs(self.path, state, self.mode, self.owner, self.group))
        yield from changes
        if not changes:
            ctx.noop(f"file {self.path} is up to date (sha256 {digest[:12]})")


@dataclass(frozen=True)
class Directory(Operation):
    """A directory with ``mode`` and ``owner:group`` (parents created as needed)."""

    path: str
    mode: int = 0o755
    owner: str = "root"
    group: str = "root"

    @property
    def id(self) -> str:
        return f"directory:{self.path}"

    def describe(self) -> str:
        return f"directory {self.path}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(PathInfo((self.path,)))[self.path]
        if state is None:
            yield Shell(
                "mkdir", "-p", "-m", f"{self.mode:04o}", self.path,
                Raw("&&"), "chown", f"{self.owner}:{self.group}", self.path,
            )  # fmt: skip
            return
        if state.kind != "directory":
            raise OperationError(f"{ctx.host}: {self.path} exists and is a {state.kind}")
        changes = list(_attrs(self.path, state, self.mode, self.owner, self.group))
        yield from changes
        if not changes:
            ctx.noop(f"directory {self.path} exists with mode {self.mode:04o}")


@dataclass(frozen=True)
class Symlink(Operation):
    """A symlink at ``path`` pointing to ``target`` (replaced atomically if it points elsewhere)."""

    path: str
    target: str

    @property
    def id(self) -> str:
        return f"symlink:{self.path}"

    def describe(self) -> str:
        return f"symlink {self.path} -> {self.target}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(PathInfo((self.path,)))[self.path]
        if state is not None and state.kind == "symlink" and state.target == self.target:
            ctx.noop(f"symlink {self.path} already points to {self.target}")
            return
        if state is not None and state.kind == "directory":
            raise OperationError(f"{ctx.host}: {self.path} is a directory, expected a symlink")
        yield Shell("ln", "-sfnT", self.target, self.path)


@dataclass(frozen=True)
class Absent(Operation):
    """Nothing at ``path``. A non-empty directory is removed only with ``recursive=True``."""

    path: str
    recursive: bool = False

    @property
    def id(self) -> str:
        return f"absent:{self.path}"

    def describe(self) -> str:
        return f"remove {self.path}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (PathInfo((self.path,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        state = ctx.fact(PathInfo((self.path,)))[self.path]
        if state is None:
            ctx.noop(f"{self.path} is already absent")
            return
        if state.kind == "directory":
            yield (
                Shell("rm", "-rf", "--", self.path)
                if self.recursive
                else Shell("rmdir", "--", self.path)
            )
            return
        yield Shell("rm", "-f", "--", self.path)


def template(
    path: str,
    name: str,
    context: Mapping[str, Any],
    *,
    root: Traversable | None = None,
    mode: int = 0o644,
    owner: str = "root",
    group: str = "root",
) -> File:
    """A :class:`File` whose content is the jinja2 template ``name`` rendered locally with
    ``context`` (undefined variables are errors naming the template and line).

    Example: ``template("/etc/berth/agent.yaml", "config/agent.yaml.j2", {"node": "n1"})``.
    """
    return File(
        path, render(name, context, root=root).encode(), mode=mode, owner=owner, group=group
    )
