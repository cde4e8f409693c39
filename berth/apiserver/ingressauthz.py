"""The ingress authorizer: which Secrets berth's ingress controller may read.

The controller runs on every runc node as ``system:berth-ingress``, its credentials
(``ingress.conf``) on the node's disk. Upstream ingress controllers read every Secret in the
cluster; here that would undo the node authorizer's promise (a compromised node reads only
its own pods' Secrets). So the identity holds no RBAC grant on Secrets, and this authorizer,
consulted before RBAC as the node authorizer is, allows exactly:

* ``get`` of a Secret that an Ingress served by berth names in ``spec.tls[].secretName``,
  in that Ingress's namespace (:class:`~berth.apiserver.ingressgraph.IngressGraph`);
* ``list``/``watch`` of such a Secret in its namespace, pinned to it by the field selector
  ``metadata.name=<name>`` (the controller's per-Secret informer, as a kubelet watches one
  object): the node authorizer's rule (:mod:`~berth.apiserver.objectreads`).

Listing or watching a namespace, or all namespaces, is refused; so is any write. A request
it does not allow falls through to RBAC (an operator can still grant more explicitly). As
with the node authorizer, a watch is authorized when it starts: the controller closes its
watch of a Secret once no Ingress names it.
"""

from __future__ import annotations

from .ingressgraph import IngressGraph
from .objectreads import single_object_read
from .rbac import Attributes

INGRESS_USER = "system:berth-ingress"
"""The ingress controller's identity (its client certificate's common name)."""


class IngressAuthorizer:
    """Allows or has no opinion (never denies): see the module docstring."""

    def __init__(self, graph: IngressGraph) -> None:
        self.graph = graph

    def decide(self, attrs: Attributes) -> tuple[bool, str]:
        """``(allowed, why not)`` for a request by the ingress identity."""
        if not attrs.resource_request or attrs.api_group != "" or attrs.resource != "secrets":
            return False, ""
        name, why_not = single_object_read(attrs, "the ingress controller")
        if not name:
            return False, why_not
        if self.graph.names_secret(attrs.namespace, name):
            return True, ""
        return False, "no Ingress served by berth names this secret for TLS"
