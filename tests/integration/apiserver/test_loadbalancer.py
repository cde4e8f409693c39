"""LoadBalancer Services through kubectl, with the controller manager's service-lb controller
running as its unit runs it (own identity, ``--load-balancer-pool``): ``kubectl expose
--type=LoadBalancer`` gets an address of the pool, ``kubectl get svc`` shows it as
EXTERNAL-IP, the address goes back when the Service is deleted, and externalTrafficPolicy
Local gets a health-check node port."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.apiserver import ServerHandle
from tests.harness.controller_manager import running_controller_manager

from .conftest import make_kubectl
from .helpers import Kubectl, table

pytestmark = pytest.mark.timeout(180)
NS = "lbtest"
POOL = "10.231.0.240-10.231.0.241"


@pytest.fixture(scope="module")
def controller_manager(
    server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    log = tmp_path_factory.mktemp("kcm") / "kcm.log"
    with running_controller_manager(server, log, "service-lb", ["--load-balancer-pool", POOL]):
        yield


@pytest.fixture(scope="module")
def kubectl(
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    k = make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path_factory.mktemp("home"))
    k("create", "namespace", NS)
    return k


def _eventually(check: Callable[[], Any], what: str, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _external_ip(kubectl: Kubectl, name: str) -> str:
    rows = table(kubectl("get", "svc", name, "-n", NS))
    header, row = rows[0], rows[1]
    return row[header.index("EXTERNAL-IP")]


def test_kubectl_expose_gets_a_pool_address(kubectl: Kubectl, controller_manager: None) -> None:
    kubectl("create", "deployment", "web", "--image=nginx:1.19", "-n", NS)
    kubectl("expose", "deployment", "web", "--type=LoadBalancer", "--port=80", "-n", NS)
    got = _eventually(
        lambda: (ip := _external_ip(kubectl, "web")) != "<pending>" and ip, "EXTERNAL-IP"
    )
    assert got == "10.231.0.240"
    svc = json.loads(kubectl("get", "svc", "web", "-n", NS, "-o", "json"))
    assert svc["status"]["loadBalancer"]["ingress"] == [{"ip": "10.231.0.240", "ipMode": "VIP"}]
    assert svc["spec"]["ports"][0]["nodePort"], "allocateLoadBalancerNodePorts defaults to true"
    assert "healthCheckNodePort" not in svc["spec"]

    # the second gets the other address; the third waits, and gets the first one freed
    kubectl(
        "expose", "deployment", "web", "--name=two", "--type=LoadBalancer", "--port=81", "-n", NS
    )
    kubectl(
        "expose", "deployment", "web", "--name=three", "--type=LoadBalancer", "--port=82", "-n", NS
    )
    _eventually(lambda: _external_ip(kubectl, "two") == "10.231.0.241", "second address")
    # polled (it was 'sleep 1, then the event must be there'): the controller gets to
    # 'three' in its own time; it stays pending meanwhile
    _eventually(
        lambda: (
            "no free address left in the load-balancer pool"
            in kubectl("get", "events", "-n", NS, "--field-selector", "involvedObject.name=three")
        ),
        "the pool-exhausted event of three",
    )
    assert _external_ip(kubectl, "three") == "<pending>"
    kubectl("delete", "svc", "web", "-n", NS)
    _eventually(lambda: _external_ip(kubectl, "three") == "10.231.0.240", "freed address reused")


def test_type_change_gives_the_address_back(kubectl: Kubectl, controller_manager: None) -> None:
    kubectl("patch", "svc", "two", "-n", NS, "-p", '{"spec":{"type":"ClusterIP"}}')
    _eventually(
        lambda: (
            not json.loads(kubectl("get", "svc", "two", "-n", NS, "-o", "json"))["status"][
                "loadBalancer"
            ]
        ),
        "status cleared",
    )
    rows = table(kubectl("get", "svc", "two", "-n", NS))
    assert rows[1][rows[0].index("EXTERNAL-IP")] == "<none>"


def test_local_policy_gets_a_health_check_node_port(
    kubectl: Kubectl, controller_manager: None, tmp_path: Path
) -> None:
    manifest = tmp_path / "local.json"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "local", "namespace": NS},
                "spec": {
                    "type": "LoadBalancer",
                    "externalTrafficPolicy": "Local",
                    "loadBalancerIP": "10.231.0.241",
                    "selector": {"app": "web"},
                    "ports": [{"port": 80}],
                },
            }
        )
    )
    kubectl("apply", "-f", str(manifest))
    svc = json.loads(kubectl("get", "svc", "local", "-n", NS, "-o", "json"))
    hc = svc["spec"]["healthCheckNodePort"]
    assert 30000 <= hc <= 32767
    assert hc != svc["spec"]["ports"][0]["nodePort"]
    _eventually(lambda: _external_ip(kubectl, "local") == "10.231.0.241", "requested address")
