"""`pki.ensure` on an existing tree: exactly the re-issues the spec and the clock call for."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

import pytest

from provisioner import pki
from provisioner.errors import StateError
from provisioner.state import ClusterState
from tests.unit.pki.conftest import HA, NOW, ha_spec, snapshot

LEAVES = {r.id for r in pki.expand(ha_spec()) if not r.is_ca}


def changed(report: pki.PkiReport, kind: str = "reissued") -> set[str]:
    return {a.name for a in report.actions if a.action == kind}


def test_second_run_keeps_everything_and_writes_nothing(tree: ClusterState) -> None:
    before = snapshot(tree)
    report = pki.ensure(ha_spec(), tree, now=NOW + dt.timedelta(days=1))
    assert report.changed == []
    assert report.action("apiserver").reason == "valid, 364 day(s) left"
    assert snapshot(tree) == before


def test_leaves_inside_the_renewal_window_are_reissued_cas_kept(tree: ClusterState) -> None:
    report = pki.ensure(ha_spec(), tree, now=NOW + dt.timedelta(days=340))
    assert changed(report) == LEAVES
    assert report.action("admin").reason == "expires in 25 day(s), inside the 30-day renewal window"
    assert report.action("ca").action == "kept"
    assert report.action("etcd-ca").action == "kept"
    assert changed(report, "updated") == {
        f"kubeconfigs/{f}"
        for f in (
            "admin.conf",
            "scheduler.conf",
            "controller-manager.conf",
            "proxy.conf",
            "ingress.conf",
            "nodes/cp1.conf",
            "nodes/cp2.conf",
            "nodes/cp3.conf",
            "nodes/w1.conf",
        )
    }


def test_outside_the_window_nothing_is_reissued(tree: ClusterState) -> None:
    report = pki.ensure(ha_spec(), tree, now=NOW + dt.timedelta(days=330))
    assert report.changed == []


def test_the_window_is_configurable(tree: ClusterState) -> None:
    spec = ha_spec(HA + "  certificates: {renewBeforeDays: 60}\n")
    report = pki.ensure(spec, tree, now=NOW + dt.timedelta(days=330))
    assert changed(report) == LEAVES


def test_an_expired_ca_is_replaced_and_every_leaf_it_signed_follows(tree: ClusterState) -> None:
    report = pki.ensure(ha_spec(), tree, now=NOW + dt.timedelta(days=3651))
    assert changed(report) >= {"ca", "etcd-ca"}
    assert report.action("ca").reason.startswith("expired on ")
    assert changed(report) == LEAVES | {"ca", "etcd-ca"}
    assert "not signed by the current 'ca' CA" in report.action("admin").reason


def test_a_ca_near_expiry_is_kept_with_a_warning(tree: ClusterState) -> None:
    report = pki.ensure(ha_spec(), tree, now=NOW + dt.timedelta(days=3640))
    assert report.action("ca").action == "kept"
    assert any(w.startswith("CA 'ca' expires in 10 day(s)") for w in report.warnings)


def test_a_changed_worker_address_reissues_only_its_serving_cert(tree: ClusterState) -> None:
    spec = ha_spec(HA.replace("10.231.1.21", "10.231.1.22"))
    report = pki.ensure(spec, tree, now=NOW)
    assert changed(report) == {"agent-serving-w1"}
    assert (
        report.action("agent-serving-w1").reason == "SANs changed: +IP:10.231.1.22, -IP:10.231.1.21"
    )


def test_a_changed_control_plane_address_reissues_the_certs_naming_it(tree: ClusterState) -> None:
    spec = ha_spec(HA.replace("10.231.1.12", "10.231.1.52"))
    report = pki.ensure(spec, tree, now=NOW)
    assert changed(report) == {"apiserver", "etcd-server-cp2", "etcd-peer-cp2", "agent-serving-cp2"}
    assert changed(report, "updated") == set()


def test_an_extra_san_reissues_only_the_apiserver(tree: ClusterState) -> None:
    spec = ha_spec(HA.replace("extraSANs: [10.231.1.100]", "extraSANs: [10.231.1.100, lb.example]"))
    report = pki.ensure(spec, tree, now=NOW)
    assert changed(report) == {"apiserver"}
    assert report.action("apiserver").reason == "SANs changed: +DNS:lb.example"


def test_a_new_host_gets_its_certs_and_nothing_else_changes(tree: ClusterState) -> None:
    spec = ha_spec(
        HA.replace(
            "  datastore:", "    - {name: w2, address: 10.231.1.22, roles: [worker]}\n  datastore:"
        )
    )
    report = pki.ensure(spec, tree, now=NOW)
    assert changed(report, "created") == {
        "agent-client-w2",
        "agent-serving-w2",
        "kubeconfigs/nodes/w2.conf",
    }
    assert changed(report) == set()


def test_a_removed_host_leaves_orphans_reported(tree: ClusterState) -> None:
    spec = ha_spec(HA.replace("    - {name: w1, address: 10.231.1.21, roles: [worker]}\n", ""))
    report = pki.ensure(spec, tree, now=NOW)
    assert report.orphans == [
        "pki/agent-client-w1.crt",
        "pki/agent-serving-w1.crt",
        "kubeconfigs/nodes/w1.conf",
    ]
    assert report.changed == []


def test_renew_reissues_every_leaf_and_keeps_the_cas(tree: ClusterState) -> None:
    ca_before = (tree.pki_dir / "ca.crt").read_bytes()
    admin_before = (tree.pki_dir / "admin.crt").read_bytes()
    report = pki.ensure(ha_spec(), tree, renew_leaves=True)
    assert changed(report) == LEAVES
    assert {report.action(n).reason for n in LEAVES} == {"renewal requested"}
    assert (tree.pki_dir / "ca.crt").read_bytes() == ca_before
    assert (tree.pki_dir / "admin.crt").read_bytes() != admin_before
    done = subprocess.run(
        [
            "openssl",
            "verify",
            "-CAfile",
            str(tree.pki_dir / "ca.crt"),
            str(tree.pki_dir / "admin.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_deleted_key_or_corrupt_cert_is_reissued(tree: ClusterState) -> None:
    (tree.pki_dir / "proxy.key").unlink()
    (tree.pki_dir / "scheduler.crt").write_text("garbage")
    report = pki.ensure(ha_spec(), tree, now=NOW)
    assert changed(report) == {"proxy", "scheduler"}
    assert report.action("proxy").reason == "proxy.key is missing or unreadable"
    assert report.action("scheduler").reason == "scheduler.crt is missing or unreadable"


def test_a_swapped_key_is_detected(tree: ClusterState) -> None:
    (tree.pki_dir / "admin.key").write_bytes((tree.pki_dir / "proxy.key").read_bytes())
    report = pki.ensure(ha_spec(), tree, now=NOW)
    assert changed(report) == {"admin"}
    assert report.action("admin").reason == "the private key does not match the certificate"


def test_dry_run_leaves_the_state_untouched(tree: ClusterState, tmp_path: Path) -> None:
    before = snapshot(tree)
    scratch = tmp_path / "scratch"
    report = pki.ensure(
        ha_spec(), tree, now=NOW + dt.timedelta(days=340), dry_run=True, scratch_dir=scratch
    )
    assert report.dry_run
    assert report.state_root == scratch / "ha"
    assert changed(report) == LEAVES
    assert snapshot(tree) == before
    assert (scratch / "ha" / "pki" / "admin.crt").read_bytes() != before["pki/admin.crt"]


def test_ca_keys_are_encrypted_at_rest_with_a_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BERTH_STATE_PASSPHRASE", "correct horse")
    state = ClusterState(tmp_path / "ha")
    report = pki.ensure(ha_spec(), state, now=NOW)
    assert report.warnings == []
    ca_key = (state.pki_dir / "ca.key").read_bytes()
    assert ca_key.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert (state.pki_dir / "admin.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    done = subprocess.run(
        [
            "openssl",
            "pkey",
            "-in",
            str(state.pki_dir / "ca.key"),
            "-passin",
            "pass:correct horse",
            "-noout",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert pki.ensure(ha_spec(), state, now=NOW).changed == []

    monkeypatch.setenv("BERTH_STATE_PASSPHRASE", "wrong")
    with pytest.raises(StateError, match=r"cannot decrypt .*ca\.key: wrong BERTH_STATE_PASSPHRASE"):
        pki.ensure(ha_spec(), state, now=NOW)
    monkeypatch.delenv("BERTH_STATE_PASSPHRASE")
    with pytest.raises(
        StateError, match=r"ca\.key is encrypted and BERTH_STATE_PASSPHRASE is not set"
    ):
        pki.ensure(ha_spec(), state, now=NOW)


def test_without_a_passphrase_there_is_a_warning_then_setting_one_encrypts(
    tree: ClusterState, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = pki.ensure(ha_spec(), tree, now=NOW)
    assert report.warnings == [
        f"BERTH_STATE_PASSPHRASE is not set: CA private keys in {tree.pki_dir} are stored "
        "unencrypted (protected by file permissions only)"
    ]
    monkeypatch.setenv("BERTH_STATE_PASSPHRASE", "s3cret")
    report = pki.ensure(ha_spec(), tree, now=NOW)
    assert report.action("ca").reason.endswith("key now encrypted at rest")
    assert (tree.pki_dir / "ca.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    assert changed(report) == set()


def test_a_corrupt_encryption_key_is_never_replaced(tree: ClusterState) -> None:
    path = tree.secrets_dir / "encryption-key"
    path.write_text(base64.b64encode(b"short").decode())
    with pytest.raises(StateError, match="not a base64 32-byte key"):
        pki.ensure(ha_spec(), tree, now=NOW)
    assert path.read_text() == base64.b64encode(b"short").decode()


def test_reports_never_carry_key_material(tree: ClusterState) -> None:
    report = pki.ensure(ha_spec(), tree, renew_leaves=True)
    text = repr(report)
    assert "PRIVATE KEY" not in text
    assert "BEGIN" not in text
