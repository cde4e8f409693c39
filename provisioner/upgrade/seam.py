"""The seam between the upgrade logic and the cluster it acts on.

:class:`ClusterOps` is everything :class:`~provisioner.upgrade.runner.Upgrader` does to hosts
and to the API. The real one (:class:`~provisioner.upgrade.cluster.SshClusterOps`) works over
SSH and HTTPS; unit tests pass a fake that records calls and fails where told to.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Protocol

from provisioner.upgrade.gate import GateFailure


class ClusterOps(Protocol):
    """Actions on the hosts and the API of one cluster (hosts are named as in the spec)."""

    @property
    def target(self) -> str:
        """The bundle id this operator ships (``<version>-<hash12>``)."""
        ...

    def running(self) -> dict[str, str | None]:
        """Every host's active bundle (``/opt/berth/current``), ``None`` if berth is absent."""
        ...

    def snapshot(self, dest: Path) -> Path:
        """Snapshot the datastore and copy it to ``dest`` on the operator's machine (0600)."""
        ...

    def restore_snapshot(self, source: Path) -> None:
        """Put ``source`` back as the datastore (stops and restarts the API server)."""
        ...

    def install(self, host: str, bundle: str) -> None:
        """Unpack ``bundle`` next to the active one on ``host``, without switching to it."""
        ...

    def remove(self, host: str, bundle: str) -> None:
        """Delete ``bundle`` from ``host`` (never the active one; absent is fine)."""
        ...

    def switch(self, host: str, bundle: str) -> dt.datetime:
        """Atomically point ``host``'s ``current`` at ``bundle`` and restart its berth units;
        returns the *host's* clock just before the restart (what the gate compares the new
        agent's heartbeat with, so clock skew between operator and host does not matter)."""
        ...

    def cordon(self, host: str) -> None: ...

    def drain(self, host: str) -> str:
        """Evict the node's pods (it is cordoned first); returns a one-line summary."""
        ...

    def uncordon(self, host: str) -> None: ...

    def gate(self, host: str, bundle: str, *, since: dt.datetime) -> list[GateFailure]:
        """Wait until ``host`` passes the health gate on ``bundle``, at most the gate timeout;
        the failed checks of the last observation (empty: passed)."""
        ...

    def logs(self, host: str) -> str:
        """The last lines of the host's berth unit logs (``journalctl``)."""
        ...
