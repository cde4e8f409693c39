"""Answering ``GET /openapi/v2``, ``/openapi/v3`` and ``/openapi/v3/<api|apis/...>``.

Content negotiation as kube-apiserver: ``/openapi/v2`` answers the gnostic protobuf when the
``Accept`` header names it (kubectl 1.20), JSON otherwise; the v3 documents are JSON. Every
answer carries an ``ETag`` (its content hash) and ``If-None-Match`` with the current one is
a ``304``. A v3 document asked for with the ``hash`` its discovery listed is immutable
(``Cache-Control: public, immutable``); a stale hash is redirected to the current URL.
"""

from __future__ import annotations

from aiohttp import web

from berth.api.resources import ResourceTable
from berth.apiserver import discovery

from .documents import Documents, GroupVersionEntries, Rendered

V2_PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
"""The media type of the answer. Clients also ask with upstream's older spelling (``@v1.0``),
which Go's ``mime`` package cannot parse in a Content-Type: answered with this one."""
V2_PROTOBUF_ACCEPTED = (V2_PROTOBUF, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
V3_PROTOBUF = "application/com.github.proto-openapi.spec.v3@v1.0+protobuf"
JSON = "application/json"


class NotServed(Exception):
    """The path names no OpenAPI document (the caller answers 404)."""


class NotAcceptable(Exception):
    """The client accepts none of the forms the document is served in."""


def discovery_groups(table: ResourceTable) -> list[GroupVersionEntries]:
    """Every served group-version with its discovery entries: what the documents describe."""
    out: list[GroupVersionEntries] = []
    for group, versions in table.group_versions().items():
        for version in versions:
            listed = discovery.resource_list(table, group, version)
            if listed is not None:
                out.append((group, version, listed["resources"]))
    return out


def _accepts(accept: str, media: tuple[str, ...]) -> bool:
    wanted = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    return any(m in wanted for m in media)


def _answer(request: web.Request, doc: Rendered, content_type: str, *, cache: str) -> web.Response:
    headers = {"ETag": doc.etag, "Cache-Control": cache, "Vary": "Accept"}
    if request.headers.get("If-None-Match") == doc.etag:
        return web.Response(status=304, headers=headers)
    body = b"" if request.method == "HEAD" else doc.body
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def serve(request: web.Request, parts: list[str], documents: Documents) -> web.StreamResponse:
    """The answer for ``/openapi/...`` (``parts``: the path's segments)."""
    accept = request.headers.get("Accept", "")
    if parts == ["openapi", "v2"]:
        if _accepts(accept, V2_PROTOBUF_ACCEPTED):
            return _answer(request, documents.v2_protobuf(), V2_PROTOBUF, cache="no-cache")
        return _answer(request, documents.v2, JSON, cache="no-cache")
    if parts[:2] != ["openapi", "v3"]:
        raise NotServed
    if _accepts(accept, (V3_PROTOBUF,)) and not _accepts(accept, (JSON, "*/*", "application/*")):
        raise NotAcceptable
    if len(parts) == 2:
        return _answer(request, documents.v3_discovery, JSON, cache="no-cache")
    key = "/".join(parts[2:])
    doc = documents.v3.get(key)
    if doc is None:
        raise NotServed
    asked = request.query.get("hash")
    if asked is None:
        return _answer(request, doc, JSON, cache="no-cache")
    if asked != doc.hash:
        location = f"/openapi/v3/{key}?hash={doc.hash}"
        return web.Response(status=301, headers={"Location": location, "Cache-Control": "no-cache"})
    return _answer(request, doc, JSON, cache="public, immutable")
