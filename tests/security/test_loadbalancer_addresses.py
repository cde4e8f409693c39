"""A tenant must not be able to put a LoadBalancer address on a node's or the API server's
address: the status is written only by the controller manager's identity (the tenant's
``services`` rights do not reach ``services/status``), and the service-lb controller gives an
address only from the pool, whatever ``spec.loadBalancerIP`` asks for. (The nodes check the
pool again before they announce or forward an address: tests/unit/agent/test_lb_speaker.py,
tests/unit/proxy/test_proxy_loadbalancer.py.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.harness.apiserver import ServerHandle
from tests.harness.controller_manager import running_controller_manager
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import tenant_in_new_namespace

pytestmark = pytest.mark.timeout(120)
NS = "lbtenant"
SVCS = f"/api/v1/namespaces/{NS}/services"
POOL = "10.231.0.240/30"
NODE_ADDRESS = "10.231.0.11"
API_SERVER_ADDRESS = "127.0.0.1"


@pytest.fixture(scope="module")
def controller_manager(
    server: ServerHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    log = tmp_path_factory.mktemp("kcm") / "kcm.log"
    with running_controller_manager(server, log, "service-lb", ["--load-balancer-pool", POOL]):
        yield


@pytest.fixture(scope="module")
def tenant(server: ServerHandle) -> Iterator[Raw]:
    """ "mallory" may do anything to Services in her namespace (and nothing else)."""
    rules = [{"apiGroups": [""], "resources": ["services"], "verbs": ["*"]}]
    mallory = tenant_in_new_namespace(server, NS, "services-admin", rules)
    yield mallory
    mallory.close()


def _lb(name: str, ip: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {"type": "LoadBalancer", "ports": [{"port": 443}]}
    if ip:
        spec["loadBalancerIP"] = ip
    return {"metadata": {"name": name}, "spec": spec}


def _ingress(raw: Raw, name: str) -> list[object]:
    status, doc = raw.json("GET", f"{SVCS}/{name}")
    assert status == 200, doc
    return list(((doc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or [])


def _wait(check: object, what: str, within: float = 60.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_tenant_cannot_write_the_status(tenant: Raw, controller_manager: None) -> None:
    status, doc = tenant.json("POST", SVCS, _lb("forged"))
    assert status == 201, doc
    forged = {"status": {"loadBalancer": {"ingress": [{"ip": NODE_ADDRESS}]}}}
    for method, ctype in (
        ("PATCH", "application/merge-patch+json"),
        ("PATCH", "application/strategic-merge-patch+json"),
    ):
        code, _, body = tenant.request(method, f"{SVCS}/forged/status", forged, content_type=ctype)
        assert code == 403, body
    doc["status"] = forged["status"]
    code, _, body = tenant.request("PUT", f"{SVCS}/forged/status", doc)
    assert code == 403, body
    # the controller gives the Service a pool address, never the forged one
    _wait(lambda: _ingress(tenant, "forged"), "a pool address")
    assert _ingress(tenant, "forged") == [{"ip": "10.231.0.241", "ipMode": "VIP"}]


@pytest.mark.parametrize("address", [NODE_ADDRESS, API_SERVER_ADDRESS])
def test_load_balancer_ip_outside_the_pool_is_never_given(
    server: ServerHandle, tenant: Raw, controller_manager: None, address: str
) -> None:
    name = "claim-" + address.replace(".", "-")
    status, doc = tenant.json("POST", SVCS, _lb(name, address))
    assert status == 201, doc
    admin = Raw(server, server.client_cert("admin", ["system:masters"]))
    try:

        def warned() -> bool:
            code, events = admin.json(
                "GET",
                f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name%3D{name}",
            )
            assert code == 200, events
            return any(
                f"spec.loadBalancerIP {address} is not in the load-balancer pool" in e["message"]
                for e in events["items"]
            )

        _wait(warned, "the controller's refusal")
    finally:
        admin.close()
    assert _ingress(tenant, name) == []
