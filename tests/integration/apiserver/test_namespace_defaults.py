"""What every namespace holds without anyone creating it: the ``default`` ServiceAccount (the
API server creates it with the namespace, the controller manager puts it back) and the
``kube-root-ca.crt`` ConfigMap with the cluster CA (the controller manager's
root-ca-cert-publisher, started here as the systemd unit starts it: its own identity, the CA
from ``--root-ca-file``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle
from tests.harness.polling import wait_for

from .conftest import ROOT
from .helpers import Raw

pytestmark = pytest.mark.timeout(120)
NS = "nsdefaults"
ROOT_CA = f"/api/v1/namespaces/{NS}/configmaps/kube-root-ca.crt"


@pytest.fixture(scope="module")
def controller_manager(
    server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    kubeconfig = server.kubeconfig("system:kube-controller-manager", groups=[])
    log = tmp_path_factory.mktemp("kcm") / "kcm.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "berth.controllers",
                "--kubeconfig",
                str(kubeconfig),
                "--controllers",
                "serviceaccount,root-ca-cert-publisher",
                "--root-ca-file",
                str(server.pki.ca_cert),
                "--identity",
                "test-kcm",
            ],
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(30)
        assert "Forbidden" not in log.read_text(), log.read_text()  # its role suffices


def _root_ca(raw: Raw) -> dict[str, Any] | None:
    status, doc = raw.json("GET", ROOT_CA)
    return doc if status == 200 else None


def test_new_namespace_gets_its_default_account_at_once(raw: Raw) -> None:
    assert raw.json("POST", "/api/v1/namespaces", {"metadata": {"name": "nsdefaults-sa"}})[0] == 201
    status, sa = raw.json("GET", "/api/v1/namespaces/nsdefaults-sa/serviceaccounts/default")
    assert status == 200, sa


def test_root_ca_configmap_published_and_kept(
    raw: Raw, server: ServerHandle, controller_manager: None
) -> None:
    assert raw.json("POST", "/api/v1/namespaces", {"metadata": {"name": NS}})[0] == 201
    ca = server.pki.ca_cert.read_text()
    cm = wait_for("kube-root-ca.crt in a new namespace", lambda: _root_ca(raw))
    assert cm["data"] == {"ca.crt": ca}

    edited = {**cm, "data": {"ca.crt": "not the CA"}}
    assert raw.json("PUT", ROOT_CA, edited)[0] == 200
    wait_for("the edit to be undone", lambda: (_root_ca(raw) or {}).get("data") == {"ca.crt": ca})

    assert raw.json("DELETE", ROOT_CA)[0] == 200
    wait_for("kube-root-ca.crt to be recreated", lambda: _root_ca(raw))

    assert raw.json("DELETE", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200
    wait_for(
        "the default account to be recreated",
        lambda: raw.json("GET", f"/api/v1/namespaces/{NS}/serviceaccounts/default")[0] == 200,
    )


def test_every_system_namespace_has_both(raw: Raw, controller_manager: None) -> None:
    def has_root_ca(ns: str) -> Callable[[], bool]:
        return lambda: (
            raw.json("GET", f"/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt")[0] == 200
        )

    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        wait_for(f"kube-root-ca.crt in {ns}", has_root_ca(ns))
        assert raw.json("GET", f"/api/v1/namespaces/{ns}/serviceaccounts/default")[0] == 200


def test_the_unit_passes_the_ca_file() -> None:
    unit = (ROOT / "provisioner" / "templates" / "berth-controller-manager.service.j2").read_text()
    assert "--root-ca-file {{ pki }}/ca.crt" in unit  # what the fixture above passes
