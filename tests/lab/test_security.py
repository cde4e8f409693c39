"""A compromised node on a real cluster (issue 13): its own credentials, taken from the host.

One 3-host lab (n1 control plane + worker, n2 and n3 workers), one cluster for the module.
Two pods pinned to n2 and n3 each mount their own Secret. With the client certificate the
agent of n2 uses (read over SSH from ``/etc/berth/kubeconfigs/agent.conf``), this machine:

* reads the Secret of the pod bound to n2, and the pod really runs with it (the agent's own
  permissions suffice: pods watched by node, secrets got one by one, status, lease);
* cannot read the Secret of the pod on n3, list or watch Secrets, nor list every pod;
* cannot relabel n2 as a control plane, drop a taint or claim another podCIDR.

Safety: blackhole routes for the pod and service CIDRs exist on this machine for the whole
session (tests/lab/conftest.py); only lab bridge addresses are contacted.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from provisioner.lab import Lab
from provisioner.smoke_image import smoke_image
from tests.lab import clusters
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

AGENT_KUBECONFIG = "/etc/berth/kubeconfigs/agent.conf"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float = 120.0) -> T:
    return clusters.wait_for(what, check, timeout=timeout)


@dataclass
class Cluster:
    lab: Lab
    work: Path
    admin: Path

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return clusters.kubectl(kubeconfig or self.admin, *args, stdin=stdin)

    def admin_ok(self, *args: str, stdin: str | None = None) -> str:
        result = self.kubectl(*args, stdin=stdin)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr[-2000:]}"
        return result.stdout


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    lab = lab_factory(3)
    work = tmp_path_factory.mktemp("security")
    return Cluster(lab, work, clusters.apply_lab_spec(lab, work))


def _node_kubeconfig(c: Cluster, host: str) -> Path:
    """The admin kubeconfig's cluster with the client certificate of ``host``'s agent, as an
    attacker with root on that host would have it."""
    ssh = subprocess.run(
        c.lab.ssh_argv(host, ["cat", AGENT_KUBECONFIG]),
        capture_output=True, timeout=60, check=True,
    )  # fmt: skip
    stolen = yaml.safe_load(ssh.stdout)
    config = yaml.safe_load(c.admin.read_text())
    config["users"][0]["user"] = stolen["users"][0]["user"]
    path = c.work / f"{host}.conf"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def _secret(name: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "stringData": {"value": value},
    }


def _pod(name: str, node: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "c",
                    "image": smoke_image().reference,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", "cat /s/value; echo; exec sleep 3600"],
                    "volumeMounts": [{"name": "s", "mountPath": "/s"}],
                }
            ],
            "volumes": [{"name": "s", "secret": {"secretName": secret}}],
        },
    }


def _forbidden(result: subprocess.CompletedProcess[str]) -> bool:
    return result.returncode != 0 and "Forbidden" in result.stderr


def test_a_node_certificate_reads_only_its_own_pods_secrets(cluster: Cluster) -> None:
    c = cluster
    c.admin_ok(
        "apply",
        "-f",
        "-",
        stdin=yaml.safe_dump_all(
            [
                _secret("on-n2", "n2-only"),
                _secret("on-n3", "n3-only"),
                _pod("uses-n2", "n2", "on-n2"),
                _pod("uses-n3", "n3", "on-n3"),
            ]
        ),
    )
    # the real agent, with only the node authorizer's grants, runs the pod with its Secret
    logs = wait_for(
        "pod uses-n2 to print its secret",
        lambda: c.kubectl("logs", "uses-n2").stdout.strip() == "n2-only" or None,
    )
    assert logs
    n2 = _node_kubeconfig(c, "n2")
    got = c.kubectl("get", "secret", "on-n2", "-o", "json", kubeconfig=n2)
    assert got.returncode == 0, got.stderr
    assert base64.b64decode(json.loads(got.stdout)["data"]["value"]) == b"n2-only"
    stolen = c.kubectl("get", "secret", "on-n3", kubeconfig=n2)
    assert _forbidden(stolen), stolen
    assert "no relationship found between node 'n2' and this object" in stolen.stderr
    for args in (["get", "secrets"], ["get", "secrets", "-A"], ["get", "pods", "-A"]):
        listed = c.kubectl(*args, kubeconfig=n2)
        assert _forbidden(listed), (args, listed)
    own = c.kubectl("get", "pods", "-A", "--field-selector", "spec.nodeName=n2", kubeconfig=n2)
    assert own.returncode == 0, own.stderr
    assert "uses-n2" in own.stdout
    assert "uses-n3" not in own.stdout


def test_a_node_certificate_cannot_make_its_node_a_control_plane(cluster: Cluster) -> None:
    c = cluster
    n2 = _node_kubeconfig(c, "n2")
    relabel = c.kubectl(
        "label", "node", "n2", "node-role.kubernetes.io/control-plane=", kubeconfig=n2
    )
    assert _forbidden(relabel), relabel
    node = json.loads(c.admin_ok("get", "node", "n2", "-o", "json"))
    assert "node-role.kubernetes.io/control-plane" not in node["metadata"].get("labels", {})
    cidr = node["spec"]["podCIDR"]
    neighbour = json.loads(c.admin_ok("get", "node", "n3", "-o", "json"))["spec"]["podCIDR"]
    steal = c.kubectl(
        "patch", "node", "n2", "--type=merge",
        "-p", json.dumps({"spec": {"podCIDR": neighbour, "podCIDRs": [neighbour]}}),
        kubeconfig=n2,
    )  # fmt: skip
    assert steal.returncode != 0, steal
    taint = c.kubectl("taint", "node", "n2", "evil=1:NoSchedule", kubeconfig=n2)
    assert _forbidden(taint), taint
    after = json.loads(c.admin_ok("get", "node", "n2", "-o", "json"))
    assert after["spec"]["podCIDR"] == cidr
    assert not after["spec"].get("taints")
    # the node still reports its own status
    assert any(
        cond["type"] == "Ready" and cond["status"] == "True"
        for cond in after["status"]["conditions"]
    )
