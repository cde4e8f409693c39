"""The API resources berth's control loops use, and how their URLs are built.

A :class:`Resource` names one REST collection (group, version, plural) the way the Kubernetes
API does; the client, the informers and the fake client all address objects through it, so no
caller ever assembles a path by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NewType

ObjectKey = NewType("ObjectKey", str)
"""``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` style name used in error messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def collection_path(self, namespace: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(
        self, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> str:
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path


PODS = Resource("", "v1", "pods", "Pod", namespaced=True)
NODES = Resource("", "v1", "nodes", "Node", namespaced=False)
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SERVICES = Resource("", "v1", "services", "Service", namespaced=True)
ENDPOINTS = Resource("", "v1", "endpoints", "Endpoints", namespaced=True, has_status=False)
EVENTS = Resource("", "v1", "events", "Event", namespaced=True, has_status=False)
CONFIGMAPS = Resource("", "v1", "configmaps", "ConfigMap", namespaced=True, has_status=False)
SECRETS = Resource("", "v1", "secrets", "Secret", namespaced=True, has_status=False)
SERVICEACCOUNTS = Resource(
    "", "v1", "serviceaccounts", "ServiceAccount", namespaced=True, has_status=False
)
REPLICATIONCONTROLLERS = Resource(
    "", "v1", "replicationcontrollers", "ReplicationController", namespaced=True
)
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment", namespaced=True)
REPLICASETS = Resource("apps", "v1", "replicasets", "ReplicaSet", namespaced=True)
DAEMONSETS = Resource("apps", "v1", "daemonsets", "DaemonSet", namespaced=True)
STATEFULSETS = Resource("apps", "v1", "statefulsets", "StatefulSet", namespaced=True)
CONTROLLERREVISIONS = Resource(
    "apps", "v1", "controllerrevisions", "ControllerRevision", namespaced=True, has_status=False
)
LEASES = Resource("coordination.k8s.io", "v1", "leases", "Lease", namespaced=True, has_status=False)
JOBS = Resource("batch", "v1", "jobs", "Job", namespaced=True)
CRONJOBS = Resource("batch", "v1", "cronjobs", "CronJob", namespaced=True)

ALL: tuple[Resource, ...] = (
    PODS,
    NODES,
    NAMESPACES,
    SERVICES,
    ENDPOINTS,
    EVENTS,
    CONFIGMAPS,
    SECRETS,
    SERVICEACCOUNTS,
    REPLICATIONCONTROLLERS,
    DEPLOYMENTS,
    REPLICASETS,
    DAEMONSETS,
    STATEFULSETS,
    CONTROLLERREVISIONS,
    LEASES,
    JOBS,
    CRONJOBS,
)

_BY_KIND = {(r.api_version, r.kind): r for r in ALL}


def for_kind(api_version: str, kind: str) -> Resource | None:
    """The resource serving objects of ``kind`` in ``api_version`` (None when unknown)."""
    return _BY_KIND.get((api_version, kind))


def make_key(namespace: str | None, name: str) -> ObjectKey:
    return ObjectKey(f"{namespace}/{name}" if namespace else name)


def split_key(key: ObjectKey | str) -> tuple[str | None, str]:
    """``(namespace, name)``; namespace is None for cluster-scoped keys."""
    namespace, sep, name = key.partition("/")
    return (namespace, name) if sep else (None, namespace)
