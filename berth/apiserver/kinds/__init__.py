"""Per-kind strategies, one module per kind (or small family), and the catalog that maps a
served resource to its strategy.

Adding a built-in kind: its :class:`~berth.api.resources.ResourceDef` in
``berth/api/resources.py``, a module here with a :class:`KindStrategy` subclass (``group`` and
``kind`` set, overriding only what differs from the base), and one line in :data:`BUILTIN`.

A resource added at run time (a custom resource) gets its strategy with
:meth:`Strategies.register`; a resource with none uses :attr:`Strategies.default`.
"""

from __future__ import annotations

from berth.api.resources import ResourceDef

from .autoscaling import HorizontalPodAutoscalerStrategy
from .base import KindStrategy
from .batch import CronJobStrategy, JobStrategy
from .config import ConfigMapStrategy, SecretStrategy
from .coordination import LeaseStrategy
from .customresourcedefinitions import CustomResourceDefinitionStrategy
from .discovery import EndpointSliceStrategy
from .events import EventStrategy
from .limitranges import LimitRangeStrategy
from .namespaces import NamespaceStrategy
from .networkpolicies import NetworkPolicyStrategy
from .nodes import NodeStrategy
from .pods import PodStrategy
from .policy import PodDisruptionBudgetStrategy
from .quota import ResourceQuotaStrategy
from .rbac import (
    ClusterRoleBindingStrategy,
    ClusterRoleStrategy,
    RoleBindingStrategy,
    RoleStrategy,
)
from .replicationcontrollers import ReplicationControllerStrategy
from .resourcemetrics import NodeMetricsStrategy, PodMetricsStrategy
from .scheduling import PriorityClassStrategy
from .serviceaccounts import ServiceAccountStrategy
from .services import EndpointsStrategy, ServiceStrategy
from .statefulsets import ControllerRevisionStrategy, StatefulSetStrategy
from .storage import (
    PersistentVolumeClaimStrategy,
    PersistentVolumeStrategy,
    StorageClassStrategy,
)
from .workloads import DaemonSetStrategy, DeploymentStrategy, ReplicaSetStrategy

__all__ = ["BUILTIN", "KindStrategy", "Strategies", "strategy_for"]

BUILTIN: tuple[KindStrategy, ...] = (
    NamespaceStrategy(),
    NodeStrategy(),
    PodStrategy(),
    ServiceStrategy(),
    EndpointsStrategy(),
    EndpointSliceStrategy(),
    ConfigMapStrategy(),
    SecretStrategy(),
    EventStrategy(),
    ServiceAccountStrategy(),
    LeaseStrategy(),
    PersistentVolumeStrategy(),
    PersistentVolumeClaimStrategy(),
    StorageClassStrategy(),
    DeploymentStrategy(),
    ReplicaSetStrategy(),
    ReplicationControllerStrategy(),
    DaemonSetStrategy(),
    JobStrategy(),
    CronJobStrategy(),
    StatefulSetStrategy(),
    ControllerRevisionStrategy(),
    PodDisruptionBudgetStrategy(),
    NetworkPolicyStrategy(),
    ResourceQuotaStrategy(),
    LimitRangeStrategy(),
    PriorityClassStrategy(),
    RoleStrategy(),
    ClusterRoleStrategy(),
    RoleBindingStrategy(),
    ClusterRoleBindingStrategy(),
    CustomResourceDefinitionStrategy(),
    HorizontalPodAutoscalerStrategy(),
    NodeMetricsStrategy(),
    PodMetricsStrategy(),
)
"""The built-in kinds' strategies, found by (group, kind)."""


class Strategies:
    """Which strategy serves each resource. One per API server: resources registered at run
    time (custom resources) are that server's alone."""

    def __init__(
        self, builtins: tuple[KindStrategy, ...] = BUILTIN, default: KindStrategy | None = None
    ) -> None:
        self._by_kind = {(s.group, s.kind): s for s in builtins}
        self._by_path: dict[tuple[str, str, str], KindStrategy] = {}
        self.default = default or KindStrategy()
        """The strategy of a resource nothing else claims."""

    def of(self, rd: ResourceDef) -> KindStrategy:
        """The strategy serving ``rd``: one registered for it, else the built-in of its kind,
        else :attr:`default`. Called on every request: one dict lookup in the usual case."""
        path = (rd.group, rd.version, rd.plural)
        st = self._by_path.get(path)
        if st is None:
            st = self._by_kind.get((rd.group, rd.kind), self.default)
            self._by_path[path] = st
        return st

    def register(self, rd: ResourceDef, strategy: KindStrategy) -> None:
        """Serve ``rd`` (one group/version/plural) with ``strategy``."""
        self._by_path[(rd.group, rd.version, rd.plural)] = strategy

    def unregister(self, rd: ResourceDef) -> None:
        """Forget the strategy of ``rd``'s resource (when it stops being served)."""
        self._by_path.pop((rd.group, rd.version, rd.plural), None)


_BUILTIN_STRATEGIES = Strategies()


def strategy_for(rd: ResourceDef) -> KindStrategy:
    """The built-in strategy of ``rd`` (or the default): for code and tests that work
    without a server; a server asks its own :class:`Strategies`."""
    return _BUILTIN_STRATEGIES.of(rd)
