"""Which nodes a pod may run on, by the pod's own rules: taints and tolerations, the
``nodeSelector`` and required node affinity.

Shared by the scheduler and the DaemonSet controller (upstream keeps these in
component-helpers' ``scheduling/corev1`` for the same two users): a daemon pod goes exactly
where the scheduler would let it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from berth.api.selectors import (
    UNSATISFIABLE,
    Requirement,
    SelectorError,
    node_selector_requirements,
)

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str
    effect: str

    def __str__(self) -> str:
        return f"{{{self.key}: {self.value}}}"


@dataclass(frozen=True, slots=True)
class Toleration:
    key: str
    operator: str
    value: str
    effect: str

    def tolerates(self, taint: Taint) -> bool:
        """As upstream's ``ToleratesTaint``: an empty effect matches every effect, an empty
        key (with ``Exists``) every key."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.key and self.key != taint.key:
            return False
        if self.operator == "Exists":
            return True
        if self.operator in ("", "Equal"):
            return bool(self.key) and self.value == taint.value
        return False


def node_taints(node: Mapping[str, Any]) -> tuple[Taint, ...]:
    return tuple(
        Taint(str(t.get("key")), str(t.get("value") or ""), str(t.get("effect")))
        for t in (node.get("spec") or {}).get("taints") or ()
    )


def pod_tolerations(spec: Mapping[str, Any]) -> tuple[Toleration, ...]:
    return tuple(
        Toleration(
            str(t.get("key") or ""),
            str(t.get("operator") or "Equal"),
            str(t.get("value") or ""),
            str(t.get("effect") or ""),
        )
        for t in spec.get("tolerations") or ()
    )


def first_untolerated(
    tolerations: tuple[Toleration, ...], taints: tuple[Taint, ...]
) -> Taint | None:
    """The first taint no toleration tolerates, or None."""
    for taint in taints:
        if not any(t.tolerates(taint) for t in tolerations):
            return taint
    return None


NodeSelectorTerm = tuple[tuple[Requirement, ...], tuple[Requirement, ...]]
"""One ``nodeSelectorTerms`` entry: its label requirements and its field requirements."""


def _term(term: Mapping[str, Any]) -> NodeSelectorTerm:
    try:
        return (
            node_selector_requirements(term.get("matchExpressions")),
            node_selector_requirements(term.get("matchFields")),
        )
    except SelectorError:
        return ((UNSATISFIABLE,), ())  # a term that does not parse matches no node


@dataclass(frozen=True, slots=True)
class RequiredNodeAffinity:
    """A pod's ``nodeSelector`` and its required node affinity terms (ORed)."""

    node_selector: tuple[tuple[str, str], ...] = ()
    terms: tuple[NodeSelectorTerm, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.node_selector or self.terms)

    def matches(self, labels: Mapping[str, str], name: str) -> bool:
        for k, v in self.node_selector:
            if labels.get(k) != v:
                return False
        return not self.terms or any(_term_matches(t, labels, name) for t in self.terms)


def _term_matches(term: NodeSelectorTerm, labels: Mapping[str, str], name: str) -> bool:
    exprs, fields = term
    if not exprs and not fields:
        return False  # an empty term matches nothing (as in Kubernetes)
    if not all(r.matches(labels) for r in exprs):
        return False
    # matchFields knows one field, metadata.name
    return all(r.matches({"metadata.name": name}) for r in fields if r.key == "metadata.name")


def required_node_affinity(spec: Mapping[str, Any]) -> RequiredNodeAffinity:
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    return RequiredNodeAffinity(
        node_selector=tuple(sorted((spec.get("nodeSelector") or {}).items())),
        terms=tuple(_term(t) for t in required.get("nodeSelectorTerms") or ()),
    )
