"""Priority admission: a pod's ``spec.priority`` and ``preemptionPolicy`` come from its
``priorityClassName`` (or the cluster's ``globalDefault`` PriorityClass), as kube-apiserver's
``Priority`` plugin sets them; an unknown class is refused, and so is a pod that states a
priority or policy other than its class's. The system classes ``system-cluster-critical``
and ``system-node-critical`` are created at start.

PriorityClasses are kept from the watch hub (and this server's own writes); a class missing
there is read from the store before a pod naming it is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef

from .errors import forbidden

if TYPE_CHECKING:
    from .registry import Registry

PREFIX = "/registry/scheduling.k8s.io/priorityclasses/"
PREEMPT = "PreemptLowerPriority"
HIGHEST_USER_PRIORITY = 1_000_000_000
"""Classes not named ``system-*`` may not be above this (upstream's limit)."""

SYSTEM_CLASSES: tuple[Obj, ...] = (
    {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "system-node-critical"},
        "value": 2_000_001_000,
        "description": "Used for system critical pods that must not be moved from their"
        " current node.",
    },
    {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": "system-cluster-critical"},
        "value": 2_000_000_000,
        "description": "Used for system critical pods that must run in the cluster, but can"
        " be moved to another node if necessary.",
    },
)


class PriorityAdmission:
    def __init__(self) -> None:
        self.classes: dict[str, Obj] = {}
        # global_default()'s answer until a class changes (every pod create asks)
        self._default: tuple[Obj | None] | None = None

    def remember(self, key: str, obj: Obj | None) -> None:
        name = key[len(PREFIX) :]
        self._default = None
        if obj is None:
            self.classes.pop(name, None)
        else:
            self.classes[name] = obj

    def global_default(self) -> Obj | None:
        if self._default is not None:
            return self._default[0]
        # The oldest default wins should two be marked (upstream allows one at a time).
        found = [c for c in self.classes.values() if c.get("globalDefault") is True]
        found.sort(key=lambda c: str(get_path(c, "metadata", "creationTimestamp") or ""))
        self._default = (found[0] if found else None,)
        return self._default[0]

    async def admit_pod(self, reg: Registry, rd: ResourceDef, pod: Obj) -> None:
        spec = pod.get("spec")
        if not isinstance(spec, dict):
            return
        wanted = spec.get("priorityClassName")
        if not wanted:
            pc = self.global_default()
            if pc is not None:
                spec["priorityClassName"] = get_path(pc, "metadata", "name")
        else:
            pc = self.classes.get(str(wanted))
            if pc is None:
                pc_rd = reg.resources.lookup("scheduling.k8s.io", "v1", "priorityclasses")
                kv = await reg.store.get(pc_rd.key("", str(wanted))) if pc_rd else None
                if kv is None:
                    name = _name(pod)
                    raise forbidden(
                        f'pods "{name}" is forbidden: no PriorityClass with name {wanted} was'
                        " found",
                        rd,
                        name,
                    )
                pc = reg.codec.decode(kv)
        value = pc.get("value", 0) if pc is not None else 0
        policy = (pc.get("preemptionPolicy") if pc is not None else None) or PREEMPT
        given = spec.get("priority")
        if given is not None and given != value:
            name = _name(pod)
            raise forbidden(
                f'pods "{name}" is forbidden: the integer value of priority ({given}) must not'
                f" be provided in pod spec; priority admission controller computed {value}"
                " from the given PriorityClass name",
                rd,
                name,
            )
        spec["priority"] = value
        given_policy = spec.get("preemptionPolicy")
        if given_policy is not None and given_policy != policy:
            name = _name(pod)
            raise forbidden(
                f'pods "{name}" is forbidden: the string value of PreemptionPolicy'
                f" ({given_policy}) must not be provided in pod spec; priority admission"
                f" controller computed {policy} from the given PriorityClass name",
                rd,
                name,
            )
        spec["preemptionPolicy"] = policy


def _name(pod: Obj) -> str:
    """The pod's name, for a refusal (read only then: every pod create passes here)."""
    return str(get_path(pod, "metadata", "name") or "")
