"""Which files go to which host, expiry warnings for every command, generated secrets."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from provisioner import pki
from provisioner.errors import StateError
from provisioner.state import ClusterState
from tests.unit.pki.conftest import NOW, ha_spec


def remote(state: ClusterState, host: str) -> dict[str, tuple[Path, int]]:
    return {f.remote_path: (f.source, f.mode) for f in pki.files_for_host(ha_spec(), state, host)}


def test_a_worker_gets_its_own_credentials_only(pristine: ClusterState) -> None:
    files = remote(pristine, "w1")
    assert set(files) == {
        "/etc/berth/pki/ca.crt",
        "/etc/berth/pki/agent-serving.crt",
        "/etc/berth/pki/agent-serving.key",
        "/etc/berth/kubeconfigs/agent.conf",
        "/etc/berth/kubeconfigs/proxy.conf",
        "/etc/berth/kubeconfigs/ingress.conf",
    }
    assert files["/etc/berth/pki/agent-serving.key"] == (
        pristine.pki_dir / "agent-serving-w1.key",
        0o600,
    )
    assert (
        files["/etc/berth/kubeconfigs/agent.conf"][0]
        == pristine.kubeconfig_dir / "nodes" / "w1.conf"
    )


def test_a_control_plane_host_gets_the_control_plane_and_its_etcd_member(
    pristine: ClusterState,
) -> None:
    files = remote(pristine, "cp2")
    assert files["/etc/berth/pki/etcd-peer.key"] == (pristine.pki_dir / "etcd-peer-cp2.key", 0o600)
    assert files["/etc/berth/pki/etcd-server.crt"] == (
        pristine.pki_dir / "etcd-server-cp2.crt",
        0o644,
    )
    assert files["/etc/berth/pki/sa.key"][1] == 0o600
    assert "/etc/berth/pki/encryption-key" in files
    assert "/etc/berth/kubeconfigs/scheduler.conf" in files
    # the CA private keys never leave the operator's state
    assert not any(source.name in {"ca.key", "etcd-ca.key"} for source, _ in files.values())
    # everything named exists in the generated state
    assert all(source.is_file() for source, _ in files.values())


def test_expiry_warnings(pristine: ClusterState) -> None:
    assert pki.expiry_warnings(ha_spec(), pristine, now=NOW) == []
    lines = pki.expiry_warnings(ha_spec(), pristine, now=NOW + dt.timedelta(days=350))
    assert "admin expires in 15 day(s)" in lines
    assert "kubeconfigs/admin.conf expires in 15 day(s)" in lines
    assert not any(line.startswith("ca ") for line in lines)
    assert lines[-1] == "run `berth certs renew -i SPEC`"
    expired = pki.expiry_warnings(ha_spec(), pristine, now=NOW + dt.timedelta(days=400))
    assert any(line.startswith("apiserver expired on ") for line in expired)


def test_generated_secrets_persist_and_are_never_replaced(tmp_path: Path) -> None:
    state = ClusterState(tmp_path)
    value, created = state.secret("bootstrap-token", nbytes=16)
    assert created
    assert len(value) == 16
    assert state.secret("bootstrap-token", nbytes=16) == (value, False)
    (state.secrets_dir / "bootstrap-token").write_text("not base64!")
    with pytest.raises(StateError, match="is not a base64 16-byte key"):
        state.secret("bootstrap-token", nbytes=16)


def test_status_reports_broken_files_instead_of_failing(tree: ClusterState) -> None:
    (tree.pki_dir / "proxy.crt").write_text("garbage")
    (tree.pki_dir / "admin.key").write_text("garbage")
    (tree.pki_dir / "scheduler.key").unlink()
    rows = {row.name: row for row in pki.status(ha_spec(), tree, now=NOW)}
    assert (rows["proxy"].health, rows["proxy"].notes) == ("mismatch", ("certificate unreadable",))
    assert (rows["admin"].health, rows["admin"].notes) == ("mismatch", ("private key unreadable",))
    assert (rows["scheduler"].health, rows["scheduler"].notes) == (
        "mismatch",
        ("private key missing",),
    )
    assert rows["apiserver"].health == "ok"
    assert rows["apiserver"].days_left == 365
