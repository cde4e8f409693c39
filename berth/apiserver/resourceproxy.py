"""``nodes/proxy`` and ``services/proxy``: HTTP requests the API server forwards, as
``kubectl proxy`` users and ``kubectl get --raw`` expect.

* ``/api/v1/nodes/NAME/proxy/PATH`` goes to the node agent's API (``/healthz``,
  ``/metrics``, ``/stats/summary``, ...) at the address and port the Node registered, over
  mTLS with the API server's agent-client identity, the agent's certificate checked for the
  node's name. The agent trusts that identity with everything, so the API server authorizes
  the user itself: ``nodes/proxy`` with the request's verb (only admins hold it by default).
* ``/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH`` goes to a ready
  endpoint of the Service (its EndpointSlices; PORT a port name or number of the Service),
  authorized as ``services/proxy``.
* ``/api/v1/namespaces/NS/pods/[SCHEME:]NAME[:PORT]/proxy/PATH`` goes to the pod's own IP
  (``status.podIPs[0]``), PORT a number or the name of one of its containers' ports, by
  default the first declared port (upstream's rule), authorized as ``pods/proxy``. A pod on
  the host network shares the node's IP, so only the ports it declares are reached (upstream
  reaches any: every service of the node).

SCHEME is ``http`` (the default) or ``https``. As kube-apiserver does, an https backend's
certificate is not verified (pods and endpoints are dialled by IP: no name to check it
against) and the API server presents no client certificate: its identities are for the
agents, never for workloads. The PATH is decoded and sent re-encoded as upstream does (so a
client that percent-encodes ``/``, as the Python client does, reaches the same path), and a
redirect to the backend itself is rewritten to go through the proxy again (browsing through
``kubectl proxy`` keeps working); a redirect elsewhere is passed on untouched.

What is forwarded is attacker input, and the answer is a backend's: only the endpoint
addresses of that Service (never loopback, link-local, unspecified or multicast ones a
hand-written EndpointSlice could name), the pod's own IP (same rule) or the node's registered
address are dialled;
redirects are returned to the client, never followed; the user's credentials, impersonation
and hop-by-hop headers are not forwarded; bodies are bounded both ways; no protocol upgrade.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
import ssl
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from berth.api.meta import Obj, get_path
from berth.api.resources import ENDPOINTSLICES
from berth.api.selectors import parse_label_selector
from berth.apiserver import proxyhtml
from berth.apiserver.errors import ApiError, bad_request
from berth.apiserver.handlers import Call, Endpoint, Handler
from berth.apiserver.logs import agent_address, agent_ssl_context
from berth.apiserver.options import ListOptions

if TYPE_CHECKING:
    from berth.apiserver.app import ApiServer

MAX_REQUEST_BODY = 10 << 20
MAX_RESPONSE_BODY = 256 << 20
CONNECT_SECONDS = 10.0
TOTAL_SECONDS = 120.0
CHUNK = 64 * 1024
VERBS = {
    "GET": "get",
    "HEAD": "get",
    "OPTIONS": "get",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}
# Never forwarded: hop-by-hop headers (RFC 9110 7.6.1), what only concerns the API server
# (the user's credentials, impersonation) and what would misstate the forwarded body.
_DROP_REQUEST = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "authorization",
        "cookie", "x-remote-user", "x-remote-group", "expect",
    }
)  # fmt: skip
_DROP_RESPONSE = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-connection", "te", "trailer",
        "transfer-encoding", "upgrade", "content-length", "content-encoding",
    }
)  # fmt: skip


def verb_of(method: str) -> str:
    verb = VERBS.get(method.upper())
    if verb is None:
        raise ApiError(405, "MethodNotAllowed", f"the proxy does not forward {method}")
    return verb


# What stays unescaped when the decoded path is encoded again (RFC 3986 pchar and "/").
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def remainder(request: web.Request, proxy_index: int) -> tuple[str, str]:
    """(path after the ``proxy`` segment, encoded for the backend; ``?query`` as the client
    sent it, or ""). The path is decoded first, as upstream's proxy does."""
    raw = request.raw_path
    path, sep, query = raw.partition("?")
    segments = path.split("/")
    if len(segments) <= proxy_index or segments[proxy_index] != "proxy":
        raise bad_request("malformed proxy path")
    encoded = "/".join(segments[proxy_index + 1 :])
    if _BAD_ESCAPE.search(encoded):
        raise bad_request("the proxied path holds an invalid escape")
    try:
        rest = "/" + unquote(encoded, errors="strict")
    except UnicodeDecodeError as exc:
        raise bad_request("the proxied path is not UTF-8") from exc
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in rest + query):
        raise bad_request("the proxied path holds control characters")
    return quote(rest, safe=_PATH_SAFE), (sep + query if query else "")


SCHEMES = ("", "http", "https")


def parse_target(text: str, what: str = "service") -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` as in the URL; (scheme, name, port). Upstream's rules: at
    most three parts, a non-empty name, the scheme http or https."""
    parts = text.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, name, port = "", parts[0], parts[1]
    elif len(parts) == 3:
        scheme, name, port = parts[0], parts[1], parts[2]
    else:
        raise bad_request(f"invalid {what} request {text!r}")
    if not name or scheme not in SCHEMES:
        raise bad_request(f"invalid {what} request {text!r}")
    return scheme, name, port


def parse_service_name(text: str) -> tuple[str, str, str]:
    return parse_target(text, "service")


def proxyable(address: str) -> bool:
    """Whether an endpoint address may be dialled: an IP that is not loopback, link-local,
    unspecified or multicast (those would reach the API server's own host, or the cloud's
    metadata service, through an EndpointSlice a tenant wrote by hand)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


def _port_number(text: str) -> int | None:
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    number = int(text)
    return number if 0 < number < 65536 else None


def pod_target(pod: Obj, scheme: str, port: str) -> tuple[str, int]:
    """The pod's own IP and the port ``port`` names: a number, a container port's name, or
    (empty) the first port a container declares, else the scheme's default port."""
    name = str(get_path(pod, "metadata", "name"))
    declared = [
        p
        for c in get_path(pod, "spec", "containers") or []
        if isinstance(c, dict)
        for p in c.get("ports") or []
        if isinstance(p, dict) and isinstance(p.get("containerPort"), int)
    ]
    if not port:
        number: int | None = declared[0]["containerPort"] if declared else None
        if number is None:
            number = 443 if scheme == "https" else 80
    else:
        number = _port_number(port)
        if number is None:
            number = next(
                (p["containerPort"] for p in declared if str(p.get("name") or "") == port), None
            )
            if number is None:
                raise bad_request(f'pod "{name}" has no port named "{port}"')
    if not 0 < number < 65536:
        raise bad_request(f'pod "{name}" declares an invalid port {number}')
    if get_path(pod, "spec", "hostNetwork") and all(p["containerPort"] != number for p in declared):
        # Its IP is the node's: any other port would be some other service of the node's.
        raise bad_request(
            f'pod "{name}" uses the host network: only the ports it declares can be proxied'
        )
    ips = get_path(pod, "status", "podIPs") or []
    first = ips[0].get("ip") if ips and isinstance(ips[0], dict) else None
    first = first or get_path(pod, "status", "podIP")
    if not isinstance(first, str) or not first:
        raise bad_request(f'pod "{name}" has no IP address yet')
    if not proxyable(first):
        raise bad_request("address not allowed")
    return first, number


async def service_target(server: ApiServer, ns: str, service: Obj, port: str) -> tuple[str, int]:
    """A ready endpoint of ``service`` for the Service port named or numbered ``port``."""
    name = str(get_path(service, "metadata", "name"))
    ports = [p for p in get_path(service, "spec", "ports") or [] if isinstance(p, dict)]
    wanted: dict[str, object] | None = None
    if port:
        wanted = next(
            (p for p in ports if str(p.get("name") or "") == port or str(p.get("port")) == port),
            None,
        )
    elif len(ports) == 1 or any(not p.get("name") for p in ports):
        wanted = next((p for p in ports if not p.get("name")), ports[0] if ports else None)
    if wanted is None:
        raise ApiError(
            503, "ServiceUnavailable", f'no endpoints available for service "{name}:{port}"'
        )
    port_name = str(wanted.get("name") or "")
    rd = server.table.lookup(ENDPOINTSLICES.group, ENDPOINTSLICES.version, ENDPOINTSLICES.plural)
    assert rd is not None
    opts = ListOptions(label=parse_label_selector(f"kubernetes.io/service-name={name}"))
    page = await server.registry.list_objects(rd, ns, opts)
    candidates: list[tuple[str, int]] = []
    for eps in page.items:
        slice_port = next(
            (
                p.get("port")
                for p in eps.get("ports") or []
                if isinstance(p, dict) and str(p.get("name") or "") == port_name
            ),
            None,
        )
        if not isinstance(slice_port, int) or not 0 < slice_port < 65536:
            continue
        for ep in eps.get("endpoints") or []:
            if not isinstance(ep, dict):
                continue
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for address in ep.get("addresses") or []:
                if isinstance(address, str) and proxyable(address):
                    candidates.append((address, slice_port))
    if not candidates:
        raise ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
    return random.choice(candidates)  # noqa: S311 - spreading load, not a secret


def _connection_options(headers: CIMultiDictProxy[str]) -> frozenset[str]:
    """The header names a message's ``Connection`` fields list: hop-by-hop for this message
    alone, so a proxy drops them (RFC 9110 7.6.1), as Go's ReverseProxy does for upstream."""
    return frozenset(
        option.strip().lower()
        for value in headers.getall("Connection", [])
        for option in value.split(",")
        if option.strip()
    )


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    listed = _connection_options(request.headers)
    for key, value in request.headers.items():
        lower = key.lower()
        if lower in _DROP_REQUEST or lower in listed or lower.startswith("impersonate-"):
            continue
        out.add(key, value)
    return out


async def _read_body(request: web.Request) -> bytes | None:
    if request.method in ("GET", "HEAD", "OPTIONS") and not request.can_read_body:
        return None
    if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
        raise ApiError(413, "RequestEntityTooLarge", "the proxied request body is too large")
    body = bytearray()
    async for chunk in request.content.iter_chunked(CHUNK):
        body += chunk
        if len(body) > MAX_REQUEST_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "the proxied request body is too large")
    return bytes(body)


@functools.cache
def backend_tls() -> ssl.SSLContext:
    """TLS towards an https pod or endpoint: encrypted, unverified (dialled by IP, as
    kube-apiserver does), and without any client certificate of the API server's."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def rewrite_location(location: str, backend: URL, prefix: str) -> str:
    """A redirect to the backend itself (an absolute path, or its own scheme://host:port)
    goes through the proxy again: ``prefix`` + path; anything else is passed on as is, for
    the client to follow or not (upstream's rule)."""
    try:
        target = URL(location, encoded=True)
    except ValueError:
        return location
    if target.is_absolute():
        if (target.host, target.explicit_port or target.port) != (backend.host, backend.port):
            return location
    elif not target.raw_path.startswith("/") or location.startswith("//"):
        return location
    path = target.raw_path
    if not path.startswith(prefix + "/") and path != prefix:
        path = prefix + path
    query = f"?{target.raw_query_string}" if target.raw_query_string else ""
    fragment = f"#{target.raw_fragment}" if target.raw_fragment else ""
    return path + query + fragment


def proxy_prefix(request: web.Request, proxy_index: int) -> str:
    """The request's path up to and including its ``proxy`` segment."""
    return "/".join(request.raw_path.partition("?")[0].split("/")[: proxy_index + 1])


async def forward(
    request: web.Request,
    url: URL,
    *,
    ssl: object = False,
    server_hostname: str | None = None,
    prefix: str | None = None,
) -> web.StreamResponse:
    """Send the request to ``url`` and stream the answer back (bounded). With ``prefix``,
    a redirect to the backend itself is rewritten to go through the proxy."""
    if request.headers.get("Upgrade"):
        raise bad_request("the proxy does not upgrade connections")
    body = await _read_body(request)
    timeout = aiohttp.ClientTimeout(total=TOTAL_SECONDS, sock_connect=CONNECT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as session:
        try:
            upstream = await session.request(
                request.method,
                url,
                headers=_forward_headers(request),
                data=body,
                allow_redirects=False,
                ssl=ssl,  # type: ignore[arg-type]
                server_hostname=server_hostname,
                max_line_size=16 * 1024,
                max_field_size=16 * 1024,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ApiError(
                502, "InternalError", f"the proxied server's certificate is not valid: {exc}"
            ) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ApiError(
                503,
                "ServiceUnavailable",
                f"error trying to reach the proxied server: {exc.__class__.__name__}",
            ) from exc
        async with upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            listed = _connection_options(upstream.headers)
            for key, value in upstream.headers.items():
                if key.lower() not in _DROP_RESPONSE and key.lower() not in listed:
                    response.headers.add(key, value)
            if "Content-Encoding" in upstream.headers:
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            location = upstream.headers.get("Location")
            if prefix is not None and location:
                response.headers["Location"] = rewrite_location(location, url, prefix)
            await response.prepare(request)
            sent = 0
            if prefix is not None and proxyhtml.is_rewritable(upstream.headers):
                page = await _read_up_to(upstream, proxyhtml.MAX_HTML)
                sent = len(page)
                if sent <= proxyhtml.MAX_HTML:  # whole: links to the backend stay proxied
                    page = proxyhtml.rewrite(page, url, prefix)
                await response.write(page)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                sent += len(chunk)
                if sent > MAX_RESPONSE_BODY:
                    break  # cut off: the client sees a short body
                await response.write(chunk)
            await response.write_eof()
            return response


async def _read_up_to(upstream: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body's first bytes: all of it when it holds at most ``limit`` bytes, else a bit
    more than ``limit`` (the rest is still to be read)."""
    page = bytearray()
    async for chunk in upstream.content.iter_chunked(CHUNK):
        page += chunk
        if len(page) > limit:
            break
    return bytes(page)


async def serve_node_proxy(
    server: ApiServer, request: web.Request, node_name: str
) -> web.StreamResponse:
    host, port = await agent_address(server, node_name)
    if server._agent_ssl is None:
        server._agent_ssl = agent_ssl_context(server)
    path, query = remainder(request, 5)
    url = URL(f"https://{_host(host)}:{port}{path}{query}", encoded=True)
    return await forward(request, url, ssl=server._agent_ssl, server_hostname=node_name)


async def _to_workload(
    request: web.Request, scheme: str, address: str, port: int
) -> web.StreamResponse:
    """Forward a services/pods proxy request (its ``proxy`` segment is the 7th) to
    ``address``:``port``, the only host it may reach."""
    path, query = remainder(request, 7)
    scheme = scheme or "http"
    url = URL(f"{scheme}://{_host(address)}:{port}{path}{query}", encoded=True)
    tls: object = backend_tls() if scheme == "https" else False
    return await forward(request, url, ssl=tls, prefix=proxy_prefix(request, 7))


async def serve_service_proxy(
    server: ApiServer, request: web.Request, service: Obj, *, scheme: str, port: str
) -> web.StreamResponse:
    ns = str(get_path(service, "metadata", "namespace"))
    address, target_port = await service_target(server, ns, service, port)
    return await _to_workload(request, scheme, address, target_port)


async def serve_pod_proxy(
    request: web.Request, pod: Obj, *, scheme: str, port: str
) -> web.StreamResponse:
    address, target_port = pod_target(pod, scheme, port)
    return await _to_workload(request, scheme, address, target_port)


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


# -- discovery ----------------------------------------------------------------------------------
# The app routes every proxy path to the functions above before a body is read (see
# ApiServer._proxy); these entries list the subresources in discovery as kube-apiserver does,
# and serve the same way should a request ever reach them through the dispatch table.

PROXY_VERBS = ("create", "delete", "get", "patch", "update")


async def _node_handler(server: ApiServer, call: Call) -> web.StreamResponse:
    return await serve_node_proxy(server, call.request, call.route.name)


async def _service_handler(server: ApiServer, call: Call) -> web.StreamResponse:
    scheme, name, port = parse_service_name(call.route.name)
    service = await server.registry.get(call.route.rd, call.route.namespace, name)
    return await serve_service_proxy(server, call.request, service, scheme=scheme, port=port)


async def _pod_handler(server: ApiServer, call: Call) -> web.StreamResponse:
    scheme, name, port = parse_target(call.route.name, "pod")
    pod = await server.registry.get(call.route.rd, call.route.namespace, name)
    return await serve_pod_proxy(call.request, pod, scheme=scheme, port=port)


def _endpoints(handler: Handler, kind: str) -> dict[tuple[str, str], Endpoint]:
    endpoint = Endpoint(handler, metric_subresource=True, kind=("", "", kind), connect=True)
    return {(verb, "proxy"): endpoint for verb in PROXY_VERBS}


NODE_PROXY = _endpoints(_node_handler, "NodeProxyOptions")
SERVICE_PROXY = _endpoints(_service_handler, "ServiceProxyOptions")
POD_PROXY = _endpoints(_pod_handler, "PodProxyOptions")
