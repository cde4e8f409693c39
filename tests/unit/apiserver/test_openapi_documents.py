"""The OpenAPI documents: upstream's schemas in OpenAPI form, operations for what discovery
serves, custom resources, caching, and the gnostic protobuf encoding of the v2 document."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.openapi import schemas
from berth.apiserver.openapi.definitions import load_definitions
from berth.apiserver.openapi.documents import Documents, OpenApi, build_documents
from berth.apiserver.openapi.http import discovery_groups
from berth.apiserver.protobuf import fields

POD = "io.k8s.api.core.v1.Pod"
CONTAINER = "io.k8s.api.core.v1.Container"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"


@pytest.fixture(scope="module")
def docs() -> Documents:
    return build_documents(discovery_groups(TABLE))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            # (JSONSchemaProps, the CRD schema's definition, has a property named "$ref")
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_convert_undoes_the_json_schema_spellings() -> None:
    defs = load_definitions()
    pod = schemas.convert(POD, defs[POD], v3=False)
    assert pod["type"] == "object"
    assert pod["properties"]["spec"] == {
        "$ref": "#/definitions/io.k8s.api.core.v1.PodSpec",
        "description": defs[POD]["properties"]["spec"]["description"],
    }
    assert "enum" not in pod["properties"]["apiVersion"]
    assert pod["properties"]["kind"]["type"] == "string"
    container = schemas.convert(CONTAINER, defs[CONTAINER], v3=False)
    ports = container["properties"]["ports"]
    assert ports["type"] == "array"
    assert ports["x-kubernetes-patch-merge-key"] == "containerPort"
    assert ports["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.ContainerPort"}
    int_or_string = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
    assert schemas.convert(int_or_string, defs[int_or_string], v3=False)["format"] == (
        "int-or-string"
    )


def test_v3_wraps_a_reference_with_siblings_in_all_of() -> None:
    defs = load_definitions()
    pod = schemas.convert(POD, defs[POD], v3=True)
    spec = pod["properties"]["spec"]
    assert spec["allOf"] == [{"$ref": "#/components/schemas/io.k8s.api.core.v1.PodSpec"}]
    assert "$ref" not in spec
    assert "description" in spec


def test_v2_describes_every_served_operation_with_kubectls_parameters(docs: Documents) -> None:
    doc = docs.v2_document
    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    names = {p["name"] for p in patch["parameters"]}
    assert {"dryRun", "fieldValidation", "fieldManager", "force", "body"} <= names
    assert set(item) >= {"get", "put", "patch", "delete", "parameters"}
    # subresources, all-namespace lists, create-only review APIs
    assert "patch" in doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]
    assert "get" in doc["paths"]["/api/v1/pods"]
    assert "post" in doc["paths"]["/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"]
    review = doc["paths"]["/apis/authentication.k8s.io/v1/selfsubjectreviews"]["post"]
    assert review["responses"]["200"]["schema"] == {
        "$ref": "#/definitions/io.k8s.api.authentication.v1.SelfSubjectReview"
    }
    assert doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}/log"]["get"]["produces"] == [
        "text/plain"
    ]
    # every kind, and every definition anything refers to, is defined
    defined = set(doc["definitions"])
    assert {POD, CONTAINER, DEPLOYMENT, "io.k8s.api.apps.v1.DeploymentList"} <= defined
    for ref in _refs(doc):
        assert ref.removeprefix("#/definitions/") in defined, ref


def test_v3_has_one_self_contained_document_per_group_version(docs: Documents) -> None:
    # one document per group-version the server serves (its table plus the review groups)
    served = {
        f"apis/{group}/{version}" if group else f"api/{version}"
        for group, versions in TABLE.group_versions().items()
        for version in versions
    }
    assert {"api/v1", "apis/apps/v1", "apis/authentication.k8s.io/v1"} <= served
    assert set(docs.v3) == served
    listed = json.loads(docs.v3_discovery.body)["paths"]
    for key, rendered in docs.v3.items():
        assert listed[key] == {"serverRelativeURL": f"/openapi/v3/{key}?hash={rendered.hash}"}
        doc = json.loads(rendered.body)
        assert doc["openapi"] == "3.0.0"
        defined = set(doc["components"]["schemas"])
        for ref in _refs(doc):
            assert ref.removeprefix("#/components/schemas/") in defined, (key, ref)
    apps = json.loads(docs.v3["apis/apps/v1"].body)
    assert DEPLOYMENT in apps["components"]["schemas"]
    assert POD not in apps["components"]["schemas"]  # only what apps/v1 reaches
    patch = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert "application/apply-patch+yaml" in patch["requestBody"]["content"]
    assert any(p["name"] == "fieldValidation" and p["in"] == "query" for p in patch["parameters"])


class FakeCrds:
    def __init__(self) -> None:
        self.generation = 1
        self.rds: list[tuple[ResourceDef, dict[str, Any]]] = []

    def served(self) -> Iterable[tuple[ResourceDef, dict[str, Any]]]:
        return list(self.rds)


WIDGET = ResourceDef(
    group="stable.example.com",
    version="v1",
    plural="widgets",
    singular="widget",
    kind="Widget",
    namespaced=True,
)
WIDGET_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "nullable": True,
            "properties": {
                "size": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}]},
            },
        }
    },
}


def _groups_with_widget() -> list[tuple[str, str, list[dict[str, Any]]]]:
    widgets = {
        "name": "widgets",
        "singularName": "widget",
        "namespaced": True,
        "kind": "Widget",
        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
    }
    return [*discovery_groups(TABLE), ("stable.example.com", "v1", [widgets])]


def test_custom_resources_get_their_schema_and_operations() -> None:
    crds = FakeCrds()
    crds.rds.append((WIDGET, WIDGET_SCHEMA))
    docs = build_documents(_groups_with_widget(), crds)
    v2 = docs.v2_document["definitions"]["com.example.stable.v1.Widget"]
    assert v2["x-kubernetes-group-version-kind"] == [
        {"group": "stable.example.com", "kind": "Widget", "version": "v1"}
    ]
    assert v2["properties"]["metadata"] == {
        "$ref": "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    spec = v2["properties"]["spec"]
    assert "nullable" not in spec  # Swagger 2.0 has no nullable, no anyOf
    assert spec["properties"]["size"] == {"x-kubernetes-int-or-string": True}
    v3 = json.loads(docs.v3["apis/stable.example.com/v1"].body)
    schema = v3["components"]["schemas"]["com.example.stable.v1.Widget"]
    assert schema["properties"]["spec"]["nullable"] is True
    assert "com.example.stable.v1.WidgetList" in v3["components"]["schemas"]
    item = v3["paths"]["/apis/stable.example.com/v1/namespaces/{namespace}/widgets/{name}"]
    assert item["patch"]["x-kubernetes-group-version-kind"]["kind"] == "Widget"


def test_documents_are_cached_until_the_served_resources_change() -> None:
    crds = FakeCrds()
    groups = discovery_groups(TABLE)
    openapi = OpenApi(lambda: groups, lambda: crds)
    first = openapi.current()
    assert openapi.current() is first
    crds.rds.append((WIDGET, WIDGET_SCHEMA))
    crds.generation += 1
    second = openapi.current()
    assert second is not first  # a new CRD generation
    groups = _groups_with_widget()  # discovery serves it now
    third = openapi.current()
    assert third is not second
    assert "apis/stable.example.com/v1" in third.v3
    assert "com.example.stable.v1.Widget" in third.v2_document["definitions"]


def _message(data: bytes) -> dict[int, list[Any]]:
    out: dict[int, list[Any]] = {}
    for number, _, value in fields(data):
        out.setdefault(number, []).append(value)
    return out


def _named(entries: list[bytes]) -> dict[str, bytes]:
    out = {}
    for entry in entries:
        m = _message(entry)
        out[m[1][0].decode()] = m[2][0]
    return out


def test_the_v2_protobuf_is_gnostics_document(docs: Documents) -> None:
    doc = _message(docs.v2_protobuf().body)
    assert doc[1] == [b"2.0"]
    info = _message(doc[2][0])
    assert info[1] == [b"Kubernetes"]
    definitions = _named(_message(doc[9][0])[1])
    assert set(definitions) == set(docs.v2_document["definitions"])
    container = _message(definitions[CONTAINER])
    assert _message(container[22][0])[1] == [b"object"]  # type
    assert container[19] == [b"name"]  # required
    props = _named(_message(container[25][0])[1])
    ports = _message(props["ports"])
    extensions = {_message(e)[1][0]: _message(_message(e)[2][0])[2][0] for e in ports[31]}
    assert extensions[b"x-kubernetes-patch-merge-key"] == b'"containerPort"'
    # a PATCH operation with its group-version-kind (YAML-readable) and query parameters
    paths_ = _named(_message(doc[8][0])[2])
    item = _message(paths_["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"])
    patch = _message(item[8][0])
    ext = {_message(e)[1][0]: _message(_message(e)[2][0])[2][0] for e in patch[13]}
    assert json.loads(ext[b"x-kubernetes-group-version-kind"]) == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    query_names = set()
    for param in patch[8]:
        parameter = _message(_message(param)[1][0])
        if 2 in parameter:  # non-body
            non_body = _message(parameter[2][0])
            if 3 in non_body:
                query_names.add(_message(non_body[3][0])[4][0])
    assert {b"dryRun", b"fieldValidation"} <= query_names
