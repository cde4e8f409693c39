"""``apiServer.vip``: an HA cluster's one address. Validated before anything connects (etcd
only, IPv4, a free unicast address outside the cluster's own blocks); when set, clients and
the API server certificate use it."""

from __future__ import annotations

import pytest

from provisioner.errors import SpecError
from provisioner.kubeconfig import kubeconfig_plan
from provisioner.pki.certlist import apiserver_sans, expand
from provisioner.spec import parse_spec
from tests.unit.spec.conftest import ONE_HOST, doc

HA_HOSTS = "hosts:\n" + "".join(
    f"  - {{name: n{i}, address: 10.0.0.{i}, roles: [control-plane, worker]}}\n" for i in (1, 2, 3)
)
HA = HA_HOSTS + "datastore: {type: etcd}\n"


def problems(body: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(doc(body), filename="cluster.yaml")
    return caught.value.problems


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            ONE_HOST + "apiServer: {vip: 10.0.0.200}\n",
            "cluster.yaml:7:20: spec.apiServer.vip: needs 'datastore: {type: etcd}': the VIP's "
            "holder is elected among several control-plane hosts through the datastore (got "
            "'10.0.0.200'); hint: with one control-plane host, remove vip (its address is the "
            "endpoint)",
            id="sqlite",
        ),
        pytest.param(
            HA + "apiServer: {vip: 'fd00::200'}\n",
            "cluster.yaml:10:20: spec.apiServer.vip: must be an IPv4 address: the VIP is "
            "announced by gratuitous ARP (got 'fd00::200'); hint: pick a free IPv4 address of "
            "the control-plane hosts' subnet",
            id="ipv6",
        ),
        pytest.param(
            HA + "apiServer: {vip: 10.0.0.2}\n",
            "cluster.yaml:10:20: spec.apiServer.vip: is the address of host 'n2' "
            "(spec.hosts[1]); the VIP must be an address no host has (got '10.0.0.2'); hint: "
            "pick a free address of the control-plane hosts' subnet",
            id="a_host",
        ),
        pytest.param(
            HA + "apiServer: {vip: 224.0.0.5}\n",
            "cluster.yaml:10:20: spec.apiServer.vip: is not a unicast address other hosts can "
            "reach (got '224.0.0.5'); hint: pick a free IPv4 address of the control-plane "
            "hosts' subnet",
            id="multicast",
        ),
        pytest.param(
            HA + "apiServer: {vip: 10.96.0.200}\n",
            "cluster.yaml:10:20: spec.apiServer.vip: lies inside network.serviceCIDR "
            "10.96.0.0/12; clients outside the cluster cannot reach it (got '10.96.0.200'); "
            "hint: use a control-plane host address, a load balancer or a virtual IP",
            id="service_block",
        ),
        pytest.param(
            HA + "apiServer: {vipInterface: eth0}\n",
            "cluster.yaml:10:29: spec.apiServer.vipInterface: is set but apiServer.vip is not "
            "(got 'eth0'); hint: set apiServer.vip too, or remove vipInterface",
            id="interface_without_vip",
        ),
        pytest.param(
            HA + "apiServer: {vip: 10.0.0.200, vipInterface: 'eth0; rm'}\n",
            "cluster.yaml:10:46: spec.apiServer.vipInterface: is not a network interface name",
            id="bad_interface",
        ),
    ],
)
def test_a_bad_vip_is_reported_where_it_is_written(body: str, expected: str) -> None:
    found = problems(body)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found[0]


def test_the_vip_is_the_clients_address_and_is_in_the_api_server_certificate() -> None:
    spec = parse_spec(doc(HA + "apiServer: {vip: 10.0.0.200}\n"), filename="cluster.yaml")
    assert spec.api_server_url == "https://10.0.0.200:6443"
    plan = {k.file: k for k in kubeconfig_plan(spec)}
    assert plan["admin.conf"].server == "https://10.0.0.200:6443"
    assert plan["proxy.conf"].server == "https://10.0.0.200:6443"
    # the holder campaigns through its own host's API server, with its own identity
    assert plan["vip.conf"].server == "https://127.0.0.1:6443"
    assert plan["vip.conf"].user == "system:berth-vip"
    _, ips = apiserver_sans(spec)
    assert "10.0.0.200" in ips
    certs = {str(c.id): c for c in expand(spec)}
    assert certs["vip"].common_name == "system:berth-vip"


def test_an_external_endpoint_still_wins_and_the_vip_stays_in_the_certificate() -> None:
    body = HA + "apiServer: {endpoint: api.example.com, vip: 10.0.0.200}\n"
    spec = parse_spec(doc(body), filename="cluster.yaml")
    assert spec.api_server_url == "https://api.example.com:6443"
    dns, ips = apiserver_sans(spec)
    assert "api.example.com" in dns
    assert "10.0.0.200" in ips


def test_without_a_vip_there_is_no_holder_identity() -> None:
    spec = parse_spec(doc(HA), filename="cluster.yaml")
    assert spec.api_server_url == "https://10.0.0.1:6443"
    assert "vip.conf" not in {k.file for k in kubeconfig_plan(spec)}
    assert "vip" not in {c.id for c in expand(spec)}
