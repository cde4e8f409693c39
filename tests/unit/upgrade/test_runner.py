"""Upgrade, resume and rollback decisions against a fake cluster (no hosts, no sockets)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from provisioner.errors import OperationError, StateError
from provisioner.upgrade.gate import GateFailure
from provisioner.upgrade.journal import Journal, RunStatus, Step
from provisioner.upgrade.planner import PlannedHost
from provisioner.upgrade.runner import UpgradeHalted, Upgrader
from provisioner.upgrade.version import VersionSkewError

OLD = "0.1.0-aaaaaaaaaaaa"
NEW = "0.2.0-bbbbbbbbbbbb"
HOSTS = [PlannedHost("cp1", True), PlannedHost("w1", False), PlannedHost("w2", False)]


class Killed(BaseException):
    """The operator's process dies (not an error berth could handle)."""


class FakeCluster:
    """Hosts with an active bundle; gates fail for (host, bundle) pairs in ``broken``."""

    def __init__(self, target: str = NEW, *, running: dict[str, str | None] | None = None):
        self._target = target
        self.current: dict[str, str | None] = running or dict.fromkeys((h.name for h in HOSTS), OLD)
        self.installed = {h: {b} for h, b in self.current.items() if b}
        self.cordoned: set[str] = set()
        self.broken: set[tuple[str, str]] = set()
        self.calls: list[tuple[str, str]] = []
        self.kill_at: tuple[str, str] | None = None
        self.restored: Path | None = None
        self.snapshot_fails = False
        self.switched_at = dt.datetime.min

    @property
    def target(self) -> str:
        return self._target

    def _call(self, action: str, host: str) -> None:
        if self.kill_at == (action, host):
            raise Killed
        self.calls.append((action, host))

    def running(self) -> dict[str, str | None]:
        return dict(self.current)

    def snapshot(self, dest: Path) -> Path:
        self._call("snapshot", "cp1")
        if self.snapshot_fails:
            raise OperationError("cp1: datastore snapshot failed (exit 1): disk full")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"db")
        return dest

    def restore_snapshot(self, source: Path) -> None:
        self._call("restore", "cp1")
        self.restored = source

    def install(self, host: str, bundle: str) -> None:
        self._call("install", host)
        self.installed[host].add(bundle)

    def remove(self, host: str, bundle: str) -> None:
        assert self.current[host] != bundle, "removing the active bundle"
        self._call("remove", host)
        self.installed[host].discard(bundle)

    def switch(self, host: str, bundle: str) -> dt.datetime:
        assert bundle in self.installed[host], "switch to a bundle that is not installed"
        self._call(f"switch:{bundle[:5]}", host)
        self.current[host] = bundle
        self.switched_at = dt.datetime.now(dt.UTC)
        return self.switched_at

    def cordon(self, host: str) -> None:
        self._call("cordon", host)
        self.cordoned.add(host)

    def drain(self, host: str) -> str:
        self._call("drain", host)
        return "1 pod(s) evicted"

    def uncordon(self, host: str) -> None:
        self._call("uncordon", host)
        self.cordoned.discard(host)

    def gate(self, host: str, bundle: str, *, since: dt.datetime) -> list[GateFailure]:
        assert since == self.switched_at, "the gate must compare with the host's switch time"
        self._call("gate", host)
        if (host, bundle) in self.broken:
            return [GateFailure("node-ready", "Ready=False (KubeletNotReady)")]
        return []

    def logs(self, host: str) -> str:
        return "\n".join(f"{host} log line {i}" for i in range(50))


def upgrader(cluster: FakeCluster, tmp_path: Path, lines: list[str] | None = None) -> Upgrader:
    out = lines if lines is not None else []
    return Upgrader(
        cluster, hosts=HOSTS, journal_dir=tmp_path / "journal",
        snapshot_dir=tmp_path / "snapshots", max_unavailable=1, report=out.append,
    )  # fmt: skip


def host_steps(tmp_path: Path, host: str) -> list[Step]:
    journal = Journal.latest(tmp_path / "journal")
    assert journal is not None
    return [r.step for r in journal.records() if r.host == host]


def test_an_upgrade_snapshots_first_then_rolls_host_by_host(tmp_path: Path) -> None:
    cluster = FakeCluster()
    progress = upgrader(cluster, tmp_path).upgrade()
    assert progress.status is RunStatus.COMPLETED
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], NEW)
    assert cluster.calls[0] == ("snapshot", "cp1")
    per_host = [
        ("cordon", "cp1"), ("drain", "cp1"), ("install", "cp1"), ("switch:0.2.0", "cp1"),
        ("gate", "cp1"), ("uncordon", "cp1"),
    ]  # fmt: skip
    assert cluster.calls[1:7] == per_host
    assert [h for a, h in cluster.calls if a == "switch:0.2.0"] == ["cp1", "w1", "w2"]
    assert host_steps(tmp_path, "w2") == [
        Step.STARTED, Step.CORDONED, Step.DRAINED, Step.INSTALLED, Step.SWITCHED,
        Step.GATE_OK, Step.UNCORDONED, Step.DONE,
    ]  # fmt: skip
    assert progress.snapshot is not None
    assert Path(progress.snapshot).read_bytes() == b"db"
    assert not cluster.cordoned


def test_skew_problems_refuse_before_any_change(tmp_path: Path) -> None:
    cluster = FakeCluster("0.3.0-cccccccccccc")
    with pytest.raises(VersionSkewError) as caught:
        upgrader(cluster, tmp_path).upgrade()
    assert cluster.calls == []
    assert Journal.latest(tmp_path / "journal") is None
    lines = caught.value.lines()
    assert lines[0].startswith("cp1: 0.1.0 -> 0.3.0 skips minor release(s) 0.2")
    assert lines[3] == "upgrade refused before any change: 3 problem(s)"

    downgrade = FakeCluster("0.0.9-cccccccccccc")
    with pytest.raises(VersionSkewError, match="refused before any change"):
        upgrader(downgrade, tmp_path).upgrade()
    assert downgrade.calls == []
    allowed = upgrader(downgrade, tmp_path).upgrade(allow_downgrade=True)
    assert allowed.status is RunStatus.COMPLETED


def test_a_failed_gate_rolls_that_node_back_and_halts_with_a_report(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.broken.add(("cp1", NEW))
    with pytest.raises(UpgradeHalted) as caught:
        upgrader(cluster, tmp_path).upgrade()
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], OLD)  # cp1 switched back
    assert not any(h != "cp1" for a, h in cluster.calls if a != "snapshot")  # others untouched
    assert ("switch:0.1.0", "cp1") in cluster.calls
    assert not cluster.cordoned
    lines = caught.value.lines()
    assert lines[0] == (
        "upgrade to 0.2.0-bbbbbbbbbbbb halted: health gate failed on cp1: cp1: node-ready"
    )
    assert "cp1: failed check node-ready: Ready=False (KubeletNotReady)" in lines
    assert f"cp1: rolled back to {OLD} automatically; healthy again" in lines
    assert "  cp1 log line 49" in lines
    assert "  cp1 log line 19" not in lines
    assert "berth upgrade --resume" in lines[-1]
    assert "berth rollback" in lines[-1]
    journal = Journal.latest(tmp_path / "journal")
    assert journal is not None
    assert journal.replay().status is RunStatus.HALTED
    assert [r.step for r in journal.records()][-4:] == [
        Step.GATE_FAILED, Step.ROLLED_BACK, Step.UNCORDONED, Step.HALTED,
    ]  # fmt: skip


def test_a_node_that_does_not_come_back_after_the_rollback_is_reported_as_such(
    tmp_path: Path,
) -> None:
    cluster = FakeCluster()
    cluster.broken |= {("w1", NEW), ("w1", OLD)}
    with pytest.raises(UpgradeHalted) as caught:
        upgrader(cluster, tmp_path).upgrade()
    assert any("w1: switched back to" in line and "NOT healthy" in line
               for line in caught.value.lines())  # fmt: skip
    assert "w1" in cluster.cordoned  # left cordoned: it is not healthy
    assert cluster.current["w2"] == OLD


def test_a_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.kill_at = ("gate", "w1")  # after w1 switched, before its gate
    with pytest.raises(Killed):
        upgrader(cluster, tmp_path).upgrade()
    assert cluster.current == {"cp1": NEW, "w1": NEW, "w2": OLD}
    with pytest.raises(StateError, match="unfinished"):
        upgrader(cluster, tmp_path).upgrade()
    cluster.kill_at = None
    cluster.calls.clear()
    lines: list[str] = []
    progress = upgrader(cluster, tmp_path, lines).resume()
    assert progress.status is RunStatus.COMPLETED
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], NEW)
    assert {h for _, h in cluster.calls} == {"w1", "w2"}  # cp1 was done: not touched again
    assert "snapshot" not in {a for a, _ in cluster.calls}
    assert lines[0].startswith("resuming upgrade")
    with pytest.raises(StateError, match="already completed"):
        upgrader(cluster, tmp_path).resume()


def test_resume_needs_the_same_build(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.kill_at = ("drain", "w1")
    with pytest.raises(Killed):
        upgrader(cluster, tmp_path).upgrade()
    other = FakeCluster("0.2.0-dddddddddddd", running=cluster.running())
    with pytest.raises(StateError, match=r"goes to 0\.2\.0-bbbbbbbbbbbb, but this berth ships"):
        upgrader(other, tmp_path).resume()
    with pytest.raises(StateError, match="no upgrade journal"):
        upgrader(cluster, tmp_path / "elsewhere").resume()


def test_rollback_returns_every_host_workers_first(tmp_path: Path) -> None:
    cluster = FakeCluster()
    upgrader(cluster, tmp_path).upgrade()
    cluster.calls.clear()
    progress = upgrader(cluster, tmp_path).rollback()
    assert progress.status is RunStatus.ROLLED_BACK
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], OLD)
    assert [h for a, h in cluster.calls if a == "switch:0.1.0"] == ["w2", "w1", "cp1"]
    assert cluster.restored is None  # the datastore only with --restore-snapshot
    assert cluster.installed == {key: {OLD} for key in ["cp1", "w1", "w2"]}  # as before the run
    with pytest.raises(StateError, match="already rolled back"):
        upgrader(cluster, tmp_path).rollback()


def test_rollback_after_a_kill_between_switch_and_journal_line(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.kill_at = ("gate", "w1")
    with pytest.raises(Killed):
        upgrader(cluster, tmp_path).upgrade()
    journal = Journal.latest(tmp_path / "journal")
    assert journal is not None
    # pretend the kill came before the SWITCHED line of w1 reached the journal
    lines = journal.path.read_text().splitlines()
    assert '"step": "switched"' in lines[-1]
    assert '"w1"' in lines[-1]
    journal.path.write_text("\n".join(lines[:-1]) + "\n")
    cluster.kill_at = None
    cluster.calls.clear()
    upgrader(cluster, tmp_path).rollback(restore_snapshot=True)
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], OLD)
    assert [h for a, h in cluster.calls if a.startswith("switch")] == ["w1", "cp1"]
    assert cluster.restored is not None
    assert cluster.restored.name.endswith(".db")
    assert not cluster.cordoned


def test_nothing_to_do_when_every_host_runs_the_target(tmp_path: Path) -> None:
    cluster = FakeCluster(running=dict.fromkeys(["cp1", "w1", "w2"], NEW))
    lines: list[str] = []
    progress = upgrader(cluster, tmp_path, lines).upgrade()
    assert progress.status is RunStatus.COMPLETED
    assert cluster.calls == []
    assert lines[-1].endswith("nothing to upgrade")


def test_a_failed_snapshot_halts_before_any_change_and_resume_retries_it(tmp_path: Path) -> None:
    cluster = FakeCluster()
    cluster.snapshot_fails = True
    with pytest.raises(UpgradeHalted, match="halted before any change: the datastore snapshot"):
        upgrader(cluster, tmp_path).upgrade()
    assert cluster.calls == [("snapshot", "cp1")]
    assert cluster.current == dict.fromkeys(["cp1", "w1", "w2"], OLD)
    cluster.snapshot_fails = False
    progress = upgrader(cluster, tmp_path).resume()
    assert progress.status is RunStatus.COMPLETED
    assert progress.snapshot is not None
    assert [a for a, _ in cluster.calls].count("snapshot") == 2
