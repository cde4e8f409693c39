"""Bring stored bootstrap ClusterRoles to the rules this version ships.

Bootstrap roles are created when absent; without this, a cluster created by an older berth
would keep, for instance, the controller manager's former ``*`` on everything. A ClusterRole
labelled ``kubernetes.io/bootstrapping=rbac-defaults`` gets the shipped rules at server start
unless it is annotated ``rbac.authorization.kubernetes.io/autoupdate: "false"`` (kube's opt-out
for operators who edit a bootstrap role). Unlike kube, which only adds missing rules, this also
removes rules the shipped role no longer has: narrowing a role is the point.
"""

from __future__ import annotations

import logging

from berth.api.meta import Obj, get_path

from .errors import ApiError
from .rbac import RBAC_GROUP
from .registry import Registry

log = logging.getLogger(__name__)

AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAPPING = "kubernetes.io/bootstrapping"


async def reconcile_bootstrap_roles(registry: Registry, policy: list[Obj]) -> None:
    rd = registry.resources.by_kind(RBAC_GROUP, "ClusterRole")
    assert rd is not None
    for wanted in policy:
        if wanted.get("kind") != "ClusterRole":
            continue
        name = str(get_path(wanted, "metadata", "name"))
        try:
            stored = await registry.get(rd, "", name)
        except ApiError as exc:
            if exc.code == 404:
                continue
            raise
        labels = get_path(stored, "metadata", "labels") or {}
        annotations = get_path(stored, "metadata", "annotations") or {}
        if labels.get(BOOTSTRAPPING) != "rbac-defaults" or annotations.get(AUTOUPDATE) == "false":
            continue
        if stored.get("rules") == wanted.get("rules"):
            continue
        stored["rules"] = wanted.get("rules")
        try:
            await registry.update(rd, "", name, stored, user=None)
        except ApiError as exc:
            if exc.reason != "Conflict":  # another server reconciled it meanwhile
                raise
            continue
        log.info("bootstrap ClusterRole %s: rules brought to this version's", name)
