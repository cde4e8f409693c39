"""Decoding of Kubernetes protobuf request bodies for the kinds kubectl sends that way.

kubectl 1.32's typed clients (``create configmap|secret|namespace|serviceaccount``, ``auth
can-i``, ``drain``'s evictions) send ``application/vnd.kubernetes.protobuf`` bodies. Those are
the ``k8s\\x00`` magic followed by a ``runtime.Unknown`` envelope whose ``raw`` field holds the
object. This module decodes the protobuf wire format against small field tables (numbers from
``k8s.io/api`` ``generated.proto``) into the same JSON-shaped dicts the rest of the server uses.
Kinds without a table are refused with 415, naming the kind.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError, bad_request

MAGIC = b"k8s\x00"

# field number -> (json name, kind, nested schema for messages)
Schema = dict[int, tuple[str, str, Any]]

TIME: Schema = {1: ("seconds", "int", None), 2: ("nanos", "int", None)}
QUANTITY: Schema = {1: ("string", "string", None)}
OWNER_REF: Schema = {
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
OBJECT_META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    5: ("uid", "string", None),
    6: ("resourceVersion", "string", None),
    7: ("generation", "int", None),
    8: ("creationTimestamp", "time", None),
    9: ("deletionTimestamp", "time", None),
    10: ("deletionGracePeriodSeconds", "int", None),
    11: ("labels", "map_ss", None),
    12: ("annotations", "map_ss", None),
    13: ("ownerReferences", "rmsg", OWNER_REF),
    14: ("finalizers", "rstring", None),
}
OBJECT_REF: Schema = {
    1: ("kind", "string", None),
    2: ("namespace", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
}
LOCAL_REF: Schema = {1: ("name", "string", None)}
PRECONDITIONS: Schema = {1: ("uid", "string", None), 2: ("resourceVersion", "string", None)}
DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int", None),
    2: ("preconditions", "msg", PRECONDITIONS),
    3: ("orphanDependents", "bool", None),
    4: ("propagationPolicy", "string", None),
    5: ("dryRun", "rstring", None),
}
RESOURCE_ATTRS: Schema = {
    1: ("namespace", "string", None),
    2: ("verb", "string", None),
    3: ("group", "string", None),
    4: ("version", "string", None),
    5: ("resource", "string", None),
    6: ("subresource", "string", None),
    7: ("name", "string", None),
}
NON_RESOURCE_ATTRS: Schema = {1: ("path", "string", None), 2: ("verb", "string", None)}

INT_OR_STRING: Schema = {
    1: ("type", "int", None),
    2: ("intVal", "int", None),
    3: ("strVal", "string", None),
}
LABEL_SELECTOR: Schema = {
    1: ("matchLabels", "map_ss", None),
    2: (
        "matchExpressions",
        "rmsg",
        {
            1: ("key", "string", None),
            2: ("operator", "string", None),
            3: ("values", "rstring", None),
        },
    ),
}
CONTAINER_PORT: Schema = {
    1: ("name", "string", None),
    2: ("hostPort", "int", None),
    3: ("containerPort", "int", None),
    4: ("protocol", "string", None),
    5: ("hostIP", "string", None),
}
ENV_VAR: Schema = {1: ("name", "string", None), 2: ("value", "string", None)}
RESOURCES: Schema = {1: ("limits", "map_sq", None), 2: ("requests", "map_sq", None)}
CONTAINER: Schema = {
    1: ("name", "string", None),
    2: ("image", "string", None),
    3: ("command", "rstring", None),
    4: ("args", "rstring", None),
    5: ("workingDir", "string", None),
    6: ("ports", "rmsg", CONTAINER_PORT),
    7: ("env", "rmsg", ENV_VAR),
    8: ("resources", "msg", RESOURCES),
    13: ("terminationMessagePath", "string", None),
    14: ("imagePullPolicy", "string", None),
    16: ("stdin", "bool", None),
    17: ("stdinOnce", "bool", None),
    18: ("tty", "bool", None),
    20: ("terminationMessagePolicy", "string", None),
}
POD_SPEC: Schema = {
    2: ("containers", "rmsg", CONTAINER),
    3: ("restartPolicy", "string", None),
    4: ("terminationGracePeriodSeconds", "int", None),
    6: ("dnsPolicy", "string", None),
    7: ("nodeSelector", "map_ss", None),
    8: ("serviceAccountName", "string", None),
    10: ("nodeName", "string", None),
    11: ("hostNetwork", "bool", None),
    19: ("schedulerName", "string", None),
    20: ("initContainers", "rmsg", CONTAINER),
    24: ("priorityClassName", "string", None),
}
POD_TEMPLATE: Schema = {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", POD_SPEC)}
SERVICE_PORT: Schema = {
    1: ("name", "string", None),
    2: ("protocol", "string", None),
    3: ("port", "int", None),
    4: ("targetPort", "intorstr", INT_OR_STRING),
    5: ("nodePort", "int", None),
}
POLICY_RULE: Schema = {
    1: ("verbs", "rstring", None),
    2: ("apiGroups", "rstring", None),
    3: ("resources", "rstring", None),
    4: ("resourceNames", "rstring", None),
    5: ("nonResourceURLs", "rstring", None),
}
SUBJECT: Schema = {
    1: ("kind", "string", None),
    2: ("apiGroup", "string", None),
    3: ("name", "string", None),
    4: ("namespace", "string", None),
}
ROLE_REF: Schema = {
    1: ("apiGroup", "string", None),
    2: ("kind", "string", None),
    3: ("name", "string", None),
}
BINDING: Schema = {
    1: ("metadata", "msg", OBJECT_META),
    2: ("subjects", "rmsg", SUBJECT),
    3: ("roleRef", "msg", ROLE_REF),
}
ROLE: Schema = {1: ("metadata", "msg", OBJECT_META), 2: ("rules", "rmsg", POLICY_RULE)}

INGRESS_BACKEND: Schema = {
    3: (
        "resource",
        "msg",
        {1: ("apiGroup", "string", None), 2: ("kind", "string", None), 3: ("name", "string", None)},
    ),
    4: (
        "service",
        "msg",
        {
            1: ("name", "string", None),
            2: ("port", "msg", {1: ("name", "string", None), 2: ("number", "int", None)}),
        },
    ),
}
INGRESS_SPEC: Schema = {
    1: ("defaultBackend", "msg", INGRESS_BACKEND),
    2: ("tls", "rmsg", {1: ("hosts", "rstring", None), 2: ("secretName", "string", None)}),
    3: (
        "rules",
        "rmsg",
        {
            1: ("host", "string", None),
            # IngressRuleValue is inlined into the rule in JSON
            2: (
                "ingressRuleValue",
                "inline",
                {
                    1: (
                        "http",
                        "msg",
                        {
                            1: (
                                "paths",
                                "rmsg",
                                {
                                    1: ("path", "string", None),
                                    2: ("backend", "msg", INGRESS_BACKEND),
                                    3: ("pathType", "string", None),
                                },
                            )
                        },
                    )
                },
            ),
        },
    ),
    4: ("ingressClassName", "string", None),
}

JOB_SPEC: Schema = {
    1: ("parallelism", "int", None),
    2: ("completions", "int", None),
    3: ("activeDeadlineSeconds", "int", None),
    4: ("selector", "msg", LABEL_SELECTOR),
    5: ("manualSelector", "bool", None),
    6: ("template", "msg", POD_TEMPLATE),
    7: ("backoffLimit", "int", None),
    8: ("ttlSecondsAfterFinished", "int", None),
    9: ("completionMode", "string", None),
    10: ("suspend", "bool", None),
    12: ("backoffLimitPerIndex", "int", None),
    13: ("maxFailedIndexes", "int", None),
    14: ("podReplacementPolicy", "string", None),
    15: ("managedBy", "string", None),
}
CRONJOB_SPEC: Schema = {
    1: ("schedule", "string", None),
    2: ("startingDeadlineSeconds", "int", None),
    3: ("concurrencyPolicy", "string", None),
    4: ("suspend", "bool", None),
    5: ("jobTemplate", "msg", {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", JOB_SPEC)}),
    6: ("successfulJobsHistoryLimit", "int", None),
    7: ("failedJobsHistoryLimit", "int", None),
    8: ("timeZone", "string", None),
}

KINDS: dict[str, Schema] = {
    # batch/v1 (``kubectl create job|cronjob``)
    "Job": {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", JOB_SPEC)},
    "CronJob": {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", CRONJOB_SPEC)},
    "ConfigMap": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("data", "map_ss", None),
        3: ("binaryData", "map_sb", None),
        4: ("immutable", "bool", None),
    },
    "Secret": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("data", "map_sb", None),
        3: ("type", "string", None),
        4: ("stringData", "map_ss", None),
        5: ("immutable", "bool", None),
    },
    "Namespace": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("spec", "msg", {1: ("finalizers", "rstring", None)}),
    },
    "ServiceAccount": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("secrets", "rmsg", OBJECT_REF),
        3: ("imagePullSecrets", "rmsg", LOCAL_REF),
        4: ("automountServiceAccountToken", "bool", None),
    },
    "Eviction": {1: ("metadata", "msg", OBJECT_META), 2: ("deleteOptions", "msg", DELETE_OPTIONS)},
    # authentication/v1 (``kubectl create token``)
    "TokenRequest": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("audiences", "rstring", None),
                3: (
                    "boundObjectRef",
                    "msg",
                    {
                        1: ("kind", "string", None),
                        2: ("apiVersion", "string", None),
                        3: ("name", "string", None),
                        4: ("uid", "string", None),
                    },
                ),
                4: ("expirationSeconds", "int", None),
            },
        ),
    },
    "DeleteOptions": DELETE_OPTIONS,
    "Pod": {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", POD_SPEC)},
    "Deployment": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("replicas", "int", None),
                2: ("selector", "msg", LABEL_SELECTOR),
                3: ("template", "msg", POD_TEMPLATE),
                4: ("strategy", "msg", {1: ("type", "string", None)}),
                5: ("minReadySeconds", "int", None),
                6: ("revisionHistoryLimit", "int", None),
                7: ("paused", "bool", None),
                9: ("progressDeadlineSeconds", "int", None),
            },
        ),
    },
    "Service": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("ports", "rmsg", SERVICE_PORT),
                2: ("selector", "map_ss", None),
                3: ("clusterIP", "string", None),
                4: ("type", "string", None),
                5: ("externalIPs", "rstring", None),
                7: ("sessionAffinity", "string", None),
                10: ("externalName", "string", None),
            },
        ),
    },
    "PodDisruptionBudget": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("minAvailable", "intorstr", INT_OR_STRING),
                2: ("selector", "msg", LABEL_SELECTOR),
                3: ("maxUnavailable", "intorstr", INT_OR_STRING),
            },
        ),
    },
    # kubectl create quota / create priorityclass
    "ResourceQuota": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("hard", "map_sq", None),
                2: ("scopes", "rstring", None),
                3: (
                    "scopeSelector",
                    "msg",
                    {
                        1: (
                            "matchExpressions",
                            "rmsg",
                            {
                                1: ("scopeName", "string", None),
                                2: ("operator", "string", None),
                                3: ("values", "rstring", None),
                            },
                        )
                    },
                ),
            },
        ),
    },
    "PriorityClass": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("value", "int", None),
        3: ("globalDefault", "bool", None),
        4: ("description", "string", None),
        5: ("preemptionPolicy", "string", None),
    },
    # kubectl create ingress (networking.k8s.io/v1)
    "Ingress": {1: ("metadata", "msg", OBJECT_META), 2: ("spec", "msg", INGRESS_SPEC)},
    "Role": ROLE,
    "ClusterRole": ROLE,
    "RoleBinding": BINDING,
    "ClusterRoleBinding": BINDING,
    "SelfSubjectAccessReview": {
        1: ("metadata", "msg", OBJECT_META),
        2: (
            "spec",
            "msg",
            {
                1: ("resourceAttributes", "msg", RESOURCE_ATTRS),
                2: ("nonResourceAttributes", "msg", NON_RESOURCE_ATTRS),
            },
        ),
    },
    # kubectl auth whoami / auth can-i --list (authentication/v1 and authorization/v1)
    "SelfSubjectReview": {1: ("metadata", "msg", OBJECT_META)},
    "SelfSubjectRulesReview": {
        1: ("metadata", "msg", OBJECT_META),
        2: ("spec", "msg", {1: ("namespace", "string", None)}),
    },
}

# autoscaling (``kubectl autoscale``): v1 and v2 share the kind name, not the field numbers
CROSS_VERSION_REF: Schema = {
    1: ("kind", "string", None),
    2: ("name", "string", None),
    3: ("apiVersion", "string", None),
}
METRIC_TARGET: Schema = {
    1: ("type", "string", None),
    2: ("value", "quantity", None),
    3: ("averageValue", "quantity", None),
    4: ("averageUtilization", "int", None),
}
SCALING_RULES: Schema = {
    1: ("selectPolicy", "string", None),
    2: (
        "policies",
        "rmsg",
        {
            1: ("type", "string", None),
            2: ("value", "int", None),
            3: ("periodSeconds", "int", None),
        },
    ),
    3: ("stabilizationWindowSeconds", "int", None),
}
HPA_V2_SPEC: Schema = {
    1: ("scaleTargetRef", "msg", CROSS_VERSION_REF),
    2: ("minReplicas", "int", None),
    3: ("maxReplicas", "int", None),
    4: (
        "metrics",
        "rmsg",
        {
            1: ("type", "string", None),
            4: (
                "resource",
                "msg",
                {1: ("name", "string", None), 2: ("target", "msg", METRIC_TARGET)},
            ),
            7: (
                "containerResource",
                "msg",
                {
                    1: ("name", "string", None),
                    2: ("target", "msg", METRIC_TARGET),
                    3: ("container", "string", None),
                },
            ),
        },
    ),
    5: (
        "behavior",
        "msg",
        {1: ("scaleUp", "msg", SCALING_RULES), 2: ("scaleDown", "msg", SCALING_RULES)},
    ),
}
HPA_V1_SPEC: Schema = {
    1: ("scaleTargetRef", "msg", CROSS_VERSION_REF),
    2: ("minReplicas", "int", None),
    3: ("maxReplicas", "int", None),
    4: ("targetCPUUtilizationPercentage", "int", None),
}
VERSIONED_KINDS: dict[tuple[str, str], Schema] = {
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {
        1: ("metadata", "msg", OBJECT_META),
        2: ("spec", "msg", HPA_V2_SPEC),
    },
    ("autoscaling/v1", "HorizontalPodAutoscaler"): {
        1: ("metadata", "msg", OBJECT_META),
        2: ("spec", "msg", HPA_V1_SPEC),
    },
}


# Go pointer fields (optional in proto2): present on the wire only when set, so a zero is a
# real value. Every other scalar is always written by Go, and JSON would omit its zero.
KEEP_ZERO = frozenset(
    {
        "gracePeriodSeconds",
        "replicas",
        "terminationGracePeriodSeconds",
        "revisionHistoryLimit",
        "progressDeadlineSeconds",
        "deletionGracePeriodSeconds",
        "activeDeadlineSeconds",
        # batch/v1 pointers
        "parallelism",
        "completions",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "suspend",
        "manualSelector",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "startingDeadlineSeconds",
        "successfulJobsHistoryLimit",
        "failedJobsHistoryLimit",
        "automountServiceAccountToken",
        "immutable",
        "orphanDependents",
        "controller",
        "blockOwnerDeletion",
        "type",
        "intVal",
        "minReplicas",
        "targetCPUUtilizationPercentage",
        "averageUtilization",
        "stabilizationWindowSeconds",
        "value",  # PriorityClass.value (int32, always written)
    }
)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise bad_request("truncated or invalid protobuf varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Raw (field number, wire type, value) triples; bytes for length-delimited fields."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        num, wire = tag >> 3, tag & 7
        value: Any
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise bad_request("truncated protobuf field")
            value = data[pos : pos + length]
            pos += length
        elif wire == 1:
            value = int.from_bytes(data[pos : pos + 8], "little")
            pos += 8
        elif wire == 5:
            value = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        else:
            raise bad_request(f"unsupported protobuf wire type {wire}")
        if num == 0:
            raise bad_request("invalid protobuf field number 0")
        out.append((num, wire, value))
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(v: Any) -> str:
    if not isinstance(v, bytes):
        raise bad_request("protobuf string field has the wrong wire type")
    try:
        return v.decode()
    except UnicodeDecodeError as exc:
        raise bad_request("protobuf string field is not UTF-8") from exc


def _map_entry(v: Any) -> tuple[str, bytes]:
    if not isinstance(v, bytes):
        raise bad_request("protobuf map entry has the wrong wire type")
    key, value = "", b""
    for n, _w, x in fields(v):
        if n == 1:
            key = _text(x)
        elif n == 2 and isinstance(x, bytes):
            value = x
    return key, value


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _wire, value in fields(data):
        spec = schema.get(num)
        if spec is None:
            continue  # a field this server does not read
        name, kind, sub = spec
        if kind == "string":
            text = _text(value)
            if text:  # Go writes empty strings; JSON omits them
                obj[name] = text
        elif kind == "int":
            if not isinstance(value, int):
                raise bad_request(f"protobuf field {name} has the wrong wire type")
            if value or name in KEEP_ZERO:
                obj[name] = _signed(value)
        elif kind == "bool":
            if value or name in KEEP_ZERO:
                obj[name] = bool(value)
        elif kind == "msg":
            obj[name] = decode_message(value if isinstance(value, bytes) else b"", sub)
        elif kind == "inline":  # a Go struct embedded with `json:",inline"`
            obj.update(decode_message(value if isinstance(value, bytes) else b"", sub))
        elif kind == "rmsg":
            obj.setdefault(name, []).append(
                decode_message(value if isinstance(value, bytes) else b"", sub)
            )
        elif kind == "rstring":
            obj.setdefault(name, []).append(_text(value))
        elif kind == "map_ss":
            k, v = _map_entry(value)
            obj.setdefault(name, {})[k] = _text(v)
        elif kind == "map_sb":
            k, v = _map_entry(value)
            obj.setdefault(name, {})[k] = base64.b64encode(v).decode()
        elif kind == "map_sq":  # map<string, Quantity{string=1}>
            k, v = _map_entry(value)
            q = decode_message(v, QUANTITY)
            obj.setdefault(name, {})[k] = q.get("string", "0")
        elif kind == "quantity":  # resource.Quantity{string=1}
            q = decode_message(value if isinstance(value, bytes) else b"", QUANTITY)
            obj[name] = q.get("string", "0")
        elif kind == "intorstr":
            ios = decode_message(value if isinstance(value, bytes) else b"", sub)
            obj[name] = ios.get("strVal", "") if ios.get("type") == 1 else ios.get("intVal", 0)
        elif kind == "time":
            t = decode_message(value if isinstance(value, bytes) else b"", TIME)
            seconds = t.get("seconds", 0)
            if seconds:  # Go's zero Time is JSON null
                obj[name] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return obj


def decode_body(data: bytes) -> dict[str, Any]:
    """A ``k8s\\x00``-framed protobuf body as a JSON-shaped object."""
    if not data.startswith(MAGIC):
        raise bad_request("protobuf body lacks the k8s envelope")
    envelope = decode_message(
        data[len(MAGIC) :],
        {
            1: (
                "typeMeta",
                "msg",
                {1: ("apiVersion", "string", None), 2: ("kind", "string", None)},
            ),
            4: ("contentType", "string", None),
        },
    )
    raw = b""
    for num, _w, value in fields(data[len(MAGIC) :]):
        if num == 2 and isinstance(value, bytes):
            raw = value
    type_meta = envelope.get("typeMeta") or {}
    kind = str(type_meta.get("kind", ""))
    schema = VERSIONED_KINDS.get((str(type_meta.get("apiVersion", "")), kind)) or KINDS.get(kind)
    if schema is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"protobuf bodies of kind {kind or '(unknown)'} are not supported by this server;"
            " send application/json",
        )
    obj = decode_message(raw, schema)
    obj["kind"] = kind
    if type_meta.get("apiVersion"):
        obj["apiVersion"] = type_meta["apiVersion"]
    return obj
