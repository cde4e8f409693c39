"""The phase sets are written out: importing them alone gives every phase (no registration by
importing some other module first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _fresh(code: str) -> str:
    """Run ``code`` in a new interpreter (this one has imported everything already)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    return done.stdout.strip()


def test_the_cluster_set_has_every_phase_without_importing_the_cluster_package() -> None:
    names = _fresh(
        "from provisioner.phases.sets import PHASE_SETS\n"
        "print(' '.join(p.name for p in PHASE_SETS['cluster']()))"
    )
    assert names.split() == [
        "preflight", "artifacts", "pki", "etcd", "datastore", "lb", "control-plane",
        "agents", "nodes", "cleanup", "verify",
    ]  # fmt: skip


def test_the_set_is_derived_not_accumulated_by_imports() -> None:
    """Reloading the sets module (as a fresh import order would) keeps every phase: nothing
    depends on which module happened to be imported first."""
    counts = _fresh(
        "import importlib\n"
        "import provisioner.phases.sets as sets\n"
        "before = len(sets.cluster_phases())\n"
        "importlib.reload(sets)\n"
        "print(before, len(sets.cluster_phases()))"
    )
    assert counts.split() == ["11", "11"]
