"""The cluster state directory: where it is, file modes, and the exclusive lock."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.errors import ExitCode, StateError
from provisioner.state import ClusterState, atomic_write, default_base_dir

HOLDER = """
import sys
from pathlib import Path
from provisioner.state import ClusterState
with ClusterState(Path(sys.argv[1])).lock("berth apply -i test.yaml"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_default_base_dir_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("BERTH_STATE_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    assert default_base_dir() == Path.home() / ".local" / "state" / "berth"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert default_base_dir() == tmp_path / "xdg" / "berth"
    monkeypatch.setenv("BERTH_STATE_DIR", str(tmp_path / "mine"))
    assert default_base_dir() == tmp_path / "mine"


def test_open_creates_a_private_directory_per_cluster(tmp_path: Path) -> None:
    state = ClusterState.open("demo", state_dir=tmp_path / "base")
    assert state.root == tmp_path / "base" / "demo"
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700
    assert state.known_hosts == state.root / "known_hosts"
    assert state.pki_dir == state.root / "pki"


def test_open_tightens_a_world_readable_directory(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir(mode=0o755)
    os.chmod(tmp_path / "demo", 0o755)
    state = ClusterState.open("demo", state_dir=tmp_path)
    assert stat.S_IMODE(state.root.stat().st_mode) == 0o700


def test_private_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    state = ClusterState(tmp_path / "s")
    old = os.umask(0)
    try:
        state.write_private(state.secrets_dir / "token", b"x")
        state.write_public(state.pki_dir / "ca.crt", b"y")
    finally:
        os.umask(old)
    assert stat.S_IMODE((state.secrets_dir / "token").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE((state.pki_dir / "ca.crt").stat().st_mode) == 0o644


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "f"
    atomic_write(path, b"one", mode=0o600)
    atomic_write(path, b"two", mode=0o600)
    assert path.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_second_lock_on_the_same_cluster_fails_naming_the_holder(tmp_path: Path) -> None:
    root = tmp_path / "s"
    root.mkdir()
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[3],
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        try:
            with pytest.raises(StateError) as caught, ClusterState(root).lock():
                pass
        finally:
            assert holder.stdin is not None
            holder.stdin.close()
            holder.wait(timeout=10)
    message = caught.value.message
    assert f"cluster state {root} is in use by another berth run (pid {holder.pid} of " in message
    assert "`berth apply -i test.yaml`" in message
    assert caught.value.exit_code == ExitCode.STATE
    with ClusterState(root).lock():  # freed when the holder exited
        pass


def test_lock_is_reentrant_within_one_process(tmp_path: Path) -> None:
    # the CLI holds the lock for a whole run; phases lock again through their own objects
    state = ClusterState(tmp_path)
    with state.lock("outer"), state.lock("inner"), ClusterState(tmp_path).lock():
        pass
    with ClusterState(tmp_path).lock():
        pass
