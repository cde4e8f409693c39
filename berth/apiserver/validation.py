"""Write-time validation: names and the fields the official clients' models require.

The Python client refuses to deserialize an object missing a schema-required field, and one
such object breaks every list call for its kind, so the server rejects them on write with
422 ``Invalid`` and one cause per field. Each kind's strategy (:mod:`berth.apiserver.kinds`)
picks the checks that apply to it from here.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from berth.api.meta import Obj

from .dnsnames import LABEL_HELP, SUBDOMAIN_HELP, is_dns_label, is_dns_subdomain, is_label_value
from .errors import FieldError, duplicate, forbidden_field, invalid_value, not_supported, required
from .podsafety import validate_pod_spec_safety
from .podtemplate import PodTemplate, Remembered

_QUALIFIED = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)

_DATA_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_DATA_KEY_HELP = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
# How a kind's names are checked (a strategy's ``name_rule``): DNS-1123 subdomains by default,
# labels for some (Namespace, Service), path segments for RBAC (e.g. "system:kube-scheduler").
SUBDOMAIN = "subdomain"
LABEL = "label"
PATH_SEGMENT = "path-segment"


def validate_name(rule: str, name: str, field: str = "metadata.name") -> list[FieldError]:
    if not name:
        return [required(field)]
    if rule == PATH_SEGMENT:
        if name in (".", "..") or "/" in name or "%" in name:
            return [invalid_value(field, name, "may not contain '/' or '%'")]
        return []
    if rule == LABEL:
        return [] if is_dns_label(name) else [invalid_value(field, name, LABEL_HELP)]
    return [] if is_dns_subdomain(name) else [invalid_value(field, name, SUBDOMAIN_HELP)]


def _validate_string_map(m: Any, field: str, *, labels: bool) -> list[FieldError]:
    if m is None:
        return []
    if not isinstance(m, dict):
        return [invalid_value(field, m, "must be a map of string to string")]
    errs: list[FieldError] = []
    for k, v in m.items():
        if not isinstance(k, str) or len(k) > 316 or not _QUALIFIED.fullmatch(k):
            errs.append(
                invalid_value(
                    field, k, "name part must consist of alphanumeric characters, '-', '_' or '.'"
                )
            )
        if not isinstance(v, str):
            errs.append(invalid_value(f"{field}[{k}]", v, "must be a string"))
        elif labels and not is_label_value(v):
            errs.append(
                invalid_value(
                    f"{field}[{k}]",
                    v,
                    "a valid label must be an empty string or consist of alphanumeric characters,"
                    " '-', '_' or '.'",
                )
            )
    return errs


def validate_metadata(obj: Obj, name_rule: str = SUBDOMAIN) -> list[FieldError]:
    m = obj.get("metadata")
    if not isinstance(m, dict):
        return [required("metadata")]
    errs = validate_name(name_rule, str(m.get("name") or ""))
    errs += _validate_string_map(m.get("labels"), "metadata.labels", labels=True)
    errs += _validate_string_map(m.get("annotations"), "metadata.annotations", labels=False)
    for f in ("finalizers",):
        v = m.get(f)
        if v is not None and (not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            errs.append(invalid_value(f"metadata.{f}", v, "must be a list of strings"))
    refs = m.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list):
            errs.append(invalid_value("metadata.ownerReferences", refs, "must be a list"))
        else:
            for i, r in enumerate(refs):
                for f in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(r, dict) or not r.get(f):
                        errs.append(required(f"metadata.ownerReferences[{i}].{f}"))
    return errs


def _containers(
    spec: Any, field: str, claim_volumes: frozenset[str] = frozenset()
) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(field)]
    errs: list[FieldError] = []
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [required(f"{field}.containers")]
    for list_name in ("containers", "initContainers"):
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list):
            errs.append(invalid_value(f"{field}.{list_name}", items, "must be a list"))
            continue
        seen: set[str] = set()
        for i, c in enumerate(items):
            where = f"{field}.{list_name}[{i}]"
            if not isinstance(c, dict):
                errs.append(invalid_value(where, c, "must be an object"))
                continue
            name = c.get("name")
            if not isinstance(name, str) or not name:
                errs.append(required(f"{where}.name"))
            elif name in seen:
                errs.append(duplicate(f"{where}.name", name))
            else:
                seen.add(name)
                errs += validate_name(LABEL, name, f"{where}.name")
            if not isinstance(c.get("image"), str) or not c.get("image"):
                errs.append(required(f"{where}.image"))
            for j, p in enumerate(c.get("ports") or []):
                if not isinstance(p, dict) or not isinstance(p.get("containerPort"), int):
                    errs.append(required(f"{where}.ports[{j}].containerPort"))
            for j, e in enumerate(c.get("env") or []):
                if not isinstance(e, dict) or not e.get("name"):
                    errs.append(required(f"{where}.env[{j}].name"))
    for i, v in enumerate(spec.get("volumes") or []):
        if not isinstance(v, dict) or not v.get("name"):
            errs.append(required(f"{field}.volumes[{i}].name"))
    # volumes, mounts, probes (issue 13)
    errs += validate_pod_spec_safety(spec, field, claim_volumes)
    return errs


# Pod templates (:mod:`podtemplate`) whose spec was found valid: a pod spec's validation
# reads nothing but the spec, so another pod of the template needs only its metadata
# checked. Only valid specs are remembered: an invalid one is checked in full every time,
# so that every error and message comes from the pod itself.
_VALID_POD_SPECS: Remembered[PodTemplate, bool] = Remembered()


def pod_fields(obj: Obj, template: PodTemplate | None = None) -> list[FieldError]:
    """Errors in a pod's spec; ``template``: the key of a pod being created, under which a
    valid spec is remembered."""
    if template is None:
        return _containers(obj.get("spec"), "spec")
    if _VALID_POD_SPECS.get(template):
        return []
    errs = _containers(obj.get("spec"), "spec")
    if not errs:
        _VALID_POD_SPECS.put(template, True)
    return errs


def workload_fields(
    obj: Obj, *, needs_replicas: bool, claim_volumes: frozenset[str] = frozenset()
) -> list[FieldError]:
    """``claim_volumes``: volumes the controller adds to every pod (a StatefulSet's claim
    templates), so the template's mounts may name them."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    sel = spec.get("selector")
    if not isinstance(sel, dict) or not (sel.get("matchLabels") or sel.get("matchExpressions")):
        errs.append(required("spec.selector"))
    tpl = spec.get("template")
    if not isinstance(tpl, dict):
        errs.append(required("spec.template"))
    else:
        errs += _containers(tpl.get("spec"), "spec.template.spec", claim_volumes)
        tmeta = tpl.get("metadata")
        tlabels = (tmeta.get("labels") if isinstance(tmeta, dict) else None) or {}
        if (
            isinstance(sel, dict)
            and isinstance(sel.get("matchLabels"), dict)
            and isinstance(tlabels, dict)
        ):
            for k, v in sel["matchLabels"].items():
                if tlabels.get(k) != v:
                    errs.append(
                        invalid_value(
                            "spec.template.metadata.labels",
                            tlabels,
                            "`selector` does not match template `labels`",
                        )
                    )
                    break
    if needs_replicas:
        r = spec.get("replicas")
        if r is not None and (not isinstance(r, int) or isinstance(r, bool) or r < 0):
            errs.append(invalid_value("spec.replicas", r, "must be greater than or equal to 0"))
    return errs


def lease_fields(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if spec is not None and not isinstance(spec, dict):
        return [invalid_value("spec", spec, "must be an object")]
    return []


def event_fields(obj: Obj) -> list[FieldError]:
    if not isinstance(obj.get("involvedObject"), dict):
        return [required("involvedObject")]
    return []


def policy_rules(obj: Obj, *, namespaced: bool) -> list[FieldError]:
    """Policy rules as kube-apiserver validates them: verbs always; a rule is either about
    resources (apiGroups and resources required) or about non-resource URLs (cluster roles
    only), never both — the escalation check and the authorizer read them that way."""
    errs: list[FieldError] = []
    rules = obj.get("rules")
    if rules is None:
        return []
    if not isinstance(rules, list):
        return [invalid_value("rules", rules, "must be a list")]
    for i, r in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(r, dict) or not isinstance(r.get("verbs"), list) or not r["verbs"]:
            errs.append(required(f"{where}.verbs"))
            continue
        for f in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            v = r.get(f)
            if v is not None and (
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)
            ):
                errs.append(invalid_value(f"{where}.{f}", v, "must be a list of strings"))
        if r.get("nonResourceURLs"):
            if namespaced:
                errs.append(
                    invalid_value(
                        f"{where}.nonResourceURLs",
                        r["nonResourceURLs"],
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if r.get("apiGroups") or r.get("resources") or r.get("resourceNames"):
                errs.append(
                    invalid_value(
                        f"{where}.nonResourceURLs",
                        r["nonResourceURLs"],
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not r.get("apiGroups"):
            errs.append(
                FieldError(
                    "FieldValueRequired",
                    f"{where}.apiGroups",
                    "Required value: resource rules must supply at least one api group",
                )
            )
        if not r.get("resources"):
            errs.append(
                FieldError(
                    "FieldValueRequired",
                    f"{where}.resources",
                    "Required value: resource rules must supply at least one resource",
                )
            )
    return errs


RBAC_GROUP = "rbac.authorization.k8s.io"


def _role_ref(obj: Obj) -> Any:
    """roleRef with its defaulted apiGroup (bindings stored before the default lack it)."""
    ref = obj.get("roleRef")
    return {**ref, "apiGroup": ref.get("apiGroup") or RBAC_GROUP} if isinstance(ref, dict) else ref


def binding_fields(obj: Obj, *, role_kinds: tuple[str, ...]) -> list[FieldError]:
    """A binding refers to a Role or ClusterRole (a ClusterRoleBinding to a ClusterRole only)
    of the RBAC group: anything else would be read differently by the authorizer and by the
    escalation check."""
    errs: list[FieldError] = []
    ref = obj.get("roleRef")
    if not isinstance(ref, dict):
        return [required("roleRef")]
    for f in ("kind", "name"):
        if not ref.get(f):
            errs.append(required(f"roleRef.{f}"))
    if ref.get("kind") and ref["kind"] not in role_kinds:
        errs.append(not_supported("roleRef.kind", ref["kind"], role_kinds))
    if ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup"), (RBAC_GROUP,)))
    if not isinstance(ref.get("name", ""), str):
        errs.append(invalid_value("roleRef.name", ref["name"], "must be a string"))
    for i, s in enumerate(obj.get("subjects") or []):
        if not isinstance(s, dict):
            errs.append(invalid_value(f"subjects[{i}]", s, "must be an object"))
            continue
        for f in ("kind", "name"):
            if not s.get(f):
                errs.append(required(f"subjects[{i}].{f}"))
    return errs


def data_fields(obj: Obj, *, binary_fields: tuple[str, ...]) -> list[FieldError]:
    """``data``/``binaryData``/``stringData`` maps; keys of ``binary_fields`` are checked as
    config keys with base64 values (both maps of a Secret, ``binaryData`` of a ConfigMap)."""
    errs: list[FieldError] = []
    for f in ("data", "binaryData", "stringData"):
        v = obj.get(f)
        if v is not None and (
            not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values())
        ):
            errs.append(invalid_value(f, "...", "must be a map of string to string"))
    for f in binary_fields:
        v = obj.get(f)
        if not isinstance(v, dict):
            continue
        for k, x in v.items():
            if not isinstance(k, str) or not _DATA_KEY.fullmatch(k):
                errs.append(
                    invalid_value(
                        f"{f}[{k}]",
                        k,
                        _DATA_KEY_HELP,
                    )
                )
            if isinstance(x, str):
                try:
                    base64.b64decode(x, validate=True)
                except (ValueError, binascii.Error):
                    errs.append(invalid_value(f"{f}[{k}]", "<value>", "illegal base64 data"))
    return errs


def _pod_spec_mutable_view(spec: Any) -> Any:
    """The pod spec with the fields an update may change blanked out."""
    if not isinstance(spec, dict):
        return spec
    view = dict(spec)
    # ephemeralContainers: only through their subresource (berth.apiserver.ephemeral); an
    # update of the pod itself keeps the stored ones (PodStrategy.keep_on_update)
    for f in (
        "activeDeadlineSeconds",
        "tolerations",
        "terminationGracePeriodSeconds",
        "ephemeralContainers",
    ):
        view.pop(f, None)
    for list_name in ("containers", "initContainers"):
        items = view.get(list_name)
        if isinstance(items, list):
            view[list_name] = [
                {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                for c in items
            ]
    return view


def pod_update(old: Obj, new: Obj) -> list[FieldError]:
    """A pod's spec is immutable but for images, deadlines, tolerations and grace."""
    if _pod_spec_mutable_view(new.get("spec")) != _pod_spec_mutable_view(old.get("spec")):
        return [
            forbidden_field(
                "spec",
                "pod updates may not change fields other than"
                " `spec.containers[*].image`, `spec.initContainers[*].image`,"
                " `spec.activeDeadlineSeconds`, `spec.tolerations` (only additions to"
                " existing tolerations) or `spec.terminationGracePeriodSeconds`",
            )
        ]
    return []


def binding_update(old: Obj, new: Obj) -> list[FieldError]:
    if _role_ref(new) != _role_ref(old):
        # Changing what a binding grants is deleting it and creating another (each with
        # its own checks); kube-apiserver refuses it the same way.
        return [invalid_value("roleRef", new.get("roleRef"), "cannot change roleRef")]
    return []


def selector_update(old: Obj, new: Obj) -> list[FieldError]:
    """A workload's ``spec.selector`` is immutable once set."""
    old_sel = (old.get("spec") or {}).get("selector")
    new_sel = (new.get("spec") or {}).get("selector")
    if old_sel is not None and new_sel != old_sel:
        return [invalid_value("spec.selector", new_sel, "field is immutable")]
    return []
