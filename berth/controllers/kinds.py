"""The kinds the controller manager's generic controllers work on: the garbage collector
watches them (all but events) and the namespace controller empties a terminating namespace of
them (the namespaced ones).

Entries of the served resource table (:mod:`berth.api.resources`), chosen rather than all of
it: the controller manager's role (``berth.apiserver.component_roles``) grants list, watch,
patch and delete on exactly these, and never on RBAC objects, which would let a stolen
controller-manager certificate rewrite who may do what. Upstream's namespace controller also
deletes RBAC objects and budgets of a deleted namespace; berth's does not yet.
"""

from __future__ import annotations

from berth.api.resources import (
    CONFIGMAPS,
    CONTROLLERREVISIONS,
    CRONJOBS,
    DAEMONSETS,
    DEPLOYMENTS,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    HORIZONTALPODAUTOSCALERS,
    JOBS,
    LEASES,
    LIMITRANGES,
    NAMESPACES,
    NETWORKPOLICIES,
    NODES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    PODS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    RESOURCEQUOTAS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    STATEFULSETS,
    ResourceDef,
)

MANAGED: tuple[ResourceDef, ...] = (
    PODS,
    NODES,
    NAMESPACES,
    SERVICES,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    DEPLOYMENTS,
    REPLICASETS,
    REPLICATIONCONTROLLERS,
    DAEMONSETS,
    STATEFULSETS,
    CONTROLLERREVISIONS,
    LEASES,
    RESOURCEQUOTAS,
    LIMITRANGES,
    PERSISTENTVOLUMECLAIMS,
    PERSISTENTVOLUMES,
    JOBS,
    CRONJOBS,
    HORIZONTALPODAUTOSCALERS,
    NETWORKPOLICIES,
)
