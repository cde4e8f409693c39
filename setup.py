"""Build hook: record the git commit a wheel is built from (``berth --version`` reports it).

Everything else about the distribution is declared in ``pyproject.toml``. The commit is taken
from ``BERTH_BUILD_COMMIT`` when set (a build from an unpacked source tree), else from git when
the build runs in a checkout; without either, no file is written and ``berth --version`` says
the commit is unknown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
COMMIT_FILE = "COMMIT"  # provisioner.build_info.COMMIT_FILE (not imported: no deps at build time)


def _git_commit() -> str | None:
    if not (HERE / ".git").exists() or shutil.which("git") is None:
        return None
    head = subprocess.run(
        ["git", "-C", str(HERE), "rev-parse", "--verify", "HEAD"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if head.returncode != 0:
        return None
    status = subprocess.run(
        ["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    dirty = "-dirty" if status.returncode == 0 and status.stdout.strip() else ""
    return head.stdout.strip() + dirty


class BuildWithCommit(build_py):
    """``build_py`` that also writes ``provisioner/COMMIT`` into the build (never the tree)."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install runs from the checkout and asks git itself
        commit = os.environ.get("BERTH_BUILD_COMMIT") or _git_commit()
        if commit:
            target = Path(self.build_lib) / "provisioner" / COMMIT_FILE
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(commit + "\n", encoding="utf-8")


setup(cmdclass={"build_py": BuildWithCommit})
