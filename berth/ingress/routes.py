"""What the proxy must do, computed from the API objects: the pure half of the ingress
controller (no I/O), so the rules are testable without a cluster.

Which Ingresses are berth's: those whose class (``spec.ingressClassName``, else the legacy
``kubernetes.io/ingress.class`` annotation, else the default IngressClass) is an IngressClass
whose ``spec.controller`` is :data:`berth.api.ingress.CONTROLLER`. When two Ingresses claim the
same host, path and type, or both set a default backend, the older one wins (ingress-nginx's
rule), so adding an Ingress never takes traffic from one already serving.

Everything taken from the API is checked again here (an API server is not the only writer of
these objects a node may see, and the data plane must never render attacker text): hosts must
be DNS names, paths only RFC 3986 path characters, backends Services with ready IPv4/IPv6
endpoints; anything else is skipped and reported in :attr:`Routes.problems`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from berth.api import ingress as ing

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TLS_TYPE = "kubernetes.io/tls"
MAX_PEM = 64 * 1024
_ID = re.compile(r"^[a-z0-9-]{1,63}$")
_PEM_CERT = b"-----BEGIN CERTIFICATE-----"
_PEM_KEY = re.compile(rb"-----BEGIN (RSA |EC )?PRIVATE KEY-----")

Obj = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Backend:
    """One Service port as the proxy's backend: ``servers`` are ``(ip, port)`` pairs."""

    name: str
    servers: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Route:
    """``host``: a precise host, ``*.suffix``, or ``""`` (any host). ``kind``: Exact or Prefix
    (ImplementationSpecific is served as Prefix)."""

    host: str
    path: str
    kind: str
    backend: str


@dataclass(frozen=True, slots=True)
class Certificate:
    """A TLS Secret's certificate chain and key (PEM) and the hosts it serves by SNI."""

    name: str
    hosts: tuple[str, ...]
    pem: bytes


@dataclass
class Routes:
    routes: list[Route] = field(default_factory=list)
    backends: dict[str, Backend] = field(default_factory=dict)
    default_backend: str | None = None
    certificates: list[Certificate] = field(default_factory=list)
    ingresses: list[tuple[str, str]] = field(default_factory=list)
    """(namespace, name) of the Ingresses served (their status is ours to write)."""
    problems: list[str] = field(default_factory=list)


def _meta(o: Obj) -> Mapping[str, Any]:
    m = o.get("metadata")
    return m if isinstance(m, Mapping) else {}


def _seq(v: Any) -> Sequence[Any]:
    return v if isinstance(v, list | tuple) else ()


def our_classes(classes: Iterable[Obj], controller: str = ing.CONTROLLER) -> tuple[set[str], bool]:
    """The names of the IngressClasses this controller implements, and whether one of them is
    the default class."""
    classes = list(classes)
    ours = {
        str(_meta(c).get("name"))
        for c in classes
        if isinstance(c.get("spec"), Mapping) and c["spec"].get("controller") == controller
    }
    return ours, ing.default_class(classes) in ours


def is_ours(ingress: Obj, classes: set[str], default_is_ours: bool) -> bool:
    name = ing.class_name(ingress)
    if name is None:
        return default_is_ours
    return name in classes


def _age_key(o: Obj) -> tuple[str, str, str]:
    m = _meta(o)
    return (str(m.get("creationTimestamp") or ""), str(m.get("namespace")), str(m.get("name")))


class _Resolver:
    """Service backends -> ready endpoint addresses, from Services and EndpointSlices."""

    def __init__(self, services: Iterable[Obj], slices: Iterable[Obj]) -> None:
        self.services = {(_meta(s).get("namespace"), _meta(s).get("name")): s for s in services}
        self.slices: dict[tuple[Any, Any], list[Obj]] = {}
        for sl in slices:
            labels = _meta(sl).get("labels") or {}
            svc = labels.get(SERVICE_NAME_LABEL)
            if svc:
                self.slices.setdefault((_meta(sl).get("namespace"), svc), []).append(sl)

    def backend(self, ns: str, ref: Any) -> tuple[Backend | None, str]:
        if not isinstance(ref, Mapping):
            return None, "not a Service backend (resource backends are not supported)"
        name, port = ref.get("name"), ref.get("port")
        if not isinstance(name, str) or not _ID.match(name) or not isinstance(port, Mapping):
            return None, f"invalid service backend {name!r}"
        svc = self.services.get((ns, name))
        if svc is None:
            return None, f"service {ns}/{name} not found"
        number, pname = port.get("number"), port.get("name")
        want = None
        for sp in _seq((svc.get("spec") or {}).get("ports")):
            if not isinstance(sp, Mapping):
                continue
            if (number and sp.get("port") == number) or (pname and sp.get("name") == pname):
                want = sp
                break
        if want is None:
            return None, f"service {ns}/{name} has no port {number or pname}"
        label = str(number or pname)
        if not _ID.match(label):
            return None, f"invalid port {label!r}"
        servers: set[tuple[str, int]] = set()
        port_name = want.get("name") or ""
        for sl in self.slices.get((ns, name), ()):
            if sl.get("addressType") not in ("IPv4", "IPv6"):
                continue
            target = None
            for p in _seq(sl.get("ports")):
                if isinstance(p, Mapping) and (p.get("name") or "") == port_name:
                    target = p.get("port")
            if not isinstance(target, int) or isinstance(target, bool) or not 0 < target < 65536:
                continue
            for ep in _seq(sl.get("endpoints")):
                if not isinstance(ep, Mapping):
                    continue
                conditions = ep.get("conditions") or {}
                if conditions.get("ready") is False:
                    continue
                for address in _seq(ep.get("addresses"))[:1]:
                    try:
                        ip = ipaddress.ip_address(address)
                    except (TypeError, ValueError):
                        continue
                    servers.add((str(ip), target))
        backend = Backend(f"be_{ns}_{name}_{label}", tuple(sorted(servers)))
        return backend, ""


def _certificate(ns: str, secret: Obj | None, hosts: list[str]) -> tuple[Certificate | None, str]:
    name = str(_meta(secret).get("name")) if secret is not None else ""
    if secret is None:
        return None, "secret not found"
    if secret.get("type") != TLS_TYPE:
        return None, f"secret {ns}/{name} is not of type {TLS_TYPE}"
    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(str(data.get("tls.crt") or ""), validate=True)
        key = base64.b64decode(str(data.get("tls.key") or ""), validate=True)
    except (binascii.Error, ValueError):
        return None, f"secret {ns}/{name}: tls.crt/tls.key are not base64"
    if len(crt) + len(key) > MAX_PEM or b"\0" in crt + key:
        return None, f"secret {ns}/{name}: certificate too large or binary"
    if _PEM_CERT not in crt or not _PEM_KEY.search(key):
        return None, f"secret {ns}/{name}: tls.crt/tls.key are not PEM"
    if not _pem_loads(crt, key):
        return None, f"secret {ns}/{name}: the certificate or key does not parse"
    pem = crt.rstrip(b"\n") + b"\n" + key.rstrip(b"\n") + b"\n"
    return Certificate(f"{ns}_{name}", tuple(hosts), pem), ""


def _pem_loads(crt: bytes, key: bytes) -> bool:
    """Whether ``crt`` and ``key`` parse (one bad Secret must not make the whole proxy config
    fail its check and stop every other change)."""
    try:
        x509.load_pem_x509_certificate(crt)
        load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return False
    return True


def _resolve(out: Routes, resolver: _Resolver, ns: str, backend: Any, where: str) -> str | None:
    svc = backend.get("service") if isinstance(backend, Mapping) else None
    be, why = resolver.backend(ns, svc)
    if be is None:
        out.problems.append(f"{where}: {why}")
        return None
    out.backends.setdefault(be.name, be)
    return be.name


def build_routes(
    ingresses: Iterable[Obj],
    classes: Iterable[Obj],
    services: Iterable[Obj],
    slices: Iterable[Obj],
    secrets: Iterable[Obj],
    *,
    controller: str = ing.CONTROLLER,
) -> Routes:
    """The proxy's routes, backends and certificates for the Ingresses this controller serves."""
    out = Routes()
    names, default_ours = our_classes(classes, controller)
    resolver = _Resolver(services, slices)
    secret_by = {(_meta(s).get("namespace"), _meta(s).get("name")): s for s in secrets}
    seen: set[tuple[str, str, str]] = set()
    cert_hosts: set[str] = set()
    for o in sorted((i for i in ingresses if is_ours(i, names, default_ours)), key=_age_key):
        ns, iname = str(_meta(o).get("namespace")), str(_meta(o).get("name"))
        where = f"ingress {ns}/{iname}"
        spec = o.get("spec")
        if not isinstance(spec, Mapping) or not _ID.match(ns):
            continue
        out.ingresses.append((ns, iname))

        default = spec.get("defaultBackend")
        if default is not None and out.default_backend is None:
            out.default_backend = _resolve(out, resolver, ns, default, f"{where} defaultBackend")
        for rule in _seq(spec.get("rules")):
            if not isinstance(rule, Mapping):
                continue
            host = rule.get("host") or ""
            if host and not ing.is_host(host):
                out.problems.append(f"{where}: host {host!r} refused")
                continue
            http = rule.get("http")
            for p in _seq(http.get("paths") if isinstance(http, Mapping) else None):
                if not isinstance(p, Mapping):
                    continue
                path = p.get("path") or "/"
                kind = ing.EXACT if p.get("pathType") == ing.EXACT else ing.PREFIX
                if not isinstance(path, str) or not ing.safe_path(path):
                    out.problems.append(f"{where}: path {path!r} refused")
                    continue
                if kind == ing.PREFIX:
                    path = path.rstrip("/") or "/"
                if (host, path, kind) in seen:
                    continue
                backend = _resolve(out, resolver, ns, p.get("backend"), f"{where} path {path}")
                if backend is None:
                    continue
                seen.add((host, path, kind))
                out.routes.append(Route(host, path, kind, backend))
        for t in _seq(spec.get("tls")):
            if not isinstance(t, Mapping) or not t.get("secretName"):
                continue
            hosts = [
                h
                for h in _seq(t.get("hosts"))
                if isinstance(h, str) and ing.is_host(h) and h not in cert_hosts
            ]
            if not hosts:
                continue
            cert, why = _certificate(ns, secret_by.get((ns, t["secretName"])), hosts)
            if cert is None:
                out.problems.append(f"{where} tls {t['secretName']!r}: {why}")
                continue
            cert_hosts.update(hosts)
            out.certificates.append(cert)
    return out


def referenced_secrets(ingresses: Iterable[Obj]) -> set[tuple[str, str]]:
    """(namespace, name) of every Secret an Ingress's TLS section names."""
    out: set[tuple[str, str]] = set()
    for o in ingresses:
        spec = o.get("spec")
        if not isinstance(spec, Mapping):
            continue
        for t in _seq(spec.get("tls")):
            if isinstance(t, Mapping) and isinstance(t.get("secretName"), str):
                out.add((str(_meta(o).get("namespace")), t["secretName"]))
    return out
