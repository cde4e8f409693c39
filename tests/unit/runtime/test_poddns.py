"""Pods' resolv.conf from dnsPolicy and dnsConfig, as the kubelet builds it."""

from __future__ import annotations

from typing import Any

from berth.runtime.poddns import ResolvConf, parse_resolv_conf, pod_resolv_conf
from berth.runtime.sandbox import render_resolv_conf
from berth.runtime.spec import PodSpec, PodUID

HOST = parse_resolv_conf(
    "# generated\nnameserver 10.231.0.1\nnameserver 10.231.0.2 # second\n"
    "domain old\nsearch lab example.com\noptions edns0 timeout:2\n"
)


def resolv(spec: dict[str, Any], dns: str | None = "10.96.0.10") -> ResolvConf:
    return pod_resolv_conf(spec, "shop", cluster_dns=dns, cluster_domain="cluster.local", host=HOST)


def test_host_resolv_conf_is_read_like_glibc() -> None:
    assert (
        ResolvConf(("10.231.0.1", "10.231.0.2"), ("lab", "example.com"), ("edns0", "timeout:2"))
        == HOST
    )


def test_cluster_first_is_the_default() -> None:
    conf = resolv({})
    assert conf.nameservers == ("10.96.0.10",)
    assert conf.searches == (
        "shop.svc.cluster.local",
        "svc.cluster.local",
        "cluster.local",
        "lab",
        "example.com",
    )
    assert conf.options == ("ndots:5",)
    pod = PodSpec(
        uid=PodUID("u"),
        namespace="shop",
        name="p",
        dns_nameservers=conf.nameservers,
        dns_searches=conf.searches,
        dns_options=conf.options,
    )
    assert render_resolv_conf(pod) == (
        "nameserver 10.96.0.10\n"
        "search shop.svc.cluster.local svc.cluster.local cluster.local lab example.com\n"
        "options ndots:5\n"
    )


def test_host_network_default_and_fallbacks() -> None:
    assert resolv({"dnsPolicy": "Default"}) == HOST
    assert resolv({"hostNetwork": True}) == HOST
    assert resolv({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"}).nameservers == (
        "10.96.0.10",
    )
    assert resolv({}, dns=None) == HOST, "no cluster DNS configured: the host's"


def test_none_takes_only_dns_config() -> None:
    conf = resolv(
        {
            "dnsPolicy": "None",
            "dnsConfig": {
                "nameservers": ["1.1.1.1"],
                "searches": ["a.example"],
                "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}],
            },
        }
    )
    assert conf == ResolvConf(("1.1.1.1",), ("a.example",), ("ndots:2", "edns0"))


def test_dns_config_merges_into_cluster_first() -> None:
    conf = resolv(
        {
            "dnsConfig": {
                "nameservers": ["10.96.0.10", "1.1.1.1", "8.8.8.8", "9.9.9.9"],
                "searches": ["lab", "extra.example"],
                "options": [{"name": "ndots", "value": "1"}, {"name": "single-request"}],
            }
        }
    )
    assert conf.nameservers == ("10.96.0.10", "1.1.1.1", "8.8.8.8"), "3 at most, no duplicates"
    assert conf.searches[-2:] == ("example.com", "extra.example")
    assert conf.options == ("ndots:1", "single-request")


def test_search_list_is_bounded() -> None:
    conf = resolv(
        {"dnsPolicy": "None", "dnsConfig": {"searches": [f"d{i}.example" for i in range(50)]}}
    )
    assert len(conf.searches) == 32
    long = resolv(
        {"dnsPolicy": "None", "dnsConfig": {"searches": ["x" * 250 + str(i) for i in range(20)]}}
    )
    assert len(" ".join(long.searches)) <= 2048
