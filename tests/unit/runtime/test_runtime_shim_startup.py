"""The shim is on every pod's startup path: loading it must not import the heavy parts of the
standard library (subprocess, json, pathlib, datetime, ...) — on a node starting many pods at
once those imports cost more CPU than the rest of the shim. Behaviour: test_runtime_node."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parents[3] / "berth" / "runtime"
HEAVY = {"subprocess", "json", "pathlib", "datetime", "signal", "enum", "re", "threading"}

PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import shim
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def test_loading_the_shim_imports_nothing_heavy() -> None:
    # json is imported by the probe itself *before* the snapshot, so it cannot show up; the
    # other heavy modules would.
    result = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(SHIM_DIR)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    loaded = set(json.loads(result.stdout))
    assert "shim" in loaded
    assert loaded & HEAVY == set(), f"the shim imports {sorted(loaded & HEAVY)} at start-up"


def test_the_shim_defers_json_too() -> None:
    result = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import shim; "
         "print(sorted(m for m in ('json', 'subprocess', 'pathlib') if m in sys.modules))",
         str(SHIM_DIR)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert result.stdout.strip() == "[]"
