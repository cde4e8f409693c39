"""ReplicationController controller: the ReplicaSet controller's loop over core/v1
ReplicationControllers, as upstream runs it (an adapter around its ReplicaSet controller).

The two kinds differ, for the controller, only in their selector: a ReplicationController's
``spec.selector`` is a plain label map (``{app: web}``), every key an equality.
"""

from __future__ import annotations

from berth.api.resources import REPLICATIONCONTROLLERS, ResourceDef
from berth.api.selectors import LabelSelector, selector_from_set
from berth.controllers.replicaset import ReplicaSetController
from berth.machinery.objects import Frozen


class ReplicationControllerController(ReplicaSetController):
    kind = "ReplicationController"
    resource: ResourceDef = REPLICATIONCONTROLLERS

    def selector_of(self, owner: Frozen) -> LabelSelector:
        sel = (owner.get("spec") or {}).get("selector") or {}
        return selector_from_set({str(k): str(v) for k, v in sel.items()})
