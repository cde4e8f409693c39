"""The Vagrantfile (three Debian 12 machines matching inventories/vagrant.yaml) is valid for
Debian's vagrant, checked with `vagrant validate` without a provider (none runs on CI machines).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _validate(directory: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "VAGRANT_HOME": str(home / ".vagrant.d")}
    return subprocess.run(
        ["vagrant", "validate", "--ignore-provider"], cwd=directory, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is installed by `make setup`")
def test_vagrantfile_validates(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(REPO / "Vagrantfile", work / "Vagrantfile")
    result = _validate(work, tmp_path)  # a scratch HOME: the Vagrantfile makes a key there
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Vagrantfile validated successfully" in result.stdout
    assert (tmp_path / ".ssh" / "berth_vagrant_ed25519.pub").exists()


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is installed by `make setup`")
def test_a_broken_vagrantfile_is_refused(tmp_path: Path) -> None:
    work = tmp_path / "project"
    work.mkdir()
    box = 'config.vm.box = ENV.fetch("BERTH_VAGRANT_BOX", "debian/bookworm64")'
    text = (REPO / "Vagrantfile").read_text()
    assert box in text
    text = text.replace(box, "config.vm.box = nil", 1)
    (work / "Vagrantfile").write_text(text)
    result = _validate(work, tmp_path)
    assert result.returncode != 0
    assert "box" in (result.stdout + result.stderr).lower()
