"""Builds of berth for upgrade tests and benches: copies of this checkout with another version.

Each build runs as its own operator process (``python -m provisioner.cli.main`` with
``PYTHONPATH`` on its tree) and ships its own bundle.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from provisioner.artifacts.berth_bundle import write_dist_info

ROOT = Path(__file__).resolve().parents[2]
OLD = "0.1.0"
"""The version of this checkout (pyproject.toml)."""


@dataclass(frozen=True)
class Build:
    """A berth source tree and the release its operator ships."""

    tree: Path
    version: str


def make_build(base: Path, version: str, *, broken: bool = False) -> Build:
    """Copy this checkout, set ``version`` in pyproject.toml; ``broken``: its agent never
    becomes Ready."""
    tree = base / f"berth-{version}{'-broken' if broken else ''}"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for part in ("berth", "provisioner"):
        shutil.copytree(ROOT / part, tree / part, ignore=ignore)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{OLD}"' in pyproject
    (tree / "pyproject.toml").write_text(
        pyproject.replace(f'version = "{OLD}"', f'version = "{version}"', 1)
    )
    # what `pip install` would record: importlib.metadata (berth.__version__) finds this first
    # on PYTHONPATH, so the build knows its own release
    write_dist_info(tree, version)
    if broken:
        node = tree / "berth" / "agent" / "node.py"
        text = node.read_text()
        good = '"Ready", "True", "KubeletReady"'
        assert good in text
        node.write_text(text.replace(good, '"Ready", "False", "KubeletNotReady"'))
    return Build(tree, version)
