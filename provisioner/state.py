"""The operator-side state of one cluster: PKI, pinned host keys, secrets, kubeconfigs, lock.

One directory per cluster, ``<base>/<metadata.name>``, where ``<base>`` is, first match wins:
``--state-dir``, ``$BERTH_STATE_DIR``, ``$XDG_STATE_HOME/berth``, ``~/.local/state/berth``::

    <base>/<name>/                 0700
      lock                         who holds the cluster (see provisioner.cluster_lock), flock'ed
      known_hosts                  host keys pinned on first contact (hostKeyPolicy accept-new)
      pki/                         certificates (0644) and private keys (0600), see provisioner.pki
      secrets/<name>               generated secrets, base64 (0600); encryption-key: Secrets at rest
      kubeconfigs/                 admin.conf, scheduler.conf, ..., nodes/<host>.conf (0600)

Every write is atomic (temporary file in the same directory, then rename). Private files are
created 0600 and directories 0700 from the start, never chmod'ed afterwards, so there is no
window in which a key is readable by others. Nothing here prints or logs file contents.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.cluster_lock import ClusterLock, LockHolder
from provisioner.errors import StateError

if TYPE_CHECKING:
    from provisioner.spec.model import ClusterSpec

ENV_STATE_DIR = "BERTH_STATE_DIR"
ENV_PASSPHRASE = "BERTH_STATE_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)


def default_base_dir() -> Path:
    """Where cluster state directories live when neither ``--state-dir`` nor the env say."""
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "berth"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) as 0700 if missing; refuse a directory others can read."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        os.chmod(path, 0o700)  # an older berth or a umask made it wider; it holds keys
    return path


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` atomically with permission ``mode`` from the first byte."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed or a stale temp file widened it
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    tmp.replace(path)


class ClusterState:
    """The state directory of one cluster (see the module docstring for its layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def for_spec(cls, spec: ClusterSpec, *, state_dir: str | Path | None = None) -> ClusterState:
        """The state of the cluster ``spec`` describes (named by ``metadata.name``)."""
        return cls.open(spec.name, state_dir=state_dir)

    @classmethod
    def open(cls, name: str, *, state_dir: str | Path | None = None) -> ClusterState:
        """The state of cluster ``name`` under ``state_dir`` (or the default base), created
        0700 if missing."""
        base = Path(state_dir).expanduser() if state_dir else default_base_dir()
        try:
            root = ensure_private_dir(base / name)
        except OSError as error:
            raise StateError(
                f"cannot create the cluster state directory {base / name}: {error.strerror}",
                hint=f"pass --state-dir DIR or set {ENV_STATE_DIR} to a writable directory",
            ) from None
        return cls(root)

    # -- layout ---------------------------------------------------------------------------------

    @property
    def pki_dir(self) -> Path:
        return self.root / "pki"

    @property
    def secrets_dir(self) -> Path:
        return self.root / "secrets"

    @property
    def kubeconfig_dir(self) -> Path:
        return self.root / "kubeconfigs"

    @property
    def known_hosts(self) -> Path:
        """Pinned host keys (OpenSSH known_hosts format)."""
        return self.root / "known_hosts"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    # -- secrets --------------------------------------------------------------------------------

    @staticmethod
    def passphrase() -> bytes | None:
        """The passphrase that encrypts CA keys at rest (``$BERTH_STATE_PASSPHRASE``)."""
        value = os.environ.get(ENV_PASSPHRASE)
        return value.encode() if value else None

    def secret(self, name: str, *, nbytes: int = 32) -> tuple[bytes, bool]:
        """The random secret ``secrets/<name>`` (``nbytes`` bytes, stored base64, 0600),
        created on first use; returns it and whether it was just created.

        A file that exists but does not hold ``nbytes`` bytes is an error, never replaced:
        whatever it protects (encrypted Secrets, issued tokens) would be lost.
        """
        path = self.secrets_dir / name
        if path.exists():
            try:
                value = base64.b64decode(path.read_bytes().strip(), validate=True)
            except ValueError:
                value = b""
            if len(value) != nbytes:
                raise StateError(
                    f"{path} is not a base64 {nbytes}-byte key",
                    hint="restore it from a backup of the cluster state",
                )
            return value, False
        value = secrets.token_bytes(nbytes)
        self.write_private(path, base64.b64encode(value) + b"\n")
        return value, True

    def write_private(self, path: Path, data: bytes) -> None:
        """Atomically write a secret (key, token, kubeconfig): file 0600, directories 0700."""
        ensure_private_dir(path.parent)
        atomic_write(path, data, mode=0o600)

    def write_public(self, path: Path, data: bytes) -> None:
        """Atomically write a non-secret file (certificate, public key): 0644."""
        ensure_private_dir(path.parent)
        atomic_write(path, data, mode=0o644)

    # -- lock -----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self,
        purpose: str | None = None,
        *,
        wait: float | None = None,
        say: Callable[[str], None] | None = None,
        spec: str | None = None,
    ) -> Iterator[LockHolder]:
        """Hold the cluster exclusively for the ``with`` block (see
        :mod:`provisioner.cluster_lock`).

        Another berth run on the same cluster fails at once with a
        :class:`~provisioner.cluster_lock.ClusterLockedError` (exit 9) naming the holder (pid,
        user, machine, command, since), or after waiting ``wait`` seconds. Re-entrant within
        one process: a phase that locks inside a command that already holds the lock nests.
        ``spec`` is the spec path the unlock hint names.
        """
        ensure_private_dir(self.root)
        with ClusterLock(self.root, spec=spec).hold(purpose, wait=wait, say=say) as holder:
            yield holder

    def break_lock(self, lock_id: str) -> LockHolder:
        """Remove a lock left by a run that is over (``berth state unlock``)."""
        return ClusterLock(self.root).break_lock(lock_id)


def cache_dir() -> Path:
    """Where the operator caches downloads and builds (berth bundles, .debs): ``$BERTH_CACHE_DIR``
    or ``~/.cache/berth``. Shared by every cluster; nothing secret lives there."""
    return Path(os.environ.get("BERTH_CACHE_DIR", "~/.cache/berth")).expanduser()
