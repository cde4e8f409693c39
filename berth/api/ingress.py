"""Ingress vocabulary shared by the API server (validation, the default-class admission) and
berth's ingress controller (which checks again everything it renders into its proxy's config:
hostnames and paths are written by API clients, and the data plane must never trust them).

Upstream anchors: ``networking.k8s.io/v1`` validation (host and path rules, backends), the
DefaultIngressClass admission plugin, and the path matching the Ingress API specifies (``Prefix``
matches whole ``/``-separated elements, ``Exact`` the whole path).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
"""The class an Ingress named before ``spec.ingressClassName`` existed (still honoured)."""
CONTROLLER = "berth.dev/ingress-haproxy"
"""``spec.controller`` of the IngressClasses berth's ingress controller implements."""

PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
EXACT, PREFIX, IMPLEMENTATION_SPECIFIC = "Exact", "Prefix", "ImplementationSpecific"

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
MAX_HOST = 253

# Upstream refuses these in Exact and Prefix paths (a path must name one resource unambiguously).
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
MAX_PATH = 2048

# What the data plane accepts in a path: RFC 3986 ``pchar`` and ``/`` (no whitespace, no
# quotes, no ``#``, no ``\``, no control characters): nothing that could end a map-file key or
# a config word.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._~!$&()*+,;=:@%/-]*$")


def is_host(value: Any, *, wildcard: bool = True) -> bool:
    """A DNS-1123 subdomain, optionally ``*.`` and one (upstream: ``IsWildcardDNS1123Subdomain``);
    never an IP address."""
    if not isinstance(value, str) or not value or len(value) > MAX_HOST:
        return False
    name = value[2:] if wildcard and value.startswith("*.") else value
    return bool(_HOST.match(name)) and not is_ip_literal(name)


def is_ip_literal(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def path_problem(path: Any, path_type: Any) -> str | None:
    """Why ``path`` is not a valid path of ``path_type`` (upstream's rules), or None."""
    if not isinstance(path, str):
        return "must be a string"
    if len(path) > MAX_PATH:
        return f"must be at most {MAX_PATH} characters"
    if path_type in (EXACT, PREFIX):
        if not path.startswith("/"):
            return "must be an absolute path"
        for seq in INVALID_PATH_SEQUENCES:
            if seq in path:
                return f"must not contain '{seq}'"
        for suffix in INVALID_PATH_SUFFIXES:
            if path.endswith(suffix):
                return f"cannot end with '{suffix}'"
    elif path and not path.startswith("/"):
        return "must be an absolute path"
    return None


def safe_path(path: str) -> bool:
    """Whether the data plane may route on ``path`` (stricter than the API: see _SAFE_PATH)."""
    return len(path) <= MAX_PATH and bool(_SAFE_PATH.match(path))


def prefix_matches(prefix: str, path: str) -> bool:
    """The Ingress ``Prefix`` rule: ``prefix`` split on ``/`` is an element-wise prefix of
    ``path`` (``/foo`` matches ``/foo`` and ``/foo/bar``, not ``/foobar``; a trailing ``/`` is
    ignored)."""
    p = prefix.rstrip("/")
    if not p:
        return True
    return path == p or path.startswith(p + "/") or path.rstrip("/") == p


def class_name(ingress: Mapping[str, Any]) -> str | None:
    """The IngressClass an Ingress names: ``spec.ingressClassName``, else the legacy
    ``kubernetes.io/ingress.class`` annotation; ``None`` when it names none (the default class
    then serves it)."""
    spec = ingress.get("spec")
    name = spec.get("ingressClassName") if isinstance(spec, Mapping) else None
    if name is None:
        meta = ingress.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, Mapping) else None
        if isinstance(annotations, Mapping):
            name = annotations.get(LEGACY_CLASS_ANNOTATION)
    return name if isinstance(name, str) else None


def is_default_class(ic: Mapping[str, Any]) -> bool:
    annotations = (ic.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"


def default_class(classes: Iterable[Mapping[str, Any]]) -> str | None:
    """The default IngressClass's name: when several are marked, the newest (then the first by
    name), as the DefaultIngressClass admission plugin picks."""
    marked = [c for c in classes if is_default_class(c)]
    if not marked:
        return None

    def key(c: Mapping[str, Any]) -> tuple[str, str]:
        m = c.get("metadata") or {}
        name = str(m.get("name") or "")
        return (
            str(m.get("creationTimestamp") or ""),
            "".join(chr(0x10FFFF - ord(x)) for x in name),
        )

    return str((max(marked, key=key).get("metadata") or {}).get("name"))
