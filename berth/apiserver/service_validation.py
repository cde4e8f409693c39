"""Write-time validation of Services and Endpoints (kube-apiserver's ValidateService and
ValidateEndpoints semantics).

Every node's service proxy renders these objects into its packet rules, so one bad value in one
namespace must be refused here rather than reach the nodes: addresses must be IP addresses a
node may forward to (not loopback, link-local, multicast or unspecified), ports must be
1-65535, names DNS labels, target ports a number or an IANA service name, and the ClientIP
affinity timeout 1..86400 seconds.

The API server's own ``default/kubernetes`` Endpoints may name a loopback address when the
server advertises one (a single-machine server); only in-process code can say so, with
:func:`server_advertised_endpoints`.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from berth.api.meta import Obj
from berth.api.services import MAX_AFFINITY_SECONDS, is_port_number

from .dnsnames import is_dns_label, is_dns_subdomain, is_iana_svc_name, is_label_value
from .errors import FieldError, duplicate, forbidden_field, invalid_value, not_supported, required

PROTOCOLS = ("SCTP", "TCP", "UDP")
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")


_loopback_allowed: ContextVar[bool] = ContextVar("berth_loopback_endpoints", default=False)


@contextlib.contextmanager
def server_advertised_endpoints() -> Iterator[None]:
    """Within this block, Endpoints may name loopback addresses: the API server writing its
    own ``kubernetes`` Endpoints with a loopback advertise address. Requests never get here."""
    token = _loopback_allowed.set(True)
    try:
        yield
    finally:
        _loopback_allowed.reset(token)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def dns_label(value: Any, field: str) -> list[FieldError]:
    if is_dns_label(value):
        return []
    return [
        invalid_value(
            field,
            value,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or"
            " '-', and must start and end with an alphanumeric character (at most 63)",
        )
    ]


def dns_subdomain(value: Any, field: str) -> list[FieldError]:
    if is_dns_subdomain(value):
        return []
    return [
        invalid_value(
            field,
            value,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
            " '-' or '.', and must start and end with an alphanumeric character",
        )
    ]


def port_number(value: Any, field: str) -> list[FieldError]:
    if is_port_number(value):
        return []
    return [invalid_value(field, value, "must be between 1 and 65535, inclusive")]


def port_name(value: str, field: str) -> list[FieldError]:
    """An IANA_SVC_NAME: at most 15 characters, lower case letters, digits and '-', at least
    one letter, no '-' at either end nor two in a row."""
    if is_iana_svc_name(value):
        return []
    return [
        invalid_value(
            field,
            value,
            "must be a port number (1-65535) or an IANA_SVC_NAME: at most 15 lower case"
            " alphanumeric characters or '-', with at least one letter, no '-' at either end"
            " and no two '-' in a row",
        )
    ]


def ip_address(value: Any, field: str) -> list[FieldError]:
    if isinstance(value, str):
        try:
            ipaddress.ip_address(value)
        except ValueError:
            pass
        else:
            return []
    return [
        invalid_value(field, value, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    ]


def routable_ip(value: Any, field: str, *, allow_loopback: bool = False) -> list[FieldError]:
    """A valid IP address a node may forward traffic to (upstream's non-special IP rule,
    plus all multicast)."""
    errs = ip_address(value, field)
    if errs:
        return errs
    ip = ipaddress.ip_address(value)
    if ip.is_unspecified:
        return [invalid_value(field, value, "may not be unspecified (0.0.0.0 or ::)")]
    if ip.is_loopback and not allow_loopback:
        return [
            invalid_value(field, value, "may not be in the loopback range (127.0.0.0/8, ::1/128)")
        ]
    if ip.is_link_local:
        return [
            invalid_value(
                field, value, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
            )
        ]
    if ip.is_multicast:
        return [
            invalid_value(field, value, "may not be a multicast address (224.0.0.0/4, ff00::/8)")
        ]
    return []


def _target_port(value: Any, field: str) -> list[FieldError]:
    if value is None:
        return []
    if _is_int(value):
        return port_number(value, field)
    if isinstance(value, str):
        return port_name(value, field)
    return [invalid_value(field, value, "must be an integer or a string")]


def _service_ports(spec: Obj, stype: str, headless: bool) -> list[FieldError]:
    ports = spec.get("ports")
    if ports is None:
        ports = []
    if not isinstance(ports, list):
        return [invalid_value("spec.ports", ports, "must be a list")]
    errs: list[FieldError] = []
    if not ports and not headless and stype != "ExternalName":
        errs.append(required("spec.ports"))
    names: set[str] = set()
    seen_ports: set[tuple[str, int]] = set()
    seen_node_ports: set[tuple[str, int]] = set()
    for i, p in enumerate(ports):
        where = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            errs.append(invalid_value(where, p, "must be an object"))
            continue
        name = p.get("name")
        if name in (None, ""):
            if len(ports) > 1:
                errs.append(required(f"{where}.name"))
        elif not isinstance(name, str):
            errs += dns_label(name, f"{where}.name")
        else:
            errs += dns_label(name, f"{where}.name")
            if name in names:
                errs.append(duplicate(f"{where}.name", name))
            names.add(name)
        port = p.get("port")
        errs += port_number(port, f"{where}.port")
        protocol = p.get("protocol", "TCP")
        if protocol not in PROTOCOLS:
            errs.append(not_supported(f"{where}.protocol", protocol, PROTOCOLS))
        errs += _target_port(p.get("targetPort"), f"{where}.targetPort")
        node_port = p.get("nodePort")
        if node_port not in (None, 0):
            errs += port_number(node_port, f"{where}.nodePort")
        if isinstance(protocol, str) and isinstance(port, int):
            if (protocol, port) in seen_ports:
                errs.append(duplicate(where, {"port": port, "protocol": protocol}))
            seen_ports.add((protocol, port))
        if isinstance(protocol, str) and isinstance(node_port, int) and node_port:
            if (protocol, node_port) in seen_node_ports:
                errs.append(duplicate(f"{where}.nodePort", node_port))
            seen_node_ports.add((protocol, node_port))
    return errs


def _affinity(spec: Obj) -> list[FieldError]:
    affinity = spec.get("sessionAffinity", "None")
    config = spec.get("sessionAffinityConfig")
    if affinity not in AFFINITIES:
        return [not_supported("spec.sessionAffinity", affinity, AFFINITIES)]
    if affinity == "None":
        if config is not None:
            return [
                forbidden_field(
                    "spec.sessionAffinityConfig", "must not be set when session affinity is None"
                )
            ]
        return []
    if config is None:
        return []  # the proxy uses the default timeout (10800 s)
    if not isinstance(config, dict):
        return [invalid_value("spec.sessionAffinityConfig", config, "must be an object")]
    client_ip = config.get("clientIP")
    if client_ip is None:
        return []
    if not isinstance(client_ip, dict):
        return [
            invalid_value("spec.sessionAffinityConfig.clientIP", client_ip, "must be an object")
        ]
    timeout = client_ip.get("timeoutSeconds")
    if timeout is None:
        return []
    if not _is_int(timeout) or not 0 < timeout <= MAX_AFFINITY_SECONDS:
        return [
            invalid_value(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                timeout,
                f"must be greater than 0 and less than or equal to {MAX_AFFINITY_SECONDS}",
            )
        ]
    return []


def _cluster_ips(spec: Obj, stype: str) -> list[FieldError]:
    errs: list[FieldError] = []
    cluster_ip = spec.get("clusterIP")
    if cluster_ip not in (None, "", "None") and ip_address(cluster_ip, "spec.clusterIP"):
        errs.append(
            invalid_value(
                "spec.clusterIP", cluster_ip, "must be empty, 'None', or a valid IP address"
            )
        )
    if cluster_ip == "None" and stype in ("NodePort", "LoadBalancer"):
        errs.append(
            invalid_value(
                "spec.clusterIP", cluster_ip, f"may not be set to 'None' for {stype} services"
            )
        )
    cluster_ips = spec.get("clusterIPs")
    if cluster_ips is not None:
        if not isinstance(cluster_ips, list):
            errs.append(invalid_value("spec.clusterIPs", cluster_ips, "must be a list"))
        else:
            for i, ip in enumerate(cluster_ips):
                if ip != "None":
                    errs += ip_address(ip, f"spec.clusterIPs[{i}]")
    external = spec.get("externalIPs")
    if external is not None:
        if not isinstance(external, list):
            errs.append(invalid_value("spec.externalIPs", external, "must be a list"))
        else:
            for i, ip in enumerate(external):
                errs += routable_ip(ip, f"spec.externalIPs[{i}]")
    return errs


def _selector(spec: Obj) -> list[FieldError]:
    selector = spec.get("selector")
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [invalid_value("spec.selector", selector, "must be a map of string to string")]
    errs: list[FieldError] = []
    for k, v in selector.items():
        if not is_label_value(v):
            errs.append(
                invalid_value(
                    f"spec.selector[{k}]",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters,"
                    " '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    return errs


def _policies(spec: Obj) -> list[FieldError]:
    errs: list[FieldError] = []
    for f in ("externalTrafficPolicy", "internalTrafficPolicy"):
        v = spec.get(f)
        if v not in (None, "") and v not in TRAFFIC_POLICIES:
            errs.append(not_supported(f"spec.{f}", v, TRAFFIC_POLICIES))
    hc = spec.get("healthCheckNodePort")
    if hc not in (None, 0):
        if not (
            spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"
        ):
            errs.append(
                invalid_value(
                    "spec.healthCheckNodePort",
                    hc,
                    "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy`"
                    " is 'Local'",
                )
            )
        elif not is_port_number(hc):
            errs.append(
                invalid_value("spec.healthCheckNodePort", hc, "must be between 1 and 65535")
            )
    errs += _load_balancer_class(spec)
    ranges = spec.get("loadBalancerSourceRanges")
    if ranges is not None:
        if not isinstance(ranges, list):
            errs.append(invalid_value("spec.loadBalancerSourceRanges", ranges, "must be a list"))
        else:
            for i, r in enumerate(ranges):
                try:
                    ipaddress.ip_network(str(r))
                except ValueError:
                    errs.append(
                        invalid_value(
                            f"spec.loadBalancerSourceRanges[{i}]",
                            r,
                            "must be a list of IP ranges. For example, 10.240.0.0/24",
                        )
                    )
    return errs


def _qualified_name(value: str) -> bool:
    prefix, _, rest = value.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    if not rest or len(rest) > 63:
        return False
    ok = all(c.isascii() and (c.isalnum() or c in "-_.") for c in rest)
    return ok and rest[0].isalnum() and rest[-1].isalnum()


def _load_balancer_class(spec: Obj) -> list[FieldError]:
    """``loadBalancerClass``: only on LoadBalancers, a qualified name (``example.com/lb``)."""
    value = spec.get("loadBalancerClass")
    if value is None:
        return []
    if spec.get("type") != "LoadBalancer":
        return [
            forbidden_field(
                "spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"
            )
        ]
    if not isinstance(value, str) or not _qualified_name(value):
        return [
            invalid_value(
                "spec.loadBalancerClass",
                value,
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must"
                " start and end with an alphanumeric character, with an optional DNS subdomain"
                " prefix and '/' (e.g. 'example.com/MyName')",
            )
        ]
    return []


def validate_service_update(old: Obj, new: Obj) -> list[FieldError]:
    """``loadBalancerClass`` is immutable while the Service stays a LoadBalancer (upstream):
    the implementation that gave it its address keeps it."""
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    if (
        old_spec.get("type") == "LoadBalancer"
        and new_spec.get("type") == "LoadBalancer"
        and old_spec.get("loadBalancerClass") != new_spec.get("loadBalancerClass")
    ):
        return [
            invalid_value(
                "spec.loadBalancerClass", new_spec.get("loadBalancerClass"), "field is immutable"
            )
        ]
    return []


def validate_service(obj: Obj) -> list[FieldError]:
    """All field errors of a ``v1/Service``."""
    errs: list[FieldError] = []
    name = (obj.get("metadata") or {}).get("name")
    if isinstance(name, str) and name[:1].isdigit():
        errs.append(
            invalid_value(
                "metadata.name",
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-',"
                " start with an alphabetic character, and end with an alphanumeric character",
            )
        )
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [*errs, required("spec")]
    stype = spec.get("type", "ClusterIP")
    if stype not in SERVICE_TYPES:
        errs.append(not_supported("spec.type", stype, SERVICE_TYPES))
    headless = spec.get("clusterIP") == "None"
    errs += _service_ports(spec, str(stype), headless)
    errs += _cluster_ips(spec, str(stype))
    errs += _affinity(spec)
    errs += _selector(spec)
    errs += _policies(spec)
    if stype == "ExternalName":
        external_name = spec.get("externalName")
        if external_name in (None, ""):
            errs.append(required("spec.externalName"))
        else:
            errs += dns_subdomain(external_name, "spec.externalName")
    return errs


def _endpoint_address(address: Any, where: str) -> list[FieldError]:
    if not isinstance(address, dict):
        return [invalid_value(where, address, "must be an object")]
    errs = routable_ip(address.get("ip"), f"{where}.ip", allow_loopback=_loopback_allowed.get())
    hostname = address.get("hostname")
    if hostname not in (None, ""):
        errs += dns_label(hostname, f"{where}.hostname")
    node_name = address.get("nodeName")
    if node_name is not None:
        errs += dns_subdomain(node_name, f"{where}.nodeName")
    return errs


def validate_endpoints(obj: Obj) -> list[FieldError]:
    """All field errors of a ``v1/Endpoints``."""
    subsets = obj.get("subsets")
    if subsets is None:
        return []
    if not isinstance(subsets, list):
        return [invalid_value("subsets", subsets, "must be a list")]
    errs: list[FieldError] = []
    for i, subset in enumerate(subsets):
        where = f"subsets[{i}]"
        if not isinstance(subset, dict):
            errs.append(invalid_value(where, subset, "must be an object"))
            continue
        addresses = subset.get("addresses") or []
        not_ready = subset.get("notReadyAddresses") or []
        if not isinstance(addresses, list) or not isinstance(not_ready, list):
            errs.append(
                invalid_value(where, "...", "addresses and notReadyAddresses must be lists")
            )
            continue
        if not addresses and not not_ready:
            errs.append(
                FieldError(
                    "FieldValueRequired",
                    where,
                    "Required value: must specify `addresses` or `notReadyAddresses`",
                )
            )
        for list_name, items in (("addresses", addresses), ("notReadyAddresses", not_ready)):
            for j, address in enumerate(items):
                errs += _endpoint_address(address, f"{where}.{list_name}[{j}]")
        ports = subset.get("ports") or []
        if not isinstance(ports, list):
            errs.append(invalid_value(f"{where}.ports", ports, "must be a list"))
            continue
        for j, p in enumerate(ports):
            pwhere = f"{where}.ports[{j}]"
            if not isinstance(p, dict):
                errs.append(invalid_value(pwhere, p, "must be an object"))
                continue
            name = p.get("name")
            if name in (None, ""):
                if len(ports) > 1:
                    errs.append(required(f"{pwhere}.name"))
            else:
                errs += dns_label(name, f"{pwhere}.name")
            errs += port_number(p.get("port"), f"{pwhere}.port")
            protocol = p.get("protocol", "TCP")
            if protocol not in PROTOCOLS:
                errs.append(not_supported(f"{pwhere}.protocol", protocol, PROTOCOLS))
    return errs
