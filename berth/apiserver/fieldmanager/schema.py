"""The shape of objects as structured merge sees it: which maps are structs, which lists are
keyed maps or sets, what is atomic.

Nodes are compiled from OpenAPI/JSON schemas on first use: the built-in kinds from the
Kubernetes definitions (``x-kubernetes-list-type``, ``x-kubernetes-list-map-keys``,
``x-kubernetes-map-type``, and the patch strategy of lists that declare no list type, as
upstream's schema conversion does), custom resources from their CRD's ``openAPIV3Schema``.
Compilation is lazy and cached per definition, so a request only pays for the parts of a
schema its object touches, and recursive schemas (JSONSchemaProps) are fine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from berth.api.resources import ResourceDef
from berth.apiserver.openapi.definitions import load_definitions

SCALAR = 0
STRUCT = 1  # a map with named fields (fields merge one by one)
MAP = 2  # a granular map: every key is its own field (labels, data)
ATOMIC = 3  # replaced as a whole (atomic lists and maps)
LIST_MAP = 4  # a list whose items are identified by key fields
LIST_SET = 5  # a list of unique scalars
DEDUCED = 6  # no schema: maps are granular, lists atomic, scalars leaves

# Key fields some built-in lists may omit; upstream's schemas default them (``+default``),
# and the item is identified with the default. The kubernetes-validate definitions drop
# defaults, so the few that matter are listed here.
_BUILTIN_KEY_DEFAULTS: dict[str, dict[str, Any]] = {
    "io.k8s.api.core.v1.ContainerPort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.ServicePort": {"protocol": "TCP"},
    "io.k8s.api.core.v1.LocalObjectReference": {"name": ""},
    "io.k8s.api.core.v1.ObjectReference": {"name": ""},
}


class Node:
    """One type. ``fields`` (STRUCT) are compiled on first access."""

    __slots__ = ("_compile_fields", "_elem", "_fields", "key_defaults", "keys", "kind", "loose")

    def __init__(
        self,
        kind: int,
        *,
        fields: Callable[[], dict[str, Node]] | None = None,
        elem: Callable[[], Node] | None = None,
        keys: tuple[str, ...] = (),
        key_defaults: Mapping[str, Any] | None = None,
        loose: bool = False,
    ) -> None:
        self.kind = kind
        self._compile_fields = fields
        self._fields: dict[str, Node] | None = None
        self._elem = elem
        self.keys = keys
        self.key_defaults: Mapping[str, Any] = key_defaults or {}
        # Whether a struct counts as present only when the object holds it (custom resources
        # are unstructured: an added struct is a member of an Update's field set); built-in
        # structs are Go values, most of which always exist, so an added one is not.
        self.loose = loose

    @property
    def fields(self) -> dict[str, Node]:
        if self._fields is None:
            self._fields = self._compile_fields() if self._compile_fields is not None else {}
        return self._fields

    def field(self, name: str) -> Node:
        """The type of a struct field or map value (an undeclared field is deduced)."""
        if self.kind == STRUCT:
            node = self.fields.get(name)
            if node is not None:
                return node
        return self.elem

    @property
    def elem(self) -> Node:
        """The type of map values and list items."""
        if self._elem is None:
            return DEDUCED_NODE
        node = self._elem()
        self._elem = lambda: node
        return node


DEDUCED_NODE = Node(DEDUCED)
SCALAR_NODE = Node(SCALAR)
ATOMIC_NODE = Node(ATOMIC)


class Compiler:
    """Turns one schema document (with its ``$defs``) into nodes, caching named types."""

    def __init__(
        self,
        defs: Mapping[str, Any],
        *,
        loose: bool,
        key_defaults: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.defs = defs
        self.loose = loose
        self.key_defaults = key_defaults or {}
        self._named: dict[str, Node] = {}

    def named(self, name: str) -> Node:
        node = self._named.get(name)
        if node is None:
            schema = self.defs.get(name)
            node = self.compile(schema, name) if isinstance(schema, dict) else DEDUCED_NODE
            self._named[name] = node
        return node

    def _ref(self, ref: str) -> Node:
        return self.named(ref.rsplit("/", 1)[-1])

    def compile(self, schema: Mapping[str, Any], name: str = "") -> Node:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self._ref(ref)
        declared = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            return SCALAR_NODE
        untyped = declared is None and "properties" not in schema
        if untyped and ("oneOf" in schema or "anyOf" in schema):
            return SCALAR_NODE  # IntOrString in the built-in definitions
        types = set(declared) if isinstance(declared, list) else {declared}
        if "array" in types:
            return self._list(schema)
        props = schema.get("properties")
        if "object" in types or isinstance(props, dict):
            return self._object(schema, name)
        if declared is None:
            # No type: untyped JSON (RawExtension-like, preserve-unknown-fields).
            return DEDUCED_NODE
        return SCALAR_NODE

    def _items(self, schema: Mapping[str, Any]) -> Callable[[], Node]:
        items = schema.get("items")
        if not isinstance(items, dict):
            return lambda: DEDUCED_NODE
        return lambda: self.compile(items)

    def _list(self, schema: Mapping[str, Any]) -> Node:
        list_type = schema.get("x-kubernetes-list-type")
        keys: tuple[str, ...] = ()
        if list_type is None:
            # Upstream's conversion: a list without a list type that patches by merge is
            # keyed by its merge key (a set without one); anything else is atomic.
            strategy = schema.get("x-kubernetes-patch-strategy")
            if strategy in ("merge", "merge,retainKeys"):
                merge_key = schema.get("x-kubernetes-patch-merge-key")
                list_type = "map" if isinstance(merge_key, str) else "set"
                keys = (merge_key,) if isinstance(merge_key, str) else ()
            else:
                list_type = "atomic"
        elif list_type == "map":
            raw = schema.get("x-kubernetes-list-map-keys")
            keys = tuple(k for k in raw if isinstance(k, str)) if isinstance(raw, list) else ()
        if list_type == "map" and keys:
            return Node(
                LIST_MAP,
                elem=self._items(schema),
                keys=keys,
                key_defaults=self._key_defaults(schema, keys),
            )
        if list_type == "set":
            return Node(LIST_SET, elem=self._items(schema))
        return ATOMIC_NODE

    def _key_defaults(self, schema: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
        items = schema.get("items")
        if not isinstance(items, dict):
            return {}
        ref = items.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            out = dict(self.key_defaults.get(name, {}))
            items = self.defs.get(name) or {}
        else:
            out = {}
        props = items.get("properties") if isinstance(items, dict) else None
        if isinstance(props, dict):
            for k in keys:
                sub = props.get(k)
                if isinstance(sub, dict) and "default" in sub:
                    out[k] = sub["default"]
        return out

    def _object(self, schema: Mapping[str, Any], name: str) -> Node:
        if schema.get("x-kubernetes-map-type") == "atomic":
            return ATOMIC_NODE
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(props, dict) and props:
            if isinstance(extra, dict):
                elem: Callable[[], Node] | None = lambda: self.compile(extra)  # noqa: E731
            else:
                elem = None  # undeclared fields (preserved or not) are deduced
            return Node(
                STRUCT,
                fields=lambda: {
                    k: self.compile(v) for k, v in props.items() if isinstance(v, dict)
                },
                elem=elem,
                loose=self.loose,
            )
        if isinstance(extra, dict):
            return Node(MAP, elem=lambda: self.compile(extra))
        return DEDUCED_NODE


# -- built-in kinds -------------------------------------------------------------------------


@functools.cache
def _builtin_compiler() -> tuple[Compiler, dict[tuple[str, str, str], str]]:
    defs = load_definitions()  # the openapi module's: hosts read the bundled copy
    by_gvk: dict[tuple[str, str, str], str] = {}
    for name, schema in defs.items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or ():
            by_gvk.setdefault((gvk.get("group", ""), gvk.get("version", ""), gvk["kind"]), name)
    return Compiler(defs, loose=False, key_defaults=_BUILTIN_KEY_DEFAULTS), by_gvk


def builtin_node(rd: ResourceDef) -> Node | None:
    """The root node of a built-in kind, ``None`` for kinds the definitions lack."""
    compiler, by_gvk = _builtin_compiler()
    name = by_gvk.get((rd.group, rd.version, rd.kind))
    return compiler.named(name) if name is not None else None


def object_meta_node() -> Node:
    compiler, _ = _builtin_compiler()
    return compiler.named("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")


def custom_resource_node(open_api_v3_schema: Mapping[str, Any]) -> Node:
    """The root node of a custom resource version from its CRD's ``openAPIV3Schema``;
    ``metadata`` is always ObjectMeta (a CRD may not describe it)."""
    node = Compiler({}, loose=True).compile(open_api_v3_schema)
    if node.kind != STRUCT:
        node = Node(STRUCT, fields=dict, loose=True)
    declared = node.fields
    fields = {**declared, "metadata": object_meta_node()}
    fields.setdefault("apiVersion", SCALAR_NODE)
    fields.setdefault("kind", SCALAR_NODE)
    return Node(STRUCT, fields=lambda: fields, elem=lambda: node.elem, loose=True)


SchemaProvider = Callable[[ResourceDef], Node | None]
"""Given a resource, the root node of its objects (``None``: ask the next provider)."""


class Schemas:
    """Where structured merge finds the type of a resource's objects.

    Built-in kinds are answered from the Kubernetes definitions; the CRD machinery adds a
    provider answering for the custom resources it serves (``custom_resource_node`` turns a
    CRD version's schema into a node). Kinds nobody describes are merged as untyped JSON."""

    def __init__(self) -> None:
        self._providers: list[SchemaProvider] = [builtin_node]

    def add(self, provider: SchemaProvider) -> None:
        """Consult ``provider`` before the ones already known."""
        self._providers.insert(0, provider)

    def node_for(self, rd: ResourceDef) -> Node:
        for provider in self._providers:
            node = provider(rd)
            if node is not None:
                return node
        return DEDUCED_NODE
