"""An authorizer loaded with the bootstrap policy, and a one-line "may this user do that?"
(shared by test_component_roles.py and test_codec_protobuf_rbac.py)."""

from __future__ import annotations

from berth.apiserver.auth import UserInfo
from berth.apiserver.rbac import Attributes, RbacAuthorizer, bootstrap_policy


def bootstrap_authorizer(a: RbacAuthorizer | None = None) -> RbacAuthorizer:
    """``a`` (a fresh RbacAuthorizer by default) with every bootstrap role and binding applied."""
    a = a or RbacAuthorizer()
    for obj in bootstrap_policy():
        a.apply(str(obj["kind"]), obj, deleted=False)
    return a


def can(
    a: RbacAuthorizer,
    user: UserInfo,
    verb: str,
    resource: str,
    *,
    group: str = "",
    sub: str = "",
    ns: str = "",
    name: str = "",
) -> bool:
    return a.allowed(
        Attributes(
            user=user,
            verb=verb,
            resource_request=True,
            api_group=group,
            resource=resource,
            subresource=sub,
            namespace=ns,
            name=name,
        )
    )
