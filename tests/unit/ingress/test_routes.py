"""From API objects to routes: which Ingresses are served, backends from ready endpoints,
conflicts, TLS Secrets, and refusing what could inject proxy configuration."""

from __future__ import annotations

import base64
import copy
from typing import Any

import pytest

from berth.api.ingress import prefix_matches
from berth.ingress.haproxy import Listen, render
from berth.ingress.routes import Backend, Route, Routes, build_routes

from .objects import CLASS, endpoint_slice, ingress, path, service, tls_secret

Obj = dict[str, Any]

SERVICES = [service("web"), service("api", port=8000, port_name="api")]
SLICES = [
    endpoint_slice("web", [("10.244.1.2", True), ("10.244.2.3", True), ("10.244.2.9", False)]),
    endpoint_slice("api", [("10.244.1.5", True)], port=9000, port_name="api"),
]


def _build(
    *ingresses: Obj, classes: list[Obj] | None = None, secrets: list[Obj] | None = None
) -> Routes:
    return build_routes(
        ingresses, [CLASS] if classes is None else classes, SERVICES, SLICES, secrets or []
    )


def test_backends_are_the_ready_endpoints_of_the_service_port() -> None:
    r = _build(ingress("i", [("a.test", [path("/", "web"), path("/api", "api", port="api")])]))
    assert r.problems == []
    assert r.backends["be_default_web_80"].servers == (("10.244.1.2", 8080), ("10.244.2.3", 8080))
    assert r.backends["be_default_api_api"].servers == (("10.244.1.5", 9000),)
    assert r.routes == [
        Route("a.test", "/", "Prefix", "be_default_web_80"),
        Route("a.test", "/api", "Prefix", "be_default_api_api"),
    ]
    assert r.ingresses == [("default", "i")]


def test_only_ingresses_of_berths_classes_are_served() -> None:
    other = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    mine = ingress("mine", [("a.test", [path("/", "web")])])
    theirs = ingress("theirs", [("b.test", [path("/", "web")])], ingressClassName="nginx")
    unset = ingress("unset", [("c.test", [path("/", "web")])])
    del unset["spec"]["ingressClassName"]
    legacy = copy.deepcopy(unset)
    legacy["metadata"].update(name="legacy", annotations={"kubernetes.io/ingress.class": "berth"})
    r = _build(mine, theirs, unset, legacy, classes=[CLASS, other])
    assert sorted(n for _, n in r.ingresses) == ["legacy", "mine", "unset"]
    not_default: Obj = copy.deepcopy(CLASS)
    not_default["metadata"]["annotations"] = {}
    r = _build(mine, unset, classes=[not_default])
    assert [n for _, n in r.ingresses] == ["mine"]


def test_the_older_ingress_keeps_a_contested_path_and_default_backend() -> None:
    old = ingress(
        "old",
        [("a.test", [path("/", "web")])],
        created="2026-01-01T00:00:00Z",
        defaultBackend={"service": {"name": "web", "port": {"number": 80}}},
    )
    new = ingress(
        "new",
        [("a.test", [path("/", "api", port=8000)])],
        created="2026-01-02T00:00:00Z",
        defaultBackend={"service": {"name": "api", "port": {"number": 8000}}},
    )
    r = _build(new, old)
    assert r.routes == [Route("a.test", "/", "Prefix", "be_default_web_80")]
    assert r.default_backend == "be_default_web_80"


def test_missing_services_and_resource_backends_are_reported_not_routed() -> None:
    i = ingress("i", [("a.test", [path("/", "nope")])])
    i["spec"]["rules"][0]["http"]["paths"].append(
        {"path": "/b", "pathType": "Prefix", "backend": {"resource": {"kind": "B", "name": "b"}}}
    )
    r = _build(i)
    assert r.routes == []
    assert len(r.problems) == 2


def test_tls_secrets_become_certificates_for_their_hosts() -> None:
    good = tls_secret("a-tls", "a.test")
    opaque = {**tls_secret("b-tls", "b.test"), "type": "Opaque"}
    broken = tls_secret("c-tls", "c.test")
    broken["data"]["tls.key"] = base64.b64encode(b"-----BEGIN PRIVATE KEY-----\nxx\n").decode()
    i = ingress(
        "i",
        [("a.test", [path("/", "web")])],
        tls=[
            {"hosts": ["a.test"], "secretName": "a-tls"},
            {"hosts": ["b.test"], "secretName": "b-tls"},
            {"hosts": ["c.test"], "secretName": "c-tls"},
            {"hosts": ["d.test"], "secretName": "missing"},
        ],
    )
    r = _build(i, secrets=[good, opaque, broken])
    assert [(c.hosts, c.name) for c in r.certificates] == [(("a.test",), "default_a-tls")]
    assert b"BEGIN CERTIFICATE" in r.certificates[0].pem
    assert b"PRIVATE KEY" in r.certificates[0].pem
    assert len(r.problems) == 3


INJECTIONS = [
    "a.test\n    server evil 10.0.0.1:80",
    "a.test }  if TRUE",
    "a.test' '",
    "a.test#",
    "a.test\\",
    "A.TEST",
    "a test",
    "$(reboot).test",
]
PATH_INJECTIONS = [
    "/x h0/ be_evil",
    "/x\nh0/ be_evil",
    "/x\r\nuse_backend evil",
    "/x#comment",
    '/x"y',
    "/x'y",
    "/x\\y",
    "/x\ty",
    "/x\0y",
]


@pytest.mark.parametrize("host", INJECTIONS)
def test_hosts_that_could_inject_config_are_refused(host: str) -> None:
    # as if the API server had let it through (the controller trusts nothing)
    i = ingress("i", [(host, [path("/", "web")])], tls=[{"hosts": [host], "secretName": "s"}])
    r = _build(i, secrets=[tls_secret("s", "a.test")])
    assert r.routes == []
    assert r.certificates == []
    assert r.problems
    with pytest.raises(ValueError, match="refusing"):
        render(
            Routes(routes=[Route(host, "/", "Prefix", "be_x")]),
            "/run/x",
            listen=Listen(),
            admin_socket="/run/x/a.sock",
            default_certificate="/run/x/d.pem",
        )


@pytest.mark.parametrize("p", PATH_INJECTIONS)
def test_paths_that_could_inject_config_are_refused(p: str) -> None:
    r = _build(ingress("i", [("a.test", [path(p, "web")])]))
    assert r.routes == []
    assert r.problems
    with pytest.raises(ValueError, match="refusing"):
        render(
            Routes(routes=[Route("a.test", p, "Prefix", "be_x")]),
            "/run/x",
            listen=Listen(),
            admin_socket="/run/x/a.sock",
            default_certificate="/run/x/d.pem",
        )


def test_names_and_directories_that_could_inject_are_refused() -> None:
    bad = Routes(backends={"x": Backend("be x\n  server e 1.1.1.1:80", ())})
    with pytest.raises(ValueError, match="refusing"):
        render(bad, "/run/x", listen=Listen(), admin_socket="/a", default_certificate="/d")
    with pytest.raises(ValueError, match="refusing"):
        render(Routes(), "/run/x y", listen=Listen(), admin_socket="/a", default_certificate="/d")
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        render(
            Routes(),
            "/run/x",
            listen=Listen("1.2.3.4 "),
            admin_socket="/a",
            default_certificate="/d",
        )


def test_rendered_maps_hold_paths_only_as_single_words() -> None:
    routes = _build(
        ingress(
            "i",
            [
                ("a.test", [path("/", "web"), path("/api/", "api", port=8000)]),
                ("*.w.test", [path("/x", "web", kind="Exact")]),
                ("", [path("/any", "web", kind="ImplementationSpecific")]),
            ],
        )
    )
    files = render(
        routes,
        "/run/x",
        listen=Listen(),
        admin_socket="/run/x/a.sock",
        default_certificate="/run/x/d.pem",
    )
    exact = [line.split(" ") for line in files.exact_map.splitlines()]
    prefix = [line.split(" ") for line in files.prefix_map.splitlines()]
    assert all(len(e) == 2 for e in exact + prefix)
    assert dict(prefix) == {
        "h0/api/": "be_default_api_8000",
        "h0/": "be_default_web_80",
        "any/any/": "be_default_web_80",
    }
    assert dict(exact) == {
        "h0/api": "be_default_api_8000",
        "h0/": "be_default_web_80",
        "w0/x": "be_default_web_80",
        "any/any": "be_default_web_80",
    }
    assert files.hosts_map == "a.test h0\n"
    assert files.wildcards_map == "w.test w0\n"
    # neither paths nor hosts reach the config text
    assert "/api" not in files.config
    assert "a.test" not in files.config
    assert "w.test" not in files.config


@pytest.mark.parametrize(
    ("prefix", "request_path", "match"),
    [
        ("/foo", "/foo", True),
        ("/foo", "/foo/", True),
        ("/foo", "/foo/bar", True),
        ("/foo", "/foobar", False),
        ("/foo/", "/foo", True),
        ("/", "/anything", True),
        ("/aaa/bb", "/aaa/bbb", False),
    ],
)
def test_prefix_semantics(prefix: str, request_path: str, match: bool) -> None:
    assert prefix_matches(prefix, request_path) is match
