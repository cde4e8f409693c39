"""``nodes/proxy`` and ``services/proxy``: HTTP requests the API server forwards, as
``kubectl proxy`` users and ``kubectl get --raw`` expect.

* ``/api/v1/nodes/NAME/proxy/PATH`` goes to the node agent's API (``/healthz``,
  ``/metrics``, ``/stats/summary``, ...) at the address and port the Node registered, over
  mTLS with the API server's agent-client identity, the agent's certificate checked for the
  node's name. The agent trusts that identity with everything, so the API server authorizes
  the user itself: ``nodes/proxy`` with the request's verb (only admins hold it by default).
* ``/api/v1/namespaces/NS/services/[http:]NAME[:PORT]/proxy/PATH`` goes over plain HTTP to a
  ready endpoint of the Service (its EndpointSlices; PORT a port name or number of the
  Service), authorized as ``services/proxy``.

What is forwarded is attacker input, and the answer is a backend's: only the endpoint
addresses of that Service (never loopback, link-local, unspecified or multicast ones a
hand-written EndpointSlice could name) or the node's registered address are dialled;
redirects are returned to the client, never followed; the user's credentials, impersonation
and hop-by-hop headers are not forwarded; bodies are bounded both ways; no protocol upgrade.
"""

from __future__ import annotations

import ipaddress
import random
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from berth.api.meta import Obj, get_path
from berth.api.resources import ENDPOINTSLICES
from berth.api.selectors import parse_label_selector
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


def remainder(request: web.Request, proxy_index: int) -> str:
    """The path after the ``proxy`` segment (as the client encoded it), with the query."""
    raw = request.raw_path
    path, sep, query = raw.partition("?")
    segments = path.split("/")
    if len(segments) <= proxy_index or segments[proxy_index] != "proxy":
        raise bad_request("malformed proxy path")
    rest = "/" + "/".join(segments[proxy_index + 1 :])
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in rest + query):
        raise bad_request("the proxied path holds control characters")
    return rest + (sep + query if query else "")


def parse_service_name(text: str) -> tuple[str, str, str]:
    """``[scheme:]name[:port]`` as in the URL; (scheme, name, port)."""
    parts = text.split(":")
    if len(parts) == 1:
        return "", parts[0], ""
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise bad_request(f"invalid service request {text!r}")


def proxyable(address: str) -> bool:
    """Whether an endpoint address may be dialled: an IP that is not loopback, link-local,
    unspecified or multicast (those would reach the API server's own host, or the cloud's
    metadata service, through an EndpointSlice a tenant wrote by hand)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast)


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


def _forward_headers(request: web.Request) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in request.headers.items():
        lower = key.lower()
        if lower in _DROP_REQUEST or lower.startswith("impersonate-"):
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


async def forward(
    request: web.Request,
    url: URL,
    *,
    ssl: object = False,
    server_hostname: str | None = None,
) -> web.StreamResponse:
    """Send the request to ``url`` and stream the answer back (bounded)."""
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
            for key, value in upstream.headers.items():
                if key.lower() not in _DROP_RESPONSE:
                    response.headers.add(key, value)
            if "Content-Encoding" in upstream.headers:
                response.headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
            await response.prepare(request)
            sent = 0
            async for chunk in upstream.content.iter_chunked(CHUNK):
                sent += len(chunk)
                if sent > MAX_RESPONSE_BODY:
                    break  # cut off: the client sees a short body
                await response.write(chunk)
            await response.write_eof()
            return response


async def serve_node_proxy(
    server: ApiServer, request: web.Request, node_name: str
) -> web.StreamResponse:
    host, port = await agent_address(server, node_name)
    if server._agent_ssl is None:
        server._agent_ssl = agent_ssl_context(server)
    rest = remainder(request, 5)
    url = URL(f"https://{_host(host)}:{port}{rest}", encoded=True)
    return await forward(request, url, ssl=server._agent_ssl, server_hostname=node_name)


async def serve_service_proxy(
    server: ApiServer, request: web.Request, service: Obj, *, scheme: str, port: str
) -> web.StreamResponse:
    if scheme not in ("", "http"):
        raise bad_request(f"the service proxy speaks http only, not {scheme!r}")
    ns = str(get_path(service, "metadata", "namespace"))
    address, target_port = await service_target(server, ns, service, port)
    rest = remainder(request, 7)
    url = URL(f"http://{_host(address)}:{target_port}{rest}", encoded=True)
    return await forward(request, url)


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


def _endpoints(handler: Handler, kind: str) -> dict[tuple[str, str], Endpoint]:
    endpoint = Endpoint(handler, metric_subresource=True, kind=("", "", kind), connect=True)
    return {(verb, "proxy"): endpoint for verb in PROXY_VERBS}


NODE_PROXY = _endpoints(_node_handler, "NodeProxyOptions")
SERVICE_PROXY = _endpoints(_service_handler, "ServiceProxyOptions")
