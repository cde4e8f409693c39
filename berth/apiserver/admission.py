"""Admission checks that RBAC alone cannot express.

Node restriction: a node agent (user ``system:node:<name>`` in ``system:nodes``) may write only
its own Node and Lease, and only the status (or the final deletion) of pods bound to it.
"""

from __future__ import annotations

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef

from .auth import UserInfo
from .errors import forbidden

NODE_LEASE_NAMESPACE = "kube-node-lease"


def admit(
    user: UserInfo,
    verb: str,
    rd: ResourceDef,
    *,
    subresource: str = "",
    namespace: str = "",
    name: str = "",
    old: Obj | None = None,
    new: Obj | None = None,
) -> None:
    """Raise 403 when the write is not admissible for this user."""
    node = user.node_name
    if node is None:
        return
    who = f'node "{node}"'
    if rd.kind == "Node":
        target = name or str(get_path(new, "metadata", "name") or "")
        if target != node:
            raise forbidden(f'{who} is not allowed to modify node "{target}"')
    elif rd.kind == "Lease":
        if namespace != NODE_LEASE_NAMESPACE or name != node:
            raise forbidden(f"{who} may only write its own lease in {NODE_LEASE_NAMESPACE}")
    elif rd.kind == "Pod":
        if verb == "create" and not subresource:
            raise forbidden(f"{who} can not create pods")
        bound = str(get_path(old, "spec", "nodeName") or "")
        if bound != node:
            raise forbidden(f'{who} can only {verb} pods bound to it (pod "{name}" is not)')
        if verb in ("update", "patch") and subresource not in ("status",):
            raise forbidden(f"{who} can only update the status of pods")
