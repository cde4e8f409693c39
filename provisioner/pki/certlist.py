"""The cluster PKI, declared as a table.

Each :class:`CertSpec` row says what one certificate is for, which CA signs it, whom it names
and where it is valid. :func:`expand` turns the table and a spec into concrete
:class:`CertRequest` values (one per cluster, per control-plane host or per host), CAs first.
The table is checked by :func:`check_table` at import time: a row naming an unknown CA, or a CA
listed after a certificate it signs, fails at once instead of at the first install.

Identities follow the Kubernetes conventions the API server's x509 authenticator reads: the
subject CN is the user name and each O a group (``system:node:<name>`` in ``system:nodes``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NewType

from provisioner.spec.model import Certificates, ClusterSpec, Host
from provisioner.spec.syntax import ip_address

CertId = NewType("CertId", str)
"""A certificate's name in the state directory: ``apiserver``, ``agent-client-n1`` ..."""


class Usage(StrEnum):
    """Extended key usages."""

    SERVER = "serverAuth"
    CLIENT = "clientAuth"


class Scope(StrEnum):
    """How many certificates one table row makes."""

    CLUSTER = "cluster"  # one
    CONTROL_PLANE = "control-plane"  # one per control-plane host
    EVERY_HOST = "every-host"  # one per host


Subject = tuple[str, tuple[str, ...]]  # (CN, O...)
Sans = tuple[tuple[str, ...], tuple[str, ...]]  # (DNS names, IP addresses)


@dataclass(frozen=True)
class CertRequest:
    """One concrete certificate the cluster needs."""

    id: CertId
    description: str
    ca: CertId | None  # None: a self-signed CA
    common_name: str
    organizations: tuple[str, ...]
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    usages: frozenset[Usage]
    validity_days: int
    host: str | None = None

    @property
    def is_ca(self) -> bool:
        return self.ca is None

    @property
    def sans(self) -> frozenset[str]:
        """SANs as ``DNS:name`` / ``IP:address`` strings (how openssl prints them)."""
        return frozenset(
            [f"DNS:{d}" for d in self.dns_names] + [f"IP:{i}" for i in self.ip_addresses]
        )


def _no_sans(spec: ClusterSpec, host: Host | None) -> Sans:
    del spec, host
    return (), ()


def _always(spec: ClusterSpec) -> bool:
    del spec
    return True


def _with_etcd(spec: ClusterSpec) -> bool:
    return spec.uses_etcd


def _with_vip(spec: ClusterSpec) -> bool:
    return spec.api_vip is not None


@dataclass(frozen=True)
class CertSpec:
    """One row of the PKI table. ``name`` may contain ``{host}`` for per-host rows."""

    name: str
    description: str
    ca: str | None
    subject: Callable[[ClusterSpec, Host | None], Subject]
    usages: frozenset[Usage] = frozenset()
    sans: Callable[[ClusterSpec, Host | None], Sans] = _no_sans
    scope: Scope = Scope.CLUSTER
    when: Callable[[ClusterSpec], bool] = _always


def _fixed(common_name: str, *organizations: str) -> Callable[[ClusterSpec, Host | None], Subject]:
    def subject(spec: ClusterSpec, host: Host | None) -> Subject:
        del spec, host
        return common_name, organizations

    return subject


def _node_identity(spec: ClusterSpec, host: Host | None) -> Subject:
    del spec
    assert host is not None
    return f"system:node:{host.name}", ("system:nodes",)


def _host_name(spec: ClusterSpec, host: Host | None) -> Subject:
    del spec
    assert host is not None
    return host.name, ()


def _split(names: Sequence[str]) -> Sans:
    """Sort names into DNS and IP SANs, dropping duplicates, keeping first-seen order."""
    dns: list[str] = []
    ips: list[str] = []
    for name in names:
        is_ip = ip_address(name) is None
        bucket = ips if is_ip else dns
        canonical = str(ipaddress.ip_address(name)) if is_ip else name.lower()
        if canonical not in bucket:
            bucket.append(canonical)
    return tuple(dns), tuple(ips)


def apiserver_sans(spec: ClusterSpec, host: Host | None = None) -> Sans:
    """Every name and address a client may dial to reach an API server of this cluster."""
    del host
    domain = spec.spec.network.cluster_domain
    names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{domain}",
        "localhost",
        "127.0.0.1",
        spec.kubernetes_service_ip,
        spec.api_endpoint,
    ]
    if spec.api_vip is not None:  # also when apiServer.endpoint names it by DNS
        names.append(spec.api_vip)
    for control_plane in spec.control_plane_hosts:
        names += [control_plane.name, control_plane.address]
    names += spec.spec.api_server.extra_sans
    return _split(names)


def _etcd_member_sans(spec: ClusterSpec, host: Host | None) -> Sans:
    del spec
    assert host is not None
    return _split([host.name, "localhost", host.address, "127.0.0.1", "::1"])


def _agent_serving_sans(spec: ClusterSpec, host: Host | None) -> Sans:
    del spec
    assert host is not None
    return _split([host.name, host.address])


SERVER = frozenset({Usage.SERVER})
CLIENT = frozenset({Usage.CLIENT})
BOTH = frozenset({Usage.SERVER, Usage.CLIENT})

CERTS: tuple[CertSpec, ...] = (
    CertSpec("ca", "cluster CA", None, _fixed("berth-ca")),
    CertSpec("etcd-ca", "etcd CA", None, _fixed("berth-etcd-ca"), when=_with_etcd),
    CertSpec(
        "apiserver",
        "API server serving certificate",
        "ca",
        _fixed("berth-apiserver"),
        SERVER,
        sans=apiserver_sans,
    ),
    CertSpec(
        "apiserver-agent-client",
        "API server -> node agent client",
        "ca",
        _fixed("berth-apiserver-agent-client", "system:masters"),
        CLIENT,
    ),
    CertSpec(
        "apiserver-etcd-client",
        "API server -> etcd client",
        "etcd-ca",
        _fixed("berth-apiserver-etcd-client"),
        CLIENT,
        when=_with_etcd,
    ),
    CertSpec(
        "etcd-server-{host}",
        "etcd serving certificate",
        "etcd-ca",
        _host_name,
        BOTH,
        sans=_etcd_member_sans,
        scope=Scope.CONTROL_PLANE,
        when=_with_etcd,
    ),
    CertSpec(
        "etcd-peer-{host}",
        "etcd peer certificate",
        "etcd-ca",
        _host_name,
        BOTH,
        sans=_etcd_member_sans,
        scope=Scope.CONTROL_PLANE,
        when=_with_etcd,
    ),
    CertSpec(
        "agent-client-{host}",
        "node agent -> API server client",
        "ca",
        _node_identity,
        CLIENT,
        scope=Scope.EVERY_HOST,
    ),
    CertSpec(
        "agent-serving-{host}",
        "node agent serving certificate",
        "ca",
        _node_identity,
        SERVER,
        sans=_agent_serving_sans,
        scope=Scope.EVERY_HOST,
    ),
    CertSpec("scheduler", "scheduler client", "ca", _fixed("system:kube-scheduler"), CLIENT),
    CertSpec(
        "controller-manager",
        "controller manager client",
        "ca",
        _fixed("system:kube-controller-manager"),
        CLIENT,
    ),
    CertSpec(
        "vip",
        "API VIP holder client (leader election)",
        "ca",
        _fixed("system:berth-vip"),
        CLIENT,
        when=_with_vip,
    ),
    CertSpec("proxy", "service proxy client", "ca", _fixed("system:kube-proxy"), CLIENT),
    CertSpec("ingress", "ingress controller client", "ca", _fixed("system:berth-ingress"), CLIENT),
    CertSpec(
        "admin", "cluster admin client", "ca", _fixed("berth-admin", "system:masters"), CLIENT
    ),
)


def check_table(table: Sequence[CertSpec]) -> None:
    """Fail if a row names an unknown CA, a CA that is not itself a CA, or one listed later."""
    seen_cas: set[str] = set()
    names: set[str] = set()
    for row in table:
        if row.name in names:
            raise ValueError(f"certificate {row.name!r} is declared twice")
        names.add(row.name)
        if row.ca is None:
            seen_cas.add(row.name)
        elif row.ca not in seen_cas:
            raise ValueError(f"certificate {row.name!r} references unknown CA {row.ca!r}")


check_table(CERTS)


def _hosts_for(scope: Scope, spec: ClusterSpec) -> list[Host | None]:
    if scope is Scope.CLUSTER:
        return [None]
    if scope is Scope.CONTROL_PLANE:
        return list(spec.control_plane_hosts)
    return list(spec.hosts)


def _validity(row: CertSpec, lifetimes: Certificates) -> int:
    return lifetimes.ca_validity_days if row.ca is None else lifetimes.leaf_validity_days


def expand(spec: ClusterSpec, table: Sequence[CertSpec] = CERTS) -> list[CertRequest]:
    """The certificates ``spec`` needs, CAs first, in table order."""
    lifetimes = spec.spec.certificates
    requests: list[CertRequest] = []
    for row in table:
        if not row.when(spec):
            continue
        for host in _hosts_for(row.scope, spec):
            common_name, organizations = row.subject(spec, host)
            dns, ips = row.sans(spec, host)
            requests.append(
                CertRequest(
                    id=CertId(row.name.format(host=host.name if host else "")),
                    description=row.description + (f" ({host.name})" if host else ""),
                    ca=CertId(row.ca) if row.ca else None,
                    common_name=common_name,
                    organizations=organizations,
                    dns_names=dns,
                    ip_addresses=ips,
                    usages=row.usages,
                    validity_days=_validity(row, lifetimes),
                    host=host.name if host else None,
                )
            )
    return requests
