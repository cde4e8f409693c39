"""Least-privilege rules for the control plane's own identities.

Each list grants what berth's component actually calls (read from ``berth/controllers``,
``berth/machinery``, ``berth/scheduler``), never more than kube's bootstrap roles grant the
same work. ``tests/unit/apiserver/test_component_roles.py`` ties them to the code: a component
that starts using another resource fails there first, not with a 403 in a cluster.

The controller manager runs every controller in one process under one identity
(``system:kube-controller-manager``), where kube-controller-manager gives each controller its
own service account (``system:controller:<name>`` roles). It therefore holds the *union* of
what its controllers need. That union is still narrower than kube's union: the garbage
collector and the namespace controller reach only the kinds berth's client monitors (no RBAC
objects, no PDBs) instead of ``*.*``, and the GC never ``update``s. What the union implies,
as in kube, and which one identity makes more concentrated than per-controller accounts:

* it can read (get/list/watch) every monitored kind, Secrets included — the garbage collector
  must see every object's ownerReferences and the namespace controller must find what to
  delete (kube's ``generic-garbage-collector`` and ``namespace-controller`` hold get/list/watch
  on ``*.*``);
* it can patch and delete every monitored kind (the GC removes ownerReferences and finalizers
  and deletes dependents; the namespace controller empties namespaces).

It cannot create or change RBAC objects, bind or escalate, impersonate, create namespaces or
Secrets, or write any subresource other than the status ones its controllers own.
A controller added later (e.g. a token controller) adds its own rule here.
"""

from __future__ import annotations

from berth.api.meta import Obj

READ = ["get", "list", "watch"]


def rule(
    groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None
) -> Obj:
    r: Obj = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        r["resourceNames"] = names
    return r


def events_rule() -> Obj:
    """The event recorder: create an Event, then patch its count (kube's eventsRule)."""
    return rule(["", "events.k8s.io"], ["events"], ["create", "patch", "update"])


def leader_election_rules(lease: str) -> list[Obj]:
    """kube's leader-election rules: create any Lease (a create has no name to match), read
    and renew only the component's own."""
    return [
        rule(["coordination.k8s.io"], ["leases"], ["create"]),
        rule(["coordination.k8s.io"], ["leases"], ["get", "update"], [lease]),
    ]


# Every kind the garbage collector watches (berth.controllers.kinds.MANAGED without events) and the
# namespace controller empties (its namespaced members, events included). Kinds the server does
# not serve cost nothing and keep the rule right when they are added.
MONITORED_CORE = [
    "pods",
    "nodes",
    "namespaces",
    "services",
    "endpoints",
    "configmaps",
    "secrets",
    "serviceaccounts",
    "replicationcontrollers",
    "resourcequotas",
    "limitranges",
    "persistentvolumeclaims",
    "persistentvolumes",
]
MONITORED_APPS = ["deployments", "replicasets", "daemonsets", "statefulsets", "controllerrevisions"]
MONITORED_OTHER = {
    "coordination.k8s.io": ["leases"],
    "batch": ["jobs", "cronjobs"],
    "autoscaling": ["horizontalpodautoscalers"],
    "discovery.k8s.io": ["endpointslices"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
}
GC_VERBS = [*READ, "patch", "delete"]


QUOTA_COUNTED_GROUPS = [
    "",
    "apps",
    "batch",
    "policy",
    "coordination.k8s.io",
    "discovery.k8s.io",
    "networking.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "autoscaling",
]
"""API groups whose objects the resourcequota controller may list to recount usage."""


def controller_manager_rules() -> list[Obj]:
    return [
        events_rule(),
        *leader_election_rules("kube-controller-manager"),
        # garbagecollector: informers on every kind, a live GET of owners, ownerReferences /
        # finalizers patches, deletes; namespace: list + delete of every namespaced kind
        rule([""], MONITORED_CORE, GC_VERBS),
        rule(["apps"], MONITORED_APPS, GC_VERBS),
        *(rule([g], plurals, GC_VERBS) for g, plurals in MONITORED_OTHER.items()),
        rule([""], ["events"], ["list", "delete"]),  # namespace controller
        rule([""], ["namespaces/finalize"], ["update"]),  # namespace controller
        # replicaset, daemonset: create pods (deletes, adoption patches are in GC_VERBS)
        rule([""], ["pods"], ["create"]),
        # nodelifecycle: pods' Ready condition; node Unknown status (taints are patches)
        rule([""], ["pods/status", "nodes/status"], ["patch"]),
        # deployment: create ReplicaSets; statefulset, daemonset: their ControllerRevisions
        rule(["apps"], ["replicasets", "controllerrevisions"], ["create"]),
        # service-lb: LoadBalancer Services' ingress addresses (only this identity writes them)
        rule([""], ["services/status"], ["update"]),
        # replicationcontroller: its status
        rule([""], ["replicationcontrollers/status"], ["patch"]),
        # deployment, replicaset, daemonset, statefulset: their status
        rule(
            ["apps"],
            [
                "deployments/status",
                "replicasets/status",
                "daemonsets/status",
                "statefulsets/status",
            ],
            ["patch"],
        ),
        # job: its status; cronjob: create Jobs, its status (job pods: "create pods" above;
        # tracking-finalizer removal, deletes: GC_VERBS)
        rule(["batch"], ["jobs"], ["create"]),
        rule(["batch"], ["jobs/status", "cronjobs/status"], ["patch"]),
        # statefulset: one claim per pod and volumeClaimTemplate (ownerReferences for the
        # retention policy); inert until the server serves persistentvolumeclaims
        rule([""], ["persistentvolumeclaims"], ["get", "create", "patch"]),
        # endpoints: create, replace
        rule([""], ["endpoints"], ["create", "update"]),
        # endpointslice: create, replace (deletes are in GC_VERBS)
        rule(["discovery.k8s.io"], ["endpointslices"], ["create", "update"]),
        # serviceaccount: each namespace's default account; root-ca-cert-publisher: the
        # kube-root-ca.crt ConfigMap of every namespace (reads are in GC_VERBS)
        rule([""], ["serviceaccounts"], ["create"]),
        rule([""], ["configmaps"], ["create", "update"]),
        # serviceaccount-token: fills legacy token Secrets (deletes them with their account)
        rule([""], ["secrets"], ["update"]),
        # resourcequota: count what quotas name (count/<resource>.<group>) and write their
        # status. kube's resourcequota-controller lists */*; berth keeps the controller
        # manager away from RBAC objects and CRD-defined groups (a stolen certificate must not
        # map who may do what), so those counts are kept as admission charged them.
        rule(QUOTA_COUNTED_GROUPS, ["*"], ["list"]),
        # horizontalpodautoscaler (kube's system:controller:horizontal-pod-autoscaler): its
        # status, any target's scale, pods' resource metrics, CRDs (which kinds have /scale)
        rule(["autoscaling"], ["horizontalpodautoscalers/status"], ["update"]),
        rule(["*"], ["*/scale"], ["get", "update"]),
        rule(["metrics.k8s.io"], ["pods"], ["list"]),
        rule(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["list"]),
        rule([""], ["resourcequotas/status"], ["update"]),
        # persistentvolume-binder: claimRef/volumeName and protection finalizers, phases, the
        # local provisioner's volumes (deletes are in GC_VERBS)
        rule([""], ["persistentvolumes"], ["create", "update"]),
        rule([""], ["persistentvolumeclaims"], ["update"]),
        rule([""], ["persistentvolumes/status", "persistentvolumeclaims/status"], ["patch"]),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
    ]


def scheduler_rules() -> list[Obj]:
    """kube's ``system:kube-scheduler``, without the reads of plugins berth's scheduler does
    not have (volumes, spreading, CSI); ``delete pods`` and reading budgets are for
    preemption, as kube's."""
    return [
        events_rule(),
        *leader_election_rules("kube-scheduler"),
        rule([""], ["pods", "nodes"], READ),
        # VolumeBinding: claims, volumes, classes; the selected-node annotation on claims
        rule([""], ["persistentvolumeclaims", "persistentvolumes"], READ),
        rule(["storage.k8s.io"], ["storageclasses"], READ),
        rule([""], ["persistentvolumeclaims"], ["patch", "update"]),
        rule([""], ["pods/binding", "bindings"], ["create"]),
        rule([""], ["pods/status"], ["patch", "update"]),
        # preemption: delete the victims; budgets are weighed when choosing them
        rule([""], ["pods"], ["delete"]),
        rule(["policy"], ["poddisruptionbudgets"], ["list", "watch"]),
    ]


def vip_holder_rules() -> list[Obj]:
    """berth's API VIP holder (``berth.vip``, ``system:berth-vip``): it only campaigns for
    its Lease."""
    return leader_election_rules("berth-vip")


def network_policy_rules() -> list[Obj]:
    """berth's NetworkPolicy enforcement on every node (``berth.agent.netpolicy``), run with
    the cluster network's identity (``system:kube-proxy``): a policy's peers are pods of any
    node, which the node authorizer does not let a node list. Reads only, as the per-node
    agents of Calico or kube-router."""
    return [
        rule([""], ["pods", "namespaces"], ["list", "watch"]),
        rule(["networking.k8s.io"], ["networkpolicies"], ["list", "watch"]),
    ]


def node_proxier_rules() -> list[Obj]:
    """kube's ``system:node-proxier``, verbatim (the ``system:kube-proxy`` identity)."""
    return [
        events_rule(),
        rule([""], ["services", "endpoints"], ["list", "watch"]),
        rule([""], ["nodes"], READ),
        rule(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
    ]


def ingress_rules() -> list[Obj]:
    """berth's ingress controller on every node (``berth.ingress``, ``system:berth-ingress``):
    what upstream ingress controllers' roles grant (ingress-nginx's ClusterRole) but Secrets:
    read Ingresses, IngressClasses, Services, EndpointSlices and Nodes (the status addresses),
    write Ingresses' status. Upstream's role reads every Secret; this one reads none, and the
    ingress authorizer (:mod:`berth.apiserver.ingressauthz`) lets the identity read only the
    TLS Secrets that Ingresses served by berth name: its credentials are on every node, and a
    compromised node must not read the cluster's Secrets through them."""
    return [
        events_rule(),
        rule(["networking.k8s.io"], ["ingresses", "ingressclasses"], READ),
        rule(["networking.k8s.io"], ["ingresses/status"], ["patch", "update"]),
        rule([""], ["services", "nodes"], READ),
        rule(["discovery.k8s.io"], ["endpointslices"], READ),
    ]
