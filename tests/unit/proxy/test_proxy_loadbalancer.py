"""LoadBalancer Services in the node's nftables table: the ingress addresses are forwarded as
external traffic (like NodePorts); externalTrafficPolicy Local sends outside traffic only to
this node's endpoints, without masquerade, and drops it on nodes without one."""

from __future__ import annotations

import subprocess
from typing import Any

from berth.proxy.checks import check_with_slices
from berth.proxy.model import Endpoint, Service, ServiceKey, ServicePort, service_from_k8s
from berth.proxy.render import render_ruleset, transaction
from tests.unit.proxy.test_proxy_render import _golden

LB = Service(
    "default",
    "shop",
    "10.96.0.20",
    (ServicePort("http", 80, "TCP", 30090),),
    type="LoadBalancer",
    load_balancer_ips=("10.231.0.240",),
)
LOCAL = Service(
    "default",
    "local",
    "10.96.0.21",
    (ServicePort("http", 80, "TCP", 30091),),
    type="LoadBalancer",
    load_balancer_ips=("10.231.0.241",),
    local_external=True,
    health_check_node_port=30500,
)
EPS: dict[ServiceKey, list[Endpoint]] = {
    LB.key: [Endpoint("10.244.1.2", {"http": 8080}, node_name="a")],
    LOCAL.key: [
        Endpoint("10.244.1.3", {"http": 8080}, node_name="a"),
        Endpoint("10.244.2.3", {"http": 8080}, node_name="b"),
    ],
}


def _render(node: str, eps: dict[ServiceKey, list[Endpoint]] = EPS) -> str:
    return render_ruleset([LB, LOCAL], eps, cluster_cidr="10.244.0.0/16", node_name=node)


def _chain(text: str, prefix: str) -> str:
    start = text.index(f"\tchain {prefix}")
    return text[start : text.index("\t}", start)]


def test_golden_load_balancer_ruleset() -> None:
    text = _render("a")
    _golden("loadbalancer.nft", text)
    ext = _chain(text, "ext_default_shop")
    assert "10.231.0.240 . tcp . 80 : goto ext_default_shop" in text
    assert "0x00004000" in ext, "Cluster policy marks outside traffic for masquerade"


def test_local_policy_uses_only_this_nodes_endpoints_without_masquerade() -> None:
    on_a = _render("a")
    local_a = _chain(on_a, "lcl_default_local")
    assert "10.244.1.3" in _chain(on_a, "ep_default_local_http_tcp_10_244_1_3")
    assert "goto ep_default_local_http_tcp_10_244_1_3" in local_a
    assert "10_244_2_3" not in local_a, "the other node's endpoint is not used"
    ext = _chain(on_a, "ext_default_local")
    # outside clients are not marked for masquerade: the pod sees their address
    assert "goto lcl_default_local" in ext.splitlines()[-1]
    assert "ip saddr 10.244.0.0/16 goto svc_default_local" in ext
    on_c = _render("c")
    assert "drop" in _chain(on_c, "lcl_default_local"), "no local endpoint: dropped"
    # the address still maps to the Service (and is not rejected as endpoint-less)
    assert "10.231.0.241 . tcp . 80 : goto ext_default_local" in on_c


def test_lb_address_without_endpoints_is_rejected() -> None:
    text = _render("a", {})
    dead = text.split("set no_endpoint_ips")[1].split("}")[0]
    assert "10.231.0.240 . tcp . 80," in dead
    assert "10.231.0.241 . tcp . 80," in dead


def test_only_allowed_addresses_are_forwarded() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "nodePort": 30090}],
            "externalTrafficPolicy": "Local",
            "healthCheckNodePort": 30500,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": "10.231.0.240"}, {"ip": "10.231.0.11"}]}},
    }
    svc = service_from_k8s(obj)
    assert svc is not None
    assert svc.load_balancer_ips == ("10.231.0.240", "10.231.0.11")
    assert svc.local_external
    assert svc.health_check_node_port == 30500
    checked = check_with_slices([obj], [], lb_allowed=lambda ip: ip == "10.231.0.240")
    assert checked.services[0].load_balancer_ips == ("10.231.0.240",)
    # a ClusterIP Service's status is never forwarded
    plain = {**obj, "spec": {**obj["spec"], "type": "ClusterIP"}}
    converted = service_from_k8s(plain)
    assert converted is not None
    assert converted.load_balancer_ips == ()
    assert not converted.local_external


def test_two_services_on_one_address_and_port_keep_the_first() -> None:
    twin = Service(
        "default",
        "twin",
        "10.96.0.30",
        (ServicePort("http", 80, "TCP", 30092),),
        type="LoadBalancer",
        load_balancer_ips=("10.231.0.240",),
    )
    objs = []
    for s in (LB, twin):
        objs.append(
            {
                "metadata": {"name": s.name, "namespace": s.namespace},
                "spec": {
                    "type": "LoadBalancer",
                    "clusterIP": s.cluster_ip,
                    "ports": [{"name": "http", "port": 80, "nodePort": s.ports[0].node_port}],
                },
                "status": {"loadBalancer": {"ingress": [{"ip": "10.231.0.240"}]}},
            }
        )
    checked = check_with_slices(objs, [])
    assert [s.name for s in checked.services] == ["shop"]
    assert "10.231.0.240:80/TCP is also claimed by Service default/shop" in (
        checked.rejected[0].reason
    )


def test_nft_accepts_the_load_balancer_ruleset() -> None:
    for node in ("a", "c"):
        script = transaction(_render(node))
        done = subprocess.run(
            ["unshare", "--net", "nft", "-c", "-f", "-"],
            input=script.encode(),
            capture_output=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr.decode()
