"""Admission checks that RBAC alone cannot express.

Node restriction (:mod:`berth.apiserver.noderestriction`): a node agent (user
``system:node:<name>`` in ``system:nodes``) may write only its own Node (no role labels, no
spec changes) and Lease, and only the status (or the deletion) of pods bound to it.
"""

from __future__ import annotations

from berth.api.meta import Obj
from berth.api.resources import ResourceDef

from . import noderestriction
from .auth import UserInfo


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
    if node is not None:
        noderestriction.admit(
            node,
            verb,
            rd,
            subresource=subresource,
            namespace=namespace,
            name=name,
            old=old,
            new=new,
        )
