"""LoadBalancer Services on runc nodes (issue 15): one 2-host lab, one cluster for the module.

* without a pool (the lab spec as ``berth lab up`` writes it) a LoadBalancer Service's
  ingress addresses are the nodes' addresses: the Service answers on both from the operator
  machine; with externalTrafficPolicy Local only the node with a ready endpoint answers, the
  pod sees the client's own address, and the health-check node port says 200 there, 503 on
  the other node;
* re-applied with ``network.loadBalancerPool`` (addresses of the lab bridge's subnet) each
  Service gets a pool address, exactly one node holds it (Local: the node with the endpoint),
  and it answers from the operator machine (this machine sits on the lab bridge); the node
  addresses stop answering for it;
* when the node holding an address dies (cable cut), the other node takes the address over
  once the node is NotReady, and the address answers again. The node that dies is n2, never
  n1: n1 runs the only API server, and with it cut off n2 could never learn that n1 is
  NotReady. The election ranks nodes by a hash of node and address, and the lab's subnet
  changes from run to run, so ``both`` asks (``spec.loadBalancerIP``) for a pool address the
  election gives to n2, found with the speaker's own function (:func:`_failover_address`).

Safety: only lab bridge addresses are contacted; the pod and service CIDRs are blackholed on
this machine for the session (tests/lab/conftest.py).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
import yaml

from berth.api.loadbalancers import Pool, announcer
from provisioner.lab import Lab
from tests.lab import clusters
from tests.lab.conftest import LabFactory

pytestmark = pytest.mark.lab

PORTS = {"web": 8081, "solo": 8082, "both": 8083}
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Cluster(clusters.LabCluster):
    def ingress(self, name: str) -> list[str]:
        svc = json.loads(self.kubectl("get", "svc", name, "-o", "json"))
        items = (svc.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        return [str(i["ip"]) for i in items]

    def addresses_on(self, host: str) -> set[str]:
        shown = self.ssh(host, "ip -o -4 addr show")
        assert shown.returncode == 0, shown.stderr
        return {line.split()[3].split("/")[0] for line in shown.stdout.splitlines()}


# Free addresses of the lab's /24 (hosts are .11, .12, ...; the bridge .1) outside the pool's
# .240-.243 block, in the order _failover_address tries them. For every /24 a lab can get
# (10.231.0.0/16) one of the first twelve is n2's, so the search never comes up empty.
_FAILOVER_OFFSETS = (*range(244, 255), *range(239, 19, -1))


@functools.cache
def _failover_address(subnet: str) -> str:
    """The first free address of the lab's subnet that the speaker's election, with both nodes
    as candidates, gives to n2 (the worker that can die without taking the API server with it):
    the same :func:`announcer` every agent runs, so where the address lands is decided here,
    not left to the hash of this run's subnet."""
    base = ipaddress.ip_network(subnet).network_address
    for offset in _FAILOVER_OFFSETS:
        address = str(base + offset)
        if announcer(address, ["n1", "n2"]) == "n2":
            return address
    raise AssertionError(f"no address of {subnet} is elected to n2 over n1")


def _pool(lab: Lab) -> list[str]:
    """.240-.243 for the Services that take the first free address, plus ``both``'s own."""
    net = ipaddress.ip_network(lab.subnet)
    failover = _failover_address(lab.subnet)
    return [f"{net.network_address + 240}-{net.network_address + 243}", f"{failover}-{failover}"]


@pytest.fixture(scope="module")
def cluster(lab_factory: LabFactory, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    c = Cluster.apply(lab_factory(2), tmp_path_factory.mktemp("loadbalancer"))
    c.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(_objects(c)))
    _wait_ready(c)
    return c


def _web(side: str, node: str, image: str) -> dict[str, Any]:
    labels = {"app": "lbweb", "side": side}
    # verbose: httpd logs each client's address (the Local policy keeps it)
    pod_spec = {"nodeName": node, **clusters.web_pod_spec(image, "hostname", verbose=True)}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"lbweb-{side}", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec,
            },
        },
    }


def _service(
    name: str, selector: dict[str, str], *, local: bool, address: str | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "selector": selector,
        "ports": [{"name": "http", "port": PORTS[name], "targetPort": "http"}],
    }
    if local:
        spec["externalTrafficPolicy"] = "Local"
    if address is not None:  # used once there is a pool; without one the node addresses are
        spec["loadBalancerIP"] = address
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }


def _objects(c: Cluster) -> list[dict[str, Any]]:
    n1, n2 = (h.name for h in c.lab.hosts)
    assert (n1, n2) == ("n1", "n2"), (n1, n2)  # the names _failover_address ranks
    return [
        _web("a", n1, c.image),
        _web("b", n2, c.image),
        # Cluster policy, its only endpoint on n2: n1 forwards (and masquerades) to it
        _service("web", {"side": "b"}, local=False),
        # Local policy, its only endpoint on n2
        _service("solo", {"side": "b"}, local=True),
        # Local policy, an endpoint on each node (the failover), its address one elected to n2
        _service("both", {"app": "lbweb"}, local=True, address=_failover_address(c.lab.subnet)),
    ]


def _wait_ready(c: Cluster) -> dict[str, str]:
    """side -> pod hostname, once both pods are Ready."""

    def ready() -> dict[str, str] | None:
        items = json.loads(c.kubectl("get", "pods", "-l", "app=lbweb", "-o", "json"))["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        ok = len(live) == 2 and all(
            any(
                x["type"] == "Ready" and x["status"] == "True"
                for x in p["status"].get("conditions") or []
            )
            for p in live
        )
        return (
            {p["metadata"]["labels"]["side"]: p["metadata"]["name"] for p in live} if ok else None
        )

    return clusters.wait_for("2 ready lbweb pods", ready, timeout=180)


def _get(address: str, port: int, path: str = "/", timeout: float = 3.0) -> tuple[int, str]:
    """(status, body) of an HTTP GET from this machine; (0, error) when nothing answers."""
    try:
        with _HTTP.open(f"http://{address}:{port}{path}", timeout=timeout) as r:
            return int(r.status), r.read().decode().strip()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read().decode().strip()
    except OSError as e:
        return 0, repr(e)


def _answers(address: str, port: int, want: str, within: float = 90.0) -> None:
    # 90 s: endpoints, the speaker's election and each node's rules are CPU work
    clusters.wait_for(
        f"{want} answering on {address}:{port}",
        lambda: _get(address, port) == (200, want),
        timeout=within,
    )


def test_without_a_pool_the_node_addresses_answer(cluster: Cluster) -> None:
    pods = _wait_ready(cluster)
    n1, n2 = cluster.lab.hosts
    nodes = sorted([n1.address, n2.address], key=ipaddress.ip_address)
    for name in PORTS:

        def has_nodes(n: str = name) -> bool:
            return cluster.ingress(n) == nodes

        clusters.wait_for(f"{name}'s node addresses", has_nodes, timeout=120)
    table = cluster.kubectl("get", "svc", "web")
    assert ",".join(nodes) in table, table  # EXTERNAL-IP
    # Cluster: both nodes answer (n1 forwards to the pod on n2)
    for address in nodes:
        _answers(address, PORTS["web"], pods["b"])
    # Local: only the node with the endpoint answers
    _answers(n2.address, PORTS["solo"], pods["b"])
    status, body = _get(n1.address, PORTS["solo"])
    assert status == 0, f"n1 has no local endpoint of solo but answered: {status} {body}"
    # ... and the pod saw this machine's own address (no masquerade)
    logs = cluster.kubectl("logs", "deploy/lbweb-b")
    assert cluster.lab.gateway in logs, logs[-2000:]
    svc = json.loads(cluster.kubectl("get", "svc", "solo", "-o", "json"))
    hc = svc["spec"]["healthCheckNodePort"]
    status, body = _get(n2.address, hc, "/healthz")
    assert status == 200, body
    assert json.loads(body)["localEndpoints"] == 1
    status, body = _get(n1.address, hc, "/healthz")
    assert status == 503, body
    assert json.loads(body)["localEndpoints"] == 0


def test_pool_addresses_answer_from_the_operator_machine(cluster: Cluster) -> None:
    pool = _pool(cluster.lab)

    def with_pool(document: dict[str, Any]) -> None:
        document["spec"].setdefault("network", {})["loadBalancerPool"] = pool

    clusters.apply_lab_spec(cluster.lab, cluster.work, edit=with_pool)
    pods = _wait_ready(cluster)
    parsed = Pool.parse(pool)

    def pooled(name: str) -> str | None:
        ips = cluster.ingress(name)
        return ips[0] if len(ips) == 1 and parsed.contains(ips[0]) else None

    got: dict[str, str] = {}
    for name in PORTS:
        got[name] = clusters.wait_for(
            f"{name}'s pool address", functools.partial(pooled, name), timeout=90
        )
    assert len(set(got.values())) == 3, got
    # the address both asked for (spec.loadBalancerIP), the others from the .240-.243 block
    assert got["both"] == _failover_address(cluster.lab.subnet), got
    first, _, last = pool[0].partition("-")
    for name in ("web", "solo"):
        assert Pool.parse([f"{first}-{last}"]).contains(got[name]), got
    n1, n2 = cluster.lab.hosts
    _answers(got["web"], PORTS["web"], pods["b"])
    _answers(got["solo"], PORTS["solo"], pods["b"])
    status, _ = _get(got["both"], PORTS["both"])
    assert status == 200
    # exactly one node holds each address; Local's holder is a node with an endpoint
    held = {h.name: cluster.addresses_on(h.name) for h in (n1, n2)}
    for name, ip in got.items():
        holders = [h for h, addresses in held.items() if ip in addresses]
        assert len(holders) == 1, (name, ip, held)
    assert got["solo"] in held[n2.name]
    assert got["both"] in held[n2.name], (got, held)  # where the election puts it
    described = cluster.kubectl("describe", "svc", "solo")
    assert f"announcing {got['solo']} from node {n2.name}" in described, described
    assert re.search(rf"LoadBalancer Ingress:\s+{re.escape(got['solo'])}\b", described), described
    # the node addresses no longer answer for the Services
    status, body = _get(n1.address, PORTS["web"])
    assert status == 0, body


def test_the_address_moves_when_its_node_dies(cluster: Cluster) -> None:
    pods = _wait_ready(cluster)
    ip = _failover_address(cluster.lab.subnet)
    assert cluster.ingress("both") == [ip]
    n1, n2 = cluster.lab.hosts
    # n2 holds it (the election over n1 and n2, both with an endpoint), n1 does not; n2 is
    # the one to die: cutting n1 would cut the only API server too
    clusters.wait_for(f"n2 holding {ip}", lambda: ip in cluster.addresses_on(n2.name), timeout=120)
    assert ip not in cluster.addresses_on(n1.name)
    _answers(ip, PORTS["both"], pods["b"])
    cluster.lab.cut(n2.name)
    try:
        clusters.wait_for(
            f"{n1.name} holding {ip}",
            lambda: ip in cluster.addresses_on(n1.name),
            timeout=120,
        )
        _answers(ip, PORTS["both"], pods["a"])
    finally:
        cluster.lab.heal(n2.name)
