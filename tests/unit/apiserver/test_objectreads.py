"""The single-object read rule the node and ingress authorizers share: a get of one named
object, or a list/watch pinned to one by ``metadata.name``, in one namespace; nothing else.
Both authorizers refuse the same requests with the same reasons (only the reader's name
differs), and allow a read only for the one object the rule names."""

from __future__ import annotations

import pytest

from berth.apiserver.auth import UserInfo
from berth.apiserver.ingressauthz import INGRESS_USER, IngressAuthorizer
from berth.apiserver.ingressgraph import IngressGraph
from berth.apiserver.nodeauthz import NodeAuthorizer
from berth.apiserver.nodegraph import NodeGraph
from berth.apiserver.objectreads import single_object_read
from berth.apiserver.rbac import Attributes


def _attrs(
    verb: str, ns: str = "web", name: str = "", fields: str = "", sub: str = ""
) -> Attributes:
    return Attributes(
        user=UserInfo(INGRESS_USER),
        verb=verb,
        resource_request=True,
        resource="secrets",
        subresource=sub,
        namespace=ns,
        name=name,
        field_selector=fields,
    )


ONE_OBJECT = [
    _attrs("get", name="tls"),
    _attrs("list", fields="metadata.name=tls"),
    _attrs("watch", fields="type=kubernetes.io/tls,metadata.name=tls"),
    _attrs("watch", name="tls"),  # a watch of /namespaces/web/secrets/tls names it too
]


@pytest.mark.parametrize("attrs", ONE_OBJECT)
def test_one_named_object_is_read(attrs: Attributes) -> None:
    assert single_object_read(attrs, "node 'n1'") == ("tls", "")


@pytest.mark.parametrize("attrs", ONE_OBJECT)
def test_both_authorizers_ask_about_that_one_object(attrs: Attributes) -> None:
    asked: list[tuple[str, ...]] = []

    def related(*args: str) -> bool:
        asked.append(args)
        return True

    nodes = NodeGraph()
    nodes.links = related  # type: ignore[method-assign,assignment]
    ingresses = IngressGraph()
    ingresses.names_secret = related  # type: ignore[method-assign,assignment]
    assert NodeAuthorizer(nodes).decide("n1", attrs) == (True, "")
    assert IngressAuthorizer(ingresses).decide(attrs) == (True, "")
    assert asked == [("n1", "secrets", "web", "tls"), ("web", "tls")]


REFUSED = [
    (_attrs("update", name="tls"), "can only read resources of this type"),
    (_attrs("delete", name="tls"), "can only read resources of this type"),
    (_attrs("deletecollection"), "can only read resources of this type"),
    (_attrs("get", name="tls", sub="status"), "cannot read subresource"),
    (_attrs("list", ns="", fields="metadata.name=tls"), "can only read namespaced object"),
    (_attrs("watch", ns=""), "can only read namespaced object of this type"),
    (_attrs("list"), "READER can only get individual secrets"),
    (_attrs("watch", fields="type=kubernetes.io/tls"), "READER can only get individual secrets"),
    (_attrs("list", fields="metadata.name!=tls"), "READER can only get individual secrets"),
    (_attrs("list", fields="metadata.name="), "READER can only get individual secrets"),
    (_attrs("get"), "no object name found"),
]


@pytest.mark.parametrize(("attrs", "why"), REFUSED)
def test_anything_else_is_refused_with_its_reason(attrs: Attributes, why: str) -> None:
    name, why_not = single_object_read(attrs, "READER")
    assert name == ""
    assert why_not.startswith(why)


@pytest.mark.parametrize(("attrs", "why"), REFUSED)
def test_both_authorizers_refuse_what_the_rule_refuses(attrs: Attributes, why: str) -> None:
    """Even with the object related to the reader (an Ingress names it, a pod of the node
    references it), a request outside the rule is refused, with the rule's reason."""
    nodes = NodeGraph()
    nodes.links = lambda *_args: True  # type: ignore[method-assign]
    ingresses = IngressGraph()
    ingresses.names_secret = lambda *_args: True  # type: ignore[method-assign]
    by_node = NodeAuthorizer(nodes).decide("n1", attrs)
    by_ingress = IngressAuthorizer(ingresses).decide(attrs)
    assert not by_node[0]
    assert by_node[1].startswith(why.replace("READER", "node 'n1'"))
    assert not by_ingress[0]
    assert by_ingress[1].startswith(why.replace("READER", "the ingress controller"))
