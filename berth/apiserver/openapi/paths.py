"""The ``paths`` of the OpenAPI documents: one operation per verb the server serves.

Built from the discovery entries (``APIResourceList.resources``) of each group-version, so
the documents list exactly what discovery announces, subresources and review APIs included.
Clients read more than the schemas here: kubectl checks that a kind's PATCH operation
(found by its ``x-kubernetes-group-version-kind``) takes ``dryRun`` (kubectl 1.20 ``diff``
refuses to run otherwise) and ``fieldValidation`` (kubectl 1.32 then leaves validation to
the server), so every write operation lists its query parameters.

Operations come out in a neutral form (:class:`Operation`) that :mod:`.documents` renders
as OpenAPI v2 or v3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

Param = tuple[str, str, str, str]
"""(name, in, type, description)."""

PRETTY: Param = ("pretty", "query", "string", "If 'true', the output is pretty printed.")
DRY_RUN: Param = (
    "dryRun",
    "query",
    "string",
    "When present, the change is validated and admitted but not stored. 'All' is the only"
    " valid value.",
)
FIELD_MANAGER: Param = (
    "fieldManager",
    "query",
    "string",
    "The name of the actor making the change (managedFields), at most 128 printable characters.",
)
FIELD_VALIDATION: Param = (
    "fieldValidation",
    "query",
    "string",
    "What to do with unknown or duplicate fields in the object sent: 'Ignore' drops them"
    " silently, 'Warn' (the default) drops them with a warning for each, 'Strict' fails the"
    " request listing them all.",
)
FORCE: Param = (
    "force",
    "query",
    "boolean",
    "Apply requests only: take over the fields other managers own instead of failing"
    " with a conflict.",
)
LIST_PARAMS: tuple[Param, ...] = (
    ("allowWatchBookmarks", "query", "boolean", "Ask a watch for BOOKMARK events."),
    ("continue", "query", "string", "The token of the next page of a paginated list."),
    ("fieldSelector", "query", "string", "Only the objects whose fields match."),
    ("labelSelector", "query", "string", "Only the objects whose labels match."),
    ("limit", "query", "integer", "At most this many objects; the rest by 'continue'."),
    ("resourceVersion", "query", "string", "The version to read at, or to watch from."),
    ("resourceVersionMatch", "query", "string", "How resourceVersion is matched."),
    ("sendInitialEvents", "query", "boolean", "Start a watch with the current objects."),
    ("timeoutSeconds", "query", "integer", "How long the list or watch may run."),
    ("watch", "query", "boolean", "Stream changes instead of listing."),
)
DELETE_PARAMS: tuple[Param, ...] = (
    DRY_RUN,
    ("gracePeriodSeconds", "query", "integer", "Seconds before the object is deleted."),
    ("orphanDependents", "query", "boolean", "Deprecated: use propagationPolicy."),
    ("propagationPolicy", "query", "string", "Orphan, Background or Foreground."),
)
WRITE_PARAMS: tuple[Param, ...] = (DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION)
PATCH_CONTENT_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)
PATCH_DEFINITION = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
STATUS_DEFINITION = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
DELETE_OPTIONS_DEFINITION = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
STRING_RESPONSE = "string"
"""The ``response`` of an operation answering plain text (pod logs)."""

GVK = tuple[str, str, str]
Resolve = Callable[[GVK], "str | None"]
"""(group, version, kind) -> definition name, ``None`` for a kind without a schema."""


@dataclass
class Operation:
    method: str  # get, put, post, delete, patch
    action: str  # x-kubernetes-action: get, list, post, put, patch, delete, deletecollection
    operation_id: str
    description: str
    gvk: GVK
    params: tuple[Param, ...] = ()
    body: str | None = None  # definition name of the request body
    response: str | None = None  # definition name (or STRING_RESPONSE) of the 200 answer
    consumes: tuple[str, ...] = ("*/*",)
    tag: str = ""


@dataclass
class PathItem:
    path: str
    params: tuple[Param, ...]
    operations: list[Operation] = field(default_factory=list)


def _title(word: str) -> str:
    return word[:1].upper() + word[1:]


def _tag(group: str, version: str) -> str:
    # "core_v1", "apps_v1", "rbacAuthorization_v1", as upstream tags its operations
    if not group:
        return f"core_{version}"
    first, *rest = group.removesuffix(".k8s.io").split(".")
    words = first.split("-") + rest
    return "".join([words[0], *(_title(w) for w in words[1:])]) + f"_{version}"


def _id_prefix(group: str, version: str) -> str:
    tag = _tag(group, version)
    return "".join(_title(p) for p in tag.split("_"))


def _path_params(namespaced: bool, named: bool) -> tuple[Param, ...]:
    out: list[Param] = []
    if named:
        out.append(("name", "path", "string", "The name of the object."))
    if namespaced:
        out.append(("namespace", "path", "string", "The namespace of the object."))
    out.append(PRETTY)
    return tuple(out)


def _kind_gvk(entry: Mapping[str, Any], group: str, version: str) -> GVK:
    return (
        str(entry.get("group", group)),
        str(entry.get("version", version)),
        str(entry.get("kind", "")),
    )


def _main_items(
    entry: Mapping[str, Any], group: str, version: str, base: str, resolve: Resolve
) -> list[PathItem]:
    plural = str(entry["name"])
    kind = str(entry["kind"])
    namespaced = bool(entry.get("namespaced"))
    verbs = set(entry.get("verbs", ()))
    gvk = (group, version, kind)
    definition = resolve(gvk)
    list_definition = resolve((group, version, f"{kind}List"))
    prefix = _id_prefix(group, version)
    scoped = "Namespaced" if namespaced else ""
    tag = _tag(group, version)
    ns = "/namespaces/{namespace}" if namespaced else ""
    items: list[PathItem] = []

    collection = PathItem(f"{base}{ns}/{plural}", _path_params(namespaced, named=False))
    if "list" in verbs:
        collection.operations.append(
            Operation(
                "get",
                "list",
                f"list{prefix}{scoped}{kind}",
                f"list or watch {kind} objects",
                gvk,
                LIST_PARAMS,
                response=list_definition,
                tag=tag,
            )
        )
    if "create" in verbs:
        collection.operations.append(
            Operation(
                "post",
                "post",
                f"create{prefix}{scoped}{kind}",
                f"create a {kind}",
                gvk,
                WRITE_PARAMS,
                body=definition,
                response=definition,
                tag=tag,
            )
        )
    if "deletecollection" in verbs:
        collection.operations.append(
            Operation(
                "delete",
                "deletecollection",
                f"deleteCollection{prefix}{scoped}{kind}",
                f"delete a collection of {kind}",
                gvk,
                DELETE_PARAMS + LIST_PARAMS,
                body=DELETE_OPTIONS_DEFINITION,
                response=STATUS_DEFINITION,
                tag=tag,
            )
        )
    if collection.operations:
        items.append(collection)
    if namespaced and "list" in verbs:
        everywhere = PathItem(f"{base}/{plural}", (PRETTY,))
        everywhere.operations.append(
            Operation(
                "get",
                "list",
                f"list{prefix}{kind}ForAllNamespaces",
                f"list or watch {kind} objects of every namespace",
                gvk,
                LIST_PARAMS,
                response=list_definition,
                tag=tag,
            )
        )
        items.append(everywhere)

    item = PathItem(f"{base}{ns}/{plural}/{{name}}", _path_params(namespaced, named=True))
    if "get" in verbs:
        item.operations.append(
            Operation(
                "get",
                "get",
                f"read{prefix}{scoped}{kind}",
                f"read the {kind}",
                gvk,
                response=definition,
                tag=tag,
            )
        )
    if "update" in verbs:
        item.operations.append(
            Operation(
                "put",
                "put",
                f"replace{prefix}{scoped}{kind}",
                f"replace the {kind}",
                gvk,
                WRITE_PARAMS,
                body=definition,
                response=definition,
                tag=tag,
            )
        )
    if "patch" in verbs:
        item.operations.append(
            Operation(
                "patch",
                "patch",
                f"patch{prefix}{scoped}{kind}",
                f"partially update the {kind}",
                gvk,
                (*WRITE_PARAMS, FORCE),
                body=PATCH_DEFINITION,
                response=definition,
                consumes=PATCH_CONTENT_TYPES,
                tag=tag,
            )
        )
    if "delete" in verbs:
        item.operations.append(
            Operation(
                "delete",
                "delete",
                f"delete{prefix}{scoped}{kind}",
                f"delete the {kind}",
                gvk,
                DELETE_PARAMS,
                body=DELETE_OPTIONS_DEFINITION,
                response=STATUS_DEFINITION,
                tag=tag,
            )
        )
    if item.operations:
        items.append(item)
    return items


_SUBRESOURCE_METHODS = {"get": "get", "update": "put", "patch": "patch", "create": "post"}


def _sub_item(
    entry: Mapping[str, Any],
    group: str,
    version: str,
    base: str,
    resolve: Resolve,
    *,
    main_kinds: Mapping[str, str],
) -> PathItem | None:
    plural, sub = str(entry["name"]).split("/", 1)
    namespaced = bool(entry.get("namespaced"))
    gvk = _kind_gvk(entry, group, version)
    definition = resolve(gvk)
    prefix = _id_prefix(group, version)
    scoped = "Namespaced" if namespaced else ""
    tag = _tag(group, version)
    ns = "/namespaces/{namespace}" if namespaced else ""
    item = PathItem(f"{base}{ns}/{plural}/{{name}}/{sub}", _path_params(namespaced, named=True))
    main_kind = main_kinds.get(plural, gvk[2])
    words = f"{main_kind}{_title(sub)}"
    for verb in entry.get("verbs", ()):
        method = _SUBRESOURCE_METHODS.get(str(verb))
        if method is None:
            continue
        op_name = {"get": "read", "put": "replace", "patch": "patch", "post": "create"}[method]
        if sub == "log":
            item.operations.append(
                Operation(
                    "get",
                    "get",
                    f"read{prefix}{scoped}PodLog",
                    "read the log of the pod",
                    gvk,
                    response=STRING_RESPONSE,
                    tag=tag,
                )
            )
            continue
        params: tuple[Param, ...] = ()
        body = None
        consumes: tuple[str, ...] = ("*/*",)
        if method in ("put", "post"):
            params, body = WRITE_PARAMS, definition
        elif method == "patch":
            params, body, consumes = (*WRITE_PARAMS, FORCE), PATCH_DEFINITION, PATCH_CONTENT_TYPES
        item.operations.append(
            Operation(
                method,
                method if method != "get" else "get",
                f"{op_name}{prefix}{scoped}{words}",
                f"{op_name} {sub} of the {main_kind}",
                gvk,
                params,
                body=body,
                response=definition,
                consumes=consumes,
                tag=tag,
            )
        )
    return item if item.operations else None


def _review_item(
    entry: Mapping[str, Any], group: str, version: str, base: str, resolve: Resolve
) -> PathItem | None:
    """A create-only API (access reviews): ``POST`` to the collection."""
    gvk = _kind_gvk(entry, group, version)
    definition = resolve(gvk)
    namespaced = bool(entry.get("namespaced"))
    ns = "/namespaces/{namespace}" if namespaced else ""
    item = PathItem(f"{base}{ns}/{entry['name']}", _path_params(namespaced, named=False))
    scoped = "Namespaced" if namespaced else ""
    item.operations.append(
        Operation(
            "post",
            "post",
            f"create{_id_prefix(group, version)}{scoped}{gvk[2]}",
            f"create a {gvk[2]}",
            gvk,
            WRITE_PARAMS,
            body=definition,
            response=definition,
            tag=_tag(group, version),
        )
    )
    return item


def group_version_paths(
    group: str, version: str, entries: Iterable[Mapping[str, Any]], resolve: Resolve
) -> list[PathItem]:
    """The path items of one group-version from its discovery ``entries``."""
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    entries = list(entries)
    main_kinds = {
        str(e.get("name")): str(e.get("kind")) for e in entries if "/" not in str(e.get("name"))
    }
    items: list[PathItem] = []
    for entry in entries:
        name = str(entry.get("name", ""))
        if "/" in name:
            sub = _sub_item(entry, group, version, base, resolve, main_kinds=main_kinds)
            if sub is not None:
                items.append(sub)
        elif set(entry.get("verbs", ())) == {"create"}:
            review = _review_item(entry, group, version, base, resolve)
            if review is not None:
                items.append(review)
        else:
            items.extend(_main_items(entry, group, version, base, resolve))
    return items
