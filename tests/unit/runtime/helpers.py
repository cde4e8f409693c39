"""Builders for layer tars and a fake registry transport (no sockets)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from berth.runtime.registry import Response


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
