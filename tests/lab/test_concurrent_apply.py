"""Concurrent `berth apply` runs on a real host (issue 19, point 2): three started together, one
runs to the end, the other two exit 9 at once naming it.

The host is frozen while the three start: the run that got the lock is stuck connecting, so it
is certainly still running when the other two ask for the lock (no timing luck). Thawed, it
finishes and applies every change once.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provisioner.lab import Lab, run
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab1(lab_factory: LabFactory) -> Lab:
    return lab_factory(1)


def test_three_applies_at_once_one_runs_two_exit_9(lab1: Lab, tmp_path: Path) -> None:
    env = dict(os.environ, BERTH_CACHE_DIR=str(tmp_path / "cache"),
               BERTH_STATE_DIR=str(tmp_path / "state"))  # fmt: skip
    command = [sys.executable, "-m", "provisioner.cli.main", "apply", "-i", str(lab1.spec_path),
               "--phases", "demo", "--yes", "--output", "json"]  # fmt: skip
    exited: queue.Queue[subprocess.Popen[str]] = queue.Queue()

    def report_exit(process: subprocess.Popen[str]) -> None:
        process.wait()
        exited.put(process)

    lab1.freeze("n1")
    runs: list[subprocess.Popen[str]] = []
    try:
        for _ in range(3):
            process = subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            runs.append(process)
            threading.Thread(target=report_exit, args=(process,), daemon=True).start()
        refused = [exited.get(timeout=60) for _ in range(2)]
    finally:
        lab1.thaw("n1")
    try:
        (winner,) = [process for process in runs if process not in refused]
        for process in refused:
            _, err = process.communicate()
            assert process.returncode == 9, err
            flat = " ".join(err.split())
            assert f"is in use by another berth run (pid {winner.pid} of " in flat
            assert f"`berth {' '.join(command[3:])}`" in flat
        out, err = winner.communicate(timeout=240)
        assert winner.returncode == 0, err
    finally:
        for process in runs:
            if process.poll() is None:
                process.kill()
                process.wait()
    events = [json.loads(line) for line in out.splitlines()]
    done = [e for e in events if e["kind"] == "done" and "op" in e["data"]]
    assert done, "the run that held the lock applied nothing"
    code, active, _ = run(lab1, "n1", "systemctl is-active berth-demo.service")
    assert (code, active.strip()) == (0, "active")
    # the lock is free again: the next apply runs, and finds nothing left to change
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240,
                           check=False)  # fmt: skip
    assert again.returncode == 0, again.stderr
    summary = [json.loads(line) for line in again.stdout.splitlines()]
    assert [e for e in summary if e["kind"] == "summary"][-1]["data"]["changes"] == 0
