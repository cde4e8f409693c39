"""The JSON types of the fields of every kind served, checked before anything reads them.

kube-apiserver decodes a body into typed Go structs, so ``{"spec": {"containers": "x"}}``
fails at decoding with ``400 BadRequest`` ("cannot unmarshal string into Go struct field
PodSpec.spec.containers of type []v1.Container") before any defaulting or validation code
sees it. Our objects stay JSON-shaped, and the defaulting, validation and admission code
index into them; this module plays the decoder's part: it checks each declared field's
JSON type on every object a client sends (create, update, the result of a patch, a status
write) and answers 400 for a mismatch, so that the code after it can trust the shapes.

Only the fields the server or its controllers interpret are declared; the others are
kept as sent (as Go keeps unknown fields of an unstructured object). As Go does, a
``null`` where an object, array or map belongs means "empty": such keys are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from berth.api.resources import ResourceDef

from .errors import ApiError, bad_request

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class Shape:
    """A JSON type; :meth:`check` raises :class:`Mismatch` (and may drop null children)."""

    expected = "a value"
    plural = "values"

    def check(self, value: Any) -> None:
        raise NotImplementedError


class Mismatch(Exception):
    """A value of the wrong type. The path to it is collected while the exception unwinds
    (each container adds its step), so that the checks build no path string on success,
    which is every request but the broken ones."""

    def __init__(self, expected: str, value: Any) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.steps: list[str] = []  # innermost first: ".image", "[0]", ".containers", ...

    def message(self) -> str:
        path = "".join(reversed(self.steps)).removeprefix(".")
        return f"{path or '(the object)'}: expected {self.expected}, got {_describe(self.value)}"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


@dataclass(frozen=True)
class _Type(Shape):
    """A value of one of ``types`` or null; ``no_bool`` where ``types`` holds ``int`` but a
    JSON boolean is not a number (Python's bool is an int)."""

    types: type | tuple[type, ...]
    expected: str
    plural: str
    no_bool: bool = False

    def check(self, value: Any) -> None:
        if value is not None and (
            not isinstance(value, self.types) or (self.no_bool and isinstance(value, bool))
        ):
            raise Mismatch(self.expected, value)


@dataclass(frozen=True)
class _Int(Shape):
    bounds: tuple[int, int]
    expected = "an integer"
    plural = "integers"

    def check(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise Mismatch(self.expected, value)
        if not self.bounds[0] <= value <= self.bounds[1]:
            bits = 32 if self.bounds == INT32 else 64
            raise Mismatch(f"a {bits}-bit integer", value)


class _IntOrString(Shape):
    expected = "an integer or a string"
    plural = "integers or strings"

    def check(self, value: Any) -> None:
        if value is None or isinstance(value, str):
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise Mismatch(self.expected, value)
        INT_32.check(value)


@dataclass(frozen=True)
class ListOf(Shape):
    item: Shape

    expected = "an array"
    plural = "arrays"

    def check(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, list):
            raise Mismatch(f"an array of {self.item.plural}", value)
        item_check = self.item.check
        for i, item in enumerate(value):
            if item is None and _is_container(self.item):
                value[i] = {} if not isinstance(self.item, ListOf) else []
                continue
            try:
                item_check(item)
            except Mismatch as exc:
                exc.steps.append(f"[{i}]")
                raise


@dataclass(frozen=True)
class MapOf(Shape):
    item: Shape

    expected = "an object"
    plural = "objects"

    def check(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise Mismatch(f"a map of {self.item.plural}", value)
        item_check = self.item.check
        for k, item in value.items():
            try:
                item_check(item)
            except Mismatch as exc:
                exc.steps.append(f"[{k}]")
                raise


@dataclass(frozen=True)
class Struct(Shape):
    fields: dict[str, Shape]

    expected = "an object"
    plural = "objects"

    def check(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise Mismatch("an object", value)
        # Walk the object's own keys (a handful) rather than every declared field (dozens
        # for a pod spec or a container): the undeclared ones are kept as sent.
        fields = self.fields
        nulls: list[str] = []
        for name, child in value.items():
            shape = fields.get(name)
            if shape is None:
                continue
            if child is None:
                if _is_container(shape):
                    nulls.append(name)
                continue
            try:
                shape.check(child)
            except Mismatch as exc:
                exc.steps.append(f".{name}")
                raise
        for name in nulls:
            del value[name]  # Go: null decodes to the empty value, omitted on output


def _is_container(shape: Shape) -> bool:
    return isinstance(shape, ListOf | MapOf | Struct) or shape is OBJECT


STR = _Type(str, "a string", "strings")
BOOL = _Type(bool, "a boolean", "booleans")
INT_32 = _Int(INT32)
INT_64 = _Int(INT64)
INT_OR_STR = _IntOrString()
QUANTITY = _Type(
    (str, int, float), "a quantity (a string or a number)", "quantities (strings or numbers)", True
)
OBJECT = _Type(dict, "an object", "objects")
STRINGS = ListOf(STR)
STRING_MAP = MapOf(STR)
OBJECTS = ListOf(OBJECT)

OBJECT_META = Struct(
    {
        "name": STR,
        "generateName": STR,
        "namespace": STR,
        "uid": STR,
        "resourceVersion": STR,
        "generation": INT_64,
        "deletionGracePeriodSeconds": INT_64,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": STRINGS,
        "ownerReferences": ListOf(
            Struct(
                {
                    "apiVersion": STR,
                    "kind": STR,
                    "name": STR,
                    "uid": STR,
                    "controller": BOOL,
                    "blockOwnerDeletion": BOOL,
                }
            )
        ),
        "managedFields": OBJECTS,
    }
)
LABEL_SELECTOR = Struct(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": ListOf(Struct({"key": STR, "operator": STR, "values": STRINGS})),
    }
)
CONTAINER = Struct(
    {
        "name": STR,
        "image": STR,
        "imagePullPolicy": STR,
        "command": STRINGS,
        "args": STRINGS,
        "workingDir": STR,
        "ports": ListOf(
            Struct(
                {
                    "name": STR,
                    "containerPort": INT_32,
                    "hostPort": INT_32,
                    "protocol": STR,
                    "hostIP": STR,
                }
            )
        ),
        "env": ListOf(Struct({"name": STR, "value": STR, "valueFrom": OBJECT})),
        "envFrom": OBJECTS,
        "resources": Struct({"limits": MapOf(QUANTITY), "requests": MapOf(QUANTITY)}),
        "volumeMounts": ListOf(
            Struct({"name": STR, "mountPath": STR, "subPath": STR, "readOnly": BOOL})
        ),
        "livenessProbe": OBJECT,
        "readinessProbe": OBJECT,
        "startupProbe": OBJECT,
        "lifecycle": OBJECT,
        "securityContext": OBJECT,
        "terminationMessagePath": STR,
        "terminationMessagePolicy": STR,
        "stdin": BOOL,
        "tty": BOOL,
    }
)
POD_SPEC = Struct(
    {
        "containers": ListOf(CONTAINER),
        "initContainers": ListOf(CONTAINER),
        "ephemeralContainers": ListOf(CONTAINER),
        "volumes": ListOf(Struct({"name": STR})),
        "nodeName": STR,
        "nodeSelector": STRING_MAP,
        "serviceAccountName": STR,
        "serviceAccount": STR,
        "automountServiceAccountToken": BOOL,
        "restartPolicy": STR,
        "dnsPolicy": STR,
        "schedulerName": STR,
        "hostname": STR,
        "subdomain": STR,
        "priorityClassName": STR,
        "priority": INT_32,
        "terminationGracePeriodSeconds": INT_64,
        "activeDeadlineSeconds": INT_64,
        "hostNetwork": BOOL,
        "hostPID": BOOL,
        "hostIPC": BOOL,
        "enableServiceLinks": BOOL,
        "securityContext": OBJECT,
        "affinity": OBJECT,
        "tolerations": ListOf(
            Struct(
                {
                    "key": STR,
                    "operator": STR,
                    "value": STR,
                    "effect": STR,
                    "tolerationSeconds": INT_64,
                }
            )
        ),
        "imagePullSecrets": ListOf(Struct({"name": STR})),
        "topologySpreadConstraints": OBJECTS,
    }
)
CONDITIONS = ListOf(Struct({"type": STR, "status": STR, "reason": STR, "message": STR}))
POD_TEMPLATE = Struct({"metadata": OBJECT_META, "spec": POD_SPEC})
ROLLING_UPDATE = Struct({"maxSurge": INT_OR_STR, "maxUnavailable": INT_OR_STR})
WORKLOAD_STATUS = Struct(
    {
        "observedGeneration": INT_64,
        "replicas": INT_32,
        "readyReplicas": INT_32,
        "availableReplicas": INT_32,
        "updatedReplicas": INT_32,
        "unavailableReplicas": INT_32,
        "conditions": CONDITIONS,
    }
)
ENDPOINT_ADDRESSES = ListOf(
    Struct({"ip": STR, "hostname": STR, "nodeName": STR, "targetRef": OBJECT})
)
POLICY_RULES = ListOf(
    Struct(
        {
            "apiGroups": STRINGS,
            "resources": STRINGS,
            "resourceNames": STRINGS,
            "verbs": STRINGS,
            "nonResourceURLs": STRINGS,
        }
    )
)
BINDING = {
    "roleRef": Struct({"apiGroup": STR, "kind": STR, "name": STR}),
    "subjects": ListOf(Struct({"kind": STR, "name": STR, "namespace": STR, "apiGroup": STR})),
}

JOB_SPEC = Struct(
    {
        "parallelism": INT_32,
        "completions": INT_32,
        "activeDeadlineSeconds": INT_64,
        "backoffLimit": INT_32,
        "backoffLimitPerIndex": INT_32,
        "maxFailedIndexes": INT_32,
        "ttlSecondsAfterFinished": INT_32,
        "completionMode": STR,
        "suspend": BOOL,
        "manualSelector": BOOL,
        "podReplacementPolicy": STR,
        "managedBy": STR,
        "selector": LABEL_SELECTOR,
        "template": POD_TEMPLATE,
        "podFailurePolicy": Struct(
            {
                "rules": ListOf(
                    Struct(
                        {
                            "action": STR,
                            "onExitCodes": Struct(
                                {"containerName": STR, "operator": STR, "values": ListOf(INT_32)}
                            ),
                            "onPodConditions": ListOf(Struct({"type": STR, "status": STR})),
                        }
                    )
                )
            }
        ),
        "successPolicy": Struct(
            {"rules": ListOf(Struct({"succeededIndexes": STR, "succeededCount": INT_32}))}
        ),
    }
)
TIMED_CONDITIONS = ListOf(
    Struct(
        {
            "type": STR,
            "status": STR,
            "reason": STR,
            "message": STR,
            "lastProbeTime": STR,
            "lastTransitionTime": STR,
        }
    )
)

_BY_KIND: dict[str, dict[str, Shape]] = {
    "Job": {
        "spec": JOB_SPEC,
        "status": Struct(
            {
                "conditions": TIMED_CONDITIONS,
                "startTime": STR,
                "completionTime": STR,
                "active": INT_32,
                "succeeded": INT_32,
                "failed": INT_32,
                "terminating": INT_32,
                "ready": INT_32,
                "completedIndexes": STR,
                "failedIndexes": STR,
                "uncountedTerminatedPods": Struct({"succeeded": STRINGS, "failed": STRINGS}),
            }
        ),
    },
    "CronJob": {
        "spec": Struct(
            {
                "schedule": STR,
                "timeZone": STR,
                "startingDeadlineSeconds": INT_64,
                "concurrencyPolicy": STR,
                "suspend": BOOL,
                "successfulJobsHistoryLimit": INT_32,
                "failedJobsHistoryLimit": INT_32,
                "jobTemplate": Struct({"metadata": OBJECT_META, "spec": JOB_SPEC}),
            }
        ),
        "status": Struct(
            {
                "active": ListOf(
                    Struct(
                        {
                            "kind": STR,
                            "namespace": STR,
                            "name": STR,
                            "uid": STR,
                            "apiVersion": STR,
                            "resourceVersion": STR,
                        }
                    )
                ),
                "lastScheduleTime": STR,
                "lastSuccessfulTime": STR,
            }
        ),
    },
    "Pod": {
        "spec": POD_SPEC,
        "status": Struct(
            {
                "phase": STR,
                "conditions": CONDITIONS,
                "podIP": STR,
                "podIPs": ListOf(Struct({"ip": STR})),
                "hostIP": STR,
                "qosClass": STR,
                "containerStatuses": OBJECTS,
                "initContainerStatuses": OBJECTS,
            }
        ),
    },
    "Deployment": {
        "spec": Struct(
            {
                "replicas": INT_32,
                "selector": LABEL_SELECTOR,
                "template": POD_TEMPLATE,
                "strategy": Struct({"type": STR, "rollingUpdate": ROLLING_UPDATE}),
                "minReadySeconds": INT_32,
                "revisionHistoryLimit": INT_32,
                "progressDeadlineSeconds": INT_32,
                "paused": BOOL,
            }
        ),
        "status": WORKLOAD_STATUS,
    },
    "ReplicaSet": {
        "spec": Struct(
            {
                "replicas": INT_32,
                "selector": LABEL_SELECTOR,
                "template": POD_TEMPLATE,
                "minReadySeconds": INT_32,
            }
        ),
        "status": WORKLOAD_STATUS,
    },
    "ReplicationController": {
        "spec": Struct(
            {
                "replicas": INT_32,
                "selector": STRING_MAP,
                "template": POD_TEMPLATE,
                "minReadySeconds": INT_32,
            }
        ),
        "status": WORKLOAD_STATUS,
    },
    "DaemonSet": {
        "spec": Struct(
            {
                "selector": LABEL_SELECTOR,
                "template": POD_TEMPLATE,
                "updateStrategy": Struct({"type": STR, "rollingUpdate": ROLLING_UPDATE}),
                "minReadySeconds": INT_32,
                "revisionHistoryLimit": INT_32,
            }
        ),
        "status": Struct({"observedGeneration": INT_64, "conditions": CONDITIONS}),
    },
    "Service": {
        "spec": Struct(
            {
                "type": STR,
                "selector": STRING_MAP,
                "ports": ListOf(
                    Struct(
                        {
                            "name": STR,
                            "protocol": STR,
                            "port": INT_32,
                            "targetPort": INT_OR_STR,
                            "nodePort": INT_32,
                            "appProtocol": STR,
                        }
                    )
                ),
                "clusterIP": STR,
                "clusterIPs": STRINGS,
                "externalIPs": STRINGS,
                "externalName": STR,
                "sessionAffinity": STR,
                "sessionAffinityConfig": Struct({"clientIP": Struct({"timeoutSeconds": INT_32})}),
                "externalTrafficPolicy": STR,
                "internalTrafficPolicy": STR,
                "loadBalancerIP": STR,
                "ipFamilies": STRINGS,
                "ipFamilyPolicy": STR,
                "publishNotReadyAddresses": BOOL,
            }
        ),
        "status": OBJECT,
    },
    "Endpoints": {
        "subsets": ListOf(
            Struct(
                {
                    "addresses": ENDPOINT_ADDRESSES,
                    "notReadyAddresses": ENDPOINT_ADDRESSES,
                    "ports": ListOf(
                        Struct({"name": STR, "port": INT_32, "protocol": STR, "appProtocol": STR})
                    ),
                }
            )
        )
    },
    "ConfigMap": {"data": STRING_MAP, "binaryData": STRING_MAP, "immutable": BOOL},
    "Secret": {"data": STRING_MAP, "stringData": STRING_MAP, "type": STR, "immutable": BOOL},
    "Event": {
        "involvedObject": Struct(
            {
                "kind": STR,
                "name": STR,
                "namespace": STR,
                "uid": STR,
                "apiVersion": STR,
                "resourceVersion": STR,
                "fieldPath": STR,
            }
        ),
        "reason": STR,
        "message": STR,
        "type": STR,
        "count": INT_32,
        "source": Struct({"component": STR, "host": STR}),
        "reportingComponent": STR,
        "reportingInstance": STR,
        "action": STR,
    },
    "ServiceAccount": {
        "secrets": ListOf(Struct({"name": STR, "namespace": STR, "kind": STR})),
        "imagePullSecrets": ListOf(Struct({"name": STR})),
        "automountServiceAccountToken": BOOL,
    },
    "Lease": {
        "spec": Struct(
            {
                "holderIdentity": STR,
                "leaseDurationSeconds": INT_32,
                "acquireTime": STR,
                "renewTime": STR,
                "leaseTransitions": INT_32,
            }
        )
    },
    "PodDisruptionBudget": {
        "spec": Struct(
            {
                "minAvailable": INT_OR_STR,
                "maxUnavailable": INT_OR_STR,
                "selector": LABEL_SELECTOR,
            }
        ),
        "status": OBJECT,
    },
    "Role": {"rules": POLICY_RULES},
    "ClusterRole": {"rules": POLICY_RULES, "aggregationRule": OBJECT},
    "RoleBinding": BINDING,
    "ClusterRoleBinding": BINDING,
    "Node": {
        "spec": Struct(
            {
                "podCIDR": STR,
                "podCIDRs": STRINGS,
                "providerID": STR,
                "unschedulable": BOOL,
                "taints": ListOf(
                    Struct({"key": STR, "value": STR, "effect": STR, "timeAdded": STR})
                ),
            }
        ),
        "status": Struct(
            {
                "conditions": CONDITIONS,
                "addresses": ListOf(Struct({"type": STR, "address": STR})),
                "capacity": MapOf(QUANTITY),
                "allocatable": MapOf(QUANTITY),
                "nodeInfo": OBJECT,
                "daemonEndpoints": Struct({"kubeletEndpoint": Struct({"Port": INT_32})}),
            }
        ),
    },
    "Namespace": {
        "spec": Struct({"finalizers": STRINGS}),
        "status": Struct({"phase": STR}),
    },
}
SHAPES: dict[str, Struct] = {
    kind: Struct({"apiVersion": STR, "kind": STR, "metadata": OBJECT_META, **fields})
    for kind, fields in _BY_KIND.items()
}


def check(rd: ResourceDef, obj: Any) -> None:
    """Raise 400 BadRequest when a declared field of ``obj`` has the wrong JSON type (and
    drop declared object/array fields that are ``null``)."""
    shape = SHAPES.get(rd.kind)
    if shape is None:
        return
    try:
        shape.check(obj)
    except Mismatch as exc:
        raise cannot_handle(rd, exc.message()) from None


def cannot_handle(rd: ResourceDef, why: str) -> ApiError:
    """The decode error kube-apiserver answers for a body of the wrong shape."""
    return bad_request(
        f'{rd.kind} in version "{rd.version}" cannot be handled as a {rd.kind}: {why}'
    )
