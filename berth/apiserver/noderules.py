"""The fixed part of what a node may do: kube-apiserver's ``NodeRules``, trimmed to what the
berth agent uses.

The node authorizer applies these rules to resources it does not decide from the node graph;
the ``system:node`` ClusterRole carries the same rules for an operator who wants to bind them
to some other identity (nothing binds it by default, as upstream). Secrets, ConfigMaps,
PersistentVolume(Claim)s and service-account tokens are deliberately absent: a node reaches
them only through the graph, so binding this role never hands out every Secret.
"""

from __future__ import annotations

from berth.api.meta import Obj


def _rule(groups: list[str], resources: list[str], verbs: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs}


NODE_RULES: tuple[Obj, ...] = (
    # access checks made on the agent's behalf (delegated authentication/authorization)
    _rule(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
    _rule(
        ["authorization.k8s.io"],
        ["subjectaccessreviews", "localsubjectaccessreviews"],
        ["create"],
    ),
    # service environment variables, and the agent's service proxy and host-gw routes
    _rule([""], ["services", "endpoints"], ["get", "list", "watch"]),
    _rule(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
    # register and report; NodeRestriction admission limits writes to the node's own Node
    _rule([""], ["nodes"], ["create", "get", "list", "watch", "update", "patch"]),
    _rule([""], ["nodes/status"], ["update", "patch"]),
    _rule(["", "events.k8s.io"], ["events"], ["create", "update", "patch"]),
)
"""Pods and Leases are decided by the node authorizer itself (own pods, own lease)."""

SYSTEM_NODE_ROLE_RULES: tuple[Obj, ...] = (
    *NODE_RULES,
    _rule([""], ["pods"], ["get", "list", "watch", "create", "delete"]),
    _rule([""], ["pods/status"], ["update", "patch"]),
    _rule([""], ["pods/eviction"], ["create"]),
    _rule(["coordination.k8s.io"], ["leases"], ["get", "create", "update", "patch", "delete"]),
)
"""The ``system:node`` ClusterRole (unbound by default)."""
