"""host-gw route planning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from berth.network.node import peers_from_nodes
from berth.network.routes import (
    Peer,
    Route,
    desired_routes,
    enable_forwarding,
    parse_routes,
    plan_routes,
)

PEERS = [
    Peer("10.244.1.0/24", "10.231.0.11"),
    Peer("10.244.2.0/24", "10.231.0.12"),
    Peer("10.244.3.0/24", "10.231.0.13"),
]


def test_desired_routes_skip_own_cidr_and_add_the_service_route() -> None:
    routes = desired_routes(
        PEERS, own_pod_cidr="10.244.1.0/24", service_cidr="10.96.0.0/12", service_dev="eth0"
    )
    assert routes == {
        Route("10.244.2.0/24", via="10.231.0.12"),
        Route("10.244.3.0/24", via="10.231.0.13"),
        Route("10.96.0.0/12", dev="eth0"),
    }


def test_plan_adds_missing_replaces_moved_and_deletes_gone() -> None:
    current = parse_routes(
        json.dumps(
            [
                {"dst": "10.244.2.0/24", "gateway": "10.231.0.12", "dev": "eth0", "flags": []},
                {"dst": "10.244.4.0/24", "gateway": "10.231.0.14", "dev": "eth0", "flags": []},
                {"dst": "10.244.3.0/24", "gateway": "10.231.0.99", "dev": "eth0", "flags": []},
            ]
        )
    )
    desired = desired_routes(PEERS, own_pod_cidr="10.244.1.0/24")
    assert plan_routes(current, desired) == [
        ["ip", "route", "del", "10.244.4.0/24", "via", "10.231.0.14", "proto", "199"],
        ["ip", "route", "replace", "10.244.3.0/24", "via", "10.231.0.13", "proto", "199"],
    ]
    assert plan_routes(desired, desired) == [], "in sync: nothing to do"


def test_parse_handles_device_routes_and_empty_output() -> None:
    assert parse_routes("") == set()
    parsed = parse_routes('[{"dst":"10.96.0.0/12","dev":"eth0","scope":"link","flags":[]}]')
    assert parsed == {Route("10.96.0.0/12", dev="eth0")}


def test_enable_forwarding_writes_only_when_off(tmp_path: Path) -> None:
    knob = tmp_path / "ip_forward"
    knob.write_text("0\n")
    assert enable_forwarding(knob) is True
    assert knob.read_text() == "1\n"
    assert enable_forwarding(knob) is False


def test_peers_from_node_objects() -> None:
    nodes: list[dict[str, Any]] = [
        {"spec": {"podCIDR": "10.244.2.0/24"},
         "status": {"addresses": [{"type": "Hostname", "address": "n2"},
                                  {"type": "InternalIP", "address": "10.231.0.12"}]}},
        {"spec": {}, "status": {"addresses": [{"type": "InternalIP", "address": "10.231.0.13"}]}},
        {"spec": {"podCIDR": "10.244.1.0/24"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.231.0.11"}]}},
    ]  # fmt: skip
    assert peers_from_nodes(nodes) == [
        Peer("10.244.1.0/24", "10.231.0.11"),
        Peer("10.244.2.0/24", "10.231.0.12"),
    ], "nodes without a podCIDR yet are skipped"
