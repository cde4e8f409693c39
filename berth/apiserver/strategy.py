"""The write rules every kind shares: server-owned metadata, who may write what, generation.

These are the rules kube-apiserver applies in its registries: status is written only through
``/status`` (for kinds that have it), spec only through the main resource; ``generation``
starts at 1 and grows only when the spec changes; server-owned metadata cannot be changed by
clients. What differs between kinds is in their strategies (:mod:`berth.apiserver.kinds`),
which call these helpers.
"""

from __future__ import annotations

from berth.api.meta import Obj, format_now, meta, new_uid
from berth.api.resources import ResourceDef

from .jsoncopy import json_copy


def container_defaults(c: Obj) -> None:
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
    for key in ("containers", "initContainers"):
        items = spec.get(key)
        for c in items if isinstance(items, list) else ():  # validation reports the rest
            if isinstance(c, dict):
                container_defaults(c)


def template_defaults(obj: Obj) -> None:
    """Pod defaults inside a workload's ``spec.template``."""
    spec = obj.get("spec")
    tpl = spec.get("template") if isinstance(spec, dict) else None
    if isinstance(tpl, dict) and isinstance(tpl.get("spec"), dict):
        pod_spec_defaults(tpl["spec"])
        tm = tpl.setdefault("metadata", {})
        if isinstance(tm, dict):
            tm.setdefault("creationTimestamp", None)


def _drop_empty_meta(m: Obj) -> None:
    """Go's JSON encoding omits empty maps and lists in ObjectMeta; so do we, so that a
    patch adding ``annotations: {}`` is a no-op as on kube-apiserver."""
    for f in ("labels", "annotations", "finalizers", "ownerReferences"):
        if f in m and not m[f]:
            del m[f]


def stamp_for_create(rd: ResourceDef, obj: Obj, namespace: str, *, generation: bool) -> None:
    """Set server-owned metadata on a new object; drop what clients may not set.
    ``generation``: whether the kind has one (as kube: only objects with a spec)."""
    m = meta(obj)
    obj["apiVersion"] = rd.api_version
    obj["kind"] = rd.kind
    if rd.namespaced:
        m["namespace"] = namespace
    else:
        m.pop("namespace", None)
    m["uid"] = new_uid()
    m["creationTimestamp"] = format_now()
    m.pop("resourceVersion", None)
    m.pop("deletionTimestamp", None)
    m.pop("deletionGracePeriodSeconds", None)
    m.pop("managedFields", None)
    m.pop("selfLink", None)
    _drop_empty_meta(m)
    if generation:
        m["generation"] = 1
    else:
        m.pop("generation", None)


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


def status_update(old: Obj, new: Obj) -> Obj:
    """The object a write to ``/status`` stores: ``old`` with ``new``'s status.

    A status write takes only ``status`` from ``new``: spec and all metadata stay as stored.
    That is stricter than kube-apiserver, whose status strategies keep the spec (and, for
    pods, ownerReferences; for workloads, labels) but let labels/annotations through on some
    kinds: here a status writer such as a node agent cannot relabel a pod into a Service's
    selector or rewrite its annotations."""
    # Status writers may not change metadata except by accident: the stored one is kept,
    # like the spec (one copy of both; the old status is not copied to be thrown away).
    result = json_copy({k: v for k, v in old.items() if k != "status"})
    result["status"] = new.get("status") or {}
    return result


def status_update_sharing(old: Obj, new: Obj) -> Obj:
    """:func:`status_update` sharing with ``old`` all but its ``metadata`` map (copied: the
    write sets managedFields and resourceVersion in it) and the status: no copy of the spec
    and metadata values. For a caller whose ``old`` is its own (decoded for this write) and
    that changes neither object beyond ``status`` and ``metadata``'s own keys afterwards (a
    built-in kind's status write: CRD defaulting, which changes the spec, copies). Fields
    compared with ``old`` (managedFields, the no-op check) then stop at the shared values."""
    result = {k: v for k, v in old.items() if k != "status"}
    m = result.get("metadata")
    result["metadata"] = dict(m) if isinstance(m, dict) else {}
    result["status"] = new.get("status") or {}
    return result


def stamp_for_update(rd: ResourceDef, old: Obj, new: Obj) -> None:
    """Keep the server-owned metadata of ``old`` in ``new`` (an update of the object)."""
    new["apiVersion"] = rd.api_version
    new["kind"] = rd.kind
    m = meta(new)
    om = old.get("metadata") or {}
    for f in IMMUTABLE_META:
        if f in om:
            m[f] = om[f]
        else:
            m.pop(f, None)
    m.pop("managedFields", None)
    _drop_empty_meta(m)
