"""The OpenAPI documents the server publishes, built from what it serves and cached.

- ``/openapi/v2``: one Swagger 2.0 document of every served resource (JSON, or the gnostic
  protobuf kubectl 1.20 asks for, :mod:`.protobuf_v2`);
- ``/openapi/v3``: the list of group-versions, each with the URL of its document carrying a
  content hash (clients cache by it);
- ``/openapi/v3/api/v1``, ``/openapi/v3/apis/<group>/<version>``: one OpenAPI 3.0 document per
  group-version.

The documents hold the operations of every resource discovery announces (:mod:`.paths`) and
the definitions those reach: upstream's for built-in kinds (:mod:`.definitions`), each
custom resource's ``openAPIV3Schema`` for CRDs. :class:`OpenApi` builds them on the first
request after the served resources change (the discovery lists and the CRD generation are
the cache key, computed per request in microseconds), never on the write path.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from berth.api.resources import ResourceDef

from . import paths, schemas
from .definitions import KUBERNETES_VERSION, load_definitions
from .paths import STRING_RESPONSE, Operation, PathItem
from .protobuf_v2 import encode_document

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
ALWAYS_DEFINED = (
    paths.STATUS_DEFINITION,
    paths.PATCH_DEFINITION,
    paths.DELETE_OPTIONS_DEFINITION,
    "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
    "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList",
)
PRODUCES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
INFO = {"title": "Kubernetes", "version": KUBERNETES_VERSION}

GroupVersionEntries = tuple[str, str, list[dict[str, Any]]]
"""(group, version, the discovery ``resources`` of that group-version)."""


class CrdSchemas(Protocol):
    """What the CRD registry offers (``ApiServer.crd_schemas``): each served custom
    resource version with its ``openAPIV3Schema``, and a counter bumped on every change."""

    generation: int

    def served(self) -> Iterable[tuple[ResourceDef, dict[str, Any]]]: ...


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """``com.example.stable.v1.CronTab`` for ``stable.example.com/v1`` ``CronTab``, upstream's
    naming of custom resource definitions (the group reversed, as Java packages)."""
    return ".".join([*reversed(group.split(".")), version, kind])


_V2_DROPPED = frozenset({"nullable", "anyOf", "oneOf", "allOf", "not"})


def _crd_v2(node: Any) -> Any:
    """A structural schema in the form Swagger 2.0 readers accept: no ``nullable`` and no
    logical junctors (2.0 has neither), no type on int-or-string fields."""
    if isinstance(node, list):
        return [_crd_v2(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _V2_DROPPED:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _crd_v2(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _crd_v2(value)
        else:
            out[key] = value
    if out.get("x-kubernetes-int-or-string") is True:
        out.pop("type", None)
    return out


def crd_schema(rd: ResourceDef, schema: Mapping[str, Any], *, v3: bool) -> dict[str, Any]:
    """The definition of a custom resource: its ``openAPIV3Schema`` with the type fields and
    ``metadata`` declared and the group-version-kind named."""
    body: dict[str, Any] = dict(schema) if v3 else _crd_v2(dict(schema))
    ref = (schemas.V3_REF if v3 else schemas.V2_REF) + OBJECT_META
    props = dict(body.get("properties") or {})
    props.setdefault("apiVersion", {"type": "string", "description": "The object's apiVersion."})
    props.setdefault("kind", {"type": "string", "description": "The object's kind."})
    props["metadata"] = {"allOf": [{"$ref": ref}]} if v3 else {"$ref": ref}
    body["properties"] = props
    body.setdefault("type", "object")
    body[schemas.GVK_EXTENSION] = [{"group": rd.group, "kind": rd.kind, "version": rd.version}]
    return body


def crd_list_schema(rd: ResourceDef, item: str, *, v3: bool) -> dict[str, Any]:
    prefix = schemas.V3_REF if v3 else schemas.V2_REF
    meta: dict[str, Any] = {"$ref": prefix + LIST_META}
    return {
        "description": f"A list of {rd.kind}.",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": prefix + item}},
            "metadata": {"allOf": [meta]} if v3 else meta,
        },
        schemas.GVK_EXTENSION: [
            {"group": rd.group, "kind": rd.list_kind_name, "version": rd.version}
        ],
    }


@dataclass
class _Catalog:
    """Every definition name known: built-ins by GVK, plus the served custom resources."""

    defs: Mapping[str, Any]
    by_gvk: dict[schemas.GVK, str]
    crds: dict[str, tuple[ResourceDef, dict[str, Any] | None]] = field(default_factory=dict)

    def resolve(self, gvk: schemas.GVK) -> str | None:
        return self.by_gvk.get(gvk)

    def add_crd(self, rd: ResourceDef, schema: dict[str, Any]) -> None:
        name = crd_definition_name(rd.group, rd.version, rd.kind)
        list_name = crd_definition_name(rd.group, rd.version, rd.list_kind_name)
        self.crds[name] = (rd, schema)
        self.crds[list_name] = (rd, None)
        self.by_gvk[(rd.group, rd.version, rd.kind)] = name
        self.by_gvk[(rd.group, rd.version, rd.list_kind_name)] = list_name

    def closure(self, roots: Iterable[str]) -> list[str]:
        builtin_roots = set(ALWAYS_DEFINED)
        custom: set[str] = set()
        for root in roots:
            if root in self.crds:
                custom.add(root)
            else:
                builtin_roots.add(root)
        if custom:  # custom resources refer to ObjectMeta / ListMeta
            builtin_roots |= {OBJECT_META, LIST_META}
        return sorted(custom) + schemas.closure(self.defs, builtin_roots)

    def render(self, name: str, *, v3: bool) -> dict[str, Any]:
        custom = self.crds.get(name)
        if custom is None:
            return schemas.convert(name, self.defs[name], v3=v3)
        rd, schema = custom
        if schema is None:
            item = crd_definition_name(rd.group, rd.version, rd.kind)
            return crd_list_schema(rd, item, v3=v3)
        return crd_schema(rd, schema, v3=v3)


def _roots(items: Iterable[PathItem]) -> set[str]:
    out: set[str] = set()
    for item in items:
        for op in item.operations:
            out.update(d for d in (op.body, op.response) if d and d != STRING_RESPONSE)
    return out


def _gvk(op: Operation) -> dict[str, str]:
    group, version, kind = op.gvk
    return {"group": group, "kind": kind, "version": version}


# -- Swagger 2.0 ------------------------------------------------------------------------------


def _v2_param(param: paths.Param) -> dict[str, Any]:
    name, where, kind, description = param
    out: dict[str, Any] = {"name": name, "in": where, "type": kind, "description": description}
    if where == "path":
        out["required"] = True
    if kind == "string" and where == "query":
        out["uniqueItems"] = True
    return out


def _v2_schema(definition: str) -> dict[str, Any]:
    if definition == STRING_RESPONSE:
        return {"type": "string"}
    return {"$ref": schemas.V2_REF + definition}


def _v2_operation(op: Operation) -> dict[str, Any]:
    params: list[dict[str, Any]] = [_v2_param(p) for p in op.params]
    if op.body:
        params.insert(
            0,
            {
                "name": "body",
                "in": "body",
                "required": op.method != "delete",
                "schema": _v2_schema(op.body),
            },
        )
    ok: dict[str, Any] = {"description": "OK"}
    if op.response:
        ok["schema"] = _v2_schema(op.response)
    responses: dict[str, Any] = {"200": ok, "401": {"description": "Unauthorized"}}
    if op.method in ("post", "put"):
        responses["201"] = {**ok, "description": "Created"}
    return {
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.operation_id,
        "consumes": list(op.consumes),
        "produces": ["text/plain"] if op.response == STRING_RESPONSE else list(PRODUCES),
        "schemes": ["https"],
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": op.action,
        "x-kubernetes-group-version-kind": _gvk(op),
    }


def build_v2(catalog: _Catalog, groups: Iterable[GroupVersionEntries]) -> dict[str, Any]:
    items: list[PathItem] = []
    for group, version, entries in groups:
        items += paths.group_version_paths(group, version, entries, catalog.resolve)
    doc_paths: dict[str, Any] = {}
    for item in items:
        rendered: dict[str, Any] = {op.method: _v2_operation(op) for op in item.operations}
        rendered["parameters"] = [_v2_param(p) for p in item.params]
        doc_paths[item.path] = rendered
    definitions = {n: catalog.render(n, v3=False) for n in catalog.closure(_roots(items))}
    return {"swagger": "2.0", "info": dict(INFO), "paths": doc_paths, "definitions": definitions}


# -- OpenAPI 3.0 ------------------------------------------------------------------------------


def _v3_param(param: paths.Param) -> dict[str, Any]:
    name, where, kind, description = param
    schema: dict[str, Any] = {"type": kind}
    if kind == "string" and where == "query":
        schema["uniqueItems"] = True
    out: dict[str, Any] = {"name": name, "in": where, "description": description}
    if where == "path":
        out["required"] = True
    out["schema"] = schema
    return out


def _v3_schema(definition: str) -> dict[str, Any]:
    if definition == STRING_RESPONSE:
        return {"type": "string"}
    return {"$ref": schemas.V3_REF + definition}


def _v3_operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.operation_id,
    }
    if op.params:
        out["parameters"] = [_v3_param(p) for p in op.params]
    if op.body:
        schema = _v3_schema(op.body)
        out["requestBody"] = {
            "content": {ctype: {"schema": schema} for ctype in op.consumes},
            "required": op.method != "delete",
        }
    ok: dict[str, Any] = {"description": "OK"}
    if op.response:
        schema = _v3_schema(op.response)
        produces = ("text/plain",) if op.response == STRING_RESPONSE else PRODUCES
        ok["content"] = {ctype: {"schema": schema} for ctype in produces}
    responses: dict[str, Any] = {"200": ok, "401": {"description": "Unauthorized"}}
    if op.method in ("post", "put"):
        responses["201"] = {**ok, "description": "Created"}
    out["responses"] = responses
    out["x-kubernetes-action"] = op.action
    out["x-kubernetes-group-version-kind"] = _gvk(op)
    return out


SECURITY_SCHEMES = {
    "BearerToken": {
        "type": "apiKey",
        "description": "A bearer token in the Authorization header.",
        "name": "authorization",
        "in": "header",
    }
}


def build_v3(
    catalog: _Catalog, group: str, version: str, entries: list[dict[str, Any]]
) -> dict[str, Any]:
    items = paths.group_version_paths(group, version, entries, catalog.resolve)
    doc_paths: dict[str, Any] = {}
    for item in items:
        rendered: dict[str, Any] = {op.method: _v3_operation(op) for op in item.operations}
        rendered["parameters"] = [_v3_param(p) for p in item.params]
        doc_paths[item.path] = rendered
    components = {n: catalog.render(n, v3=True) for n in catalog.closure(_roots(items))}
    return {
        "openapi": "3.0.0",
        "info": dict(INFO),
        "paths": doc_paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def v3_key(group: str, version: str) -> str:
    """``api/v1`` or ``apis/<group>/<version>``: the document's path under /openapi/v3/."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


def content_hash(body: bytes) -> str:
    """The hash in a v3 document's URL (and every document's ETag), as upstream: SHA-512,
    upper-case hex."""
    return hashlib.sha512(body).hexdigest().upper()


@dataclass
class Rendered:
    """One encoded document and its hash."""

    body: bytes
    hash: str

    @classmethod
    def of(cls, document: Any) -> Rendered:
        body = orjson.dumps(document)
        return cls(body, content_hash(body))

    @property
    def etag(self) -> str:
        return f'"{self.hash}"'


@dataclass
class Documents:
    """Every document for one state of the served resources. The v2 protobuf is encoded on
    first use (only kubectl 1.20 and older clients ask for it)."""

    v2: Rendered
    v2_document: dict[str, Any]
    v3: dict[str, Rendered]
    v3_discovery: Rendered
    _v2_protobuf: Rendered | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def v2_protobuf(self) -> Rendered:
        with self._lock:
            if self._v2_protobuf is None:
                body = encode_document(self.v2_document)
                self._v2_protobuf = Rendered(body, content_hash(body))
            return self._v2_protobuf


def build_documents(
    groups: list[GroupVersionEntries],
    crd_schemas: CrdSchemas | None = None,
    defs: Mapping[str, Any] | None = None,
) -> Documents:
    defs = load_definitions() if defs is None else defs
    catalog = _Catalog(defs, schemas.gvk_index(defs))
    if crd_schemas is not None:
        for rd, schema in crd_schemas.served():
            catalog.add_crd(rd, schema)
    v2_document = build_v2(catalog, groups)
    v3 = {
        v3_key(group, version): Rendered.of(build_v3(catalog, group, version, entries))
        for group, version, entries in groups
    }
    discovery = {
        "paths": {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={doc.hash}"}
            for key, doc in sorted(v3.items())
        }
    }
    return Documents(
        v2=Rendered.of(v2_document),
        v2_document=v2_document,
        v3=v3,
        v3_discovery=Rendered.of(discovery),
    )


class OpenApi:
    """The current :class:`Documents`, rebuilt when what is served changes.

    ``groups`` returns the discovery lists of every served group-version (cheap: the
    resource table's entries); ``crd_schemas`` returns the CRD registry, if any."""

    def __init__(
        self,
        groups: Callable[[], list[GroupVersionEntries]],
        crd_schemas: Callable[[], CrdSchemas | None] = lambda: None,
    ) -> None:
        self._groups = groups
        self._crd_schemas = crd_schemas
        self._key: bytes | None = None
        self._documents: Documents | None = None
        self._lock = threading.Lock()

    def current(self) -> Documents:
        groups = self._groups()
        crds = self._crd_schemas()
        generation = -1 if crds is None else crds.generation
        key = orjson.dumps([generation, groups])
        with self._lock:
            if self._documents is None or key != self._key:
                self._documents = build_documents(groups, crds)
                self._key = key
            return self._documents
