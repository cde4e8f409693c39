"""Small syntax checkers shared by the spec model and its semantic checks.

Each checker returns ``None`` when the value is fine, or a short message saying what is wrong.
They follow Kubernetes' own rules (DNS-1123 names, qualified label keys, label values) so that a
spec that validates here is accepted by the API server later.
"""

from __future__ import annotations

import ipaddress
import re

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_HOSTNAME = re.compile(
    r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]*[A-Za-z0-9])?)*$"
)
SEMVER = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def dns1123_label(value: str) -> str | None:
    """A DNS-1123 label: lower-case letters, digits and '-', at most 63 characters."""
    if len(value) > 63:
        return f"must be at most 63 characters (has {len(value)})"
    if not DNS1123_LABEL.match(value):
        if value.lower() != value and DNS1123_LABEL.match(value.lower()):
            return "must be lower case (a DNS-1123 label)"
        return (
            "must be a DNS-1123 label: lower-case letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return None


def dns1123_subdomain(value: str) -> str | None:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters."""
    if len(value) > 253:
        return f"must be at most 253 characters (has {len(value)})"
    if not DNS1123_SUBDOMAIN.match(value):
        if value.lower() != value and DNS1123_SUBDOMAIN.match(value.lower()):
            return "must be lower case (a DNS-1123 subdomain)"
        return "must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.'"
    return None


def qualified_name(value: str) -> str | None:
    """A Kubernetes qualified name (label and taint keys): ``[prefix/]name``."""
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        return "the prefix before '/' must not be empty"
    if slash:
        problem = dns1123_subdomain(prefix)
        if problem:
            return f"prefix {prefix!r} {problem}"
    if not name:
        return "the name part must not be empty"
    if len(name) > 63:
        return f"the name part must be at most 63 characters (has {len(name)})"
    if not _QUALIFIED_NAME.match(name):
        return (
            "must be alphanumeric, '-', '_' or '.', starting and ending with a letter or digit "
            "(an optional DNS prefix ends with '/')"
        )
    return None


def label_value(value: str) -> str | None:
    """A Kubernetes label value: empty, or at most 63 characters of the qualified-name set."""
    if len(value) > 63:
        return f"must be at most 63 characters (has {len(value)})"
    if not _LABEL_VALUE.match(value):
        return (
            "must be empty or alphanumeric, '-', '_' or '.', starting and ending with a letter "
            "or digit"
        )
    return None


def ip_address(value: str) -> str | None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return "is not a valid IP address"
    return None


def hostname_or_ip(value: str) -> str | None:
    """An address a client may dial: an IP address or a DNS name (``*.`` wildcard allowed)."""
    if ip_address(value) is None:
        return None
    if value.rsplit(".", 1)[-1].isdigit():
        # "10.0.0.300" would otherwise pass as a DNS name; no real top-level domain is numeric
        return "is not a valid IP address (and not a DNS name: its last label is numeric)"
    if len(value) <= 253 and _HOSTNAME.match(value):
        return None
    return "is neither an IP address nor a DNS name"


_BRACKETED_V6 = re.compile(r"^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$")


def registry_host(value: str) -> str | None:
    """A registry as image references name it: ``host[:port]``, the host a DNS name or an IPv4
    address, or ``[IPv6]:port``; no scheme, no path."""
    if "://" in value or "/" in value:
        return "is not a registry host: write host[:port] without a scheme or a path"
    v6 = _BRACKETED_V6.match(value)
    if v6:
        host, port = v6.group(1), v6.group(2)
        if ip_address(host) is not None or ":" not in host:
            return "is not a valid bracketed IPv6 address"
    else:
        host, _, port = value.partition(":")
        if hostname_or_ip(host) is not None or ":" in port or "*" in host:
            return "is not a registry host: write host[:port], e.g. registry.example.com:5000"
    if port is not None and port != "" and not (port.isdigit() and 1 <= int(port) <= 65535):
        return "has a port outside 1-65535"
    if port == "" and value.endswith(":"):
        return "ends with ':' but names no port"
    return None
