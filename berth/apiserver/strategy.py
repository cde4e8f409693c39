"""Per-kind write strategy: defaults, what a write may change, and generation bumps.

These are the rules kube-apiserver applies in its registries: status is written only through
``/status`` (for kinds that have it), spec only through the main resource; ``generation``
starts at 1 and grows only when the spec changes; server-owned metadata cannot be changed by
clients.
"""

from __future__ import annotations

import base64
import copy
from typing import Any

from berth.api import satoken
from berth.api.meta import Obj, format_time, meta, new_uid, now
from berth.api.resources import ResourceDef

# Kinds whose "spec" is everything except metadata and status (no separate spec field).
_SPECLESS = {
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Event",
    "ServiceAccount",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
}


def _container_defaults(c: Obj) -> None:
    image = str(c.get("image", ""))
    if "imagePullPolicy" not in c:
        last = image.rsplit("/", 1)[-1]
        tagged = ":" in last or "@" in image
        c["imagePullPolicy"] = (
            "IfNotPresent" if tagged and not image.endswith(":latest") else "Always"
        )
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def pod_spec_defaults(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(c, dict):
            _container_defaults(c)


def _template_defaults(obj: Obj) -> None:
    tpl = (obj.get("spec") or {}).get("template")
    if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict):
        pod_spec_defaults(tpl["spec"])
        tm = tpl.setdefault("metadata", {})
        tm.setdefault("creationTimestamp", None)


def apply_defaults(rd: ResourceDef, obj: Obj) -> None:
    """Fill the defaults kube-apiserver would (only for fields the client left out)."""
    kind = rd.kind
    spec = obj.get("spec")
    if kind == "Pod" and isinstance(spec, dict):
        pod_spec_defaults(spec)
        if not spec.get("serviceAccountName"):
            spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("priority", 0)
        # not-ready/unreachable tolerations: berth.apiserver.tolerations (admission).
    elif kind == "Deployment" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            ru = strategy.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", "25%")
            ru.setdefault("maxSurge", "25%")
        _template_defaults(obj)
    elif kind == "ReplicaSet" and isinstance(spec, dict):
        spec.setdefault("replicas", 1)
        _template_defaults(obj)
    elif kind == "DaemonSet" and isinstance(spec, dict):
        spec.setdefault("revisionHistoryLimit", 10)
        us = spec.setdefault("updateStrategy", {})
        if us.get("type", "RollingUpdate") == "RollingUpdate":
            us.setdefault("type", "RollingUpdate")
            ru = us.setdefault("rollingUpdate", {})
            ru.setdefault("maxUnavailable", 1)
            ru.setdefault("maxSurge", 0)
        _template_defaults(obj)
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for p in spec.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p.get("port"))
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for k, v in string_data.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif kind in ("RoleBinding", "ClusterRoleBinding"):
        _binding_defaults(obj)
    elif kind == "Event":
        obj.setdefault("count", 1)
        obj.setdefault("type", "Normal")
        obj.setdefault("source", {})


def _binding_defaults(obj: Obj) -> None:
    """kube's v1 defaults: roleRef and User/Group subjects are of the RBAC API group."""
    rbac = "rbac.authorization.k8s.io"
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = rbac
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = rbac


def _drop_empty_meta(m: Obj) -> None:
    """Go's JSON encoding omits empty maps and lists in ObjectMeta; so do we, so that a
    patch adding ``annotations: {}`` is a no-op as on kube-apiserver."""
    for f in ("labels", "annotations", "finalizers", "ownerReferences"):
        if f in m and not m[f]:
            del m[f]


def prepare_for_create(rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
    """Set server-owned metadata and reset fields clients may not set on create."""
    m = meta(obj)
    obj["apiVersion"] = rd.api_version
    obj["kind"] = rd.kind
    if rd.namespaced:
        m["namespace"] = namespace
    else:
        m.pop("namespace", None)
    m["uid"] = new_uid()
    m["creationTimestamp"] = format_time(now())
    m.pop("resourceVersion", None)
    m.pop("deletionTimestamp", None)
    m.pop("deletionGracePeriodSeconds", None)
    m.pop("managedFields", None)
    m.pop("selfLink", None)
    _drop_empty_meta(m)
    if rd.kind in _SPECLESS:
        m.pop("generation", None)  # as kube: only objects with a spec have a generation
    else:
        m["generation"] = 1
    if rd.kind == "Pod":
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(obj.get("spec") or {})}
    elif rd.kind == "Namespace":
        obj["status"] = {"phase": "Active"}
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    elif rd.has_status and rd.kind != "Node":
        obj.pop("status", None)
    apply_defaults(rd, obj)
    if rd.kind == "Secret" and obj.get("type") == satoken.TOKEN_SECRET_TYPE:
        # Only the token controller writes a token Secret's token (a signed legacy JWT naming
        # this Secret); whatever its creator wrote there is dropped.
        (obj.get("data") or {}).pop("token", None)
    return obj


def _qos_class(spec: Obj) -> str:
    containers = spec.get("containers") or []
    limits_all = True
    any_set = False
    for c in containers:
        res = c.get("resources") or {} if isinstance(c, dict) else {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        if not (lim.get("cpu") and lim.get("memory")) or any(
            req.get(k) not in (None, lim.get(k)) for k in ("cpu", "memory")
        ):
            limits_all = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if limits_all else "Burstable"


def spec_part(rd: ResourceDef, obj: Obj) -> Any:
    """The part of the object whose change bumps ``metadata.generation``."""
    if rd.kind in _SPECLESS:
        return {
            k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")
        }
    return obj.get("spec")


IMMUTABLE_META = (
    "uid",
    "creationTimestamp",
    "namespace",
    "name",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)


def prepare_for_update(rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
    """Merge ``new`` over ``old`` according to who may write what; bump generation.

    A status write takes only ``status`` from ``new``: spec and all metadata stay as stored.
    That is stricter than kube-apiserver, whose status strategies keep the spec (and, for
    pods, ownerReferences; for workloads, labels) but let labels/annotations through on some
    kinds: here a status writer such as a node agent cannot relabel a pod into a Service's
    selector or rewrite its annotations."""
    if subresource not in ("", "status"):
        raise ValueError(f"no update strategy for subresource {subresource!r}")
    if subresource == "status":
        result = copy.deepcopy(old)
        result["status"] = new.get("status") or {}
        # Status writers may not change metadata except by accident; keep the stored one.
        result["metadata"] = copy.deepcopy(old["metadata"])
        return result
    result = new
    result["apiVersion"] = rd.api_version
    result["kind"] = rd.kind
    m = meta(result)
    om = old.get("metadata") or {}
    for f in IMMUTABLE_META:
        if f in om:
            m[f] = om[f]
        else:
            m.pop(f, None)
    m.pop("managedFields", None)
    _drop_empty_meta(m)
    if rd.has_status and rd.kind != "Namespace":
        if "status" in old:
            result["status"] = old["status"]
        else:
            result.pop("status", None)
    elif rd.kind == "Namespace":
        result["status"] = old.get("status") or {"phase": "Active"}
    if rd.kind == "Namespace":
        result["spec"] = old.get("spec") or {}
    apply_defaults(rd, result)
    if rd.kind in _SPECLESS:
        m.pop("generation", None)
    elif spec_part(rd, result) != spec_part(rd, old):
        m["generation"] = int(om.get("generation") or 1) + 1
    else:
        m["generation"] = int(om.get("generation") or 1)
    return result
