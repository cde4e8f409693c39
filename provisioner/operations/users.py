"""Local system users and groups."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from provisioner.commands import Command, Shell
from provisioner.facts.base import Fact
from provisioner.facts.users import Groups, Users
from provisioner.operations.base import OpContext, Operation


@dataclass(frozen=True)
class Group(Operation):
    """A group ``name`` (a system group unless ``system=False``)."""

    name: str
    system: bool = True

    @property
    def id(self) -> str:
        return f"group:{self.name}"

    def describe(self) -> str:
        return f"group {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Groups((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(Groups((self.name,)))[self.name] is not None:
            ctx.noop(f"group {self.name} exists")
            return
        yield Shell("groupadd", *(["--system"] if self.system else []), self.name)


@dataclass(frozen=True)
class User(Operation):
    """A user ``name`` with ``home`` and ``shell``; its primary group is a group of the same name.

    Example: ``User("berth", home="/var/lib/berth")``.
    """

    name: str
    home: str = "/nonexistent"
    shell: str = "/usr/sbin/nologin"
    system: bool = True

    @property
    def id(self) -> str:
        return f"user:{self.name}"

    def describe(self) -> str:
        return f"user {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Users((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        user = ctx.fact(Users((self.name,)))[self.name]
        if user is None:
            yield Shell(
                "useradd", *(["--system"] if self.system else []), "--user-group",
                "--no-create-home", "--home-dir", self.home, "--shell", self.shell, self.name,
            )  # fmt: skip
            return
        changes: list[str] = []
        if user.home != self.home:
            changes += ["--home", self.home]
        if user.shell != self.shell:
            changes += ["--shell", self.shell]
        if changes:
            yield Shell("usermod", *changes, self.name)
        else:
            ctx.noop(f"user {self.name} exists (uid {user.uid})")


@dataclass(frozen=True)
class UserAbsent(Operation):
    """No user ``name`` (its files are left in place)."""

    name: str

    @property
    def id(self) -> str:
        return f"user-absent:{self.name}"

    def describe(self) -> str:
        return f"remove user {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Users((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(Users((self.name,)))[self.name] is None:
            ctx.noop(f"user {self.name} does not exist")
            return
        yield Shell("userdel", self.name)


@dataclass(frozen=True)
class GroupAbsent(Operation):
    """No group ``name``."""

    name: str

    @property
    def id(self) -> str:
        return f"group-absent:{self.name}"

    def describe(self) -> str:
        return f"remove group {self.name}"

    def facts(self) -> tuple[Fact[Any], ...]:
        return (Groups((self.name,)),)

    def commands(self, ctx: OpContext) -> Iterator[Command]:
        if ctx.fact(Groups((self.name,)))[self.name] is None:
            ctx.noop(f"group {self.name} does not exist")
            return
        yield Shell("groupdel", self.name)
