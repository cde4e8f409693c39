"""The cluster lock (issue 19, point 2): who holds it, refusing, waiting, taking over a dead
holder's lock, and breaking a lock another machine left behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cluster_lock import (
    ClusterLock,
    ClusterLockedError,
    LockHolder,
    current_holder,
    parse_duration,
)
from provisioner.errors import ExitCode, StateError
from provisioner.state import ClusterState

ROOT = Path(__file__).resolve().parents[3]

HOLDER = """
import sys
from pathlib import Path
from provisioner.state import ClusterState
with ClusterState(Path(sys.argv[1])).lock("berth apply -i test.yaml") as me:
    print(me.id, flush=True)
    sys.stdin.read()
"""


class Holder:
    """Another process holding the lock of ``root`` until :meth:`release` (or a kill)."""

    def __init__(self, root: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert self.process.stdout is not None
        self.lock_id = self.process.stdout.readline().strip()
        assert self.lock_id, "the holder did not take the lock"

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=10) == 0

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Holder]:
    running = Holder(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_a_second_run_is_refused_at_once_naming_the_holder(tmp_path: Path, holder: Holder) -> None:
    started = time.monotonic()
    with pytest.raises(ClusterLockedError) as caught, ClusterState(tmp_path).lock():
        pass
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.exit_code == ExitCode.STATE
    assert error.holder is not None
    assert error.holder.pid == holder.pid
    assert error.holder.id == holder.lock_id
    assert f"pid {holder.pid} of {error.holder.user} on {socket.gethostname()}" in error.message
    assert "`berth apply -i test.yaml`" in error.message
    assert f"since {error.holder.since}" in error.message
    assert error.holder.since.startswith(time.strftime("%Y-", time.gmtime()))
    assert "--wait-lock" in (error.hint or "")


def test_the_record_names_pid_user_machine_command_and_since(tmp_path: Path) -> None:
    with ClusterState(tmp_path).lock("berth destroy -i c.yaml") as me:
        recorded = json.loads((tmp_path / "lock").read_text())
        assert recorded["pid"] == os.getpid()
        assert recorded["machine"] == socket.gethostname()
        assert recorded["command"] == "berth destroy -i c.yaml"
        assert recorded["id"] == me.id
        assert {"user", "since", "machine_id"} <= set(recorded)
    assert (tmp_path / "lock").read_bytes() == b""  # released: nothing left to take over


def test_the_lock_is_taken_over_when_its_holder_was_killed(tmp_path: Path, holder: Holder) -> None:
    holder.kill()  # kill -9 leaves its record behind
    left = current_holder(tmp_path / "lock")
    assert left is not None
    assert left.pid == holder.pid
    said: list[str] = []
    with ClusterState(tmp_path).lock("berth apply", say=said.append) as me:
        assert me.pid == os.getpid()
        assert current_holder(tmp_path / "lock") == me
    assert len(said) == 1
    assert f"taking over the cluster lock left by pid {holder.pid}" in said[0]
    assert "that process is gone" in said[0]


def _remote_record(root: Path) -> LockHolder:
    record = LockHolder(
        id="0123456789abcdef",
        pid=4242,
        user="alice",
        machine="build-7",
        machine_id="another-machine",
        command="berth apply -i cluster.yaml --yes",
        since="2026-12-01T10:00:00+00:00",
    )
    (root / "lock").write_bytes(record.encode())
    return record


def test_a_lock_left_on_another_machine_is_refused_with_how_to_break_it(tmp_path: Path) -> None:
    record = _remote_record(tmp_path)
    with (
        pytest.raises(ClusterLockedError) as caught,
        ClusterState(tmp_path).lock(spec="cluster.yaml"),
    ):
        pass
    message = caught.value.message
    assert "on another machine (pid 4242 of alice on build-7" in message
    assert "cannot tell from here whether it still runs" in message
    assert caught.value.hint is not None
    assert f"berth state unlock -i cluster.yaml {record.id}" in caught.value.hint
    assert current_holder(tmp_path / "lock") == record  # refusing never removes it


def test_breaking_a_lock_needs_its_id(tmp_path: Path) -> None:
    record = _remote_record(tmp_path)
    state = ClusterState(tmp_path)
    with pytest.raises(StateError, match=f"locked with id {record.id}"):
        state.break_lock("ffffffffffffffff")
    assert state.break_lock(record.id) == record
    with state.lock() as me:
        assert me.pid == os.getpid()
    with pytest.raises(StateError, match="is not locked"):
        state.break_lock(record.id)


def test_a_live_holder_cannot_be_broken(tmp_path: Path, holder: Holder) -> None:
    with pytest.raises(StateError, match=f"held by a running berth run \\(pid {holder.pid}"):
        ClusterState(tmp_path).break_lock(holder.lock_id)
    with pytest.raises(ClusterLockedError):  # still held
        ClusterLock(tmp_path).hold().__enter__()


def test_wait_lock_says_it_waits_and_for_whom_then_runs(tmp_path: Path, holder: Holder) -> None:
    waiting = threading.Event()
    said: list[str] = []

    def say(line: str) -> None:
        said.append(line)
        waiting.set()

    got: list[LockHolder | BaseException] = []

    def wait_for_lock() -> None:
        try:
            with ClusterState(tmp_path).lock("berth apply", wait=60, say=say) as me:
                got.append(me)
        except BaseException as error:  # handed to the test thread
            got.append(error)

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    assert waiting.wait(10), "the waiter never said it waits"
    assert not got  # still waiting while the holder runs
    holder.release()
    waiter.join(10)
    assert len(got) == 1
    assert isinstance(got[0], LockHolder)
    assert said[0].startswith("waiting up to 1m for the cluster lock: ")
    assert f"pid {holder.pid} of " in said[0]
    assert len(said) == 1  # said once, not at every poll


def test_wait_lock_gives_up_after_its_timeout_naming_the_holder(
    tmp_path: Path, holder: Holder
) -> None:
    started = time.monotonic()
    with (
        pytest.raises(ClusterLockedError, match=f"pid {holder.pid} of "),
        ClusterState(tmp_path).lock(wait=0.5),
    ):
        pass
    assert 0.5 <= time.monotonic() - started < 5


def test_the_lock_nests_within_one_process_and_excludes_other_processes(tmp_path: Path) -> None:
    # the CLI holds it for the whole run; the pki and etcd phases open their own ClusterState
    # on the same directory and lock again: that must nest, not deadlock or refuse
    with ClusterState(tmp_path).lock("berth apply -i c.yaml") as outer:
        with ClusterState(tmp_path).lock("berth apply (pki)") as inner:
            assert inner == outer
        assert current_holder(tmp_path / "lock") == outer  # the inner exit kept the lock
        probe = subprocess.run(
            [sys.executable, "-c", HOLDER, str(tmp_path)],
            input="",
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=30,
            check=False,
        )
        assert probe.returncode != 0
        assert f"pid {os.getpid()} of " in probe.stderr
        assert "`berth apply -i c.yaml`" in probe.stderr
    with ClusterState(tmp_path).lock():  # free again after the outer exit
        pass


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0), ("0.5", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5x", "5m3", "-1"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_locking_creates_a_missing_state_directory_privately(tmp_path: Path) -> None:
    root = tmp_path / "new" / "cluster"
    with ClusterState(root).lock():
        assert (root / "lock").is_file()
    assert root.stat().st_mode & 0o777 == 0o700


def test_the_cli_waits_with_wait_lock_and_says_for_whom(
    tmp_path: Path, holder: Holder, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--wait-lock 1s` against a holder that stays: it says it waits, then exits 9 naming it
    from provisioner.cli import locking  # noqa: PLC0415

    said: list[str] = []
    monkeypatch.setattr(locking, "_say", said.append)
    with (
        pytest.raises(ClusterLockedError, match=f"pid {holder.pid} of "),
        locking.cluster_locked(ClusterState(tmp_path), wait_lock="1s"),
    ):
        pass
    assert len(said) == 1
    assert said[0].startswith("waiting up to 1s for the cluster lock: ")
    assert f"(pid {holder.pid} of " in said[0]
