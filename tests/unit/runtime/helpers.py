"""Builders for layer tars, a fake registry transport (no sockets) and a fake host for pod
sandboxes (no ``ip``/``mount`` run), and the agent adapter over a runc runtime in a temp dir."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from berth.network.command import Completed
from berth.runtime.agent_runtime import RuncAgentRuntime
from berth.runtime.images import ImageService
from berth.runtime.registry import Response
from berth.runtime.runc import RuncRuntime
from berth.runtime.store import ContentStore


@dataclass(frozen=True)
class Entry:
    """One tar member: ``kind`` is file, dir, symlink, hardlink, fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    target: str = ""
    mode: int = 0o644


def make_tar(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode = e.mode
            info.mtime = 1_700_000_000
            if e.kind == "file":
                info.size = len(e.data)
                tar.addfile(info, io.BytesIO(e.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[e.kind]
            info.linkname = e.target
            tar.addfile(info)
    return buf.getvalue()


@dataclass
class FakeTransport:
    """Serves canned responses keyed by URL and records every request."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    protected: dict[str, tuple[str, str]] = field(default_factory=dict)
    """URL -> (token it needs, WWW-Authenticate challenge to send without it)."""

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        self.requests.append((url, dict(headers)))
        if url in self.protected:
            token, challenge = self.protected[url]
            if headers.get("Authorization") != f"Bearer {token}":
                return Response(401, {"WWW-Authenticate": challenge}, io.BytesIO(b""))
        status, hdrs, body = self.routes.get(url, (404, {}, b'{"errors":[]}'))
        return Response(status, hdrs, io.BytesIO(body))


class FakeNetnsHost:
    """Stands in for ``mount``/``umount`` and the namespace maker under a SandboxManager:
    records argv (a namespace made or deleted as ``["netns", "add"|"del", NAME]``), fakes
    netns files. ``missing_ok``: deleting a netns that is not there passes (else it raises)."""

    def __init__(self, netns_dir: Path, *, missing_ok: bool = False) -> None:
        self.netns_dir = netns_dir
        self.missing_ok = missing_ok
        self.calls: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        self.calls.append(list(argv))
        return Completed(tuple(argv), 0, b"", b"")

    async def add_netns(self, path: Path) -> None:
        self.calls.append(["netns", "add", path.name])
        path.touch(exist_ok=False)  # noqa: ASYNC240 (a fake: one empty file)

    def delete_netns(self, path: Path) -> None:
        self.calls.append(["netns", "del", path.name])
        path.unlink(missing_ok=self.missing_ok)


def runc_runtime(tmp_path: Path, **kwargs: Any) -> RuncRuntime:
    """A RuncRuntime kept under ``tmp_path`` (no network, no enforcement); ``kwargs`` go to
    the constructor (a ``runner``, a ``proc`` directory). Container roots are copied unless
    ``overlay_root`` says otherwise: tests with a fake runc do not remove every bundle, and
    an overlay mount left in a temp dir would outlive the test (test_runtime_overlay mounts
    them, and unmounts what it mounted)."""
    return RuncRuntime(
        images=ImageService(ContentStore(tmp_path / "images")),
        network=None,
        state_dir=tmp_path / "state",
        runc_root=tmp_path / "runc",
        enforce=frozenset(),
        **{"overlay_root": False, **kwargs},
    )


def runc_adapter(tmp_path: Path) -> RuncAgentRuntime:
    """The agent's runtime adapter over a RuncRuntime kept under ``tmp_path`` (no network, no
    enforcement)."""
    return RuncAgentRuntime(runc_runtime(tmp_path))
