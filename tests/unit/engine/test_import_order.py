"""Operator-side modules import on their own: no import cycle makes one of them depend on
which other module happened to be imported first (``berth verify`` and ``berth destroy`` used
to fail when imported before the cluster phases)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "module",
    ["provisioner.verify.run", "provisioner.verify.cluster", "provisioner.destroy"],
)
def test_imports_alone_in_a_fresh_interpreter(module: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
