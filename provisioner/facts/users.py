"""Facts about local users and groups (``getent``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from provisioner.facts._sh import words
from provisioner.facts.base import Fact

_NAME = re.compile(r"[a-z_][a-z0-9_\-]*\$?")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"not a user or group name: {name!r}")
    return name


@dataclass(frozen=True)
class UserInfo:
    uid: int
    gid: int
    home: str
    shell: str


@dataclass(frozen=True)
class Users(Fact[dict[str, UserInfo | None]]):
    """The passwd entry of each user in ``names`` (``None``: no such user)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in self.names:
            check_name(name)

    def command(self) -> str:
        return f"getent passwd {words(self.names)}"

    def parse(self, output: str, exit_code: int) -> dict[str, UserInfo | None]:
        result: dict[str, UserInfo | None] = dict.fromkeys(self.names)
        for line in output.splitlines():
            fields = line.split(":")
            if len(fields) == 7 and fields[0] in result:
                result[fields[0]] = UserInfo(int(fields[2]), int(fields[3]), fields[5], fields[6])
        return result


@dataclass(frozen=True)
class Groups(Fact[dict[str, int | None]]):
    """The gid of each group in ``names`` (``None``: no such group)."""

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in self.names:
            check_name(name)

    def command(self) -> str:
        return f"getent group {words(self.names)}"

    def parse(self, output: str, exit_code: int) -> dict[str, int | None]:
        result: dict[str, int | None] = dict.fromkeys(self.names)
        for line in output.splitlines():
            fields = line.split(":")
            if len(fields) == 4 and fields[0] in result:
                result[fields[0]] = int(fields[2])
        return result
