"""The table of API resources the cluster serves: one :class:`ResourceDef` per resource.

Discovery documents, URL routing, storage keys and the controllers' clients all read this one
table, so a resource exists in exactly one place: what the server serves is what clients and
controllers use (the constants at the end, ``PODS``, ``NODES`` ..., are entries of the table).
Kept free of server dependencies on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True, slots=True)
class ResourceDef:
    """One REST resource, e.g. ``pods`` in group ``""`` version ``v1``."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # subresources this server implements: "status", "scale", "log", "binding", "eviction",
    # "finalize"
    subresources: tuple[str, ...] = ()
    list_kind: str = field(default="")

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` field value of objects of this resource."""
        return self.group_version

    @property
    def group_resource(self) -> str:
        """``deployments.apps`` style name used in error messages (``pods`` for core)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def collection_path(self, namespace: str | None = None) -> str:
        """The URL path of the collection (of one namespace when ``namespace`` is given)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def object_path(
        self, name: str, namespace: str | None = None, subresource: str | None = None
    ) -> str:
        """The URL path of one object, or of one of its subresources."""
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def key_prefix(self, namespace: str = "") -> str:
        """Storage key prefix for this resource; with ``namespace`` for one namespace."""
        base = f"/registry/{self.group or 'core'}/{self.plural}/"
        if self.namespaced and namespace:
            return f"{base}{namespace}/"
        return base

    def key(self, namespace: str, name: str) -> str:
        """Storage key of one object."""
        if self.namespaced:
            return f"/registry/{self.group or 'core'}/{self.plural}/{namespace}/{name}"
        return f"/registry/{self.group or 'core'}/{self.plural}/{name}"

    @property
    def list_kind_name(self) -> str:
        return self.list_kind or f"{self.kind}List"


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    subs: tuple[str, ...] = (),
    verbs: tuple[str, ...] = ALL_VERBS,
) -> ResourceDef:
    return ResourceDef(
        group="",
        version="v1",
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=cats,
        subresources=subs,
        verbs=verbs,
    )


def _grouped(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool,
    short: tuple[str, ...] = (),
    cats: tuple[str, ...] = (),
    subs: tuple[str, ...] = (),
) -> ResourceDef:
    return ResourceDef(
        group=group,
        version="v1",
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=cats,
        subresources=subs,
    )


RESOURCES: tuple[ResourceDef, ...] = (
    _core("namespaces", "Namespace", namespaced=False, short=("ns",), subs=("status", "finalize")),
    _core("nodes", "Node", namespaced=False, short=("no",), subs=("status", "proxy")),
    _core(
        "pods",
        "Pod",
        namespaced=True,
        short=("po",),
        cats=("all",),
        subs=(
            "status",
            "binding",
            "log",
            "eviction",
            "exec",
            "attach",
            "portforward",
            "ephemeralcontainers",
            "proxy",
        ),
    ),
    _core(
        "services",
        "Service",
        namespaced=True,
        short=("svc",),
        cats=("all",),
        subs=("status", "proxy"),
    ),
    _core("endpoints", "Endpoints", namespaced=True, short=("ep",)),
    _core(
        "replicationcontrollers",
        "ReplicationController",
        namespaced=True,
        short=("rc",),
        cats=("all",),
        subs=("status", "scale"),
    ),
    _core("configmaps", "ConfigMap", namespaced=True, short=("cm",)),
    _core("secrets", "Secret", namespaced=True),
    _core("events", "Event", namespaced=True, short=("ev",)),
    _core("serviceaccounts", "ServiceAccount", namespaced=True, short=("sa",), subs=("token",)),
    _core("resourcequotas", "ResourceQuota", namespaced=True, short=("quota",), subs=("status",)),
    _core("limitranges", "LimitRange", namespaced=True, short=("limits",)),
    _grouped(
        "scheduling.k8s.io", "priorityclasses", "PriorityClass", namespaced=False, short=("pc",)
    ),
    _core(
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        namespaced=True,
        short=("pvc",),
        subs=("status",),
    ),
    _core(
        "persistentvolumes", "PersistentVolume", namespaced=False, short=("pv",), subs=("status",)
    ),
    _grouped("coordination.k8s.io", "leases", "Lease", namespaced=True),
    _grouped("discovery.k8s.io", "endpointslices", "EndpointSlice", namespaced=True),
    _grouped(
        "networking.k8s.io",
        "ingresses",
        "Ingress",
        namespaced=True,
        short=("ing",),
        subs=("status",),
    ),
    _grouped("networking.k8s.io", "ingressclasses", "IngressClass", namespaced=False),
    _grouped(
        "apps",
        "deployments",
        "Deployment",
        namespaced=True,
        short=("deploy",),
        cats=("all",),
        subs=("status", "scale"),
    ),
    _grouped(
        "apps",
        "replicasets",
        "ReplicaSet",
        namespaced=True,
        short=("rs",),
        cats=("all",),
        subs=("status", "scale"),
    ),
    _grouped(
        "apps",
        "daemonsets",
        "DaemonSet",
        namespaced=True,
        short=("ds",),
        cats=("all",),
        subs=("status",),
    ),
    _grouped("batch", "jobs", "Job", namespaced=True, cats=("all",), subs=("status",)),
    _grouped(
        "batch",
        "cronjobs",
        "CronJob",
        namespaced=True,
        short=("cj",),
        cats=("all",),
        subs=("status",),
    ),
    _grouped(
        "apps",
        "statefulsets",
        "StatefulSet",
        namespaced=True,
        short=("sts",),
        cats=("all",),
        subs=("status", "scale"),
    ),
    _grouped("apps", "controllerrevisions", "ControllerRevision", namespaced=True),
    _grouped(
        "policy",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        namespaced=True,
        short=("pdb",),
        subs=("status",),
    ),
    _grouped("storage.k8s.io", "storageclasses", "StorageClass", namespaced=False, short=("sc",)),
    _grouped(
        "networking.k8s.io", "networkpolicies", "NetworkPolicy", namespaced=True, short=("netpol",)
    ),
    _grouped("rbac.authorization.k8s.io", "roles", "Role", namespaced=True),
    _grouped("rbac.authorization.k8s.io", "rolebindings", "RoleBinding", namespaced=True),
    _grouped("rbac.authorization.k8s.io", "clusterroles", "ClusterRole", namespaced=False),
    _grouped(
        "rbac.authorization.k8s.io", "clusterrolebindings", "ClusterRoleBinding", namespaced=False
    ),
    # autoscaling/v2 first: the preferred version, and the one objects are stored in
    *(
        ResourceDef(
            group="autoscaling",
            version=version,
            plural="horizontalpodautoscalers",
            singular="horizontalpodautoscaler",
            kind="HorizontalPodAutoscaler",
            namespaced=True,
            short_names=("hpa",),
            categories=("all",),
            subresources=("status",),
        )
        for version in ("v2", "v1")
    ),
    # metrics.k8s.io: computed from the agents' stats, never stored (read-only)
    *(
        ResourceDef(
            group="metrics.k8s.io",
            version="v1beta1",
            plural=plural,
            singular="",
            kind=kind,
            namespaced=namespaced,
            verbs=("get", "list"),
        )
        for plural, kind, namespaced in (
            ("nodes", "NodeMetrics", False),
            ("pods", "PodMetrics", True),
        )
    ),
    _grouped(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        cats=("api-extensions",),
        subs=("status",),
    ),
)

CRD_RESOURCE = RESOURCES[-1]
"""``customresourcedefinitions.apiextensions.k8s.io``: the resources it defines are added to a
server's table while it runs."""

# Groups that hold only non-stored review APIs (berth/apiserver/reviews.py).
EXTRA_GROUP_VERSIONS: tuple[tuple[str, str], ...] = (
    ("authentication.k8s.io", "v1"),
    ("authorization.k8s.io", "v1"),
)


class ResourceTable:
    """Lookup by (group, version, plural) and by kind; changes at run time.

    Custom resources are added and removed while the server runs (:meth:`add`,
    :meth:`remove`); every change bumps :attr:`generation`, so that anything built from the
    table (discovery documents, caches) knows to rebuild. Reads never see a half-made change:
    each change builds new lookup maps and swaps them in."""

    def __init__(self, resources: tuple[ResourceDef, ...] = RESOURCES) -> None:
        self.generation = 0
        self._index(tuple(resources))

    def _index(self, resources: tuple[ResourceDef, ...]) -> None:
        self.resources = resources
        self._by_path = {(r.group, r.version, r.plural): r for r in resources}
        by_kind: dict[tuple[str, str], ResourceDef] = {}
        for r in resources:  # the first version listed answers for its kind
            by_kind.setdefault((r.group, r.kind), r)
        self._by_kind = by_kind

    def add(self, rd: ResourceDef) -> None:
        """Serve ``rd``; it replaces a resource at the same (group, version, plural)."""
        path = (rd.group, rd.version, rd.plural)
        kept = tuple(r for r in self.resources if (r.group, r.version, r.plural) != path)
        self._index((*kept, rd))
        self.generation += 1

    def remove(self, rd: ResourceDef) -> None:
        """Stop serving the resource at ``rd``'s (group, version, plural), if served."""
        path = (rd.group, rd.version, rd.plural)
        kept = tuple(r for r in self.resources if (r.group, r.version, r.plural) != path)
        if len(kept) != len(self.resources):
            self._index(kept)
            self.generation += 1

    def lookup(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, kind: str) -> ResourceDef | None:
        return self._by_kind.get((group, kind))

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> versions served (core group is ``""``)."""
        out: dict[str, list[str]] = {}
        for r in self.resources:
            versions = out.setdefault(r.group, [])
            if r.version not in versions:
                versions.append(r.version)
        for group, version in EXTRA_GROUP_VERSIONS:
            versions = out.setdefault(group, [])
            if version not in versions:
                versions.append(version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceDef]:
        return [r for r in self.resources if r.group == group and r.version == version]


TABLE = ResourceTable()


def _served(group: str, plural: str, version: str = "v1") -> ResourceDef:
    rd = TABLE.lookup(group, version, plural)
    if rd is None:  # pragma: no cover - a typo here fails every import
        raise LookupError(f"{plural}.{group} is not in the resource table")
    return rd


# The served resources by name, for clients and controllers.
NAMESPACES = _served("", "namespaces")
NODES = _served("", "nodes")
PODS = _served("", "pods")
SERVICES = _served("", "services")
ENDPOINTS = _served("", "endpoints")
CONFIGMAPS = _served("", "configmaps")
SECRETS = _served("", "secrets")
EVENTS = _served("", "events")
SERVICEACCOUNTS = _served("", "serviceaccounts")
LEASES = _served("coordination.k8s.io", "leases")
PERSISTENTVOLUMECLAIMS = _served("", "persistentvolumeclaims")
PERSISTENTVOLUMES = _served("", "persistentvolumes")
STORAGECLASSES = _served("storage.k8s.io", "storageclasses")
ENDPOINTSLICES = _served("discovery.k8s.io", "endpointslices")
INGRESSES = _served("networking.k8s.io", "ingresses")
INGRESSCLASSES = _served("networking.k8s.io", "ingressclasses")
DEPLOYMENTS = _served("apps", "deployments")
REPLICASETS = _served("apps", "replicasets")
REPLICATIONCONTROLLERS = _served("", "replicationcontrollers")
DAEMONSETS = _served("apps", "daemonsets")
JOBS = _served("batch", "jobs")
CRONJOBS = _served("batch", "cronjobs")
STATEFULSETS = _served("apps", "statefulsets")
CONTROLLERREVISIONS = _served("apps", "controllerrevisions")
PODDISRUPTIONBUDGETS = _served("policy", "poddisruptionbudgets")
NETWORKPOLICIES = _served("networking.k8s.io", "networkpolicies")
RESOURCEQUOTAS = _served("", "resourcequotas")
LIMITRANGES = _served("", "limitranges")
PRIORITYCLASSES = _served("scheduling.k8s.io", "priorityclasses")
ROLES = _served("rbac.authorization.k8s.io", "roles")
ROLEBINDINGS = _served("rbac.authorization.k8s.io", "rolebindings")
CLUSTERROLES = _served("rbac.authorization.k8s.io", "clusterroles")
CLUSTERROLEBINDINGS = _served("rbac.authorization.k8s.io", "clusterrolebindings")
HORIZONTALPODAUTOSCALERS = _served("autoscaling", "horizontalpodautoscalers", "v2")
NODE_METRICS = _served("metrics.k8s.io", "nodes", "v1beta1")
POD_METRICS = _served("metrics.k8s.io", "pods", "v1beta1")

SUBJECT_ACCESS_REVIEWS = ResourceDef(
    group="authorization.k8s.io",
    version="v1",
    plural="subjectaccessreviews",
    singular="subjectaccessreview",
    kind="SubjectAccessReview",
    namespaced=False,
    verbs=("create",),
)
"""A review API (create only, nothing stored): outside :data:`RESOURCES`, as the other
access reviews (discovery lists them apart)."""


def for_kind(api_version: str, kind: str) -> ResourceDef | None:
    """The served resource of objects of ``kind`` in ``api_version`` (an ownerReference's
    pair); None when the server does not serve it."""
    group, _, version = api_version.rpartition("/")
    rd = TABLE.by_kind(group, kind)
    return rd if rd is not None and rd.version == version else None
