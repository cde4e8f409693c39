"""What an httpGet/tcpSocket probe may send and where, checked on the node.

A probe is written by whoever may create a pod, and the node runs it from its own network
namespace as part of the agent. Without checks its fields reach the wire verbatim: a ``path``
or header with CR/LF injects headers or whole requests (``GET / HTTP/1.1\\r\\nX: y``), and
``host`` points the agent at anything the node can reach (its own loopback services, the
cloud metadata address) — a blind SSRF whose pass/fail result is reported back in the pod's
status. The API validates the same fields by the same rules (:mod:`berth.api.probes`); the
node does not rely on that.

Rules (each refusal makes the probe fail with a clear reason, never sends anything):

* ``path``: starts with ``/``, printable ASCII without spaces (percent-encode the rest);
* header names are RFC 9110 tokens, values have no control characters other than tab;
* ``host``: an IP address or DNS name; it is resolved here once and the probe connects to that
  address (no second lookup to rebind). Loopback, link-local (cloud metadata),
  unspecified and multicast addresses are refused unless the pod shares the node's network
  (``hostNetwork``), where the pod's own address is the node's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from berth.api.probes import has_control_character, is_header_name, is_host_syntax, is_probe_path


class ProbeRefused(ValueError):
    """The probe's fields are not safe to send; the probe fails with this reason."""


def check_path(path: str) -> str:
    if not is_probe_path(path):
        raise ProbeRefused(
            f"httpGet path {path!r} must start with '/' and hold only printable ASCII without "
            "spaces (percent-encode the rest)"
        )
    return path


def check_headers(headers: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    out = []
    for header in headers:
        name, value = str(header.get("name", "")), str(header.get("value", ""))
        if not is_header_name(name):
            raise ProbeRefused(f"httpGet header name {name!r} is not an HTTP token")
        if has_control_character(value):
            raise ProbeRefused(f"httpGet header {name} has a control character (CR/LF) in it")
        out.append((name, value))
    return out


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for test, what in (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local (cloud metadata)"),
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
    ):
        if test:
            return what
    return ""


async def resolve_target(host: str, *, host_network: bool) -> str:
    """The address a probe of ``host`` connects to (see the module docstring)."""
    if not is_host_syntax(host):
        raise ProbeRefused(f"probe host {host!r} is neither an IP address nor a DNS name")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ProbeRefused(f"probe host {host!r} does not resolve: {exc}") from None
        address = ipaddress.ip_address(str(infos[0][4][0]))
    if not host_network:
        what = _forbidden(address)
        if what:
            raise ProbeRefused(
                f"probe host {host!r} is a {what} address of the node; a pod's probe may target "
                "it only with hostNetwork"
            )
    return str(address)
