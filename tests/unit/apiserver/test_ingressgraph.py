"""The ingress graph behind the ingress authorizer: which Secrets Ingresses served by berth name."""

from __future__ import annotations

from typing import Any

from berth.api.ingress import CONTROLLER, DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION
from berth.api.resources import INGRESSCLASSES, INGRESSES, SECRETS
from berth.apiserver.auth import UserInfo
from berth.apiserver.ingressauthz import IngressAuthorizer
from berth.apiserver.ingressgraph import IngressGraph
from berth.apiserver.rbac import Attributes

Obj = dict[str, Any]


def _ingress(name: str, *secrets: str, ns: str = "web", **spec: Any) -> Obj:
    tls = [{"hosts": ["a.test"], "secretName": s} for s in secrets]
    return {"metadata": {"name": name, "namespace": ns}, "spec": {"tls": tls, **spec}}


def _class(name: str, controller: str = CONTROLLER, *, default: bool = False) -> Obj:
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller},
    }


def _put(g: IngressGraph, obj: Obj, *, deleted: bool = False) -> None:
    meta = obj["metadata"]
    rd = INGRESSES if "namespace" in meta else INGRESSCLASSES
    g.observe(rd.key(meta.get("namespace", ""), meta["name"]), obj, deleted=deleted)


def test_a_secret_is_named_while_one_served_ingress_names_it() -> None:
    g = IngressGraph()
    _put(g, _class("berth"))
    _put(g, _ingress("one", "shared", ingressClassName="berth"))
    _put(g, _ingress("two", "shared", "own", ingressClassName="berth"))
    assert g.names_secret("web", "shared")
    assert g.names_secret("web", "own")
    assert not g.names_secret("other", "shared")  # a namespace's own Secret only
    _put(g, _ingress("two", "own", ingressClassName="berth"))  # drops "shared"
    assert g.names_secret("web", "shared")  # "one" still names it
    _put(g, _ingress("one", "shared"), deleted=True)
    assert not g.names_secret("web", "shared")
    assert g.names_secret("web", "own")
    _put(g, _ingress("two", "own"), deleted=True)
    assert not g.names_secret("web", "own")
    assert len(g) == 0


def test_only_ingresses_of_berths_classes_count() -> None:
    g = IngressGraph()
    _put(g, _class("berth"))
    _put(g, _class("nginx", "k8s.io/ingress-nginx"))
    _put(g, _ingress("n", "n-tls", ingressClassName="nginx"))
    legacy = _ingress("l", "l-tls")
    legacy["metadata"]["annotations"] = {LEGACY_CLASS_ANNOTATION: "berth"}
    _put(g, legacy)
    _put(g, _ingress("plain", "p-tls"))
    assert not g.names_secret("web", "n-tls")
    assert g.names_secret("web", "l-tls")  # the legacy annotation names a class too
    assert not g.names_secret("web", "p-tls")  # no class, no default class
    _put(g, _class("berth", default=True))
    assert g.names_secret("web", "p-tls")
    _put(g, _class("berth"))  # the default moves to another controller's class
    _put(g, _class("nginx", "k8s.io/ingress-nginx", default=True))
    assert not g.names_secret("web", "p-tls")
    _put(g, _class("nginx", CONTROLLER, default=True))  # the default class now ours
    assert g.names_secret("web", "n-tls")
    assert g.names_secret("web", "p-tls")
    _put(g, _class("nginx"), deleted=True)
    assert not g.names_secret("web", "n-tls")
    assert not g.names_secret("web", "p-tls")


def _attrs(verb: str, ns: str, name: str = "", fields: str = "", sub: str = "") -> Attributes:
    return Attributes(
        user=UserInfo("system:berth-ingress"),
        verb=verb,
        resource_request=True,
        api_group="",
        resource=SECRETS.plural,
        subresource=sub,
        namespace=ns,
        name=name,
        field_selector=fields,
    )


def test_the_authorizer_reads_one_named_secret_at_a_time() -> None:
    g = IngressGraph()
    _put(g, _class("berth"))
    _put(g, _ingress("one", "tls", ingressClassName="berth"))
    authz = IngressAuthorizer(g)
    ok = [
        _attrs("get", "web", "tls"),
        _attrs("list", "web", fields="metadata.name=tls"),
        _attrs("watch", "web", fields="type=kubernetes.io/tls,metadata.name=tls"),
    ]
    refused = [
        _attrs("get", "web", "other"),
        _attrs("list", "web"),
        _attrs("watch", "web", fields="type=kubernetes.io/tls"),
        _attrs("list", "", fields="metadata.name=tls"),
        _attrs("list", "web", fields="metadata.name!=tls"),
        _attrs("update", "web", "tls"),
        _attrs("delete", "web", "tls"),
        _attrs("get", "web", "tls", sub="status"),
    ]
    assert [authz.decide(a)[0] for a in ok] == [True] * len(ok)
    assert [authz.decide(a)[0] for a in refused] == [False] * len(refused)
