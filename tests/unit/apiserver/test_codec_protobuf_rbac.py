from __future__ import annotations

import os

import pytest

from berth.api.meta import Obj
from berth.api.resources import TABLE
from berth.apiserver.admission import admit
from berth.apiserver.auth import UserInfo, user_from_peercert
from berth.apiserver.codec import ENVELOPE, Codec, CodecError
from berth.apiserver.errors import ApiError
from berth.apiserver.nodeauthz import NodeAndRbacAuthorizer
from berth.apiserver.nodegraph import NodeGraph
from berth.apiserver.protobuf import MAGIC, decode_body
from berth.apiserver.rbac import Attributes
from berth.store.interface import KeyValue
from tests.unit.apiserver.rbac_checks import bootstrap_authorizer, can


def test_secrets_are_sealed_and_other_kinds_are_not() -> None:
    codec = Codec(os.urandom(32))
    secret: Obj = {
        "kind": "Secret",
        "metadata": {"name": "s", "resourceVersion": "5"},
        "data": {"k": "c2VjcmV0"},
    }
    sealed = codec.encode("/registry/core/secrets/default/s", secret)
    assert sealed.startswith(ENVELOPE)
    assert b"c2VjcmV0" not in sealed
    assert secret["metadata"]["resourceVersion"] == "5"  # encode leaves the caller's object alone
    back = codec.decode(KeyValue("/registry/core/secrets/default/s", sealed, 3, 9))
    assert back["data"] == {"k": "c2VjcmV0"}
    assert back["metadata"]["resourceVersion"] == "9"
    plain = codec.encode("/registry/core/configmaps/default/c", {"data": {"a": "b"}})
    assert plain == b'{"data":{"a":"b"}}'
    # A value moved to another key (or read with another key) does not open.
    with pytest.raises(CodecError):
        codec.decode(KeyValue("/registry/core/secrets/default/other", sealed, 3, 9))
    with pytest.raises(CodecError):
        Codec(os.urandom(32)).decode(KeyValue("/registry/core/secrets/default/s", sealed, 3, 9))


def _field(num: int, payload: bytes) -> bytes:
    return bytes([num << 3 | 2, len(payload)]) + payload


def test_protobuf_configmap_body() -> None:
    meta = _field(1, b"cm1") + _field(3, b"") + _field(11, _field(1, b"app") + _field(2, b"web"))
    raw = _field(1, meta) + _field(2, _field(1, b"a") + _field(2, b"b"))
    type_meta = _field(1, b"v1") + _field(2, b"ConfigMap")
    body = MAGIC + _field(1, type_meta) + _field(2, raw)
    assert decode_body(body) == {
        "kind": "ConfigMap",
        "apiVersion": "v1",
        "metadata": {"name": "cm1", "labels": {"app": "web"}},
        "data": {"a": "b"},
    }


def test_protobuf_errors() -> None:
    with pytest.raises(ApiError) as exc:
        decode_body(MAGIC + _field(1, _field(2, b"StatefulSet")))
    assert exc.value.code == 415
    for junk in (b"no magic", MAGIC + b"\xff\xff\xff", MAGIC + bytes([0x0A, 50]) + b"short"):
        with pytest.raises(ApiError) as exc:
            decode_body(junk)
        assert exc.value.code in (400, 415)


def test_peer_certificate_identity() -> None:
    cert = {"subject": ((("organizationName", "system:masters"),), (("commonName", "admin"),))}
    user = user_from_peercert(cert)
    assert user == UserInfo("admin", ("system:masters", "system:authenticated"))
    assert user_from_peercert({}) is None


def test_bootstrap_policy_for_components() -> None:
    a = bootstrap_authorizer()
    scheduler = UserInfo("system:kube-scheduler", ("system:authenticated",))
    assert can(a, scheduler, "create", "pods", sub="binding", ns="x")
    assert can(a, scheduler, "watch", "nodes")
    assert not can(a, scheduler, "delete", "nodes")
    proxy = UserInfo("system:kube-proxy", ("system:authenticated",))
    assert can(a, proxy, "list", "endpoints")
    assert not can(a, proxy, "create", "pods", ns="x")
    node = UserInfo("system:node:n1", ("system:nodes", "system:authenticated"))
    # RBAC grants nodes nothing (no binding); the node authorizer in front of it does
    assert not can(a, node, "get", "secrets", ns="default")
    assert not can(a, node, "patch", "nodes", sub="status")
    chain = bootstrap_authorizer(NodeAndRbacAuthorizer(NodeGraph()))
    assert can(chain, node, "patch", "nodes", sub="status")
    assert not can(chain, node, "get", "secrets", ns="default")
    lease = Attributes(
        user=node,
        verb="update",
        resource_request=True,
        api_group="coordination.k8s.io",
        resource="leases",
        namespace="kube-node-lease",
        name="n1",
    )
    assert chain.allowed(lease)
    nobody = UserInfo("eve", ("system:authenticated",))
    assert not can(a, nobody, "get", "secrets", ns="default")
    assert a.allowed(
        Attributes(user=nobody, verb="get", resource_request=False, path="/apis/apps/v1")
    )
    assert not a.allowed(
        Attributes(user=nobody, verb="get", resource_request=False, path="/metrics")
    )


def test_role_bindings_scope_to_their_namespace() -> None:
    a = bootstrap_authorizer()
    a.apply(
        "Role",
        {
            "metadata": {"name": "r", "namespace": "team"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get"],
                    "resourceNames": ["only-this"],
                }
            ],
        },
        deleted=False,
    )
    binding: Obj = {
        "metadata": {"name": "b", "namespace": "team"},
        "roleRef": {"kind": "Role", "name": "r"},
        "subjects": [{"kind": "ServiceAccount", "name": "bot"}],
    }
    a.apply("RoleBinding", binding, deleted=False)
    bot = UserInfo("system:serviceaccount:team:bot", ("system:authenticated",))
    allowed = Attributes(
        user=bot,
        verb="get",
        resource_request=True,
        resource="configmaps",
        namespace="team",
        name="only-this",
    )
    assert a.allowed(allowed)
    assert not a.allowed(
        Attributes(
            user=bot,
            verb="get",
            resource_request=True,
            resource="configmaps",
            namespace="team",
            name="other",
        )
    )
    assert not a.allowed(
        Attributes(
            user=bot,
            verb="get",
            resource_request=True,
            resource="configmaps",
            namespace="elsewhere",
            name="only-this",
        )
    )
    a.apply("RoleBinding", binding, deleted=True)
    assert not a.allowed(allowed)


def test_node_restriction_admission() -> None:
    node_user = UserInfo("system:node:n1", ("system:nodes",))
    nodes = TABLE.lookup("", "v1", "nodes")
    pods = TABLE.lookup("", "v1", "pods")
    assert nodes is not None
    assert pods is not None
    admit(node_user, "patch", nodes, subresource="status", name="n1")
    with pytest.raises(ApiError):
        admit(node_user, "patch", nodes, subresource="status", name="n2")
    bound: Obj = {"spec": {"nodeName": "n1"}}
    admit(node_user, "update", pods, subresource="status", name="p", old=bound)
    admit(node_user, "delete", pods, name="p", old=bound)
    with pytest.raises(ApiError):
        admit(node_user, "delete", pods, name="p", old={"spec": {"nodeName": "n2"}})
    with pytest.raises(ApiError):
        admit(node_user, "update", pods, name="p", old=bound)
    with pytest.raises(ApiError):
        admit(node_user, "create", pods, name="p", new=bound)
    admit(UserInfo("admin", ("system:masters",)), "delete", pods, name="p", old={"spec": {}})
