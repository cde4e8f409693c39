"""The node authorizer, consulted before RBAC (kube-apiserver's ``--authorization-mode=Node,RBAC``).

A node agent (user ``system:node:<name>`` in group ``system:nodes``) holds no RBAC binding;
what it may do is decided here:

* Secrets and ConfigMaps: ``get`` (or a list/watch of one named object,
  :mod:`~berth.apiserver.objectreads`) of those referenced by pods bound to the node. Listing
  or watching a whole namespace is refused.
* PersistentVolumeClaims and the PersistentVolumes bound to them: ``get`` when a pod bound to
  the node uses the claim (and ``update``/``patch`` of the claim's status).
* ServiceAccounts: only ``create`` of the ``token`` subresource, for the account of a pod
  bound to the node (admission checks the token is bound to that pod).
* Pods: ``get`` of its own pods; ``list``/``watch`` only with the field selector
  ``spec.nodeName=<node>`` (what upstream does with AuthorizeNodeWithSelectors); ``create``,
  ``delete``, ``status`` and ``eviction`` are left to NodeRestriction admission.
* Leases: its own, in ``kube-node-lease``.
* Everything else: the fixed :data:`~berth.apiserver.noderules.NODE_RULES`.

A request the node authorizer does not allow falls through to RBAC, so an operator can still
grant a node more with an explicit binding.
"""

from __future__ import annotations

import logging

from berth.api.selectors import pinned_field_value

from .auth import NODES
from .errors import ApiError
from .ingressauthz import INGRESS_USER, IngressAuthorizer
from .ingressgraph import IngressGraph
from .nodegraph import CONFIGMAP, POD, PV, PVC, SECRET, SERVICEACCOUNT, NodeGraph
from .noderestriction import NODE_LEASE_NAMESPACE
from .noderules import NODE_RULES
from .objectreads import single_object_read
from .rbac import RBAC_GROUP, Attributes, RbacAuthorizer, rule_allows
from .registry import Registry

log = logging.getLogger(__name__)


class NodeAuthorizer:
    """Allows or has no opinion (never denies): see the module docstring."""

    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def decide(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        """``(allowed, why not)`` for a request by node ``node``."""
        if not attrs.resource_request:
            return False, ""
        group, resource = attrs.api_group, attrs.resource
        if group == "":
            if resource in (SECRET, CONFIGMAP):
                return self._read_one(node, attrs)
            if resource == PVC:
                if attrs.subresource == "status":
                    return self._related(node, attrs, verbs=("update", "patch"), sub="status")
                return self._related(node, attrs, verbs=("get",))
            if resource == PV:
                # its own local volume: read it, drop its cleanup finalizer (NodeRestriction
                # admission allows nothing else)
                if (
                    attrs.name
                    and self.graph.holds_local_volume(node, attrs.name)
                    and attrs.verb in ("get", "update", "patch")
                    and not attrs.subresource
                ):
                    return True, ""
                return self._related(node, attrs, verbs=("get",))
            if resource == SERVICEACCOUNT:
                return self._create_token(node, attrs)
            if resource == POD:
                return self._pod(node, attrs)
        elif group == "coordination.k8s.io" and resource == "leases":
            return self._lease(node, attrs)
        if any(rule_allows(rule, attrs) for rule in NODE_RULES):
            return True, ""
        return False, ""

    def _linked(self, node: str, resource: str, attrs: Attributes, name: str) -> tuple[bool, str]:
        if not name:
            return False, "no object name found"
        if self.graph.links(node, resource, attrs.namespace, name):
            return True, ""
        return False, f"no relationship found between node '{node}' and this object"

    def _read_one(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        name, why_not = single_object_read(attrs, f"node '{node}'")
        if not name:
            return False, why_not
        return self._linked(node, attrs.resource, attrs, name)

    def _related(
        self, node: str, attrs: Attributes, *, verbs: tuple[str, ...], sub: str = ""
    ) -> tuple[bool, str]:
        if attrs.verb not in verbs:
            return False, f"can only {'/'.join(verbs)} individual resources of this type"
        if attrs.subresource != sub:
            return False, "cannot access this subresource"
        return self._linked(node, attrs.resource, attrs, attrs.name)

    def _create_token(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        if attrs.verb != "create" or attrs.subresource != "token" or not attrs.name:
            return False, "can only create tokens for individual service accounts"
        return self._linked(node, SERVICEACCOUNT, attrs, attrs.name)

    def _pod(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        verb, sub = attrs.verb, attrs.subresource
        if sub == "":
            if verb == "get":
                return self._linked(node, POD, attrs, attrs.name)
            if verb in ("list", "watch"):
                if pinned_field_value(attrs.field_selector, "spec.nodeName") == node:
                    return True, ""
                if attrs.name:
                    return self._linked(node, POD, attrs, attrs.name)
                return False, "can only list/watch pods with spec.nodeName field selector"
            if verb in ("create", "delete"):
                return True, ""  # NodeRestriction admission: its own pods only
        elif (sub == "status" and verb in ("update", "patch")) or (
            sub == "eviction" and verb == "create"
        ):
            return True, ""  # NodeRestriction admission: its own pods only
        return False, ""

    def _lease(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        if attrs.verb not in ("get", "create", "update", "patch", "delete"):
            return False, "can only get, create, update, patch, or delete a node lease"
        if attrs.namespace != NODE_LEASE_NAMESPACE:
            return False, f'can only access leases in the "{NODE_LEASE_NAMESPACE}" namespace'
        # on create the name is in the body: NodeRestriction admission checks it
        if attrs.verb != "create" and attrs.name != node:
            return False, "can only access node lease with the same name as the requesting node"
        return True, ""


class NodeAndRbacAuthorizer(RbacAuthorizer):
    """The node authorizer for node identities, the ingress authorizer for the ingress
    controller's (:mod:`~berth.apiserver.ingressauthz`), then RBAC for everybody.

    A subclass so that the RBAC cache (``apply``) and every existing ``allowed`` call site
    keep working unchanged."""

    def __init__(self, graph: NodeGraph, ingress_graph: IngressGraph | None = None) -> None:
        super().__init__()
        self.nodes = NodeAuthorizer(graph)
        self.ingress = IngressAuthorizer(IngressGraph() if ingress_graph is None else ingress_graph)

    def allowed(self, attrs: Attributes) -> bool:
        node = attrs.user.node_name
        if node is not None and self.nodes.decide(node, attrs)[0]:
            return True
        if attrs.user.name == INGRESS_USER and self.ingress.decide(attrs)[0]:
            return True
        return super().allowed(attrs)

    def denial_reason(self, attrs: Attributes) -> str:
        """Why the node (or ingress) authorizer refused (empty for other users): appended to
        the 403."""
        node = attrs.user.node_name
        if node is not None:
            return self.nodes.decide(node, attrs)[1]
        if attrs.user.name == INGRESS_USER:
            return self.ingress.decide(attrs)[1]
        return ""


LEGACY_NODE_BINDING = "system:node"


async def retire_node_group_binding(registry: Registry) -> None:
    """Take group ``system:nodes`` out of the ``system:node`` ClusterRoleBinding.

    Clusters bootstrapped before the node authorizer bound every node to a role reading every
    Secret; bootstrap only creates missing objects, so that subject would outlive the upgrade
    and keep the hole open. Another API server doing the same at once is harmless."""
    rd = registry.resources.by_kind(RBAC_GROUP, "ClusterRoleBinding")
    assert rd is not None
    try:
        binding = await registry.get(rd, "", LEGACY_NODE_BINDING)
    except ApiError as exc:
        if exc.code == 404:
            return
        raise
    subjects = binding.get("subjects") or []
    kept = [
        s
        for s in subjects
        if not (isinstance(s, dict) and s.get("kind") == "Group" and s.get("name") == NODES)
    ]
    if len(kept) == len(subjects):
        return
    binding["subjects"] = kept
    try:
        await registry.update(rd, "", LEGACY_NODE_BINDING, binding, user=None)
    except ApiError as exc:
        if exc.code != 409:
            raise
        return  # another API server rewrote it first
    log.warning(
        "removed group %s from ClusterRoleBinding %s: nodes are authorized by the node"
        " authorizer now",
        NODES,
        LEGACY_NODE_BINDING,
    )
