"""Which berth this is: the release and the commit it was built from.

Run from a git checkout (an editable install, or ``python -m`` in the tree), the commit is asked
of git each time (with ``-dirty`` when tracked files differ from it). An installed wheel carries
the commit recorded when it was built (``setup.py`` writes :data:`COMMIT_FILE` into the wheel
when the build runs in a git checkout, or from ``BERTH_BUILD_COMMIT``); otherwise it is
``unknown``.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

COMMIT_FILE = "COMMIT"
"""The package-data file of ``provisioner`` that records the build's commit (wheels only)."""
UNKNOWN = "unknown"


def release() -> str:
    """The release of the installed ``berth`` distribution (``0.0.0+unknown`` without one)."""
    import importlib.metadata  # noqa: PLC0415 - pulls in email.*; only --version asks

    try:
        return importlib.metadata.version("berth")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def checkout_root() -> Path | None:
    """The git checkout this ``provisioner`` runs from, or ``None`` when it is installed
    (a checkout is the directory holding ``provisioner/``, ``pyproject.toml`` and ``.git``)."""
    root = Path(__file__).resolve().parents[1]
    if (root / "pyproject.toml").is_file() and (root / ".git").exists():
        return root
    return None


def git_commit(root: Path) -> str | None:
    """``HEAD`` of the checkout at ``root`` (``-dirty`` when tracked files differ), or ``None``
    when git cannot say."""
    if shutil.which("git") is None:
        return None
    head = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if head.returncode != 0:
        return None
    status = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    dirty = "-dirty" if status.returncode == 0 and status.stdout.strip() else ""
    return head.stdout.strip() + dirty


def recorded_commit() -> str | None:
    """The commit recorded in an installed wheel, if any."""
    resource = files("provisioner") / COMMIT_FILE
    if not resource.is_file():
        return None
    text = resource.read_text(encoding="utf-8").strip()
    return text if text and len(text) <= 64 and text.isprintable() else None


def commit() -> str:
    """The commit this berth runs from or was built from, or ``unknown``."""
    root = checkout_root()
    found = git_commit(root) if root is not None else recorded_commit()
    return found or UNKNOWN


def describe() -> str:
    """``berth <release> (commit <sha>)``: what ``berth --version`` prints."""
    return f"berth {release()} (commit {commit()})"
