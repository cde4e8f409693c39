"""Issue 13 point 8: one namespaced object must not break Service routing on every node.

A tenant's bad Service or Endpoints is refused by the API server (422 with the field), and a
node's proxy that meets such an object anyway (written before validation existed, or straight
into the datastore) leaves that one Service out, reports it as an Event on it, and programs
every other Service: checked with the real ``nft`` in a network namespace of its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from berth.agent import proxy_events
from berth.agent.network import NodeNetwork
from berth.api.resources import ENDPOINTS, ENDPOINTSLICES, EVENTS, NODES, SERVICES
from berth.machinery.clock import FakeClock
from berth.network import node as node_module
from berth.network.command import Completed, SubprocessRunner
from berth.proxy import checks
from tests.harness.apiserver import ServerHandle
from tests.harness.fake_client import FakeClient
from tests.harness.slices import slice_from_endpoints
from tests.integration.apiserver.helpers import Raw
from tests.security.helpers import tenant_in_new_namespace

pytestmark = pytest.mark.timeout(120)
NS = "tenant"

# -- at the API: a tenant's bad objects are refused ------------------------------------------


EPS = f"/api/v1/namespaces/{NS}/endpoints"
SVCS = f"/api/v1/namespaces/{NS}/services"


@pytest.fixture(scope="module")
def tenant(server: ServerHandle) -> Iterator[Raw]:
    """Raw HTTPS as "mallory", who may do anything to Services and Endpoints in her namespace
    (and nothing else). Raw, because an attacker does not use a validating client."""
    rules = [{"apiGroups": [""], "resources": ["services", "endpoints"], "verbs": ["*"]}]
    mallory = tenant_in_new_namespace(server, NS, "services-admin", rules)
    yield mallory
    mallory.close()


def _refused(
    raw: Raw, method: str, path: str, obj: Any, content_type: str = "application/json"
) -> dict[str, Any]:
    status, _, data = raw.request(method, path, obj, content_type=content_type)
    assert status == 422, data
    body: dict[str, Any] = json.loads(data)
    assert body["reason"] == "Invalid"
    return body


def _fields(body: Mapping[str, Any]) -> list[str]:
    return [c["field"] for c in body["details"]["causes"]]


def _endpoints(name: str, *, ip: Any = "10.244.1.5", port: Any = 8080, **extra: Any) -> Any:
    address = {"ip": ip} if ip is not None else {"hostname": "no-ip"}
    return {
        "metadata": {"name": name},
        "subsets": [{"addresses": [address], "ports": [{"name": "http", "port": port, **extra}]}],
    }


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("10.244.1.999", "valid IP"),
        ("not-an-address", "valid IP"),
        (None, "valid IP"),
    ],
)
def test_endpoints_address_must_be_a_routable_ip(tenant: Raw, ip: Any, why: str) -> None:
    body = _refused(tenant, "POST", EPS, _endpoints("bad-ip", ip=ip))
    assert _fields(body) == ["subsets[0].addresses[0].ip"]
    assert why in body["message"]


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"port": 0}, "subsets[0].ports[0].port"),
        ({"port": 70000}, "subsets[0].ports[0].port"),
        ({"protocol": "ICMP"}, "subsets[0].ports[0].protocol"),
    ],
)
def test_endpoints_ports_are_checked(tenant: Raw, patch: dict[str, Any], field: str) -> None:
    body = _refused(tenant, "POST", EPS, _endpoints("bad-port", **patch))
    assert _fields(body) == [field]


def test_endpoints_port_of_the_wrong_type_is_a_decode_error(tenant: Raw) -> None:
    # As upstream: a string where the schema has an integer fails decoding (400), before
    # validation (422) could run.
    status, _, data = tenant.request("POST", EPS, _endpoints("bad-port", port="80"))
    assert status == 400, data
    assert "subsets[0].ports[0].port" in json.loads(data)["message"]


def test_endpoints_update_and_patch_are_checked_too(tenant: Raw) -> None:
    status, _, data = tenant.request("POST", EPS, _endpoints("good"))
    assert status == 201, data
    body = _refused(tenant, "PUT", f"{EPS}/good", _endpoints("good", ip="127.0.0.1"))
    assert _fields(body) == ["subsets[0].addresses[0].ip"]
    patch = {"subsets": [{"addresses": [{"ip": "169.254.169.254"}], "ports": [{"port": 80}]}]}
    _refused(tenant, "PATCH", f"{EPS}/good", patch, "application/merge-patch+json")
    status, _, data = tenant.request("GET", f"{EPS}/good")
    assert json.loads(data)["subsets"][0]["addresses"][0]["ip"] == "10.244.1.5"


def _service(name: str, *, port: Mapping[str, Any] | None = None, **spec: Any) -> Any:
    return {
        "metadata": {"name": name},
        "spec": {"ports": [{"name": "http", "port": 80, **(port or {})}], **spec},
    }


AFFINITY = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
TARGET = "spec.ports[0].targetPort"


@pytest.mark.parametrize(
    ("svc", "field"),
    [
        (_service("tp-zero", port={"targetPort": 0}), TARGET),
        (_service("tp-big", port={"targetPort": 70000}), TARGET),
        (_service("tp-name", port={"targetPort": "Not_A_Name"}), TARGET),
        (_service("tp-long", port={"targetPort": "a-very-long-port-name"}), TARGET),
        (_service("tp-digits", port={"targetPort": "8080"}), TARGET),
        (_service("np-big", port={"nodePort": 70000}, type="NodePort"), "spec.ports[0].nodePort"),
        (_service("proto", port={"protocol": "ICMP"}), "spec.ports[0].protocol"),
        (_service("pname", port={"name": "HTTP"}), "spec.ports[0].name"),
        # A '$'-anchored pattern used with re.match lets a trailing newline through.
        (_service("pname-nl", port={"name": "http\n"}), "spec.ports[0].name"),
        (_service("tp-nl", port={"targetPort": "http\n"}), TARGET),
        (
            _service("xname-nl", type="ExternalName", externalName="db.example\n"),
            "spec.externalName",
        ),
        (_service("sel-nl", selector={"app": "web\n"}), "spec.selector[app]"),
        (_service("cip", clusterIP="10.96.0.999"), "spec.clusterIP"),
        (_service("eip", externalIPs=["127.0.0.1"]), "spec.externalIPs[0]"),
        (_service("aff", sessionAffinity="Sticky"), "spec.sessionAffinity"),
        *(
            (
                _service(
                    f"timeout-{i}",
                    sessionAffinity="ClientIP",
                    sessionAffinityConfig={"clientIP": {"timeoutSeconds": t}},
                ),
                AFFINITY,
            )
            for i, t in enumerate((0, -1, 86401))
        ),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else v,
)
def test_service_fields_the_proxy_renders_are_checked(tenant: Raw, svc: Any, field: str) -> None:
    body = _refused(tenant, "POST", SVCS, svc)
    assert field in _fields(body), body["message"]


@pytest.mark.parametrize(
    ("port", "config", "field"),
    [
        ({"targetPort": [80]}, None, TARGET),
        ({}, {"clientIP": {"timeoutSeconds": 10**12}}, AFFINITY),
        ({}, {"clientIP": {"timeoutSeconds": "60"}}, AFFINITY),
    ],
)
def test_service_fields_of_the_wrong_type_are_decode_errors(
    tenant: Raw, port: dict[str, Any], config: Any, field: str
) -> None:
    # As upstream: a value that does not fit the field's type fails decoding (400).
    extra = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": config} if config else {}
    status, _, data = tenant.request("POST", SVCS, _service("typed", port=port, **extra))
    assert status == 400, data
    assert field in json.loads(data)["message"]


def test_service_may_not_list_a_port_twice(tenant: Raw) -> None:
    svc = {
        "metadata": {"name": "twice"},
        "spec": {"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]},
    }
    body = _refused(tenant, "POST", SVCS, svc)
    assert _fields(body) == ["spec.ports[1]"]


def test_service_update_is_checked_too(tenant: Raw) -> None:
    status, _, data = tenant.request("POST", SVCS, _service("upd"))
    assert status == 201, data
    config = {"clientIP": {"timeoutSeconds": 0}}
    patch = {"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": config}}
    body = _refused(tenant, "PATCH", f"{SVCS}/upd", patch, "application/merge-patch+json")
    assert _fields(body) == [AFFINITY]


def test_good_objects_are_still_accepted(tenant: Raw) -> None:
    svc = _service(
        "sticky",
        port={"targetPort": "http-alt"},
        sessionAffinity="ClientIP",
        sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86400}},
    )
    status, _, data = tenant.request("POST", SVCS, svc)
    assert status == 201, data
    status, _, data = tenant.request("POST", EPS, _endpoints("sticky"))
    assert status == 201, data


# -- on the node: the proxy programs every other Service ------------------------------------


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace of our own, where the real ``nft`` programs a real table."""
    name = f"berth-sec-svc-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


class NodeRunner:
    """``nft`` runs for real inside ``netns``; ``ip`` route queries are answered like a host
    with no berth routes (routes are not what this test is about)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.real = SubprocessRunner()
        self.nft_calls = 0

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        time_limit: float = 60.0,
    ) -> Completed:
        if argv[0] == "nft":
            self.nft_calls += 1
            return await self.real.run(
                ["ip", "netns", "exec", self.netns, *argv], stdin=stdin, time_limit=time_limit
            )
        out = b"[]" if list(argv[:3]) == ["ip", "-j", "route"] else b""
        if list(argv[:3]) == ["ip", "-j", "-4"]:
            out = json.dumps(
                [{"ifname": "host0", "addr_info": [{"local": "10.231.1.11"}]}]
            ).encode()
        return Completed(tuple(argv), 0, out, b"")

    def table(self) -> str:
        out = subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "list", "table", "ip", "berth"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout


def _svc(name: str, ip: str, *, ns: str = NS, port: int = 80, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": port}], **spec},
    }


def _eps(name: str, *addresses: Any, ns: str = NS, port: Any = 8080) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "subsets": [{"addresses": list(addresses), "ports": [{"name": "http", "port": port}]}],
    }


GOOD = {
    "default/web": (
        _svc("web", "10.96.0.20", ns="default"),
        _eps("web", {"ip": "10.244.1.5"}, ns="default"),
    ),
    f"{NS}/sticky": (
        _svc(
            "sticky",
            "10.96.0.21",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}},
        ),
        _eps("sticky", {"ip": "10.244.2.7"}),
    ),
}
# Each of these, in the objects a node's informers hold, used to fail the whole nft
# transaction (or raise out of the sync) and so freeze every Service on every node.
POISON = {
    f"{NS}/affinity": (
        _svc(
            "affinity",
            "10.96.0.30",
            sessionAffinity="ClientIP",
            sessionAffinityConfig={"clientIP": {"timeoutSeconds": -1}},
        ),
        _eps("affinity", {"ip": "10.244.1.6"}),
    ),
    f"{NS}/no-ip": (_svc("no-ip", "10.96.0.31"), _eps("no-ip", {"hostname": "x"})),
    f"{NS}/bad-ip": (_svc("bad-ip", "10.96.0.32"), _eps("bad-ip", {"ip": "10.244.1.999"})),
    f"{NS}/ipv6": (_svc("ipv6", "10.96.0.33"), _eps("ipv6", {"ip": "fd00::5"})),
    f"{NS}/loopback": (_svc("loopback", "10.96.0.34"), _eps("loopback", {"ip": "127.0.0.1"})),
    f"{NS}/big-port": (
        _svc("big-port", "10.96.0.35"),
        _eps("big-port", {"ip": "10.244.1.7"}, port=70000),
    ),
    f"{NS}/svc-port": (
        _svc("svc-port", "10.96.0.36", port=70000),
        _eps("svc-port", {"ip": "10.244.1.8"}),
    ),
    # the same ClusterIP port as default/web: a duplicate map element
    f"{NS}/zz-clash": (_svc("zz-clash", "10.96.0.20"), _eps("zz-clash", {"ip": "10.244.1.9"})),
    # a "ClusterIP" that is another host's address would capture its traffic on every node
    f"{NS}/hijack": (_svc("hijack", "10.231.1.12"), _eps("hijack", {"ip": "10.244.1.10"})),
}


def _network(api: FakeClient, clock: FakeClock, runner: NodeRunner) -> NodeNetwork:
    api.seed(
        NODES,
        {
            "metadata": {"name": "n1"},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.231.1.11"}]},
        },
    )
    for svc, eps in [*GOOD.values(), *POISON.values()]:
        api.seed(SERVICES, svc)
        api.seed(ENDPOINTS, eps)
        api.seed(ENDPOINTSLICES, slice_from_endpoints(eps))
    return NodeNetwork(
        api,
        clock,
        node="n1",
        node_address="10.231.1.11",
        cluster_cidr="10.244.0.0/16",
        service_cidr="10.96.0.0/16",
        runner=runner,
    )


def test_poisoned_services_are_left_out_and_the_others_programmed(
    netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "enable_forwarding", lambda: False)

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        runner = NodeRunner(netns)
        net = _network(api, clock, runner)
        for informer in (net.nodes, net.services, net.endpoints, net.slices):
            await informer.relist()
        await net.sync_once()  # raised KeyError / CommandFailed before
        table = runner.table()
        assert "10.96.0.20 . tcp . 80 : goto svc_default_web_http_tcp_" in table
        assert "dnat to 10.244.1.5:8080" in table
        assert "10.96.0.21 . tcp . 80" in table
        assert "dnat to 10.244.2.7:8080" in table
        for address in ("127.0.0.1", "10.244.1.9", "10.231.1.12", "10.96.0.30", "10.96.0.36"):
            assert address not in table
        assert {r.key for r in net.proxy.rejected} == set(POISON)
        events = [e for e in api.objects(EVENTS) if e["reason"] == proxy_events.REASON]
        assert sorted(
            f"{e['involvedObject']['namespace']}/{e['involvedObject']['name']}" for e in events
        ) == sorted(POISON)
        assert all(e["type"] == "Warning" for e in events)
        clash = next(e for e in events if e["involvedObject"]["name"] == "zz-clash")
        assert "also claimed by Service default/web" in clash["message"]
        # the next syncs neither re-run nft for the same table nor repeat the Events
        calls = runner.nft_calls
        await net.sync_once()
        clock.advance(60)
        await net.sync_once()
        assert runner.nft_calls == calls
        again = [e for e in api.objects(EVENTS) if e["reason"] == proxy_events.REASON]
        assert len(again) == len(events)
        assert all(e.get("count", 1) == 1 for e in again)

    asyncio.run(body())


def test_a_service_nft_refuses_for_a_reason_not_foreseen_is_isolated_by_nft_itself(
    netns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were a check missing, ``nft -c`` on each Service alone finds the culprit."""
    monkeypatch.setattr(checks, "service_problem", lambda svc, cidr=None: None)
    monkeypatch.setattr(checks, "endpoints_problem", lambda eps: None)
    monkeypatch.setattr(node_module, "enable_forwarding", lambda: False)

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        runner = NodeRunner(netns)
        net = _network(api, clock, runner)
        net.proxy.service_cidr = None
        for informer in (net.nodes, net.services, net.endpoints, net.slices):
            await informer.relist()
        await net.sync_once()
        table = runner.table()
        assert "dnat to 10.244.1.5:8080" in table
        assert "dnat to 10.244.2.7:8080" in table
        refused: dict[str, str] = {r.key: r.reason for r in net.proxy.rejected}
        assert "nft refuses its rules" in refused[f"{NS}/affinity"]
        assert "nft refuses its rules" in refused[f"{NS}/big-port"]

    asyncio.run(body())


def test_no_exception_escapes_the_network_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a sync raises, the loop logs it and tries again; it never dies."""

    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        net = NodeNetwork(
            api, clock, node="n1", node_address="10.231.1.11", cluster_cidr=None, service_cidr=None
        )
        recovered = asyncio.Event()
        failures = [KeyError("ip"), TypeError("bad"), RuntimeError("boom")]

        async def flaky_sync() -> None:
            if failures:
                raise failures.pop(0)
            recovered.set()

        monkeypatch.setattr(net, "sync_once", flaky_sync)
        task = asyncio.create_task(net.run())
        for _ in range(50):
            if recovered.is_set() or task.done():
                break
            await clock.step(2.0)
        assert not task.done(), task.exception() if task.done() else None
        assert recovered.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(body())
