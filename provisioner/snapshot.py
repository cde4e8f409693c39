"""Snapshots of the cluster datastore: ``berth snapshot save|restore -i SPEC``.

* etcd: ``etcdctl snapshot save`` on a control-plane host against its own member (etcd-client
  is installed by the etcd phase), checked with ``etcdctl snapshot status``. Restoring is a
  cluster operation: the API servers and every member stop, each member's data directory is
  rebuilt from the snapshot (``etcdctl snapshot restore`` with the spec's member list; the old
  directory is kept next to it), then the members start together and must turn healthy.
* SQLite: a consistent online copy of the API server's database with SQLite's backup API
  (``python3 -c`` on the host, so it works while the API server keeps writing), checked with
  ``PRAGMA integrity_check``. Restoring stops the API server, keeps the old database next to
  it, puts the snapshot in place and starts the API server again.

Snapshots land in the cluster's state directory (``<state>/snapshots/``, 0600: they hold
Secrets) unless ``--output`` names another file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shlex
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from provisioner.commands import Shell
from provisioner.connectors.base import Connector, HostTarget
from provisioner.engine.runner import ssh_connect
from provisioner.errors import ConnectError, OperationError, ProvisionerError
from provisioner.phases.etcd import layout as etcd_layout
from provisioner.phases.etcd.facts import etcdctl
from provisioner.phases.etcd.ops import retrying
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.workflow.inventory import inventory_from_spec

SQLITE_DB = "/var/lib/berth/datastore/state.db"
"""The API server's database (the cluster phases' ``datastore.path``)."""
APISERVER = "berth-apiserver.service"
REMOTE_DIR = "/var/lib/berth/snapshots"
HEALTH_SECONDS = 60

Connect = Callable[[HostTarget], Connector]

SQLITE_BACKUP = """\
import json, os, sqlite3, sys
src, dst = sys.argv[1], sys.argv[2]
if not os.path.exists(src):
    sys.exit("no database at " + src)
tmp = dst + ".partial"
old = os.umask(0o077)
source = sqlite3.connect(src, timeout=30)
target = sqlite3.connect(tmp)
source.backup(target)
source.close()
check = target.execute("PRAGMA integrity_check").fetchone()[0]
target.close()
os.umask(old)
if check != "ok":
    sys.exit("integrity_check: " + check)
os.replace(tmp, dst)
print(json.dumps({"size": os.path.getsize(dst)}))
"""


@dataclass(frozen=True)
class Snapshot:
    """A snapshot on this machine."""

    path: Path
    kind: str  # "etcd" or "sqlite"
    host: str
    size: int
    sha256: str
    revision: int | None = None


def kind_of(spec: ClusterSpec) -> str:
    return "etcd" if spec.uses_etcd else "sqlite"


def default_path(state: ClusterState, spec: ClusterSpec, now: dt.datetime | None = None) -> Path:
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return state.root / "snapshots" / f"{spec.name}-{stamp}.{kind_of(spec)}.db"


def _local_etcdctl() -> tuple[str, ...]:
    return etcdctl((etcd_layout.client_url("127.0.0.1"),))


def save_commands(kind: str, remote: str) -> list[Shell]:
    """What ``save`` runs on the host: the snapshot into ``remote``, then its check (the last
    command prints JSON)."""
    mkdir = Shell("mkdir", "-p", "-m", "0700", REMOTE_DIR)
    if kind == "etcd":
        return [
            mkdir,
            Shell(*_local_etcdctl(), "snapshot", "save", remote),
            Shell("chmod", "0600", remote),
            Shell("etcdctl", "snapshot", "status", remote, "-w", "json"),
        ]
    return [mkdir, Shell("python3", "-c", SQLITE_BACKUP, SQLITE_DB, remote)]


def _stop_if_present(unit: str) -> Shell:
    return Shell("sh", "-c", f"! systemctl cat {unit} >/dev/null 2>&1 || systemctl stop {unit}")


def _start_if_present(unit: str) -> Shell:
    return Shell("sh", "-c", f"! systemctl cat {unit} >/dev/null 2>&1 || systemctl start {unit}")


def sqlite_restore_commands(upload: str, stamp: str) -> list[Shell]:
    """Swap the API server's database for the uploaded snapshot (the old one is kept)."""
    db = shlex.quote(SQLITE_DB)
    keep = shlex.quote(f"{SQLITE_DB}.before-restore-{stamp}")
    return [
        _stop_if_present(APISERVER),
        Shell("sh", "-c", f"if [ -e {db} ]; then mv {db} {keep}; fi; rm -f {db}-wal {db}-shm"),
        Shell("mv", upload, SQLITE_DB),
        Shell("chmod", "0600", SQLITE_DB),
        _start_if_present(APISERVER),
    ]


def etcd_member_restore_commands(
    spec: ClusterSpec, host_name: str, upload: str, stamp: str
) -> list[Shell]:
    """Rebuild one member's data directory from the snapshot (etcd stopped, old data kept)."""
    members = spec.control_plane_hosts
    me = spec.host(host_name)
    cluster = ",".join(f"{h.name}={etcd_layout.peer_url(h.address)}" for h in members)
    data = etcd_layout.DATA
    scratch = f"{data}.restoring"
    return [
        Shell("rm", "-rf", "--", scratch),
        Shell(
            "etcdctl",
            "snapshot",
            "restore",
            upload,
            f"--name={me.name}",
            f"--initial-cluster={cluster}",
            f"--initial-cluster-token=berth-{spec.name}",
            f"--initial-advertise-peer-urls={etcd_layout.peer_url(me.address)}",
            f"--data-dir={scratch}",
        ),
        Shell("mv", "-T", data, f"{data}.before-restore-{stamp}"),
        Shell("mv", "-T", scratch, data),
        Shell("chown", "-R", f"{etcd_layout.USER}:{etcd_layout.USER}", data),
        Shell("chmod", "0700", data),
    ]


def health_wait() -> Shell:
    """Until the local member serves a quorum read (after a restore, all start together)."""
    # "" retries every failure: any answer but healthy means "not yet"
    probe = (*_local_etcdctl(), "endpoint", "health")
    return retrying(probe, retry_on=("",), within=HEALTH_SECONDS)


def _targets(spec: ClusterSpec, state: ClusterState) -> list[HostTarget]:
    inventory = inventory_from_spec(spec, known_hosts=state.known_hosts)
    names = {h.name for h in spec.control_plane_hosts}
    return [t for t in inventory.hosts if t.name in names]


@contextmanager
def _connected(targets: list[HostTarget], connect: Connect) -> Iterator[list[Connector]]:
    opened: list[Connector] = []
    try:
        for target in targets:
            opened.append(connect(target))
        yield opened
    finally:
        for connector in opened:
            connector.close()


def _run(connector: Connector, command: Shell, *, timeout: float = 300) -> str:
    return connector.run(command, timeout=timeout).check(connector.host, command.render()).stdout


def _write_local(path: Path, content: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return hashlib.sha256(content).hexdigest()


def save(
    spec: ClusterSpec,
    state: ClusterState,
    *,
    output: Path | None = None,
    connect: Connect = ssh_connect,
) -> Snapshot:
    """Take a snapshot on the first control-plane host that can, and copy it here."""
    kind = kind_of(spec)
    path = output or default_path(state, spec)
    remote = f"{REMOTE_DIR}/{path.name}"
    problems: list[str] = []
    for target in _targets(spec, state):
        try:
            connector = connect(target)
        except ConnectError as error:
            problems.append(error.message)
            continue
        try:
            *steps, check = save_commands(kind, remote)
            for step in steps:
                _run(connector, step)
            report = json.loads(_run(connector, check) or "{}")
            content = connector.get(remote)
            _run(connector, Shell("rm", "-f", "--", remote))
        except (OperationError, ValueError) as error:
            problems.append(f"{target.name}: {error}")
            continue
        finally:
            connector.close()
        digest = _write_local(path, content)
        revision = report.get("revision")
        return Snapshot(path, kind, str(target.name), len(content), digest,
                        int(revision) if revision is not None else None)  # fmt: skip
    raise OperationError(
        f"no control-plane host could take a {kind} snapshot: " + "; ".join(problems),
        hint="check that the datastore runs (`berth verify -i SPEC`)",
    )


def check_local_sqlite(path: Path) -> None:
    """Refuse a file that is not a sound SQLite database before touching any host."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            result = db.execute("PRAGMA integrity_check").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise ProvisionerError(f"{path}: not a SQLite snapshot ({error})") from error
    if result != "ok":
        raise ProvisionerError(f"{path}: integrity_check failed: {result}")


def restore(
    spec: ClusterSpec,
    state: ClusterState,
    snapshot: Path,
    *,
    report: Callable[[str], None],
    connect: Connect = ssh_connect,
    now: dt.datetime | None = None,
) -> None:
    """Put ``snapshot`` back (see the module docstring); every control-plane host must be up."""
    if not snapshot.is_file():
        raise ProvisionerError(f"{snapshot}: no such snapshot file")
    kind = kind_of(spec)
    if kind == "sqlite":
        check_local_sqlite(snapshot)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    upload = f"{REMOTE_DIR}/restore-{stamp}.db"
    content = snapshot.read_bytes()
    with _connected(_targets(spec, state), connect) as hosts:
        for connector in hosts:
            _run(connector, Shell("mkdir", "-p", "-m", "0700", REMOTE_DIR))
            connector.put(content, upload, mode=0o600)
        if kind == "sqlite":
            for step in sqlite_restore_commands(upload, stamp):
                _run(hosts[0], step)
            report(f"{hosts[0].host}: database restored from {snapshot.name}; API server started")
            return
        status = _run(hosts[0], Shell("etcdctl", "snapshot", "status", upload, "-w", "json"))
        report(f"snapshot {snapshot.name}: {status.strip()}")
        for connector in hosts:
            _run(connector, _stop_if_present(APISERVER))
        for connector in hosts:
            _run(connector, Shell("systemctl", "stop", etcd_layout.UNIT))
        for connector in hosts:
            for step in etcd_member_restore_commands(spec, connector.host, upload, stamp):
                _run(connector, step)
            _run(connector, Shell("rm", "-f", "--", upload))
            report(f"{connector.host}: member data rebuilt (old data kept with .before-restore-"
                   f"{stamp})")  # fmt: skip
        # together: one member alone has no quorum, so a blocking start would never return
        for connector in hosts:
            _run(connector, Shell("systemctl", "start", "--no-block", etcd_layout.UNIT))
        for connector in hosts:
            _run(connector, health_wait(), timeout=HEALTH_SECONDS + 30)
            report(f"{connector.host}: etcd member healthy")
        for connector in hosts:
            _run(connector, _start_if_present(APISERVER))
