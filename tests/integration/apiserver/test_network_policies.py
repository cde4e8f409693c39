"""NetworkPolicies (networking.k8s.io/v1) on a real API server through kubectl 1.32 and the
Python client: discovery and the short name, defaults (policyTypes, protocol), upstream's
validation errors, the ``kubectl get`` columns, and ``kubectl describe``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from .conftest import make_kubectl
from .helpers import Kubectl, table


@pytest.fixture(scope="module")
def kubectl(
    kubectl_binaries: dict[str, Path],
    admin_kubeconfig: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Kubectl:
    return make_kubectl(kubectl_binaries, "1.32", admin_kubeconfig, tmp_path_factory.mktemp("h"))


def _policy(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"podSelector": {}, **spec},
    }


def networking_api(api: k8s.ApiClient) -> Any:
    return k8s.NetworkingV1Api(api)


def _apply(kubectl: Kubectl, doc: dict[str, Any]) -> str:
    r = kubectl.run("apply", "-f", "-", stdin=json.dumps(doc))
    return r.stdout if r.returncode == 0 else "ERROR " + r.stderr


def test_defaults_columns_and_short_name(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    assert "networkpolicies" in kubectl("api-resources", "--api-group=networking.k8s.io")
    _apply(
        kubectl,
        _policy(
            "np-egress",
            podSelector={"matchLabels": {"app": "web"}},
            egress=[{"ports": [{"port": 53}, {"port": 8000, "endPort": 8080}]}],
        ),
    )
    _apply(kubectl, _policy("np-deny"))
    net = networking_api(api)
    got = net.read_namespaced_network_policy("np-egress", "default")
    assert got.spec.policy_types == ["Ingress", "Egress"]  # egress rules present
    assert [p.protocol for p in got.spec.egress[0].ports] == ["TCP", "TCP"]
    assert got.spec.egress[0].ports[1].end_port == 8080
    assert got.metadata.generation == 1
    deny = net.read_namespaced_network_policy("np-deny", "default")
    assert deny.spec.policy_types == ["Ingress"]
    rows = table(kubectl("get", "netpol"))
    assert rows[0] == ["NAME", "POD-SELECTOR", "AGE"]
    shown = {r[0]: r[1] for r in rows[1:]}
    assert shown["np-egress"] == "app=web"
    assert shown["np-deny"] == "<none>"
    described = kubectl("describe", "networkpolicy", "np-deny")
    assert "Allowing ingress traffic" in described
    assert "<none> (Selected pods are isolated for ingress connectivity)" in described


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}, 'supported values: "SCTP"'),
        ({"ingress": [{"ports": [{"port": 70000}]}]}, "must be between 1 and 65535"),
        ({"ingress": [{"ports": [{"port": "Not_A_Name"}]}]}, "spec.ingress[0].ports[0].port"),
        ({"ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "greater than or equal to"),
        ({"ingress": [{"ports": [{"port": "http", "endPort": 80}]}]}, "non-numeric"),
        ({"ingress": [{"ports": [{"endPort": 80}]}]}, "`port` is not specified"),
        ({"ingress": [{"from": [{}]}]}, "must specify a peer"),
        (
            {"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
            "may not specify more than 1 peer",
        ),
        (
            {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
            "strict subset",
        ),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.300/8"}}]}]}, "valid CIDR"),
        ({"policyTypes": ["Ingress", "Sideways"]}, 'supported values: "Ingress", "Egress"'),
        (
            {"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
            "spec.podSelector",
        ),
    ],
)
def test_invalid_policies_are_refused(kubectl: Kubectl, spec: dict[str, Any], message: str) -> None:
    out = _apply(kubectl, _policy("np-bad", **spec))
    assert out.startswith("ERROR"), out
    assert "is invalid" in out, out
    assert message in out, out


def test_valid_edge_cases_are_accepted(kubectl: Kubectl, api: k8s.ApiClient) -> None:
    spec = {
        "policyTypes": ["Egress"],
        "egress": [
            {
                "to": [
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                    {
                        "namespaceSelector": {"matchLabels": {"team": "a"}},
                        "podSelector": {"matchLabels": {"role": "db"}},
                    },
                ],
                "ports": [{"port": "dns-udp", "protocol": "UDP"}, {"protocol": "SCTP"}],
            }
        ],
    }
    out = _apply(kubectl, _policy("np-edge", **spec))
    assert not out.startswith("ERROR"), out
    got = networking_api(api).read_namespaced_network_policy("np-edge", "default")
    assert got.spec.policy_types == ["Egress"]
    assert got.to_dict()["spec"]["egress"][0]["to"][0]["ip_block"]["_except"] == ["10.1.0.0/16"]


def test_unknown_fields_are_refused_under_strict_validation(kubectl: Kubectl) -> None:
    doc = _policy("np-unknown", ingress=[{"from": [{"podSelector": {}, "bogus": 1}]}])
    r = kubectl.run("create", "--validate=strict", "-f", "-", stdin=json.dumps(doc))
    assert r.returncode != 0
    assert 'unknown field "spec.ingress[0].from[0].bogus"' in r.stderr
