"""Unified diffs of planned uploads against what the host has, without ever showing secrets.

A file whose planned or current mode is readable by neither group nor others (keys, tokens) is
never shown, only named. Binary and large files are not diffed.
"""

from __future__ import annotations

import difflib

from provisioner.commands import Upload
from provisioner.connectors.base import Connector
from provisioner.facts.files import PathState

DIFF_LIMIT = 64 * 1024


def upload_diff(connector: Connector, upload: Upload, state: PathState | None) -> str | None:
    """The diff ``upload`` would make to the file in ``state`` (``None``: nothing to show)."""
    host = connector.host
    if upload.mode & 0o044 == 0:
        return f"(content of {upload.path} not shown: mode {upload.mode:04o})"
    try:
        new = upload.content.decode()
    except UnicodeDecodeError:
        return None
    old = ""
    if state is not None and state.kind == "file":
        if state.mode & 0o044 == 0 or state.size > DIFF_LIMIT:
            return None
        try:
            old = connector.get(upload.path).decode()
        except (UnicodeDecodeError, OSError):
            return None
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"{host}:{upload.path}" if state else "/dev/null",
        tofile=f"{host}:{upload.path} (planned)",
    )
    return "".join(lines).rstrip("\n") or None
