"""``berth snapshot``: the SQLite backup script run for real, and the host steps of save and
restore against recording connectors (no network)."""

from __future__ import annotations

import json
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from provisioner import snapshot
from provisioner.commands import Shell
from provisioner.connectors.base import CommandResult, HostName, HostTarget, render
from provisioner.errors import ConnectError, OperationError, ProvisionerError
from provisioner.spec import ClusterSpec, parse_spec
from provisioner.state import ClusterState

STATUS = '{"hash":3166341316,"revision":4711,"totalKey":120,"totalSize":2109440}\n'


def make_spec(tmp: Path, *, etcd: bool) -> ClusterSpec:
    hosts = ["cp1", "cp2", "cp3"] if etcd else ["cp1"]
    lines = [
        "apiVersion: berth.dev/v1alpha1",
        "kind: Cluster",
        "metadata: {name: snap}",
        "spec:",
        "  ssh: {user: root, identityFile: id}",
        f"  datastore: {{type: {'etcd' if etcd else 'sqlite'}}}",
        "  hosts:",
        *(
            f"    - {{name: {h}, address: 10.0.0.1{i}, roles: [control-plane, worker]}}"
            for i, h in enumerate(hosts, 1)
        ),
        "    - {name: w1, address: 10.0.0.21, roles: [worker]}",
    ]
    (tmp / "id").write_text("key")
    return parse_spec("\n".join(lines) + "\n", source=tmp / "cluster.yaml")


@dataclass
class Recorder:
    """A connector that records commands and serves files it was given."""

    name: str
    log: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    fail: str | None = None

    @property
    def host(self) -> HostName:
        return HostName(self.name)

    def run(
        self, command: Shell | str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        text = render(command)
        self.log.append(f"{self.name}: {text}")
        if self.fail and self.fail in text:
            return CommandResult(1, "", "Error: context deadline exceeded")
        if "snapshot status" in text:
            return CommandResult(0, STATUS, "")
        if " snapshot save " in f" {text} ":
            self.files[text.split()[-1]] = b"etcd-snapshot-bytes"
        return CommandResult(0, "", "")

    def put(self, content: bytes, path: str, **_: object) -> None:
        self.log.append(f"{self.name}: put {path} ({len(content)} bytes)")
        self.files[path] = content

    def get(self, path: str) -> bytes:
        return self.files[path]

    def close(self) -> None:
        self.log.append(f"{self.name}: close")


def test_sqlite_backup_script_copies_a_live_wal_database(tmp_path: Path) -> None:
    source = tmp_path / "state.db"
    db = sqlite3.connect(source)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB)")
    db.executemany("INSERT INTO kv VALUES (?, ?)", [(f"/k/{i}", b"x" * 100) for i in range(500)])
    db.commit()  # still open: the rows sit in the WAL, as under a running API server
    target = tmp_path / "snap.db"
    done = subprocess.run(
        [sys.executable, "-c", snapshot.SQLITE_BACKUP, str(source), str(target)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    db.close()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"size": target.stat().st_size}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    copy = sqlite3.connect(target)
    assert copy.execute("SELECT count(*) FROM kv").fetchone() == (500,)
    copy.close()
    snapshot.check_local_sqlite(target)


def test_sqlite_backup_script_refuses_a_missing_database(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", snapshot.SQLITE_BACKUP, str(tmp_path / "nope.db"), "x"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "no database at" in done.stderr


def test_local_check_rejects_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    bogus = tmp_path / "x.db"
    bogus.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ProvisionerError, match="not a SQLite snapshot"):
        snapshot.check_local_sqlite(bogus)


def test_etcd_save_falls_over_to_the_next_host_and_keeps_a_private_copy(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, etcd=True)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    log: list[str] = []

    def connect(target: HostTarget) -> Recorder:
        if target.name == "cp1":
            raise ConnectError("cp1: connection refused")
        return Recorder(str(target.name), log)

    out = tmp_path / "out" / "snap.etcd.db"
    taken = snapshot.save(spec, state, output=out, connect=connect)
    assert (taken.host, taken.kind, taken.revision, taken.size) == ("cp2", "etcd", 4711, 19)
    assert out.read_bytes() == b"etcd-snapshot-bytes"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    remote = "/var/lib/berth/snapshots/snap.etcd.db"
    assert log == [
        "cp2: mkdir -p -m 0700 /var/lib/berth/snapshots",
        "cp2: etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/berth/etcd/pki/ca.crt "
        "--cert=/etc/berth/etcd/pki/client.crt --key=/etc/berth/etcd/pki/client.key "
        f"--dial-timeout=2s --command-timeout=5s snapshot save {remote}",
        f"cp2: chmod 0600 {remote}",
        f"cp2: etcdctl snapshot status {remote} -w json",
        f"cp2: rm -f -- {remote}",
        "cp2: close",
    ]


def test_save_names_every_host_when_none_can(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, etcd=True)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    log: list[str] = []

    def connect(target: HostTarget) -> Recorder:
        return Recorder(str(target.name), log, fail="snapshot save")

    with pytest.raises(OperationError, match=r"cp1: .*cp2: .*cp3: ") as caught:
        snapshot.save(spec, state, connect=connect)
    assert "no control-plane host could take a etcd snapshot" in caught.value.message
    assert not (state.root / "snapshots").exists() or not any((state.root / "snapshots").iterdir())


def test_sqlite_save_default_path_is_in_the_state(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, etcd=False)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    path = snapshot.default_path(state, spec)
    assert path.parent == state.root / "snapshots"
    assert path.name.startswith("snap-")
    assert path.name.endswith(".sqlite.db")
    commands = snapshot.save_commands("sqlite", "/var/lib/berth/snapshots/a.db")
    assert commands[-1].argv[:2] == ("python3", "-c")
    assert commands[-1].argv[3:] == (snapshot.SQLITE_DB, "/var/lib/berth/snapshots/a.db")


def test_etcd_restore_stops_everything_first_and_starts_members_together(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, etcd=True)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    file = tmp_path / "snap.etcd.db"
    file.write_bytes(b"etcd-snapshot-bytes")
    log: list[str] = []
    reported: list[str] = []

    def connect(target: HostTarget) -> Recorder:
        return Recorder(str(target.name), log)

    snapshot.restore(spec, state, file, report=reported.append, connect=connect)
    assert not any(line.startswith("w1") for line in log), "workers are not touched"

    def first(fragment: str) -> int:
        return next(i for i, line in enumerate(log) if fragment in line)

    def last(fragment: str) -> int:
        return max(i for i, line in enumerate(log) if fragment in line)

    assert last("systemctl stop berth-apiserver") < first("systemctl stop berth-etcd")
    assert last("systemctl stop berth-etcd") < first("snapshot restore")
    assert last("snapshot restore") < first("start --no-block berth-etcd")
    assert last("start --no-block") < first("endpoint health")
    assert last("endpoint health") < first("systemctl start berth-apiserver")
    restores = [line for line in log if "snapshot restore" in line]
    assert len(restores) == 3
    assert "--name=cp2" in restores[1]
    assert (
        "--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,"
        "cp3=https://10.0.0.13:2380" in restores[1]
    )
    assert "--initial-advertise-peer-urls=https://10.0.0.12:2380" in restores[1]
    assert reported[-1] == "cp3: etcd member healthy"


def test_sqlite_restore_keeps_the_old_database(tmp_path: Path) -> None:
    commands = [c.render() for c in snapshot.sqlite_restore_commands("/u.db", "T")]
    db = snapshot.SQLITE_DB
    assert commands == [
        "sh -c '! systemctl cat berth-apiserver.service >/dev/null 2>&1 || "
        "systemctl stop berth-apiserver.service'",
        f"sh -c 'if [ -e {db} ]; then mv {db} {db}.before-restore-T; fi; rm -f {db}-wal {db}-shm'",
        f"mv /u.db {db}",
        f"chmod 0600 {db}",
        "sh -c '! systemctl cat berth-apiserver.service >/dev/null 2>&1 || "
        "systemctl start berth-apiserver.service'",
    ]


def test_restore_refuses_a_missing_file(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, etcd=False)
    state = ClusterState.for_spec(spec, state_dir=tmp_path / "state")
    with pytest.raises(ProvisionerError, match="no such snapshot file"):
        snapshot.restore(spec, state, tmp_path / "missing.db", report=print)
