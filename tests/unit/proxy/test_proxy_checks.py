"""The proxy's per-Service checks: a bad object is left out, never the whole table."""

from __future__ import annotations

from typing import Any

from berth.proxy.checks import check_with_endpoints, check_with_slices, forwardable_ipv4


def _svc(name: str, ip: str, port: int = 80, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": port}], **spec},
    }


def _eps(name: str, ip: str, port: int = 8080) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port}]}],
    }


def test_forwardable_addresses() -> None:
    assert forwardable_ipv4("10.244.1.2")
    for bad in ("127.0.0.1", "169.254.169.254", "224.0.0.1", "0.0.0.0", "255.255.255.255",
                "fd00::1", "10.0.0.256", ""):  # fmt: skip
        assert not forwardable_ipv4(bad), bad


def test_each_bad_object_is_rejected_alone() -> None:
    services = [
        _svc("ok", "10.96.0.1"),
        _svc("timeout", "10.96.0.2", sessionAffinity="ClientIP",
             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 86401}}),
        _svc("port", "10.96.0.3", port=0),
        {"metadata": {"name": "garbage", "namespace": "ns"}, "spec": {"ports": [{"name": "x"}],
                                                                      "clusterIP": "10.96.0.4"}},
        _svc("outside", "10.231.0.5"),
        _svc("headless", "None"),
    ]  # fmt: skip
    endpoints = [
        _eps("ok", "10.244.0.2"),
        _eps("timeout", "10.244.0.3"),
        _eps("port", "10.244.0.4"),
    ]
    checked = check_with_endpoints(services, endpoints, service_cidr="10.96.0.0/16")
    assert [s.name for s in checked.services] == ["ok"]
    assert list(checked.endpoints) == ["ns/ok"]
    reasons = {r.name: r.reason for r in checked.rejected}
    assert set(reasons) == {"timeout", "port", "garbage", "outside"}
    assert "86401" in reasons["timeout"]
    assert "outside the service CIDR" in reasons["outside"]
    assert "malformed Service" in reasons["garbage"]


def test_malformed_endpoints_reject_only_their_service() -> None:
    services = [_svc("a", "10.96.0.1"), _svc("b", "10.96.0.2")]
    endpoints = [_eps("a", "10.244.0.2"), {"metadata": {"name": "b", "namespace": "ns"},
                                           "subsets": [{"addresses": [{"nope": 1}]}]}]  # fmt: skip
    checked = check_with_endpoints(services, endpoints)
    assert [s.name for s in checked.services] == ["a"]
    assert [(r.name, r.reason.split(":")[0]) for r in checked.rejected] == [
        ("b", "malformed Endpoints")
    ]


def test_two_services_claiming_one_address_port_keep_the_first() -> None:
    node_port = [{"name": "h", "port": 1, "nodePort": 30001}]
    services = [
        _svc("b", "10.96.0.1"),
        _svc("a", "10.96.0.1"),
        _svc("c", "10.96.0.1", port=81),
        _svc("np1", "10.96.0.5", type="NodePort", ports=node_port),
        _svc("np2", "10.96.0.6", type="NodePort", ports=node_port),
    ]
    checked = check_with_slices(services, [])
    assert sorted(s.name for s in checked.services) == ["a", "c", "np1"]
    reasons = {r.name: r.reason for r in checked.rejected}
    assert reasons["b"] == "10.96.0.1:80/TCP is also claimed by Service ns/a"
    assert reasons["np2"] == "nodePort 30001/TCP is also claimed by Service ns/np1"
