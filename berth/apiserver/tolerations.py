"""DefaultTolerationSeconds admission: how long a pod stays bound to a node that stopped
being ready or reachable before the node lifecycle controller evicts it.

As kube-apiserver's plugin of that name: on a pod's create and update, a pod with no
toleration for the ``node.kubernetes.io/not-ready`` (resp. ``unreachable``) NoExecute taint
gets one, ``operator: Exists``, for ``tolerationSeconds`` (300 by default, the flags
``--default-not-ready-toleration-seconds`` / ``--default-unreachable-toleration-seconds``;
here the config file's ``defaultTolerationSeconds``, set from the cluster spec's
``podEvictionTimeout``). A toleration counts when its key is that taint's or empty and its
effect NoExecute or empty, whatever its operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.meta import Obj

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
DEFAULT_SECONDS = 300


@dataclass(frozen=True, slots=True)
class DefaultTolerationSeconds:
    not_ready: int = DEFAULT_SECONDS
    unreachable: int = DEFAULT_SECONDS

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any] | None) -> DefaultTolerationSeconds:
        """``{notReady: N, unreachable: N}`` (either may be left out); raises ValueError."""
        doc = doc or {}
        if not isinstance(doc, Mapping):
            raise ValueError("defaultTolerationSeconds must be a mapping")
        unknown = sorted(set(doc) - {"notReady", "unreachable"})
        if unknown:
            raise ValueError(
                f"defaultTolerationSeconds: unknown key {unknown[0]!r} "
                "(expected notReady, unreachable)"
            )
        values = {}
        for key in ("notReady", "unreachable"):
            value = doc.get(key, DEFAULT_SECONDS)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"defaultTolerationSeconds.{key} must be a whole number of seconds >= 0, "
                    f"got {value!r}"
                )
            values[key] = value
        return cls(not_ready=values["notReady"], unreachable=values["unreachable"])


def _tolerates(tolerations: list[Any], key: str) -> bool:
    for t in tolerations:
        if not isinstance(t, dict):
            continue
        if t.get("key") in (None, "", key) and t.get("effect") in (None, "", "NoExecute"):
            return True
    return False


def add_default_tolerations(pod: Obj, defaults: DefaultTolerationSeconds) -> None:
    """Give ``pod`` the not-ready/unreachable tolerations it lacks (in place)."""
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return
    tolerations = spec.get("tolerations")
    if not isinstance(tolerations, list):
        tolerations = spec["tolerations"] = []
    for key, seconds in ((NOT_READY, defaults.not_ready), (UNREACHABLE, defaults.unreachable)):
        if not _tolerates(tolerations, key):
            tolerations.append(
                {
                    "key": key,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": seconds,
                }
            )
