"""The cluster zone, built from Services and EndpointSlices, with the answers CoreDNS's
``kubernetes`` plugin gives (``<domain>`` is the cluster domain, e.g. ``cluster.local``):

* ``svc.ns.svc.<domain>``: A of the ClusterIP; for a headless Service, one A per ready
  endpoint address; for an ExternalName Service, a CNAME to the external name (followed here
  when the target is in the zone, by the server through the upstream resolvers otherwise);
* ``ep.svc.ns.svc.<domain>`` for each ready endpoint of a headless Service, where ``ep`` is
  the endpoint's ``hostname`` (a pod's ``hostname`` whose ``subdomain`` names the Service)
  or else its address with dashes (``10-244-1-5``);
* ``_port._proto.svc.ns.svc.<domain>`` SRV for each named port (target: the Service name, or
  each endpoint name of a headless Service), and ``svc.ns.svc.<domain>`` SRV for all of them;
* PTR for every ClusterIP and every headless endpoint address;
* ``a-b-c-d.ns.pod.<domain>`` A of ``a.b.c.d`` (CoreDNS's ``pods insecure``);
* the apex: SOA, NS ``ns.dns.<domain>`` (A: the cluster DNS address), and
  ``dns-version.<domain>`` TXT (the schema version CoreDNS answers).

A name that exists with other types (or is an empty non-terminal such as ``ns.svc.<domain>``
of a namespace with Services) answers NODATA: NOERROR with the SOA in the authority section;
any other name in the zone is NXDOMAIN with the SOA. Records carry a 5 s TTL, the SOA's
minimum too, as CoreDNS's defaults.
"""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from berth.dns import wire
from berth.dns.wire import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, TXT, A, Record

TTL = 5
SCHEMA_VERSION = "1.1.0"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class Answer:
    rcode: int
    answers: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()


def reverse_name(ip: str) -> str:
    return ipaddress.ip_address(ip).reverse_pointer


def _ipv4(value: Any) -> str | None:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        return None
    return str(ip) if ip.version == 4 else None


def _ipv6(value: Any) -> str | None:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        return None
    return str(ip) if ip.version == 6 else None


def _label_ok(value: Any) -> bool:
    s = str(value)
    return 0 < len(s) <= 63 and all(c.isalnum() or c == "-" for c in s) and s.isascii()


@dataclass
class Zone:
    """Records by owner name and type, plus every name that exists (empty non-terminals
    included). Immutable once built: the server swaps whole zones."""

    domain: str
    dns_ip: str = ""
    records: dict[str, dict[int, list[Record]]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    serial: int = 0

    def add(self, name: str, rtype: int, rdata: bytes) -> None:
        name = name.lower()
        by_type = self.records.setdefault(name, {})
        rrs = by_type.setdefault(rtype, [])
        record = Record(name, rtype, TTL, rdata)
        if record not in rrs:
            rrs.append(record)
        # the name and its ancestors down to the zone exist
        while name not in self.names:
            self.names.add(name)
            if name == self.domain or "." not in name:
                break
            name = name.split(".", 1)[1]

    @property
    def soa(self) -> Record:
        return Record(
            self.domain,
            SOA,
            TTL,
            wire.soa_rdata(f"ns.dns.{self.domain}", f"hostmaster.{self.domain}", self.serial, TTL),
        )

    def owns(self, name: str) -> bool:
        """Whether ``name`` is in this zone (answered here) rather than forwarded."""
        return name == self.domain or name.endswith("." + self.domain) or name in self.records

    def lookup(self, name: str, qtype: int) -> Answer | None:
        """The answer for ``name``/``qtype``; ``None``: not ours (forward it)."""
        if not self.owns(name):
            return None
        by_type = self.records.get(name)
        if by_type is None:
            pod = self._pod_record(name, qtype)
            if pod is not None:
                return pod
            if name in self.names:
                return Answer(wire.NOERROR, authority=(self.soa,))
            if name.endswith(".in-addr.arpa") or name.endswith(".ip6.arpa"):
                return None
            return Answer(wire.NXDOMAIN, authority=(self.soa,))
        cname = by_type.get(CNAME)
        if cname and qtype != CNAME:
            return self._chase(cname, qtype)
        if qtype == ANY:
            found = [r for rrs in by_type.values() for r in rrs]
        else:
            found = list(by_type.get(qtype, ()))
        if not found:
            return Answer(wire.NOERROR, authority=(self.soa,))
        return Answer(wire.NOERROR, answers=tuple(found), additional=self._glue(found))

    def _chase(self, cname: list[Record], qtype: int) -> Answer:
        """The CNAME, and the target's records when the target is in this zone too."""
        answers = list(cname)
        target = _rdata_name(cname[0].rdata)
        for _ in range(8):
            by_type = self.records.get(target)
            if by_type is None:
                break
            nxt = by_type.get(CNAME)
            if nxt:
                answers += nxt
                target = _rdata_name(nxt[0].rdata)
                continue
            answers += by_type.get(qtype, ())
            break
        return Answer(wire.NOERROR, answers=tuple(answers))

    def _glue(self, found: Iterable[Record]) -> tuple[Record, ...]:
        extra: list[Record] = []
        for r in found:
            if r.rtype in (SRV, NS):
                target = _rdata_name(r.rdata[6:] if r.rtype == SRV else r.rdata)
                for t in (A, AAAA):
                    extra += (self.records.get(target) or {}).get(t, ())
        return tuple(extra)

    def _pod_record(self, name: str, qtype: int) -> Answer | None:
        """``a-b-c-d.ns.pod.<domain>``: answered for any well-formed address (CoreDNS's
        ``pods insecure``), no lookup."""
        suffix = f".pod.{self.domain}"
        if not name.endswith(suffix):
            return None
        parts = name[: -len(suffix)].split(".")
        if len(parts) != 2:
            return None
        ip = _ipv4(parts[0].replace("-", "."))
        if ip is None or parts[0].count("-") != 3:
            return None
        if qtype not in (A, ANY):
            return Answer(wire.NOERROR, authority=(self.soa,))
        return Answer(wire.NOERROR, answers=(Record(name, A, TTL, wire.a_rdata(ip)),))


def _rdata_name(rdata: bytes) -> str:
    labels: list[str] = []
    i = 0
    while i < len(rdata) and rdata[i]:
        n = rdata[i]
        labels.append(rdata[i + 1 : i + 1 + n].decode("ascii").lower())
        i += 1 + n
    return ".".join(labels)


def _ready_addresses(
    slices: Iterable[Mapping[str, Any]],
) -> list[tuple[str, str, dict[str, tuple[int, str]]]]:
    """(address, endpoint label, {port name: (port, protocol)}) of every ready IPv4/IPv6
    endpoint of these slices (a Service's), in a stable order, each address once."""
    out: dict[str, tuple[str, str, dict[str, tuple[int, str]]]] = {}
    for sl in slices:
        if sl.get("addressType") not in ("IPv4", "IPv6"):
            continue
        ports = {
            str(p.get("name") or ""): (int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
            for p in sl.get("ports") or ()
            if isinstance(p.get("port"), int)
        }
        for ep in sl.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False:
                continue  # ready unset means ready (upstream's rule for consumers)
            hostname = ep.get("hostname")
            for address in ep.get("addresses") or ():
                ip = _ipv4(address) or _ipv6(address)
                if ip is None or ip in out:
                    continue
                label = (
                    str(hostname)
                    if hostname and _label_ok(hostname)
                    else ip.replace(".", "-").replace(":", "-")
                )
                out[ip] = (ip, label, ports)
    return sorted(out.values())


def build_zone(
    services: Iterable[Mapping[str, Any]],
    slices: Iterable[Mapping[str, Any]],
    *,
    domain: str = "cluster.local",
    dns_ip: str = "",
    serial: int | None = None,
) -> Zone:
    """The whole zone for these objects (cost: linear in Services + endpoints)."""
    domain = domain.strip(".").lower()
    zone = Zone(domain=domain, dns_ip=dns_ip, serial=int(time.time()) if serial is None else serial)
    zone.add(domain, SOA, zone.soa.rdata)
    zone.add(domain, NS, wire.encode_name(f"ns.dns.{domain}"))
    if _ipv4(dns_ip):
        zone.add(f"ns.dns.{domain}", A, wire.a_rdata(dns_ip))
    zone.add(f"dns-version.{domain}", TXT, wire.txt_rdata(SCHEMA_VERSION))
    zone.names.update({f"svc.{domain}", f"pod.{domain}"})
    by_service: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for sl in slices:
        meta = sl.get("metadata") or {}
        svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        if svc:
            by_service.setdefault((str(meta.get("namespace") or ""), str(svc)), []).append(sl)
    ptrs: dict[str, str] = {}
    for svc in sorted(
        services,
        key=lambda s: (
            str((s.get("metadata") or {}).get("namespace")),
            str((s.get("metadata") or {}).get("name")),
        ),
    ):
        meta = svc.get("metadata") or {}
        spec = svc.get("spec") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if not (_label_ok(name) and _label_ok(ns)):
            continue
        fqdn = f"{name}.{ns}.svc.{domain}".lower()
        if spec.get("type") == "ExternalName":
            target = str(spec.get("externalName") or "").strip(".")
            # the API validates externalName; never let one object stop the zone
            with contextlib.suppress(ValueError, UnicodeEncodeError):
                zone.add(fqdn, CNAME, wire.encode_name(target))
            continue
        ports = [
            (str(p.get("name") or ""), int(p.get("port") or 0), str(p.get("protocol") or "TCP"))
            for p in spec.get("ports") or ()
        ]
        cluster_ips = [str(ip) for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip]
        if spec.get("clusterIP") == "None" or cluster_ips == ["None"]:
            endpoints = _ready_addresses(by_service.get((ns, name), ()))
            for ip, label, ep_ports in endpoints:
                ep_name = f"{label}.{fqdn}".lower()
                rtype, rdata = (
                    (A, wire.a_rdata(ip))
                    if ":" not in ip
                    else (AAAA, ipaddress.ip_address(ip).packed)
                )
                zone.add(fqdn, rtype, rdata)
                zone.add(ep_name, rtype, rdata)
                ptrs.setdefault(ip, ep_name)
                for pname, (port, proto) in ep_ports.items():
                    if pname and _label_ok(pname):
                        srv = wire.srv_rdata(0, 100, port, ep_name)
                        zone.add(f"_{pname}._{proto.lower()}.{fqdn}", SRV, srv)
                        zone.add(fqdn, SRV, srv)
            if not endpoints:
                # the Service exists without addresses: NODATA, as CoreDNS
                zone.names.update({fqdn, f"{ns}.svc.{domain}"})
            continue
        added = False
        for ip in cluster_ips:
            if _ipv4(ip):
                zone.add(fqdn, A, wire.a_rdata(ip))
            elif _ipv6(ip):
                zone.add(fqdn, AAAA, ipaddress.ip_address(ip).packed)
            else:
                continue
            added = True
            ptrs.setdefault(str(ipaddress.ip_address(ip)), fqdn)
        if not added:
            continue
        for pname, port, proto in ports:
            if pname and _label_ok(pname) and 0 < port < 65536:
                srv = wire.srv_rdata(0, 100, port, fqdn)
                zone.add(f"_{pname}._{proto.lower()}.{fqdn}", SRV, srv)
                zone.add(fqdn, SRV, srv)
    for ip, target in ptrs.items():
        zone.add(reverse_name(ip), PTR, wire.encode_name(target))
    return zone
