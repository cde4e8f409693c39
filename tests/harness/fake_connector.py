"""The fake connector: records what it was asked to do and serves canned outputs.

Unit tests use it to drive facts and the engine without a socket. Responses are matched in order:
the first ``(needle, result)`` whose needle occurs in the rendered command wins; otherwise
``default`` is returned. Uploaded files land in :attr:`FakeConnector.files` and can be read back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provisioner.commands import Shell
from provisioner.connectors.base import CommandResult, HostName, render
from provisioner.errors import ConnectError


@dataclass(frozen=True)
class FakeUpload:
    path: str
    content: bytes
    mode: int
    owner: str | None
    group: str | None


Responder = Callable[[str], CommandResult | None]


class FakeConnector:
    """A connector that never leaves the process (see the module docstring)."""

    def __init__(
        self,
        host: str = "fake",
        *,
        responses: list[tuple[str, CommandResult]] | None = None,
        responder: Responder | None = None,
        default: CommandResult | None = None,
        files: dict[str, bytes] | None = None,
    ) -> None:
        self._host = HostName(host)
        self.responses = list(responses or [])
        self.responder = responder
        self.default = default or CommandResult(0, "", "")
        self.files: dict[str, bytes] = dict(files or {})
        self.commands: list[str] = []
        self.uploads: list[FakeUpload] = []
        self.closed = False

    @property
    def host(self) -> HostName:
        return self._host

    def _check_open(self) -> None:
        if self.closed:
            raise ConnectError(f"{self._host}: connection is closed")

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        self._check_open()
        text = render(command)
        self.commands.append(text)
        if self.responder is not None:
            answer = self.responder(text)
            if answer is not None:
                return answer
        for needle, result in self.responses:
            if needle in text:
                return result
        return self.default

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        self._check_open()
        self.uploads.append(FakeUpload(path, content, mode, owner, group))
        self.files[path] = content

    def get(self, path: str) -> bytes:
        self._check_open()
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def close(self) -> None:
        self.closed = True
