"""The node's share of LoadBalancer addresses: the election every agent computes alike, the
``ip addr`` changes it makes, and the health-check node ports it serves."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from berth.agent.healthchecks import Check, HealthCheckServers, wanted_checks
from berth.agent.lbspeaker import Speaker, held_here, nodes_with_ready_endpoints
from berth.api.loadbalancers import EXCLUDE_LABEL, Pool, announcer, parse_block
from berth.api.resources import ENDPOINTSLICES, EVENTS, NODES, SERVICES
from berth.machinery.clock import FakeClock
from berth.network import node as node_module
from tests.harness.fake_client import FakeClient
from tests.harness.fake_runner import FakeRunner
from tests.harness.ports import free_port
from tests.harness.slices import slice_from_endpoints
from tests.unit.agent.test_network import HOST, _node, synced_network

POOL = Pool.parse(["10.231.0.240/29"])
NAMES = ["n1", "n2", "n3"]


def node(name: str, ready: bool = True, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def lb(name: str, ip: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", **spec},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}},
    }


def endpoint_slice(service: str, *endpoints: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": service},
        },
        "endpoints": [
            {"addresses": [ip], "nodeName": n, "conditions": {"ready": ready}}
            for ip, n, ready in endpoints
        ],
    }


def test_pool_entries_parse_as_cidr_or_range() -> None:
    assert str(parse_block("10.0.0.0/30")) == "10.0.0.1-10.0.0.2"
    assert str(parse_block("10.0.0.7/32")) == "10.0.0.7-10.0.0.7"
    assert str(parse_block(" 10.0.0.5 - 10.0.0.9 ")) == "10.0.0.5-10.0.0.9"
    pool = Pool.parse(["10.0.0.5-10.0.0.6"])
    assert pool.first_free(["10.0.0.5"]) == "10.0.0.6"
    assert pool.first_free(["10.0.0.5", "10.0.0.6"]) is None
    assert not pool.contains("10.0.0.7")
    assert not pool.contains("not an address")


def test_exactly_one_node_holds_each_address_and_the_next_takes_over() -> None:
    svcs = [lb(f"s{i}", f"10.231.0.{241 + i}") for i in range(6)]
    nodes = [node(n) for n in NAMES]
    holders = {n: held_here(n, POOL, svcs, nodes, []) for n in NAMES}
    every = [ip for held in holders.values() for ip in held]
    assert sorted(every) == sorted(f"10.231.0.{241 + i}" for i in range(6)), "each exactly once"
    assert sum(1 for held in holders.values() if held) >= 2, "addresses spread over nodes"
    ip = "10.231.0.241"
    first = announcer(ip, NAMES)
    assert first is not None
    down = [node(n, ready=n != first) for n in NAMES]
    second = announcer(ip, [n for n in NAMES if n != first])
    assert ip in held_here(str(second), POOL, svcs, down, [])
    assert ip not in held_here(first, POOL, svcs, down, []), "a NotReady node is not elected"
    excluded = [node(n, labels={EXCLUDE_LABEL: ""} if n == first else None) for n in NAMES]
    assert ip not in held_here(first, POOL, svcs, excluded, [])


def test_local_policy_elects_only_nodes_with_a_ready_endpoint() -> None:
    svcs = [lb("web", "10.231.0.241", externalTrafficPolicy="Local")]
    nodes = [node(n) for n in NAMES]
    slices = [endpoint_slice("web", ("10.244.2.5", "n2", True), ("10.244.3.5", "n3", False))]
    assert held_here("n2", POOL, svcs, nodes, slices) == {"10.231.0.241"}
    assert held_here("n1", POOL, svcs, nodes, slices) == set()
    assert held_here("n3", POOL, svcs, nodes, slices) == set()
    # no ready endpoint anywhere: nobody announces (the traffic would be dropped anyway)
    assert all(not held_here(n, POOL, svcs, nodes, []) for n in NAMES)


def test_addresses_outside_the_pool_and_foreign_classes_are_never_held() -> None:
    svcs = [
        lb("thief", "10.231.0.11"),
        lb("theirs", "10.231.0.242", loadBalancerClass="example.com/x"),
    ]
    nodes = [node(n) for n in NAMES]
    assert all(not held_here(n, POOL, svcs, nodes, []) for n in NAMES)
    assert all(not held_here(n, Pool(()), [lb("a", "10.231.0.241")], nodes, []) for n in NAMES)


def ip_runner(addresses: list[tuple[str, str]]) -> FakeRunner:
    """A host whose ``ip -o -4 addr show`` lists ``addresses`` (as they are at each call)."""

    def shown() -> bytes:
        return "".join(
            f"{i}: {dev}    inet {cidr} scope global {dev}\\       valid_lft forever\n"
            for i, (dev, cidr) in enumerate(addresses, 2)
        ).encode()

    return FakeRunner([(("ip", "-o"), shown)])


def test_speaker_adds_and_drops_pool_addresses_on_the_subnets_interface() -> None:
    runner = ip_runner(
        [("host0", "10.231.0.11/24"), ("host0", "10.231.0.245/32"), ("lo", "10.96.0.10/32")]
    )
    speaker = Speaker(runner, POOL, announce=False)
    added, removed = asyncio.run(speaker.sync({"10.231.0.241"}))
    assert (added, removed) == (["10.231.0.241"], ["10.231.0.245"])
    changes = [c for c in runner.argvs() if c[1] in ("addr",) and c[2] in ("add", "del")]
    assert changes == [
        ["ip", "addr", "del", "10.231.0.245/32", "dev", "host0"],
        ["ip", "addr", "add", "10.231.0.241/32", "dev", "host0"],
    ]
    # an address no interface's subnet contains is reported, not added
    lonely = Speaker(ip_runner([("host0", "192.168.5.2/24")]), POOL, announce=False)
    added, _ = asyncio.run(lonely.sync({"10.231.0.241"}))
    assert added == []
    assert (
        "no interface of this node has a subnet containing 10.231.0.241"
        in (lonely.problems["10.231.0.241"])
    )


def test_health_checks_count_this_nodes_ready_endpoints() -> None:
    svcs = [
        lb("web", "10.231.0.241", externalTrafficPolicy="Local", healthCheckNodePort=31000),
        lb("plain", "10.231.0.242", healthCheckNodePort=31001),  # Cluster: no check
    ]
    slices = [
        endpoint_slice(
            "web",
            ("10.244.1.5", "n1", True),
            ("10.244.1.6", "n1", True),
            ("10.244.2.5", "n2", True),
        )
    ]
    counts = nodes_with_ready_endpoints(slices)
    assert wanted_checks(svcs, counts, "n1") == {31000: Check("default", "web", 2)}
    assert wanted_checks(svcs, counts, "n3") == {31000: Check("default", "web", 0)}


async def _get(port: int) -> tuple[str, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.splitlines()[0], json.loads(body)


def test_health_check_server_answers_200_with_local_endpoints_else_503() -> None:
    async def body() -> None:
        servers = HealthCheckServers(host="127.0.0.1")
        port = free_port()
        try:
            await servers.sync({port: Check("default", "web", 2)})
            status, doc = await _get(port)
            assert status == "HTTP/1.1 200 OK"
            assert doc["localEndpoints"] == 2
            assert doc["service"] == {"namespace": "default", "name": "web"}
            await servers.sync({port: Check("default", "web", 0)})
            status, doc = await _get(port)
            assert status == "HTTP/1.1 503 Service Unavailable"
            assert doc["localEndpoints"] == 0
            await servers.sync({})
            try:
                await _get(port)
            except (ConnectionError, OSError):
                pass
            else:
                raise AssertionError("the port is closed once no Service needs it")
        finally:
            await servers.close()

    asyncio.run(body())


def test_addresses_of_a_removed_pool_are_dropped_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "lb-addresses"
    addresses = [("host0", "10.231.0.11/24")]
    runner = ip_runner(addresses)
    first = Speaker(runner, POOL, announce=False, state_path=state)
    asyncio.run(first.sync({"10.231.0.241"}))
    assert state.read_text() == "10.231.0.241\n"
    # the agent restarts with the pool gone from the spec; the address is still on host0
    addresses.append(("host0", "10.231.0.241/32"))
    runner.calls.clear()
    later = Speaker(runner, Pool(()), announce=False, state_path=state)
    added, removed = asyncio.run(later.sync(set()))
    assert (added, removed) == ([], ["10.231.0.241"])
    assert ["ip", "addr", "del", "10.231.0.241/32", "dev", "host0"] in runner.argvs()
    assert state.read_text() == ""
    # nothing recorded, no pool: not even a look at the addresses
    runner.calls.clear()
    asyncio.run(Speaker(runner, Pool(()), state_path=state).sync(set()))
    assert runner.calls == []


LB_HOST = b"2: host0    inet 10.231.1.11/24 scope global host0\\ valid_lft forever\n"
"""``ip -o -4 addr show`` of a host with ``host0`` 10.231.1.11/24."""


def _lb_service(ip_list: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.20",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
            **spec,
        },
        "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ip_list]}},
    }


def test_the_node_forwards_only_pool_or_node_addresses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A status naming another host's address (the API server's, 10.231.1.5 here) is never
    forwarded: with a pool only its addresses are, without one only the nodes'. With a pool
    the elected node also adds the address."""
    monkeypatch.setattr(node_module, "enable_forwarding", lambda: False)

    async def sync(pool: Pool) -> tuple[bytes, list[list[str]]]:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        node_obj = _node("n1", "10.244.0.0/24", "10.231.1.11")
        node_obj["status"]["conditions"] = [{"type": "Ready", "status": "True"}]  # type: ignore[index]
        api.seed(NODES, node_obj)
        api.seed(SERVICES, _lb_service(["10.231.1.240", "10.231.1.11", "10.231.1.5"]))
        api.seed(
            ENDPOINTSLICES,
            slice_from_endpoints(
                {
                    "metadata": {"name": "web", "namespace": "default"},
                    "subsets": [
                        {
                            "addresses": [{"ip": "10.244.0.5", "nodeName": "n1"}],
                            "ports": [{"name": "http", "port": 8080}],
                        }
                    ],
                }
            ),
        )
        runner = FakeRunner([(("ip", "-o", "-4"), LB_HOST), *HOST])
        await synced_network(
            api,
            clock,
            runner,
            load_balancer_pool=pool,
            speaker_state=tmp_path / "state",
        )
        (ruleset,) = [stdin for a, stdin in runner.calls if a[0] == "nft"]
        assert ruleset is not None
        added = [a for a, _ in runner.calls if a[:3] == ["ip", "addr", "add"]]
        events = [e["message"] for e in api.objects(EVENTS) if e["reason"] == "nodeAssigned"]
        assert events == (["announcing 10.231.1.240 from node n1"] if added else [])
        return ruleset, added

    pooled, added = asyncio.run(sync(Pool.parse(["10.231.1.240-10.231.1.243"])))
    assert b"10.231.1.240 . tcp . 80" in pooled
    assert b"10.231.1.11 . tcp . 80" not in pooled
    assert b"10.231.1.5" not in pooled
    assert added == [["ip", "addr", "add", "10.231.1.240/32", "dev", "host0"]]
    plain, added = asyncio.run(sync(Pool(())))
    assert b"10.231.1.11 . tcp . 80" in plain
    assert b"10.231.1.240" not in plain
    assert b"10.231.1.5" not in plain
    assert added == []
