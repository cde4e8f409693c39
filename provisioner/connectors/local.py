"""The local connector: commands run with ``subprocess`` on this machine.

With ``root`` set, file paths given to :meth:`LocalConnector.put` and :meth:`LocalConnector.get`
are resolved inside that directory (``/etc/x`` → ``ROOT/etc/x``) and commands run with the root as
their working directory and ``$BERTH_ROOT`` set; tests use this to exercise operations against a
scratch tree. Commands themselves are not chrooted: a command naming an absolute path touches the
real one, which is why rooted tests keep to file operations.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile
from pathlib import Path

from provisioner.commands import Shell
from provisioner.connectors.base import CommandResult, HostName, render
from provisioner.errors import OperationError


class LocalConnector:
    """Run on this machine, optionally rooted in a directory (see the module docstring)."""

    def __init__(self, host: str = "local", *, root: Path | None = None) -> None:
        self._host = HostName(host)
        self.root = root

    @property
    def host(self) -> HostName:
        return self._host

    def _path(self, path: str) -> Path:
        if self.root is None:
            return Path(path)
        return self.root / path.lstrip("/")

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        env = dict(os.environ)
        if self.root is not None:
            env["BERTH_ROOT"] = str(self.root)
        done = subprocess.run(
            ["/bin/sh", "-c", render(command)],
            input=stdin if stdin is not None else b"",
            capture_output=True,
            timeout=timeout,
            cwd=self.root,
            env=env,
            check=False,
        )
        return CommandResult(
            done.returncode,
            done.stdout.decode(errors="replace"),
            done.stderr.decode(errors="replace"),
        )

    def put(
        self,
        content: bytes,
        path: str,
        *,
        mode: int = 0o644,
        owner: str | None = None,
        group: str | None = None,
    ) -> None:
        target = self._path(path)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.berth-")
        except FileNotFoundError:
            raise OperationError(
                f"{self._host}: cannot write {path}: directory {Path(path).parent} does not exist",
                hint="ensure the directory first (operations.files.Directory)",
            ) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(content)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            if owner or group:
                uid = pwd.getpwnam(owner).pw_uid if owner else -1
                gid = grp.getgrnam(group).gr_gid if group else -1
                os.chown(tmp, uid, gid)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, path: str) -> bytes:
        return self._path(path).read_bytes()

    def close(self) -> None:
        """Nothing to release."""
