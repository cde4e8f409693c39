"""Helpers shared by lab tests: tearing labs down (tests/lab and tests/chaos fixtures), applying
a real cluster from the lab's own spec and driving it with kubectl (test_security.py,
test_security_psa.py, test_cluster_workloads.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import yaml

from provisioner.errors import LabError
from provisioner.lab import Lab

BERTH = [sys.executable, "-m", "provisioner.cli.main"]
T = TypeVar("T")


def tear_down_labs(made: list[Lab]) -> None:
    """Bring every lab in ``made`` down, newest first, trying all before failing on any."""
    problems = []
    for lab in reversed(made):
        try:
            lab.down()
        except LabError as exc:
            problems.append(f"{lab.name}: {exc.message}")
    assert not problems, f"lab teardown failed: {problems}"


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float) -> T:
    """Poll ``check`` (twice a second) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def kubectl(
    kubeconfig: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``kubectl`` (one minute at most); the caller judges the exit code."""
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def apply_lab_spec(lab: Lab, work: Path) -> Path:
    """``berth apply`` the spec ``berth lab up`` wrote (keys made absolute), state under
    ``work``; return the admin kubeconfig."""
    document = yaml.safe_load(lab.spec_path.read_text())
    document["spec"]["ssh"]["identityFile"] = str(lab.key_path)
    document["spec"]["ssh"]["knownHostsFile"] = str(lab.known_hosts_path)
    spec = work / "cluster.yaml"
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    state = work / "state"
    env = {**os.environ, "BERTH_STATE_DIR": str(state)}
    applied = subprocess.run(
        [*BERTH, "apply", "-i", str(spec), "--yes"],
        capture_output=True, text=True, env=env, timeout=600, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stdout[-4000:] + applied.stderr[-2000:]
    return state / lab.name / "kubeconfigs" / "admin.conf"
