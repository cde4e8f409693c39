"""Property: whatever the request, the server answers with a proper ``Status`` and never a 500.

Hypothesis generates methods, paths (built from real route segments and junk), query strings
(real parameter names with odd values) and bodies (JSON documents shaped like objects, random
JSON, random bytes) under several content types.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import Raw

pytestmark = pytest.mark.timeout(300)

SEGMENTS = [
    "api",
    "apis",
    "v1",
    "apps",
    "coordination.k8s.io",
    "policy",
    "rbac.authorization.k8s.io",
    "authorization.k8s.io",
    "namespaces",
    "default",
    "kube-system",
    "fuzz",
    "pods",
    "nodes",
    "services",
    "deployments",
    "replicasets",
    "daemonsets",
    "configmaps",
    "secrets",
    "events",
    "leases",
    "endpoints",
    "serviceaccounts",
    "roles",
    "clusterroles",
    "status",
    "scale",
    "log",
    "binding",
    "eviction",
    "finalize",
    "watch",
    "selfsubjectaccessreviews",
    "version",
    "openapi",
    "healthz",
    "metrics",
    "x",
    "",
]
PREFIXES = [
    "/api/v1",
    "/apis/apps/v1",
    "/api/v1/namespaces/fuzz",
    "/apis/apps/v1/namespaces/fuzz",
    "",
]
PARAMS = [
    "watch",
    "labelSelector",
    "fieldSelector",
    "limit",
    "continue",
    "resourceVersion",
    "timeoutSeconds",
    "gracePeriodSeconds",
    "dryRun",
    "includeObject",
    "allowWatchBookmarks",
    "propagationPolicy",
    "container",
    "tailLines",
    "follow",
    "fieldManager",
]
ODD_VALUES = [
    "",
    "0",
    "-1",
    "1",
    "true",
    "True",
    "yes",
    "a=b",
    "a in (b",
    "!x",
    "x notin (a,b)",
    "a!=b,c",
    "metadata.name=x",
    "spec.nodeName!=n",
    "bogus.field=1",
    "99999999999999999999",
    "All",
    "Object",
    "None",
    "Metadata",
    "%ff",
    "\u00e9",
    "a==b==c",
]
CONTENT_TYPES = [
    None,
    "application/json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/json-patch+json",
    "application/apply-patch+yaml",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "text/plain",
    "application/x-www-form-urlencoded",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "metadata",
        "spec",
        "status",
        "name",
        "namespace",
        "labels",
        "resourceVersion",
        "containers",
        "image",
        "replicas",
        "selector",
        "template",
        "ports",
        "type",
        "data",
        "finalizers",
        "op",
        "path",
        "value",
        "$patch",
        "$setElementOrder/containers",
        "$retainKeys",
        "target",
        "deleteOptions",
        "generateName",
        "kind",
        "apiVersion",
        "clusterIP",
        "nodePort",
        "subsets",
        "roleRef",
        "rules",
    ]
)
shaped = st.recursive(
    st.none() | st.integers(-5, 70000) | st.text(max_size=10) | st.booleans(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(field_names, children, max_size=5)
    ),
    max_leaves=15,
)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, str | None]:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE"]))
    segs = draw(st.lists(st.sampled_from(SEGMENTS) | st.text(min_size=1, max_size=8), max_size=5))
    path = draw(st.sampled_from(PREFIXES)) + "".join("/" + quote(s, safe="") for s in segs)
    params = draw(
        st.dictionaries(
            st.sampled_from(PARAMS), st.sampled_from(ODD_VALUES) | st.text(max_size=10), max_size=4
        )
    )
    if "watch" in params or "watch" in segs or "follow" in params:
        params["timeoutSeconds"] = "1"  # keep any watch short
    query = ("?" + urlencode(params)) if params else ""
    kind = draw(st.sampled_from(["none", "shaped", "json", "bytes"]))
    body: bytes | None
    if kind == "none":
        body = None
    elif kind == "shaped":
        body = json.dumps(draw(shaped)).encode()
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    else:
        body = draw(st.binary(max_size=64))
    return method, (path or "/") + query, body, draw(st.sampled_from(CONTENT_TYPES))


SEEDED = [
    ("/api/v1/namespaces/fuzz/configmaps", {"metadata": {"name": "cm"}, "data": {"a": "b"}}),
    (
        "/api/v1/namespaces/fuzz/pods",
        {
            "metadata": {"name": "po", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    ),
    (
        "/apis/apps/v1/namespaces/fuzz/deployments",
        {
            "metadata": {"name": "de"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    ),
    (
        "/api/v1/namespaces/fuzz/services",
        {"metadata": {"name": "sv"}, "spec": {"ports": [{"port": 80}]}},
    ),
    ("/api/v1/nodes", {"metadata": {"name": "fuzz-node"}}),
]
OBJECT_PATHS = [
    "/api/v1/namespaces/fuzz/configmaps/cm",
    "/api/v1/namespaces/fuzz/pods/po",
    "/api/v1/namespaces/fuzz/pods/po/status",
    "/api/v1/namespaces/fuzz/pods/po/binding",
    "/api/v1/namespaces/fuzz/pods/po/eviction",
    "/apis/apps/v1/namespaces/fuzz/deployments/de",
    "/apis/apps/v1/namespaces/fuzz/deployments/de/scale",
    "/apis/apps/v1/namespaces/fuzz/deployments/de/status",
    "/api/v1/namespaces/fuzz/services/sv",
    "/api/v1/nodes/fuzz-node",
    "/api/v1/nodes/fuzz-node/status",
    "/api/v1/namespaces/fuzz/finalize",
    "/api/v1/namespaces/fuzz/configmaps",
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
]


@pytest.fixture(scope="module")
def fuzz_ns(raw: Raw) -> str:
    status, _ = raw.json("POST", "/api/v1/namespaces", {"metadata": {"name": "fuzz"}})
    assert status == 201
    for path, body in SEEDED:
        status, _ = raw.json("POST", path, body)
        assert status == 201, path
    return "fuzz"


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "PATCH", "PATCH"]),
    path=st.sampled_from(OBJECT_PATHS),
    body=shaped,
    ctype=st.sampled_from(CONTENT_TYPES),
)
def test_junk_writes_to_real_objects_never_500(
    raw: Raw, fuzz_ns: str, method: str, path: str, body: Any, ctype: str | None
) -> None:
    status, _, data = raw.request(method, path, json.dumps(body).encode(), content_type=ctype)
    assert status != 500, data[:500]
    if status >= 400:
        assert json.loads(data)["code"] == status


@settings(
    max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(req=requests())
def test_no_request_crashes_the_server(
    raw: Raw, fuzz_ns: str, req: tuple[str, str, bytes | None, str | None]
) -> None:
    method, path, body, ctype = req
    status, headers, data = raw.request(method, path, body, content_type=ctype)
    assert status != 500, data[:500]
    assert status < 600
    if status >= 400 and headers.get("content-type", "").startswith("application/json"):
        doc: Any = json.loads(data)
        assert doc["kind"] == "Status"
        assert doc["code"] == status
        assert doc["status"] == "Failure"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/watch",
        "/apis/apps/v1/watch",
        "/api/v1/watch/namespaces/a/pods/b/c/d",
        "/api/v1/namespaces//pods",
    ],
)
def test_edge_paths_are_404(raw: Raw, path: str) -> None:
    status, body = raw.json("GET", path)
    assert (status, body["reason"]) == (404, "NotFound")


def test_server_still_healthy_after_fuzzing(raw: Raw, fuzz_ns: str) -> None:
    status, _, data = raw.request("GET", "/healthz")
    assert (status, data) == (200, b"ok")
    status, body = raw.json("GET", "/api/v1/namespaces/default")
    assert status == 200
    assert body["metadata"]["name"] == "default"


def test_oversized_body_is_413_status(raw: Raw, fuzz_ns: str) -> None:
    big = {"metadata": {"name": "big"}, "data": {"x": "y" * (4 * 1024 * 1024)}}
    status, body = raw.json("POST", "/api/v1/namespaces/fuzz/configmaps", big)
    assert (status, body["kind"], body["reason"]) == (413, "Status", "RequestEntityTooLarge")
