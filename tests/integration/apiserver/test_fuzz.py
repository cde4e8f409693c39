"""Property: whatever the request, the server answers with a proper ``Status`` and never a 500.

Hypothesis generates methods, paths (built from real route segments and junk), query strings
(real parameter names with odd values) and bodies (JSON documents shaped like objects, random
JSON, random bytes, YAML alias bombs, documents nested deeper than the server accepts, huge
numbers, fields of the wrong JSON type) under several content types.

The server runs as a child process with its data segment capped
(:data:`helpers.MEMORY_LIMIT`), so a body that makes it allocate without bound kills it (and
the tests say so) instead of exhausting the machine; a watcher polls ``/healthz`` throughout
and the last tests check it always answered within :data:`HEALTHZ_WITHIN` seconds and the
process is still alive.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness.apiserver import ServerProcess

from .helpers import Raw, capped_server_process, json_paths, raw_client, replaced_at

pytestmark = pytest.mark.timeout(300)

HEALTHZ_WITHIN = 1.0

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
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "1e400",
    "9" * 5000,
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


def alias_bomb(levels: int, width: int = 9) -> bytes:
    """``width ** levels`` strings in about 50 bytes a level (nine levels: 450 bytes)."""
    lines = ["a0: &a0 [" + ",".join(['"x"'] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return ("\n".join(lines) + "\n").encode()


def _deep_json(depth: int, opener: str) -> bytes:
    closer = "]" if opener == "[" else "}"
    if opener == "{":
        return ('{"a":' * depth + "1" + closer * depth).encode()
    return (opener * depth + closer * depth).encode()


HUGE_NUMBERS = [
    "1e400",
    "-1e400",
    str(2**63),
    str(-(2**63) - 1),
    str(2**64),
    "9" * 400,
    "1" + "0" * 5000,
    "1.7976931348623157e309",
]


@st.composite
def hostile_bodies(draw: st.DrawFn) -> bytes:
    """Bodies built to exhaust a decoder: bombs, deep nesting, huge numbers, wrong types."""
    kind = draw(st.sampled_from(["bomb", "deep-yaml", "deep-json", "huge", "typed"]))
    if kind == "bomb":
        return alias_bomb(draw(st.integers(2, 12)), draw(st.integers(2, 12)))
    if kind == "deep-yaml":
        depth = draw(st.sampled_from([99, 100, 101, 200, 999, 1000, 1001, 3000, 20000]))
        return draw(
            st.sampled_from([b"- " * depth + b"x\n", b"{a: " * depth + b"1" + b"}" * depth])
        )
    if kind == "deep-json":
        depth = draw(st.sampled_from([99, 100, 101, 255, 256, 400, 1024, 1025, 5000]))
        return _deep_json(depth, draw(st.sampled_from(["[", "{"])))
    if kind == "huge":
        template = draw(st.sampled_from(HUGE_NUMBER_PLACES))
        return template.replace("N", draw(st.sampled_from(HUGE_NUMBERS))).encode()
    seed: Any = draw(st.sampled_from(SEEDED))[1]
    path = draw(st.sampled_from(list(json_paths(seed))))
    return json.dumps(replaced_at(seed, path, draw(WRONG_TYPES))).encode()


HUGE_NUMBER_PLACES = [
    "N",
    '{"metadata":{"name":"h","generation":N},"data":{"a":"b"}}',
    '{"metadata":{"name":"po"},"spec":{"containers":[{"name":"c","image":"i",'
    '"ports":[{"containerPort":N}]}],"terminationGracePeriodSeconds":N}}',
    '{"spec":{"replicas":N}}',
    '{"spec":{"ports":[{"port":N,"targetPort":N,"nodePort":N}]}}',
    '[{"op":"replace","path":"/spec/replicas","value":N}]',
    '{"gracePeriodSeconds":N}',
    '{"metadata":{"name":"h","deletionGracePeriodSeconds":N}}',
]


WRONG_TYPES = st.sampled_from(["x", 7, 1.5, True, None, [], ["x"], {}, {"a": [1]}, [None]])


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
    kind = draw(st.sampled_from(["none", "shaped", "json", "bytes", "hostile"]))
    body: bytes | None
    if kind == "none":
        body = None
    elif kind == "shaped":
        body = json.dumps(draw(shaped)).encode()
    elif kind == "json":
        body = json.dumps(draw(json_values)).encode()
    elif kind == "hostile":
        body = draw(hostile_bodies())
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


@dataclass
class HealthWatch:
    """Polls ``/healthz`` on its own connection until stopped; records the slowest answer."""

    server: ServerProcess
    client: Raw
    stop: threading.Event = field(default_factory=threading.Event)
    slowest: float = 0.0
    polls: int = 0
    failures: list[str] = field(default_factory=list)

    def run(self) -> None:
        while not self.stop.wait(0.05):
            started = time.monotonic()
            try:
                status, _, data = self.client.request("GET", "/healthz", timeout=30)
            except OSError as exc:
                self.failures.append(repr(exc))
                return
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.polls += 1
            if (status, data) != (200, b"ok"):
                self.failures.append(f"{status} {data[:100]!r}")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from capped_server_process(tmp_path_factory.mktemp("fuzz"))


def _client(server: ServerProcess, user: str, groups: list[str]) -> Raw:
    return raw_client(server, server.files.client_cert(user, groups))


@pytest.fixture(scope="module")
def raw(fuzz_server: ServerProcess) -> Iterator[Raw]:
    """Overrides conftest's: an admin client of the memory-capped child process."""
    r = _client(fuzz_server, "fuzz-admin", ["system:masters"])
    yield r
    r.close()


@pytest.fixture(scope="module")
def health(fuzz_server: ServerProcess) -> Iterator[HealthWatch]:
    watch = HealthWatch(fuzz_server, _client(fuzz_server, "fuzz-health", ["system:masters"]))
    thread = threading.Thread(target=watch.run, name="healthz-watch", daemon=True)
    thread.start()
    yield watch
    watch.stop.set()
    thread.join(60)
    watch.client.close()


@pytest.fixture(scope="module")
def fuzz_ns(raw: Raw, health: HealthWatch) -> str:
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


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    method=st.sampled_from(["POST", "PUT", "PATCH", "PATCH"]),
    path=st.sampled_from(OBJECT_PATHS),
    body=hostile_bodies(),
    ctype=st.sampled_from(CONTENT_TYPES),
)
def test_hostile_bodies_never_500(
    raw: Raw, fuzz_ns: str, method: str, path: str, body: bytes, ctype: str | None
) -> None:
    status, _, data = raw.request(method, path, body, content_type=ctype)
    assert status != 500, data[:500]
    assert status < 500, data[:500]
    if status >= 400:
        assert json.loads(data)["code"] == status


def test_hostile_bodies_from_a_user_without_rights_are_403(
    raw: Raw, fuzz_server: ServerProcess
) -> None:
    nobody = _client(fuzz_server, "fuzz-nobody", [])
    try:
        for levels in (7, 8, 9, 12):
            for ctype in ("application/yaml", "application/apply-patch+yaml"):
                method = "POST" if ctype == "application/yaml" else "PATCH"
                path = "/api/v1/namespaces/fuzz/configmaps" + ("/cm" if method == "PATCH" else "")
                status, _, data = nobody.request(
                    method, path, alias_bomb(levels), content_type=ctype
                )
                assert status == 403, data[:300]
    finally:
        nobody.close()


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


def test_healthz_answered_within_a_second_throughout(
    fuzz_server: ServerProcess, health: HealthWatch, fuzz_ns: str
) -> None:
    assert fuzz_server.process.poll() is None, "the API server process died while fuzzed"
    assert not health.failures, health.failures[:5]
    assert health.polls > 0
    assert health.slowest < HEALTHZ_WITHIN, f"/healthz once took {health.slowest:.2f}s"
