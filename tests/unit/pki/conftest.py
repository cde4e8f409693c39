"""A cluster spec and one generated PKI tree shared by the PKI tests (ECDSA keeps it fast)."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pytest

from provisioner import pki
from provisioner.spec import ClusterSpec, parse_spec
from provisioner.state import ClusterState

HA = """\
apiVersion: berth.dev/v1alpha1
kind: Cluster
metadata: {name: ha}
spec:
  hosts:
    - {name: cp1, address: 10.231.1.11, roles: [control-plane]}
    - {name: cp2, address: 10.231.1.12, roles: [control-plane]}
    - {name: cp3, address: 10.231.1.13, roles: [control-plane]}
    - {name: w1, address: 10.231.1.21, roles: [worker]}
  datastore: {type: etcd}
  network: {serviceCIDR: 10.96.0.0/12}
  apiServer: {endpoint: api.ha.example, extraSANs: [10.231.1.100]}
"""

# The real time (openssl and kubectl check validity against the clock), fixed for the session.
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


def ha_spec(text: str = HA) -> ClusterSpec:
    return parse_spec(text, filename="ha.yaml")


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> ClusterState:
    """A freshly generated state for the HA spec (do not modify: copy it with ``tree``)."""
    state = ClusterState(tmp_path_factory.mktemp("pristine") / "ha")
    state.root.mkdir(mode=0o700)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("BERTH_STATE_PASSPHRASE", raising=False)
        pki.ensure(ha_spec(), state, now=NOW)
    return state


@pytest.fixture
def tree(pristine: ClusterState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ClusterState:
    """A private copy of the pristine state that a test may change."""
    monkeypatch.delenv("BERTH_STATE_PASSPHRASE", raising=False)
    root = tmp_path / "ha"
    shutil.copytree(pristine.root, root)
    return ClusterState(root)


def snapshot(state: ClusterState) -> dict[str, bytes]:
    """Every file of a state directory, by relative path."""
    return {
        str(p.relative_to(state.root)): p.read_bytes()
        for p in sorted(state.root.rglob("*"))
        if p.is_file()
    }
