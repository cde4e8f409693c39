"""Run ``python -m berth.controllers`` against a test API server, as its systemd unit runs
it: its own identity (``system:kube-controller-manager``, no groups), chosen controllers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.harness.apiserver import ServerHandle

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_controller_manager(
    server: ServerHandle, log: Path, controllers: str, extra: Sequence[str] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """Yields the process; on exit stops it and checks its role sufficed (no Forbidden)."""
    kubeconfig = server.kubeconfig("system:kube-controller-manager", groups=[])
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "berth.controllers",
                "--kubeconfig",
                str(kubeconfig),
                "--controllers",
                controllers,
                "--identity",
                "test-kcm",
                *extra,
            ],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)
    text = log.read_text()
    assert "Forbidden" not in text, text
