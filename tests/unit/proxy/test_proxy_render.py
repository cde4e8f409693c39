"""nftables rendering (golden files) and the atomic applier."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from berth.network.command import CommandFailed
from berth.proxy.apply import NftApplier
from berth.proxy.model import (
    Endpoint,
    Service,
    ServiceKey,
    ServicePort,
    endpoints_from_k8s_endpoints,
    endpoints_from_slices,
    service_from_k8s,
)
from berth.proxy.render import render_ruleset, transaction
from berth.proxy.sync import ServiceProxy
from tests.harness.fake_runner import FakeRunner

GOLDEN = Path(__file__).parent / "golden"
WEB = Service(
    "default", "web", "10.96.0.10", (ServicePort("http", 80, "TCP", 30080),), type="NodePort"
)
STICKY = Service(
    "default",
    "sticky",
    "10.96.0.11",
    (ServicePort("", 8080),),
    session_affinity="ClientIP",
    affinity_timeout_seconds=60,
)
DNS = Service(
    "kube-system",
    "dns",
    "10.96.0.53",
    (ServicePort("dns", 53, "UDP"), ServicePort("dns-tcp", 53, "TCP")),
)
EMPTY = Service(
    "default", "empty", "10.96.0.12", (ServicePort("http", 80, "TCP", 30081),), type="NodePort"
)
WEB_EPS = [
    Endpoint("10.244.2.2", {"http": 8080}),
    Endpoint("10.244.1.2", {"http": 8080}),
    Endpoint("10.244.2.3", {"http": 8080}, ready=False),
]
ENDPOINTS: dict[ServiceKey, list[Endpoint]] = {
    WEB.key: WEB_EPS,
    STICKY.key: [Endpoint("10.244.1.5", {"": 8080})],
    DNS.key: [Endpoint("10.244.1.9", {"dns": 53, "dns-tcp": 53})],
}


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("BERTH_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; review and rerun with BERTH_UPDATE_GOLDEN=1"


def _render(services: Sequence[Service], eps: Mapping[ServiceKey, Sequence[Endpoint]]) -> str:
    return render_ruleset(services, eps, cluster_cidr="10.244.0.0/16")


def test_golden_full_ruleset() -> None:
    text = _render([WEB, STICKY, DNS, EMPTY], ENDPOINTS)
    _golden("full.nft", text)
    assert "10.244.2.3" not in text, "not-ready endpoints never receive traffic"
    assert "numgen random mod 2" in text


def test_golden_after_an_endpoint_goes_away() -> None:
    eps = dict(ENDPOINTS) | {WEB.key: [WEB_EPS[0]]}
    text = _render([WEB, STICKY, DNS, EMPTY], eps)
    _golden("one-web-endpoint.nft", text)
    assert "10.244.1.2" not in text
    assert "numgen" not in text, "a single backend is a plain goto"


def test_golden_after_a_service_is_removed() -> None:
    text = _render([STICKY, DNS, EMPTY], ENDPOINTS)
    _golden("web-removed.nft", text)
    assert "web" not in text
    assert "30080" not in text


def test_service_without_ready_endpoints_is_rejected_not_dnated() -> None:
    eps = {WEB.key: [Endpoint("10.244.1.2", {"http": 8080}, ready=False)]}
    text = _render([WEB], eps)
    assert "10.96.0.10 . tcp . 80," in text.split("set no_endpoint_ips")[1].split("}")[0]
    assert "tcp . 30080," in text.split("set no_endpoint_nodeports")[1].split("}")[0]
    assert "dnat" not in text


def test_rendering_is_deterministic_and_input_order_free() -> None:
    a = _render([WEB, DNS], ENDPOINTS)
    b = _render([DNS, WEB], {k: list(reversed(v)) for k, v in ENDPOINTS.items()})
    assert a == b


def test_transaction_replaces_the_table_in_one_script() -> None:
    script = transaction("table ip berth {\n}\n")
    assert script.splitlines()[:3] == [
        "add table ip berth",
        "delete table ip berth",
        "table ip berth {",
    ]


def test_kubernetes_objects_convert() -> None:
    svc = service_from_k8s(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}],
                "sessionAffinity": "ClientIP",
                "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 30}},
            },
        }
    )
    assert svc == Service(
        "default",
        "web",
        "10.96.0.10",
        (ServicePort("http", 80, "TCP", 30080),),
        type="NodePort",
        session_affinity="ClientIP",
        affinity_timeout_seconds=30,
    )
    headless = {"metadata": {"name": "h"}, "spec": {"clusterIP": "None"}}
    assert service_from_k8s(headless) is None
    slices = endpoints_from_slices(
        [
            {
                "metadata": {
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "web"},
                },
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [
                    {"addresses": ["10.244.1.2"], "conditions": {"ready": True}, "nodeName": "a"},
                    {"addresses": ["10.244.2.2"], "conditions": {"ready": False}},
                ],
            }
        ]
    )
    assert slices == {
        ServiceKey("default/web"): [
            Endpoint("10.244.1.2", {"http": 8080}, ready=True, node_name="a"),
            Endpoint("10.244.2.2", {"http": 8080}, ready=False),
        ]
    }
    key, eps = endpoints_from_k8s_endpoints(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "subsets": [
                {
                    "addresses": [{"ip": "10.244.1.2"}],
                    "notReadyAddresses": [{"ip": "10.244.2.2"}],
                    "ports": [{"name": "http", "port": 8080}],
                }
            ],
        }
    )
    assert key == "default/web"
    assert [(e.ip, e.ready) for e in eps] == [("10.244.1.2", True), ("10.244.2.2", False)]


def test_applier_runs_nft_once_per_distinct_ruleset() -> None:
    runner = FakeRunner()
    applier = NftApplier(runner)
    rules = _render([WEB], ENDPOINTS)
    assert asyncio.run(applier.apply(rules)) is True
    assert asyncio.run(applier.apply(rules)) is False, "unchanged: no nft call"
    assert asyncio.run(applier.apply(rules, force=True)) is True
    argv, stdin = runner.calls[0]
    assert argv == ["nft", "-f", "-"]
    assert stdin == transaction(rules).encode()
    assert len(runner.calls) == 2


def test_applier_failure_is_raised_and_retried_next_time() -> None:
    runner = FakeRunner(rc=1, stderr=b"Error: syntax error")
    applier = NftApplier(runner)
    with pytest.raises(CommandFailed, match=r"apply nftables table berth.*syntax error"):
        asyncio.run(applier.apply("table ip berth {\n}\n"))
    runner.rc = 0
    assert asyncio.run(applier.apply("table ip berth {\n}\n")) is True


def test_service_proxy_syncs_kubernetes_objects_once_per_change() -> None:
    runner = FakeRunner()
    proxy = ServiceProxy(cluster_cidr="10.244.0.0/16", runner=runner)
    services: list[dict[str, Any]] = [
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 80}]},
        },
        {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None"}},
    ]
    slices = [
        {
            "metadata": {"namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.1.2"], "conditions": {"ready": True}}],
        }
    ]
    assert asyncio.run(proxy.sync(services, slices)) is True
    assert asyncio.run(proxy.sync(services, slices)) is False
    script = (runner.calls[0][1] or b"").decode()
    assert "10.96.0.10 . tcp . 80 : goto svc_default_web_http_tcp_" in script
    assert "dnat to 10.244.1.2:8080" in script
    assert "headless" not in script
