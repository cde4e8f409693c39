"""Zone building and lookups: the record semantics of CoreDNS's kubernetes plugin."""

from __future__ import annotations

from typing import Any

from berth.dns import wire
from berth.dns.records import Answer, build_zone
from berth.dns.wire import AAAA, CNAME, NS, PTR, SOA, SRV, TXT, A

D = "cluster.local"


def svc(name: str, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def eps(
    service: str, *endpoints: dict[str, Any], ns: str = "default", **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{service}-abc",
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": list(endpoints),
        **extra,
    }


def ep(ip: str, ready: bool | None = True, **extra: Any) -> dict[str, Any]:
    conditions = {} if ready is None else {"ready": ready}
    return {"addresses": [ip], "conditions": conditions, **extra}


SERVICES = [
    svc(
        "web",
        clusterIP="10.96.0.20",
        ports=[{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}],
    ),
    svc("db", clusterIP="None", ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}]),
    svc("empty", clusterIP="None"),
    svc("ext", type="ExternalName", externalName="example.org"),
    svc("alias", type="ExternalName", externalName="web.default.svc.cluster.local"),
    svc("api", "kube-system", clusterIP="10.96.0.1"),
]
SLICES = [
    eps(
        "db",
        ep("10.244.1.5", hostname="db-0"),
        ep("10.244.2.6", ready=None),
        ep("10.244.2.7", ready=False, hostname="db-2"),
        ports=[{"name": "pg", "port": 5432, "protocol": "TCP"}],
    ),
    eps("web", ep("10.244.1.9"), ports=[{"name": "http", "port": 8080, "protocol": "TCP"}]),
]
ZONE = build_zone(SERVICES, SLICES, domain=D, dns_ip="10.96.0.10", serial=42)


def look(name: str, qtype: int) -> Answer:
    answer = ZONE.lookup(name, qtype)
    assert answer is not None, name
    return answer


def rdata(answer: Answer, rtype: int) -> list[bytes]:
    return [r.rdata for r in answer.answers if r.rtype == rtype]


def test_cluster_ip_service_a_record() -> None:
    answer = look(f"web.default.svc.{D}", A)
    assert answer.rcode == wire.NOERROR
    assert rdata(answer, A) == [wire.a_rdata("10.96.0.20")]
    assert answer.answers[0].ttl == 5


def test_headless_service_answers_every_ready_endpoint() -> None:
    answer = look(f"db.default.svc.{D}", A)
    assert sorted(rdata(answer, A)) == sorted(
        [wire.a_rdata("10.244.1.5"), wire.a_rdata("10.244.2.6")]
    ), "ready, and ready unset, are in; not ready is out"


def test_endpoint_hostnames_and_dashed_addresses() -> None:
    assert rdata(look(f"db-0.db.default.svc.{D}", A), A) == [wire.a_rdata("10.244.1.5")]
    assert rdata(look(f"10-244-2-6.db.default.svc.{D}", A), A) == [wire.a_rdata("10.244.2.6")]
    assert look(f"db-2.db.default.svc.{D}", A).rcode == wire.NXDOMAIN


def test_srv_for_named_ports() -> None:
    answer = look(f"_http._tcp.web.default.svc.{D}", SRV)
    assert rdata(answer, SRV) == [wire.srv_rdata(0, 100, 80, f"web.default.svc.{D}")]
    # the target's address comes along in the additional section
    assert [r.rdata for r in answer.additional] == [wire.a_rdata("10.96.0.20")]
    headless = look(f"_pg._tcp.db.default.svc.{D}", SRV)
    assert sorted(rdata(headless, SRV)) == sorted(
        [
            wire.srv_rdata(0, 100, 5432, f"db-0.db.default.svc.{D}"),
            wire.srv_rdata(0, 100, 5432, f"10-244-2-6.db.default.svc.{D}"),
        ]
    )
    assert look(f"_http._udp.web.default.svc.{D}", SRV).rcode == wire.NXDOMAIN
    assert len(rdata(look(f"web.default.svc.{D}", SRV), SRV)) == 1, "unnamed ports have no SRV"


def test_ptr_for_cluster_ips_and_headless_endpoints() -> None:
    assert rdata(look("20.0.96.10.in-addr.arpa", PTR), PTR) == [
        wire.encode_name(f"web.default.svc.{D}")
    ]
    assert rdata(look("5.1.244.10.in-addr.arpa", PTR), PTR) == [
        wire.encode_name(f"db-0.db.default.svc.{D}")
    ]
    assert ZONE.lookup("99.99.99.10.in-addr.arpa", PTR) is None, "unknown: forwarded"


def test_external_name_is_a_cname_chased_inside_the_zone() -> None:
    answer = look(f"ext.default.svc.{D}", A)
    assert [(r.rtype, r.rdata) for r in answer.answers] == [
        (CNAME, wire.encode_name("example.org"))
    ]
    alias = look(f"alias.default.svc.{D}", A)
    assert [r.rtype for r in alias.answers] == [CNAME, A]
    assert look(f"ext.default.svc.{D}", CNAME).answers[0].rtype == CNAME


def test_nxdomain_versus_nodata() -> None:
    nodata = [
        (f"web.default.svc.{D}", AAAA),
        (f"web.default.svc.{D}", TXT),
        (f"default.svc.{D}", A),  # empty non-terminal: a namespace with Services
        (f"svc.{D}", A),
        (f"pod.{D}", A),
        (D, A),
        (f"empty.default.svc.{D}", A),  # headless without endpoints
    ]
    for name, qtype in nodata:
        answer = look(name, qtype)
        assert answer.rcode == wire.NOERROR, name
        assert answer.answers == ()
        assert [r.rtype for r in answer.authority] == [SOA], name
    for name in (
        f"nope.default.svc.{D}",
        f"web.nope.svc.{D}",
        f"web.default.svc.{D}.default.svc.{D}",  # a search-path expansion
        f"x.{D}",
    ):
        answer = look(name, A)
        assert answer.rcode == wire.NXDOMAIN, name
        assert [r.rtype for r in answer.authority] == [SOA]


def test_apex_and_names_outside_the_zone() -> None:
    assert look(D, SOA).answers[0].rtype == SOA
    ns = look(D, NS)
    assert rdata(ns, NS) == [wire.encode_name(f"ns.dns.{D}")]
    assert [r.rdata for r in ns.additional] == [wire.a_rdata("10.96.0.10")]
    assert rdata(look(f"dns-version.{D}", TXT), TXT) == [wire.txt_rdata("1.1.0")]
    assert ZONE.lookup("example.org", A) is None
    assert ZONE.lookup("cluster.local.evil", A) is None
    assert ZONE.lookup("notcluster.local", A) is None


def test_pod_records() -> None:
    assert rdata(look(f"10-244-1-5.default.pod.{D}", A), A) == [wire.a_rdata("10.244.1.5")]
    assert look(f"10-244-1-500.default.pod.{D}", A).rcode == wire.NXDOMAIN
    assert look(f"10-244-1-5.default.pod.{D}", AAAA).rcode == wire.NOERROR


def test_bad_objects_never_break_the_zone() -> None:
    zone = build_zone(
        [
            svc("Bad_Name", clusterIP="10.96.0.30"),
            svc("noip"),
            svc("weird", clusterIP="not-an-ip", ports=[{"name": "x", "port": 99999}]),
            svc("ext2", type="ExternalName", externalName="\u00e9" * 300),
            svc("ok", clusterIP="10.96.0.31"),
        ],
        [eps("db", {"addresses": ["bogus", "10.244.9.9"]}, ports=[{"name": "p", "port": "x"}])],
        domain=D,
    )
    answer = zone.lookup(f"ok.default.svc.{D}", A)
    assert answer is not None
    assert answer.rcode == wire.NOERROR
