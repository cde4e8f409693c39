"""The engine against real lab hosts (systemd-nspawn, sshd, strict host keys).

We test these behaviours on 3 hosts with the demo phase set (a user, directories, a templated
config, a symlink, a systemd unit restarted on config change, and a real ``tree`` .deb fetched
with ``apt-get download``):

* the CLI applies everything, a second apply reports zero changes;
* an SSH connection killed half-way through an upload leaves no partial file, and re-applying
  converges (no temp files left either);
* a power-cut host aborts the apply before any change on any host, and converges once back;
* a changed host key is refused, naming both fingerprints;
* ``plan`` against a drifted host shows exactly the drift, and a saved plan refuses it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import paramiko
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from provisioner.connectors.base import HostTarget
from provisioner.connectors.known_hosts import fingerprint
from provisioner.connectors.ssh import SSHConnector
from provisioner.engine.plan import Plan, PlanDriftError
from provisioner.engine.runner import Engine, HostsFailed, RunContext, ssh_connect
from provisioner.errors import ConnectError, ExitCode, PreflightError
from provisioner.lab import Lab, run
from provisioner.operations.base import Operation
from provisioner.operations.files import File
from provisioner.phases.demo import demo_phases
from provisioner.phases.preflight import preflight_phase
from provisioner.reporting import CollectingReporter
from provisioner.spec import load_spec
from provisioner.workflow import Phase, PhaseData, select
from provisioner.workflow.inventory import inventory_from_spec
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

BIG = "/var/lib/berth-demo/big.bin"
BIG_CONTENT = hashlib.sha256(b"seed").digest() * (4 * 1024 * 1024 // 32)  # 4 MiB


@pytest.fixture(scope="module")
def lab3(lab_factory: LabFactory) -> Lab:
    return lab_factory(3)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("berth-cache")


def _big_phase() -> Phase:
    def ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
        return (File(BIG, BIG_CONTENT),)

    return Phase("big", "Ship a large file", operations=ops)


def _engine(
    lab: Lab,
    cache: Path,
    *,
    phases: list[Phase] | None = None,
    connect: Any = ssh_connect,
) -> Engine:
    spec = load_spec(lab.spec_path)
    ctx = RunContext(inventory_from_spec(spec), cache_dir=cache, spec=spec, phase_set="demo")
    chosen = select(phases if phases is not None else demo_phases())
    return Engine(ctx, chosen, connect=connect, reporter=CollectingReporter())


def _converge(lab: Lab, cache: Path, phases: list[Phase] | None = None) -> None:
    with _engine(lab, cache, phases=phases) as engine:
        engine.connect_all()
        engine.apply()


def _sh(lab: Lab, host: str, command: str) -> str:
    code, out, err = run(lab, host, command)
    assert code == 0, f"{host}: {command}: {err}"
    return out


def _cli(lab: Lab, cache: Path, *args: str) -> list[dict[str, Any]]:
    env = dict(os.environ, BERTH_CACHE_DIR=str(cache), BERTH_STATE_DIR=str(cache / "state"))
    done = subprocess.run(
        [sys.executable, "-m", "provisioner.cli.main", *args], capture_output=True, text=True,
        env=env, check=False, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_cli_apply_converges_and_a_second_apply_changes_nothing(lab3: Lab, cache: Path) -> None:
    spec = str(lab3.spec_path)
    first = _cli(lab3, cache, "apply", "-i", spec, "--phases", "demo", "--yes", "--output", "json")
    done = [e for e in first if e["kind"] == "done" and "op" in e["data"]]
    assert {e["host"] for e in done} == {"n1", "n2", "n3"}
    for host in ("n1", "n2", "n3"):
        address = lab3.host(host).address
        assert _sh(lab3, host, "systemctl is-active berth-demo.service").strip() == "active"
        assert _sh(lab3, host, "readlink /usr/local/bin/berth-demo-tree").strip() == "/usr/bin/tree"
        page = _sh(
            lab3, host,
            f"python3 -c \"import urllib.request as u; print(u.urlopen('http://{address}:8099')"
            ".read().decode())\"",
        )  # fmt: skip
        assert page.strip() == f"<h1>{host}</h1>"

    second = _cli(lab3, cache, "apply", "-i", spec, "--phases", "demo", "--yes", "--output", "json")
    assert [e for e in second if e["kind"] in ("change", "error")] == []
    assert [e for e in second if e["kind"] == "done" and "op" in e["data"]] == []
    summary = [e for e in second if e["kind"] == "summary"]
    assert summary[-1]["data"]["changes"] == 0


def test_installed_package_matches_the_shipped_deb(lab3: Lab, cache: Path) -> None:
    _converge(lab3, cache)
    debs = sorted((cache / "debs").glob("tree_*.deb"))
    assert debs, "the .deb was not cached"
    version = debs[0].name.split("_")[1]
    for host in ("n1", "n2", "n3"):
        assert _sh(lab3, host, "dpkg-query -W -f='${Version}' tree") == version
        digest = hashlib.sha256(debs[0].read_bytes()).hexdigest()
        _sh(lab3, host, f"test -f /var/lib/berth/artifacts/{digest}.deb")


def test_connection_killed_mid_upload_leaves_no_partial_file_and_reapply_converges(
    lab3: Lab, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _converge(lab3, cache)
    for host in ("n1", "n2", "n3"):
        _sh(lab3, host, f"rm -f {BIG} /var/lib/berth-demo/.big.bin.berth-*")
    original = paramiko.sftp_file.SFTPFile._write  # type: ignore[attr-defined]
    written = {"bytes": 0, "cut": False}

    def cutting(self: paramiko.sftp_file.SFTPFile, data: bytes) -> Any:
        if not written["cut"] and written["bytes"] > 1_000_000:
            written["cut"] = True
            self.sftp.sock.get_transport().sock.close()  # sever the TCP connection
        written["bytes"] += len(data)
        return original(self, data)

    monkeypatch.setattr(paramiko.sftp_file.SFTPFile, "_write", cutting)
    with _engine(lab3, cache, phases=[_big_phase()]) as engine:
        engine.parallel = 1  # one host at a time: exactly the first upload is cut
        engine.connect_all()
        with pytest.raises(HostsFailed) as caught:
            engine.apply()
    monkeypatch.undo()
    assert len(caught.value.problems) == 1
    cut_host = caught.value.problems[0].split()[1].rstrip(":")
    # "[big] HOST: <operation>: connection lost while uploading <path> ..."
    assert caught.value.problems[0].startswith(f"[big] {cut_host}: file {BIG}: ")
    assert f"connection lost while uploading {BIG}" in caught.value.problems[0]
    # the target never holds part of the content: it is absent; the partial bytes sit in a temp
    assert _sh(lab3, cut_host, f"test -e {BIG} && echo present || echo absent").strip() == "absent"
    assert _sh(lab3, cut_host, "ls -A /var/lib/berth-demo").split().count("big.bin") == 0

    _converge(lab3, cache, phases=[_big_phase()])
    expected = hashlib.sha256(BIG_CONTENT).hexdigest()
    for host in ("n1", "n2", "n3"):
        assert _sh(lab3, host, f"sha256sum {BIG}").split()[0] == expected
        leftovers = _sh(lab3, host, "ls -A /var/lib/berth-demo").split()
        assert [name for name in leftovers if ".berth-" in name] == []


def test_power_cut_host_aborts_before_any_change_then_converges(lab3: Lab, cache: Path) -> None:
    _converge(lab3, cache)
    _sh(lab3, "n1", "echo drift > /etc/berth-demo/demo.conf")
    lab3.kill("n3")
    try:
        with _engine(lab3, cache) as engine, pytest.raises(HostsFailed) as caught:
            engine.connect_all()
        assert caught.value.exit_code == ExitCode.CONNECTION
        assert [p.split(":")[0] for p in caught.value.problems] == ["n3"]
        assert _sh(lab3, "n1", "cat /etc/berth-demo/demo.conf") == "drift\n"  # untouched
    finally:
        lab3.start("n3")
    _converge(lab3, cache)
    assert "listen=" in _sh(lab3, "n1", "cat /etc/berth-demo/demo.conf")
    assert _sh(lab3, "n3", "systemctl is-active berth-demo.service").strip() == "active"


def test_changed_host_key_is_refused_with_both_fingerprints(lab3: Lab, tmp_path: Path) -> None:
    real_line = next(
        line for line in lab3.known_hosts_path.read_text().splitlines()
        if line.startswith(lab3.host("n1").address + " ")
    )  # fmt: skip
    real_key = paramiko.Ed25519Key(data=base64.b64decode(real_line.split()[2]))
    impostor = Ed25519PrivateKey.generate().public_key()
    impostor_key = paramiko.Ed25519Key(data=_openssh_blob(impostor))
    pinned = tmp_path / "known_hosts"
    pinned.write_text(f"{lab3.host('n1').address} ssh-ed25519 {impostor_key.get_base64()}\n")
    target = HostTarget(
        name=inventory_from_spec(load_spec(lab3.spec_path)).host("n1").name,
        address=lab3.host("n1").address,
        identity_file=lab3.key_path,
        known_hosts=pinned,
        retries=0,
    )
    with pytest.raises(ConnectError) as caught:
        SSHConnector(target).connect()
    message = caught.value.message
    assert message.startswith(f"n1 ({lab3.host('n1').address}:22): HOST KEY CHANGED")
    assert fingerprint(impostor_key) in message
    assert fingerprint(real_key) in message
    assert caught.value.hint is not None
    assert f"ssh-keygen -f {pinned} -R" in caught.value.hint


def _openssh_blob(public: Ed25519PublicKey) -> bytes:
    text = public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return base64.b64decode(text.split()[1])


def test_plan_shows_exactly_the_drift_and_a_saved_plan_refuses_more(
    lab3: Lab, cache: Path, tmp_path: Path
) -> None:
    _converge(lab3, cache)
    _sh(lab3, "n2", "echo listen=tampered > /etc/berth-demo/demo.conf")
    _sh(lab3, "n2", "systemctl stop berth-demo.service")
    with _engine(lab3, cache) as engine:
        engine.connect_all()
        plan = engine.plan()
    assert [(o.phase, o.host, o.op) for o in plan.changes] == [
        ("demo", "n2", "file:/etc/berth-demo/demo.conf"),
        ("demo", "n2", "service:berth-demo.service"),
    ]
    conf, service = plan.changes
    assert conf.diff is not None
    assert "-listen=tampered" in conf.diff
    assert f"+listen={lab3.host('n2').address}:8099" in conf.diff
    assert service.commands == ["systemctl start berth-demo.service"]

    saved = tmp_path / "plan.json"
    plan.save(saved)
    _sh(lab3, "n2", "echo more > /var/lib/berth-demo/index.html")
    with _engine(lab3, cache) as engine:
        engine.connect_all()
        with pytest.raises(PlanDriftError) as caught:
            engine.apply(Plan.load(saved))
    assert caught.value.problems == [
        'n2: drifted since the plan: PathInfo{"paths":["/var/lib/berth-demo/index.html"]}'
    ]
    assert _sh(lab3, "n2", "cat /etc/berth-demo/demo.conf") == "listen=tampered\n"
    _converge(lab3, cache)
    assert _sh(lab3, "n2", "systemctl is-active berth-demo.service").strip() == "active"


def test_preflight_reports_every_problem_on_every_host_at_once(lab3: Lab, cache: Path) -> None:
    # port 22 counts as "must be free" here so that every reachable host has a problem too
    phases = [preflight_phase(ports=lambda d, h: (22,), peer_ports=lambda d, h: (22,))]
    lab3.kill("n3")
    try:
        with _engine(lab3, cache, phases=phases) as engine:
            engine.connect_all(tolerate=True)
            with pytest.raises(PreflightError) as caught:
                engine.preflight()
    finally:
        lab3.start("n3")
    problems = caught.value.problems
    assert len(problems) == 3
    assert problems[0].startswith("[preflight] n3: unreachable: could not connect to")
    assert problems[1:] == [
        "[preflight] n1: port 22/tcp is already in use",
        "[preflight] n2: port 22/tcp is already in use",
    ]
    assert caught.value.exit_code == ExitCode.PREFLIGHT


def test_cli_saved_plan_applies_exactly_once(lab3: Lab, cache: Path, tmp_path: Path) -> None:
    _converge(lab3, cache)
    _sh(lab3, "n3", "rm /usr/local/bin/berth-demo-tree")
    saved = tmp_path / "plan.json"
    spec = str(lab3.spec_path)
    planned = _cli(lab3, cache, "plan", "-i", spec, "--phases", "demo", "-o", str(saved),
                   "--output", "json")  # fmt: skip
    changes = [(e["phase"], e["host"], e["data"]["op"]) for e in planned if e["kind"] == "change"]
    assert changes == [("demo", "n3", "symlink:/usr/local/bin/berth-demo-tree")]
    applied = _cli(lab3, cache, "apply", str(saved), "--output", "json")
    done = [
        (e["phase"], e["host"], e["data"]["op"])
        for e in applied
        if e["kind"] == "done" and e["host"]
    ]
    assert done == changes
    assert _sh(lab3, "n3", "readlink /usr/local/bin/berth-demo-tree").strip() == "/usr/bin/tree"
    # the plan described a host that no longer exists: applying it again is refused
    env = dict(os.environ, BERTH_CACHE_DIR=str(cache), BERTH_STATE_DIR=str(cache / "state"))
    again = subprocess.run(
        [sys.executable, "-m", "provisioner.cli.main", "apply", str(saved)],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert again.returncode == ExitCode.STATE
    assert "n3: drifted since the plan: PathInfo" in again.stderr
