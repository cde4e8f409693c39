"""The NetworkPolicy renderer: policies, pods and namespaces in, nft text out. Each test reads
the sets, maps and chains the text holds; ``nft -c`` proves the text parses (nft is
installed on the development and CI machines)."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from berth.netpol.model import (
    Namespace,
    Pod,
    Policy,
    namespace_from_k8s,
    pod_from_k8s,
    policy_from_k8s,
)
from berth.netpol.render import render_ruleset, transaction


def pod(
    ns: str,
    name: str,
    ip: str,
    labels: dict[str, str] | None = None,
    *,
    node: str = "n1",
    ports: list[dict[str, Any]] | None = None,
    host_network: bool = False,
    phase: str = "Running",
) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
        "spec": {
            "nodeName": node,
            "hostNetwork": host_network,
            "containers": [{"name": "c", "ports": ports or []}],
        },
        "status": {"podIP": ip, "phase": phase},
    }


def ns(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}}


def policy(ns_: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": ns_, "name": name},
        "spec": {"podSelector": {}, **spec},
    }


def render(
    policies: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    namespaces: list[dict[str, Any]],
    *,
    node: str | None = None,
) -> str:
    return render_ruleset(
        [policy_from_k8s(p) for p in policies],
        [p for p in map(pod_from_k8s, pods) if p is not None],
        [namespace_from_k8s(n) for n in namespaces],
        node=node,
    )


def nft_check(text: str) -> None:
    r = subprocess.run(
        ["nft", "-c", "-f", "-"],
        input=transaction(text),
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr + "\n" + text


def map_entries(text: str, name: str) -> dict[str, str]:
    """``ip -> chain`` of one verdict map."""
    m = re.search(rf"map {name} {{\n\t\ttype [^\n]*\n(?:\t\telements = {{ (.*) }}\n)?", text)
    assert m is not None, text
    if not m.group(1):
        return {}
    return dict(e.split(" : goto ") for e in m.group(1).split(", "))


def set_elements(text: str, suffix: str) -> list[list[str]]:
    """The elements of every set whose name ends with ``suffix``."""
    found = re.findall(rf"set \S+{suffix} {{\n(?:\t\t[^\n]*\n)*?\t\telements = {{ (.*) }}", text)
    return [f.split(", ") for f in found]


def chain(text: str, name: str) -> list[str]:
    m = re.search(rf"\tchain {re.escape(name)} {{\n(.*?)\t}}", text, re.S)
    assert m is not None, name
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


PODS = [
    pod("a", "web1", "10.244.1.2", {"app": "web"}, ports=[{"name": "http", "containerPort": 8080}]),
    pod("a", "web2", "10.244.1.3", {"app": "web"}, ports=[{"name": "http", "containerPort": 9090}]),
    pod("a", "db", "10.244.1.4", {"app": "db"}),
    pod("b", "client", "10.244.2.2", {"role": "client"}, node="n2"),
    pod("c", "other", "10.244.2.3", {"role": "client"}, node="n2"),
]
NAMESPACES = [ns("a"), ns("b", team="blue"), ns("c", team="red")]


def test_no_policies_isolates_nobody_and_parses() -> None:
    text = render([], PODS, NAMESPACES)
    assert map_entries(text, "ingress_pods") == {}
    assert map_entries(text, "egress_pods") == {}
    assert "ct state established,related accept" in text
    nft_check(text)


def test_default_deny_isolates_the_namespace_only() -> None:
    text = render([policy("a", "deny")], PODS, NAMESPACES)
    entries = map_entries(text, "ingress_pods")
    assert set(entries) == {"10.244.1.2", "10.244.1.3", "10.244.1.4"}
    assert map_entries(text, "egress_pods") == {}
    # one group chain for the three pods: the policy's chain (no rules), then drop
    (group,) = set(entries.values())
    lines = chain(text, group)
    assert lines[-1] == "drop"
    assert len(lines) == 2
    assert chain(text, lines[0].removeprefix("jump ")) == []
    nft_check(text)


def test_allow_by_namespace_and_by_pod_label() -> None:
    allow = policy(
        "a",
        "allow",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[
            {"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]},
        ],
    )
    text = render([allow], PODS, NAMESPACES)
    assert set(map_entries(text, "ingress_pods")) == {"10.244.1.2", "10.244.1.3"}
    # rule 0: every pod of namespace b; rule 1: the db pod of the policy's own namespace
    assert set_elements(text, "_0_pods") == [["10.244.2.2"]]
    assert set_elements(text, "_1_pods") == [["10.244.1.4"]]
    assert re.search(r"ip saddr @\S+_0_pods accept", text)
    nft_check(text)


def test_namespace_and_pod_selector_combined_is_an_and() -> None:
    both = policy(
        "a",
        "both",
        ingress=[
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [{"key": "team", "operator": "Exists"}]
                        },
                        "podSelector": {"matchLabels": {"role": "client"}},
                    }
                ]
            }
        ],
    )
    extra = [*PODS, pod("b", "server", "10.244.2.9", {"role": "server"})]
    text = render([both], extra, NAMESPACES)
    assert set_elements(text, "_0_pods") == [["10.244.2.2", "10.244.2.3"]]
    nft_check(text)


def test_ip_block_with_except_and_ports() -> None:
    p = policy(
        "a",
        "cidr",
        policyTypes=["Egress"],
        egress=[
            {
                "to": [
                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.0/24"]}},
                    {"ipBlock": {"cidr": "10.1.2.0/24"}},
                ],
                "ports": [
                    {"protocol": "TCP", "port": 8000, "endPort": 8080},
                    {"protocol": "TCP", "port": 8050, "endPort": 9000},
                    {"protocol": "UDP", "port": 53},
                    {"protocol": "SCTP"},
                ],
            }
        ],
    )
    text = render([p], PODS, NAMESPACES)
    assert map_entries(text, "ingress_pods") == {}
    assert set(map_entries(text, "egress_pods")) == {"10.244.1.2", "10.244.1.3", "10.244.1.4"}
    (blocks,) = set_elements(text, "_0_blocks")
    assert "10.1.0.0/16" not in blocks
    assert "10.1.2.0/24" in blocks  # a second block puts part of the except back
    assert "10.0.0.0/16" in blocks
    assert not any(b.startswith("10.2.3.") for b in blocks)
    # overlapping ranges merged; a protocol without a port is every port of it
    assert set_elements(text, "_0_ports") == [["sctp . 1-65535", "tcp . 8000-9000", "udp . 53"]]
    assert re.search(r"ip daddr @\S+_0_blocks meta l4proto . th dport @\S+_0_ports accept", text)
    nft_check(text)


def test_named_ports_resolve_per_pod() -> None:
    p = policy(
        "a",
        "named",
        podSelector={"matchLabels": {"app": "web"}},
        ingress=[{"ports": [{"port": "http"}, {"port": 5432}]}],
    )
    text = render([p], PODS, NAMESPACES)
    assert set_elements(text, "_0_named") == [
        ["10.244.1.2 . tcp . 8080", "10.244.1.3 . tcp . 9090"]
    ]
    assert set_elements(text, "_0_ports") == [["tcp . 5432"]]
    # no peers given: every source, so the rules match on ports only
    lines = [x for x in text.splitlines() if x.strip().startswith("ip daddr . meta l4proto")]
    assert len(lines) == 1
    nft_check(text)


def test_named_port_of_the_wrong_protocol_does_not_resolve() -> None:
    p = policy("a", "udp", ingress=[{"ports": [{"port": "http", "protocol": "UDP"}]}])
    text = render([p], PODS, NAMESPACES)
    assert set_elements(text, "_0_named") == []
    nft_check(text)


def test_egress_defaults_and_both_directions_meet_in_separate_base_chains() -> None:
    p = policy("a", "both", egress=[{"to": [{"podSelector": {}}]}])
    model = policy_from_k8s(p)
    assert model.ingress == ()  # Ingress always; no rules: deny
    assert model.egress is not None
    text = render([p], PODS, NAMESPACES)
    assert set(map_entries(text, "egress_pods")) == set(map_entries(text, "ingress_pods"))
    assert "type filter hook forward priority 0; policy accept;" in chain(text, "egress")[0] + ";"
    assert chain(text, "ingress")[0].startswith("type filter hook forward priority 1")
    nft_check(text)


def test_empty_from_means_every_source_and_empty_rule_list_means_none() -> None:
    every = policy("a", "every", ingress=[{"from": []}])
    text = render([every], PODS, NAMESPACES)
    pol_chain = next(c for c in re.findall(r"chain (pin_\S+) {", text))
    assert chain(text, pol_chain) == ["accept"]
    nft_check(text)


def test_only_this_nodes_pods_are_isolated() -> None:
    text = render([policy("a", "deny"), policy("b", "deny")], PODS, NAMESPACES, node="n2")
    assert set(map_entries(text, "ingress_pods")) == {"10.244.2.2"}
    nft_check(text)


def test_pods_without_address_host_network_and_finished_pods_are_left_out() -> None:
    pods = [
        pod("a", "pending", "", {}),
        pod("a", "host", "10.231.0.11", {}, host_network=True),
        pod("a", "done", "10.244.1.9", {}, phase="Succeeded"),
        pod("a", "bad", "10.244.1.300", {}),
        pod("a", "v6", "fd00::1", {}),
    ]
    assert [pod_from_k8s(p) for p in pods] == [None] * 5
    text = render([policy("a", "deny")], pods, NAMESPACES)
    assert map_entries(text, "ingress_pods") == {}


def test_policies_sharing_pods_share_a_group_chain() -> None:
    text = render(
        [
            policy("a", "p1"),
            policy("a", "p2"),
            policy("a", "p3", podSelector={"matchLabels": {"app": "db"}}),
        ],
        PODS,
        NAMESPACES,
    )
    entries = map_entries(text, "ingress_pods")
    assert entries["10.244.1.2"] == entries["10.244.1.3"] != entries["10.244.1.4"]
    assert len(chain(text, entries["10.244.1.4"])) == 4  # three policies + drop
    nft_check(text)


def test_malformed_parts_fail_closed() -> None:
    bad = policy(
        "a",
        "bad",
        podSelector={"matchExpressions": [{"key": "x", "operator": "Bogus"}]},
        ingress=[
            {"from": [{"ipBlock": {"cidr": "not-a-cidr"}}], "ports": [{"port": 1}]},
            {"ports": [{"port": 70000}]},
        ],
    )
    model = policy_from_k8s(bad)
    assert model.ingress is not None
    assert model.ingress[0].peers == ()
    assert model.ingress[1].ports == ()
    text = render([bad], PODS, NAMESPACES)
    # the whole namespace is isolated and nothing is allowed
    assert set(map_entries(text, "ingress_pods")) == {"10.244.1.2", "10.244.1.3", "10.244.1.4"}
    accepts = [line for line in text.splitlines() if line.endswith(" accept")]
    assert all("established" in line for line in accepts), accepts
    nft_check(text)


INJECTIONS = [
    '"; flush ruleset; "',
    "} chain evil { type filter hook input priority 0; policy drop; }",
    "a\nflush ruleset\n",
    "$(reboot)",
    "@ingress_pods",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_names_and_labels_never_reach_the_text(evil: str) -> None:
    pods = [
        pod(evil, evil, "10.244.1.2", {evil: evil}, ports=[{"name": evil, "containerPort": 80}]),
        pod("a", "web", "10.244.1.3", {"app": evil}),
    ]
    policies = [
        policy(
            evil,
            evil,
            podSelector={"matchLabels": {evil: evil}},
            ingress=[
                {
                    "from": [{"namespaceSelector": {"matchLabels": {evil: evil}}}],
                    "ports": [{"port": evil}],
                }
            ],
        ),
        policy("a", evil, ingress=[{"from": [{"podSelector": {"matchLabels": {"app": evil}}}]}]),
    ]
    text = render(policies, pods, [ns(evil), ns("a")])
    # names appear only squashed into identifiers: no quote, no variable, no new statement
    assert '"' not in text
    assert "$" not in text
    assert text.count(" hook ") == 2
    assert "policy drop" not in text
    assert not any(line.strip().startswith("flush") for line in text.splitlines())
    for ident in re.findall(r"(?:\b(?:chain|set|map|goto|jump)\s+|@)([^\s,]+)", text):
        assert re.fullmatch(r"[A-Za-z0-9_-]+", ident), ident
    nft_check(text)


def big_state(n_pods: int, n_policies: int) -> tuple[list[Policy], list[Pod], list[Namespace]]:
    namespaces = [ns(f"ns{i}", team=f"t{i % 5}") for i in range(10)]
    pods = [
        pod(
            f"ns{i % 10}",
            f"p{i}",
            f"10.244.{i // 250}.{i % 250 + 2}",
            {"app": f"app{i % 20}", "tier": f"t{i % 3}"},
            node=f"n{i % 4}",
            ports=[{"name": "http", "containerPort": 8000 + i % 7}],
        )
        for i in range(n_pods)
    ]
    policies = [
        policy(
            f"ns{i % 10}",
            f"pol{i}",
            podSelector={"matchLabels": {"app": f"app{i % 20}"}},
            policyTypes=["Ingress", "Egress"],
            ingress=[
                {
                    "from": [
                        {"namespaceSelector": {"matchLabels": {"team": f"t{i % 5}"}}},
                        {"podSelector": {"matchLabels": {"tier": f"t{i % 3}"}}},
                        {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
                    ],
                    "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100}],
                }
            ],
            egress=[{"to": [{"podSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}],
        )
        for i in range(n_policies)
    ]
    return (
        [policy_from_k8s(p) for p in policies],
        [p for p in map(pod_from_k8s, pods) if p is not None],
        [namespace_from_k8s(n) for n in namespaces],
    )


def test_thousand_pods_hundred_policies_render_rules_per_policy_and_parse() -> None:
    # the render time is bench/netpol.py's figure: a wall-clock bound here failed under load
    policies, pods, namespaces = big_state(1000, 100)
    text = render_ruleset(policies, pods, namespaces)
    # no rule per pod pair: the rule count follows the policies, not pods x pods
    rules = sum(1 for line in text.splitlines() if line.endswith(" accept"))
    assert rules <= 100 * 2 * 3 * 2 + 2
    assert len(map_entries(text, "ingress_pods")) == 1000
    nft_check(text)
