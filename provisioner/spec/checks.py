"""Cross-field rules of a cluster spec, checked before anything connects to a host.

These run on the raw document, piece by piece, next to the field validation, so that one run
reports a bad address *and* an even etcd member count *and* overlapping CIDRs. A piece that does
not validate on its own (a host with a broken address, say) is left out of the rules that need
it; its own problem is already reported by the field validation.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from berth.api.loadbalancers import MAX_POOL_ADDRESSES, parse_block
from provisioner.spec.model import CONTROL_PLANE, WORKER, ApiServer, Certificates, Host, Network
from provisioner.spec.problems import Path, Problem

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address

_S = ("spec",)
_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class _Parts:
    """The pieces of the raw document that validate on their own."""

    raw_hosts: list[Any]
    hosts: list[tuple[int, Host]]
    datastore: str | None
    network: dict[str, Any]
    endpoint: str | None
    vip: str | None
    vip_interface: Any
    raw_registries: list[Any]
    extra_sans: list[tuple[int, str]]
    certificates: dict[str, int]
    pod_security_exemptions: dict[str, Any]


def semantic_problems(document: Any) -> list[Problem]:
    """Every cross-field problem found in ``document`` (the parsed YAML)."""
    if not isinstance(document, dict) or not isinstance(document.get("spec"), dict):
        return []
    parts = _parts(document["spec"])
    problems: list[Problem] = []
    for rule in _RULES:
        problems.extend(rule(parts))
    return problems


def _field_default(model: type[BaseModel], name: str) -> Any:
    return model.model_fields[name].get_default(call_default_factory=True)


def _try_field(model: type[_M], name: str, raw: Any) -> Any:
    """Validate one field of ``model`` alone; ``None`` if it is invalid."""
    info = model.model_fields[name]
    if raw is None:
        return _field_default(model, name)
    # the field's own validators live in its metadata, not in the bare annotation
    annotation: Any = (
        Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    )
    try:
        return TypeAdapter(annotation).validate_python(raw)
    except ValidationError:
        return None


def _section(body: dict[str, Any], key: str) -> dict[str, Any]:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _parts(body: dict[str, Any]) -> _Parts:
    raw_hosts = body.get("hosts") if isinstance(body.get("hosts"), list) else []
    assert isinstance(raw_hosts, list)
    hosts: list[tuple[int, Host]] = []
    for index, raw in enumerate(raw_hosts):
        try:
            hosts.append((index, Host.model_validate(raw, by_alias=True, by_name=False)))
        except ValidationError:
            continue
    datastore = _section(body, "datastore").get("type", "sqlite")
    network_raw = _section(body, "network")
    network: dict[str, Any] = {}
    for name, info in Network.model_fields.items():
        alias = info.alias or name
        value = _validated_network_field(name, network_raw.get(alias))
        if value is not None:
            network[name] = value
    api = _section(body, "apiServer")
    endpoint = _valid_address(api.get("endpoint"))
    sans_raw = api.get("extraSANs") if isinstance(api.get("extraSANs"), list) else []
    assert isinstance(sans_raw, list)
    extra_sans = [(i, v) for i, s in enumerate(sans_raw) if (v := _valid_address(s)) is not None]
    certs_raw = _section(body, "certificates")
    certificates: dict[str, int] = {}
    for name, info in Certificates.model_fields.items():
        raw_value = certs_raw.get(info.alias or name)
        value = _try_field(Certificates, name, raw_value)
        if isinstance(value, int):
            certificates[name] = value
    raw_registries = body.get("registries") if isinstance(body.get("registries"), list) else []
    assert isinstance(raw_registries, list)
    return _Parts(
        raw_hosts=raw_hosts,
        hosts=hosts,
        datastore=datastore if datastore in ("sqlite", "etcd") else None,
        network=network,
        endpoint=endpoint,
        vip=_try_field(ApiServer, "vip", api.get("vip")),
        vip_interface=api.get("vipInterface"),
        raw_registries=raw_registries,
        extra_sans=extra_sans,
        certificates=certificates,
        pod_security_exemptions=_section(_section(body, "podSecurity"), "exemptions"),
    )


def _validated_network_field(name: str, raw: Any) -> Any:
    value = _try_field(Network, name, raw)
    if value is None:
        return None
    if name in ("pod_cidr", "service_cidr"):
        return ipaddress.ip_network(value)
    if name == "cluster_dns":
        return ipaddress.ip_address(value)
    return value


def _valid_address(raw: Any) -> str | None:
    if raw is None:
        return None
    value = _try_field(ApiServer, "endpoint", raw)
    return value if isinstance(value, str) else None


def _net_path(field: str) -> Path:
    alias = Network.model_fields[field].alias or field
    return (*_S, "network", alias)


# -- rules ------------------------------------------------------------------------------------


def _unique_names_and_addresses(parts: _Parts) -> Iterator[Problem]:
    # Read from the raw hosts, field by field, so that a host with some other broken field
    # still takes part in the comparison.
    for attribute in ("name", "address"):
        first: dict[str, int] = {}
        for index, raw in enumerate(parts.raw_hosts):
            if not isinstance(raw, dict) or raw.get(attribute) is None:
                continue
            value = _try_field(Host, attribute, raw[attribute])
            if not isinstance(value, str):
                continue
            if value in first:
                yield Problem(
                    (*_S, "hosts", index, attribute),
                    f"duplicate host {attribute}, already used by spec.hosts[{first[value]}]",
                    raw[attribute],
                    hint=f"give every host its own {attribute}",
                )
            else:
                first[value] = index


def _raw_control_planes(parts: _Parts) -> list[int] | None:
    """Indexes of hosts with the control-plane role, or ``None`` if some host's roles are
    missing or invalid (that host's own problem is reported; counting would only add noise)."""
    indexes = []
    for index, raw in enumerate(parts.raw_hosts):
        roles = raw.get("roles") if isinstance(raw, dict) else None
        if not isinstance(roles, list) or not roles:
            return None
        if not all(isinstance(r, str) and r in (CONTROL_PLANE, WORKER) for r in roles):
            return None
        if CONTROL_PLANE in roles:
            indexes.append(index)
    return indexes


def _control_plane_count(parts: _Parts) -> Iterator[Problem]:
    control_planes = _raw_control_planes(parts)
    if control_planes is None or not parts.raw_hosts:
        return
    count = len(control_planes)
    if count == 0:
        yield Problem(
            (*_S, "hosts"),
            "no host has the control-plane role",
            hint="add 'control-plane' to the roles of one host (or of 3 with datastore etcd)",
        )
        return
    datastore_path = (*_S, "datastore", "type")
    if parts.datastore == "etcd" and count % 2 == 0:
        yield Problem(
            datastore_path,
            f"etcd needs an odd number of control-plane hosts to keep quorum, the spec has {count}",
            "etcd",
            hint=f"use {count - 1} or {count + 1} control-plane hosts",
        )
    if parts.datastore == "sqlite" and count > 1:
        yield Problem(
            datastore_path,
            f"sqlite serves exactly one control-plane host, the spec has {count}",
            "sqlite",
            hint="set 'datastore: {type: etcd}' for an HA control plane "
            "(with an odd number of control-plane hosts), or keep one control-plane host",
        )


def _cidrs(parts: _Parts) -> Iterator[Problem]:
    pod: IpNetwork | None = parts.network.get("pod_cidr")
    service: IpNetwork | None = parts.network.get("service_cidr")
    if pod is not None and service is not None:
        if pod.version != service.version:
            yield Problem(
                _net_path("service_cidr"),
                f"is IPv{service.version} but podCIDR is IPv{pod.version}; "
                "dual-stack is not supported",
                str(service),
                hint="use the same address family for pods and services",
            )
        elif pod.overlaps(service):
            yield Problem(
                _net_path("service_cidr"),
                f"overlaps podCIDR {pod}",
                str(service),
                hint="pick blocks that do not overlap, e.g. podCIDR 10.244.0.0/16 and "
                "serviceCIDR 10.96.0.0/12",
            )
    if service is not None:
        limit = 12 if service.version == 4 else 108
        if service.prefixlen < limit:
            yield Problem(
                _net_path("service_cidr"),
                f"is too large: the largest service block is /{limit}",
                str(service),
                hint=f"use a prefix of /{limit} or longer",
            )
    for index, host in parts.hosts:
        for name, block in (("podCIDR", pod), ("serviceCIDR", service)):
            if block is not None and block.version == host.ip.version and host.ip in block:
                yield Problem(
                    (*_S, "hosts", index, "address"),
                    f"lies inside network.{name} {block}",
                    host.address,
                    hint=f"host addresses must be outside the pod and service blocks; "
                    f"move network.{name} elsewhere",
                )
    yield from _node_blocks(parts, pod)


def _node_blocks(parts: _Parts, pod: IpNetwork | None) -> Iterator[Problem]:
    size = parts.network.get("node_cidr_mask_size")
    if pod is None or not isinstance(size, int):
        return
    path = _net_path("node_cidr_mask_size")
    if size <= pod.prefixlen:
        yield Problem(
            path,
            f"must be longer than podCIDR's prefix /{pod.prefixlen}",
            size,
            hint=f"e.g. {min(pod.prefixlen + 8, pod.max_prefixlen - 8)}",
        )
        return
    if size > pod.max_prefixlen - 2:
        yield Problem(
            path,
            "leaves no room for pods on a node",
            size,
            hint=f"use at most {pod.max_prefixlen - 2}, e.g. {pod.max_prefixlen - 8}",
        )
        return
    blocks = 2 ** (size - pod.prefixlen)
    if len(parts.raw_hosts) > blocks:
        yield Problem(
            path,
            f"podCIDR {pod} holds only {blocks} node block(s) of /{size}, "
            f"but the spec has {len(parts.raw_hosts)} hosts",
            size,
            hint="widen podCIDR or raise nodeCIDRMaskSize",
        )


def _cluster_dns(parts: _Parts) -> Iterator[Problem]:
    service: IpNetwork | None = parts.network.get("service_cidr")
    dns: IpAddr | None = parts.network.get("cluster_dns")
    if service is None or dns is None:
        return
    path = _net_path("cluster_dns")
    if dns.version != service.version or dns not in service:
        yield Problem(
            path,
            f"is outside network.serviceCIDR {service}",
            str(dns),
            hint=f"pick an address inside the service block, e.g. {service.network_address + 10}",
        )
    elif dns == service.network_address + 1:
        yield Problem(
            path,
            "is the address of the 'kubernetes' Service (the first address of serviceCIDR)",
            str(dns),
            hint=f"use another address, e.g. {service.network_address + 10}",
        )
    elif dns in (service.network_address, service.broadcast_address):
        yield Problem(
            path,
            f"is not a usable address of {service}",
            str(dns),
            hint=f"e.g. {service.network_address + 10}",
        )


def _api_endpoint(parts: _Parts) -> Iterator[Problem]:
    path = (*_S, "apiServer", "endpoint")
    if parts.endpoint is not None:
        for _, host in parts.hosts:
            if host.address == _canonical_ip(parts.endpoint) and not host.is_control_plane:
                yield Problem(
                    path,
                    f"is the address of host '{host.name}', which is not a control-plane host "
                    "and runs no API server",
                    parts.endpoint,
                    hint="point it at a control-plane host, a load balancer or a virtual IP",
                )
        yield from _inside_cluster_blocks(parts, path, parts.endpoint)
    seen: dict[str, int] = {}
    for index, san in parts.extra_sans:
        key = _canonical_ip(san) or san.lower()
        if key in seen:
            yield Problem(
                (*_S, "apiServer", "extraSANs", index),
                f"is listed twice (also extraSANs[{seen[key]}])",
                san,
                hint="remove the duplicate",
            )
        seen[key] = index


def _api_vip(parts: _Parts) -> Iterator[Problem]:
    """A VIP is elected through etcd and announced by ARP, on a free address of the hosts'
    network. That it lies inside the hosts' subnet needs their prefixes, which the spec does not
    have: preflight checks it (:mod:`provisioner.phases.cluster.vip_check`)."""
    base = (*_S, "apiServer")
    if parts.vip is None:
        if parts.vip_interface is not None:
            yield Problem(
                (*base, "vipInterface"),
                "is set but apiServer.vip is not",
                parts.vip_interface,
                hint="set apiServer.vip too, or remove vipInterface",
            )
        return
    path = (*base, "vip")
    ip = ipaddress.ip_address(parts.vip)
    if parts.datastore == "sqlite":
        yield Problem(
            path,
            "needs 'datastore: {type: etcd}': the VIP's holder is elected among several "
            "control-plane hosts through the datastore",
            parts.vip,
            hint="with one control-plane host, remove vip (its address is the endpoint)",
        )
    if ip.version != 4:
        yield Problem(
            path,
            "must be an IPv4 address: the VIP is announced by gratuitous ARP",
            parts.vip,
            hint="pick a free IPv4 address of the control-plane hosts' subnet",
        )
        return
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        yield Problem(
            path,
            "is not a unicast address other hosts can reach",
            parts.vip,
            hint="pick a free IPv4 address of the control-plane hosts' subnet",
        )
    for index, host in parts.hosts:
        if host.address == parts.vip:
            yield Problem(
                path,
                f"is the address of host '{host.name}' (spec.hosts[{index}]); the VIP must be "
                "an address no host has",
                parts.vip,
                hint="pick a free address of the control-plane hosts' subnet",
            )
    yield from _inside_cluster_blocks(parts, path, parts.vip)


def _inside_cluster_blocks(parts: _Parts, path: Path, address: str) -> Iterator[Problem]:
    text = _canonical_ip(address)
    if text is None:
        return
    ip = ipaddress.ip_address(text)
    for name in ("pod_cidr", "service_cidr"):
        block: IpNetwork | None = parts.network.get(name)
        if block is not None and block.version == ip.version and ip in block:
            alias = Network.model_fields[name].alias
            yield Problem(
                path,
                f"lies inside network.{alias} {block}; clients outside the cluster cannot reach it",
                address,
                hint="use a control-plane host address, a load balancer or a virtual IP",
            )


def _load_balancer_pool(parts: _Parts) -> Iterator[Problem]:
    """Pool addresses are announced by ARP on the hosts' link: never a host's own address, the
    API VIP, or inside the pod or service blocks, and no two entries overlap. That they lie in
    the hosts' subnet needs the hosts' prefixes (not in the spec): each node's agent checks it
    when it announces an address (an Event names the address it cannot place)."""
    entries = parts.network.get("load_balancer_pool") or []
    blocks = [parse_block(e) for e in entries]
    path = _net_path("load_balancer_pool")
    for index, block in enumerate(blocks):
        here = (*path, index)
        for name in ("pod_cidr", "service_cidr"):
            net: IpNetwork | None = parts.network.get(name)
            if isinstance(net, ipaddress.IPv4Network) and block.overlaps(net):
                alias = Network.model_fields[name].alias
                yield Problem(
                    here,
                    f"overlaps network.{alias} {net}",
                    entries[index],
                    hint="pick free addresses of the hosts' own subnet, outside the pod and "
                    "service blocks",
                )
        for host_index, host in parts.hosts:
            if host.ip in block:
                yield Problem(
                    here,
                    f"contains the address of host '{host.name}' (spec.hosts[{host_index}])",
                    entries[index],
                    hint="leave the hosts' addresses out of the pool",
                )
        if parts.vip is not None and ipaddress.ip_address(parts.vip) in block:
            yield Problem(
                here,
                "contains apiServer.vip",
                entries[index],
                hint="leave the API VIP out of the pool",
            )
        for other in range(index):
            prior = blocks[other]
            if block.first <= prior.last and prior.first <= block.last:
                yield Problem(
                    here,
                    f"overlaps network.loadBalancerPool[{other}] ({entries[other]})",
                    entries[index],
                    hint="list each address once",
                )
    if sum(b.size for b in blocks) > MAX_POOL_ADDRESSES:
        yield Problem(
            path,
            f"holds more than {MAX_POOL_ADDRESSES} addresses",
            hint="a pool is a handful of free addresses of the hosts' subnet",
        )


def _canonical_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _certificate_lifetimes(parts: _Parts) -> Iterator[Problem]:
    ca = parts.certificates.get("ca_validity_days")
    leaf = parts.certificates.get("leaf_validity_days")
    renew = parts.certificates.get("renew_before_days")
    base = (*_S, "certificates")
    if ca is not None and leaf is not None and leaf > ca:
        yield Problem(
            (*base, "leafValidityDays"),
            f"is longer than caValidityDays ({ca}); a certificate cannot outlive its CA",
            leaf,
            hint=f"use at most {ca}",
        )
    if leaf is not None and renew is not None and renew >= leaf:
        yield Problem(
            (*base, "renewBeforeDays"),
            f"must be shorter than leafValidityDays ({leaf}), or every run would re-issue "
            "every certificate",
            renew,
            hint=f"e.g. {max(leaf // 10, 1)}",
        )


def _taints(parts: _Parts) -> Iterator[Problem]:
    for index, host in parts.hosts:
        seen: dict[tuple[str, str], int] = {}
        for position, taint in enumerate(host.taints):
            key = (taint.key, taint.effect)
            if key in seen:
                yield Problem(
                    (*_S, "hosts", index, "taints", position),
                    f"repeats taints[{seen[key]}] (same key and effect)",
                    f"{taint.key}:{taint.effect}",
                    hint="keep one taint per key and effect",
                )
            seen[key] = position


def _unique_registries(parts: _Parts) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for index, raw in enumerate(parts.raw_registries):
        if not isinstance(raw, dict) or not isinstance(raw.get("host"), str):
            continue
        host = raw["host"].lower()  # registry host names are case-insensitive
        if host in first:
            yield Problem(
                (*_S, "registries", index, "host"),
                f"duplicate registry, already listed as spec.registries[{first[host]}]",
                raw["host"],
                hint="list each registry once",
            )
        else:
            first[host] = index


def _pod_security_exemptions(parts: _Parts) -> Iterator[Problem]:
    for key, raw in parts.pod_security_exemptions.items():
        if not isinstance(raw, list):
            continue
        first: dict[str, int] = {}
        for index, name in enumerate(raw):
            if not isinstance(name, str):
                continue
            if name in first:
                yield Problem(
                    (*_S, "podSecurity", "exemptions", key, index),
                    f"repeats {key}[{first[name]}]",
                    name,
                    hint="list each exemption once",
                )
            else:
                first[name] = index


_RULES: tuple[Callable[[_Parts], Iterator[Problem]], ...] = (
    _unique_names_and_addresses,
    _control_plane_count,
    _cidrs,
    _cluster_dns,
    _api_endpoint,
    _api_vip,
    _load_balancer_pool,
    _certificate_lifetimes,
    _taints,
    _unique_registries,
    _pod_security_exemptions,
)
