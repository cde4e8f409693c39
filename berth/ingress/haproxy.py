"""Renders :class:`~berth.ingress.routes.Routes` as an HAProxy 2.6 configuration.

Request routing, per request:

1. the Host header (port cut, lowercased) picks a *host key* from ``hosts.map`` (``hN``, a
   precise host), else from ``wildcards.map`` by the host without its first label (``wN``: a
   wildcard matches one label, as the Ingress API says), else ``any`` for rules without a
   host; an unknown host gets none and falls to the default backend (404 unless an Ingress
   sets ``defaultBackend``);
2. ``<host key><path>`` is looked up in ``exact.map`` (Exact paths, and each Prefix path
   itself), then in ``prefix.map`` (``<host key><prefix>/`` entries; HAProxy's prefix tree
   finds the longest): the Prefix rule's element-wise match (``/foo`` matches ``/foo`` and
   ``/foo/x``, not ``/foobar``).

Every lookup is a tree lookup: the cost of a request does not grow with the number of hosts or
paths.

Injection: no hostname or path reaches the config text: they live in the map files, whose
lines are ``key value`` with keys checked again here (hosts: :func:`berth.api.ingress.is_host`,
``[a-z0-9.-]`` and a leading ``*.``; paths: RFC 3986 path characters, so no whitespace, quotes,
``#`` or ``\\``); backend and server names come from validated DNS labels and parsed IP
addresses; file paths are the controller's own. :func:`render` refuses (``ValueError``)
anything else rather than quoting it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass

from berth.api import ingress as ing

from .routes import Routes

NOT_FOUND_BACKEND = "be_default_404"
NOT_FOUND_BODY = "404 page not found"
"""What a request no rule routes gets (``berth verify`` looks for it)."""
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
_HOST_ONLY = re.compile(r"^(\*\.)?[a-z0-9.-]+$")


@dataclass(frozen=True)
class Files:
    """The files one configuration consists of (names relative to its directory)."""

    config: str
    hosts_map: str
    wildcards_map: str
    exact_map: str
    prefix_map: str
    crt_list: str
    certificates: dict[str, bytes]


@dataclass(frozen=True)
class Listen:
    address: str = ""
    http_port: int = 80
    https_port: int = 443


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"refusing to render the name {name!r}")
    return name


def _check_host(host: str) -> str:
    if not ing.is_host(host) or not _HOST_ONLY.match(host):
        raise ValueError(f"refusing to render the host {host!r}")
    return host


def _check_path(path: str) -> str:
    if not ing.safe_path(path):
        raise ValueError(f"refusing to render the path {path!r}")
    return path


def _check_dir(directory: str) -> str:
    if not re.match(r"^/[A-Za-z0-9_./-]*$", directory):
        raise ValueError(f"refusing to render the directory {directory!r}")
    return directory.rstrip("/")


def _bind(address: str, port: int) -> str:
    if address:
        ip = ipaddress.ip_address(address)  # ValueError for anything else
        host = f"[{ip}]" if ip.version == 6 else str(ip)
    else:
        host = ""
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    return f"{host}:{port}"


def cert_file_name(name: str) -> str:
    """A certificate's file name: a digest of its Secret's name (which may hold dots)."""
    return hashlib.sha256(name.encode()).hexdigest()[:32] + ".pem"


def render(
    routes: Routes,
    directory: str,
    *,
    listen: Listen,
    admin_socket: str,
    default_certificate: str,
    user: str | None = None,
) -> Files:
    """The configuration files for ``routes``, to live in ``directory`` (absolute)."""
    d = _check_dir(directory)
    _check_dir(admin_socket)
    _check_dir(default_certificate)
    hosts: dict[str, str] = {}
    wildcards: dict[str, str] = {}
    any_host = False
    exact: dict[str, str] = {}
    prefix: dict[str, str] = {}
    for r in routes.routes:
        backend = _check_name(r.backend)
        if not r.host:
            key = "any"
            any_host = True
        elif r.host.startswith("*."):
            key = wildcards.setdefault(_check_host(r.host), f"w{len(wildcards)}")
        else:
            key = hosts.setdefault(_check_host(r.host), f"h{len(hosts)}")
        path = _check_path(r.path)
        if r.kind == ing.EXACT:
            exact[key + path] = backend  # Exact wins over a Prefix of the same path
        else:
            trimmed = path.rstrip("/")
            exact.setdefault(key + (trimmed or "/"), backend)
            prefix.setdefault(key + trimmed + "/", backend)

    lines = [
        "# Written by berth's ingress controller; every change is replaced.",
        "global",
        f"    stats socket {admin_socket} mode 600 level admin expose-fd listeners",
        *([f"    user {_check_name(user)}", f"    group {_check_name(user)}"] if user else []),
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "    tune.ssl.default-dh-param 2048",
        "",
        "defaults",
        "    mode http",
        "    option forwardfor",
        "    option http-keep-alive",
        # a pod that went away before its EndpointSlice said so (a rollout): try another
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "    timeout connect 2s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout http-keep-alive 60s",
        "",
        "frontend ingress",
        f"    bind {_bind(listen.address, listen.http_port)}",
        f"    bind {_bind(listen.address, listen.https_port)} ssl"
        f" crt {default_certificate} crt-list {d}/certificates.list alpn http/1.1",
        "    http-request set-header X-Forwarded-Proto %[ssl_fc,iif(https,http)]",
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        # the host key: a precise host, else a wildcard by the host without its first label
        # (field 2 onwards: "x.w.test" -> "w.test", so a wildcard matches one label only),
        # else the rules without a host; two tree lookups whatever the number of hosts
        f"    http-request set-var(txn.hk) var(txn.host),map_str({d}/hosts.map)",
        "    http-request set-var(txn.hk) var(txn.host),field(2,.,0)"
        f",map_str({d}/wildcards.map) if !{{ var(txn.hk) -m found }}",
    ]
    if any_host:
        lines.append("    http-request set-var(txn.hk) str(any) if !{ var(txn.hk) -m found }")
    lines += [
        "    http-request set-var(txn.path) path",
        "    http-request set-var(txn.key) var(txn.hk),concat(,txn.path,)"
        " if { var(txn.hk) -m found }",
        # one lookup each: the exact map, then the longest prefix (a prefix tree)
        f"    http-request set-var(txn.be) var(txn.key),map_str({d}/exact.map)"
        " if { var(txn.key) -m found }",
        f"    http-request set-var(txn.be) var(txn.key),map_beg({d}/prefix.map)"
        " if { var(txn.key) -m found } !{ var(txn.be) -m found }",
        "    use_backend %[var(txn.be)] if { var(txn.be) -m found }",
        f"    default_backend {_check_name(routes.default_backend or NOT_FOUND_BACKEND)}",
        "",
        f"backend {NOT_FOUND_BACKEND}",
        f'    http-request return status 404 content-type text/plain string "{NOT_FOUND_BODY}"',
    ]
    for be in sorted(routes.backends.values(), key=lambda b: b.name):
        lines += ["", f"backend {_check_name(be.name)}", "    balance roundrobin"]
        if not be.servers:
            lines.append(
                '    http-request return status 503 content-type text/plain string "no endpoints"'
            )
        for i, (ip, port) in enumerate(be.servers):
            lines.append(f"    server s{i} {_bind(ip, port)}")
    certificates: dict[str, bytes] = {}
    crt_lines = []
    for cert in routes.certificates:
        file = cert_file_name(cert.name)
        certificates[file] = cert.pem
        filters = " ".join(_check_host(h) for h in cert.hosts)
        crt_lines.append(f"{d}/{file} {filters}")

    def map_text(entries: dict[str, str]) -> str:
        ordered = sorted(entries.items(), key=lambda kv: (-len(kv[0]), kv[0]))
        return "".join(f"{_check_path('/' + k)[1:]} {v}\n" for k, v in ordered)

    return Files(
        config="\n".join(lines) + "\n",
        hosts_map="".join(f"{_check_host(h)} {k}\n" for h, k in hosts.items()),
        wildcards_map="".join(f"{_check_host(h)[2:]} {k}\n" for h, k in wildcards.items()),
        exact_map=map_text(exact),
        prefix_map=map_text(prefix),
        crt_list="".join(line + "\n" for line in crt_lines),
        certificates=certificates,
    )
