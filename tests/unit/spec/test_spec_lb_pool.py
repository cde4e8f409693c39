"""``network.loadBalancerPool``: the addresses LoadBalancer Services get. Each entry is an
IPv4 CIDR or a range; problems name the file, line and entry."""

from __future__ import annotations

import pytest

from provisioner.errors import SpecError
from provisioner.spec import parse_spec
from tests.unit.spec.conftest import ONE_HOST, doc


def problems(body: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(doc(body), filename="cluster.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("pool", "expected"),
    [
        pytest.param(
            "[10.0.0.300/28]",
            "spec.network.loadBalancerPool[0]: is neither an IPv4 CIDR nor an address range",
            id="not_an_address",
        ),
        pytest.param(
            "['10.0.0.250-10.0.0.240']",
            "spec.network.loadBalancerPool[0]: is neither an IPv4 CIDR nor an address range",
            id="backwards_range",
        ),
        pytest.param(
            "[10.0.0.240/28, 10.96.0.0/30]",
            "spec.network.loadBalancerPool[1]: overlaps network.serviceCIDR 10.96.0.0/12",
            id="service_block",
        ),
        pytest.param(
            "['10.244.3.1-10.244.3.9']",
            "spec.network.loadBalancerPool[0]: overlaps network.podCIDR 10.244.0.0/16",
            id="pod_block",
        ),
        pytest.param(
            "[10.0.0.0/24]",
            "spec.network.loadBalancerPool[0]: contains the address of host",
            id="a_host",
        ),
        pytest.param(
            "[10.0.0.240/28, '10.0.0.250-10.0.0.252']",
            "spec.network.loadBalancerPool[1]: overlaps network.loadBalancerPool[0]",
            id="overlapping_entries",
        ),
        pytest.param(
            "[10.0.0.0/8]",
            "spec.network.loadBalancerPool: holds more than 65536 addresses",
            id="too_big",
        ),
    ],
)
def test_a_bad_pool_is_reported_with_file_and_field(pool: str, expected: str) -> None:
    found = problems(ONE_HOST + f"network: {{loadBalancerPool: {pool}}}\n")
    assert any(p.startswith("cluster.yaml:") and expected in p for p in found), found


def test_a_good_pool_is_kept_as_ranges() -> None:
    spec = parse_spec(
        doc(ONE_HOST + "network: {loadBalancerPool: [10.0.0.240/29, '10.0.0.250 - 10.0.0.251']}\n"),
        filename="cluster.yaml",
    )
    assert spec.spec.network.load_balancer_pool == [
        "10.0.0.241-10.0.0.246",
        "10.0.0.250-10.0.0.251",
    ]


def test_no_pool_by_default() -> None:
    spec = parse_spec(doc(ONE_HOST), filename="cluster.yaml")
    assert spec.spec.network.load_balancer_pool == []
