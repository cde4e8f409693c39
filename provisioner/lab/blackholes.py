"""Blackhole routes on this machine for the pod and service blocks of lab clusters.

Clusters on lab hosts run real pod and service networks. The hosts have no route out, and while
any lab exists this machine drops whatever is addressed to those blocks, so a stray packet to a
pod or a ClusterIP never leaves by the machine's default route. Every lab holds the routes (a
file under :data:`HOLDERS`, machine-wide whatever the labs' root directories); the last one to
go removes them. ``/run`` is empty after a reboot, like the routing table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from provisioner.lab.locks import file_lock
from provisioner.lab.system import run

METRIC = "4243"
"""The metric of our routes: a route of ours is told apart from anyone else's."""
HOLDERS = Path("/run/berth-lab/blackhole-holders")


def _holder(lab_dir: Path) -> Path:
    digest = hashlib.sha256(str(lab_dir.resolve()).encode()).hexdigest()[:12]
    return HOLDERS / f"{lab_dir.name}-{digest}"


def hold(lab_dir: Path, cidrs: Sequence[str]) -> None:
    """Record the lab at ``lab_dir`` as a holder and make sure the routes exist."""
    with file_lock(HOLDERS.parent / "blackholes.lock"):
        HOLDERS.mkdir(parents=True, exist_ok=True)
        _holder(lab_dir).touch()
        for cidr in cidrs:
            run(["ip", "route", "replace", "blackhole", cidr, "metric", METRIC])


def release(lab_dir: Path, cidrs: Sequence[str]) -> None:
    """Drop the lab's hold; the last holder removes the routes (safe to repeat)."""
    with file_lock(HOLDERS.parent / "blackholes.lock"):
        _holder(lab_dir).unlink(missing_ok=True)
        if HOLDERS.is_dir() and any(HOLDERS.iterdir()):
            return
        for cidr in cidrs:
            run(["ip", "route", "del", "blackhole", cidr, "metric", METRIC], check=False)


def in_place(cidr: str) -> bool:
    """Whether our blackhole route for ``cidr`` exists."""
    return f"metric {METRIC}" in run(["ip", "route", "show", "type", "blackhole", cidr])
