"""``pods/ephemeralcontainers``: what a write to it may change, and how it is validated.

Only ``spec.ephemeralContainers`` is taken from the client; everything else of the pod stays
as stored. Ephemeral containers can be added, never changed or removed (upstream's rule), and
are validated like containers except that what would make them part of the pod's serving
shape is forbidden: ports, probes, lifecycle hooks, resources, a restart policy. Their
names are unique among all of the pod's containers, and ``targetContainerName`` must name
one of its (init) containers. Pod Security reviews the write as an update of the pod (see
:mod:`berth.apiserver.podsecurity`), so a privileged ephemeral container is refused where a
privileged container would be.
"""

from __future__ import annotations

import copy
from typing import Any

from berth.api.meta import Obj

from .errors import (
    FieldError,
    bad_request,
    duplicate,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
)
from .strategy import container_defaults
from .validation import LABEL, validate_name

SUBRESOURCE = "ephemeralcontainers"
FIELD = "spec.ephemeralContainers"
MAX_EPHEMERAL = 256
"""More debug containers than anyone attaches to in a pod's life: a bound on what the
agent would start, and on the pod object's size."""
FORBIDDEN = (
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
)


def merge(old: Obj, new: Obj) -> Obj:
    """The pod a write to the subresource stores: ``old`` with ``new``'s ephemeral containers
    (defaulted like containers). Metadata stays as stored; the write's resourceVersion was
    checked by the registry."""
    merged = copy.deepcopy(old)
    spec = merged.setdefault("spec", {})
    wanted = (new.get("spec") or {}).get("ephemeralContainers") if isinstance(new, dict) else None
    if wanted is None or wanted == []:
        spec.pop("ephemeralContainers", None)
    else:
        spec["ephemeralContainers"] = copy.deepcopy(wanted)
        if isinstance(wanted, list):
            for c in spec["ephemeralContainers"]:
                if isinstance(c, dict):
                    container_defaults(c)
    return merged


def validate(old: Obj, new: Obj) -> list[FieldError]:
    """Errors of the merged pod ``new`` against the stored ``old``."""
    items: Any = (new.get("spec") or {}).get("ephemeralContainers")
    if items is None:
        items = []
    if not isinstance(items, list):
        return [invalid_value(FIELD, "<list>", "must be a list")]
    if len(items) > MAX_EPHEMERAL:
        return [invalid_value(FIELD, len(items), f"must have at most {MAX_EPHEMERAL} items")]
    errs: list[FieldError] = []
    spec = new.get("spec") or {}
    others = {
        str(c.get("name")): key
        for key in ("containers", "initContainers")
        for c in spec.get(key) or []
        if isinstance(c, dict)
    }
    seen: set[str] = set()
    for i, c in enumerate(items):
        where = f"{FIELD}[{i}]"
        if not isinstance(c, dict):
            errs.append(invalid_value(where, "<value>", "must be an object"))
            continue
        name = c.get("name")
        if not isinstance(name, str) or not name:
            errs.append(required(f"{where}.name"))
        elif name in seen or name in others:
            errs.append(duplicate(f"{where}.name", name))
        else:
            seen.add(name)
            errs += validate_name(LABEL, name, f"{where}.name")
        if not isinstance(c.get("image"), str) or not c.get("image"):
            errs.append(required(f"{where}.image"))
        for f in FORBIDDEN:
            if c.get(f):
                errs.append(
                    forbidden_field(f"{where}.{f}", "cannot be set for an Ephemeral Container")
                )
        resources = c.get("resources")
        if isinstance(resources, dict) and any(resources.values()):
            errs.append(
                forbidden_field(f"{where}.resources", "cannot be set for an Ephemeral Container")
            )
        target = c.get("targetContainerName")
        if target not in (None, "") and target not in others:
            errs.append(
                not_supported(f"{where}.targetContainerName", target, tuple(sorted(others)))
            )
        for j, e in enumerate(c.get("env") or []):
            if not isinstance(e, dict) or not e.get("name"):
                errs.append(required(f"{where}.env[{j}].name"))
    # existing ones are immutable and stay
    kept = {
        str(c.get("name")): c
        for c in items
        if isinstance(c, dict) and isinstance(c.get("name"), str)
    }
    for c in (old.get("spec") or {}).get("ephemeralContainers") or []:
        if not isinstance(c, dict):
            continue
        name = str(c.get("name"))
        if name not in kept:
            errs.append(
                forbidden_field(FIELD, f"existing ephemeral containers {name!r} may not be removed")
            )
        elif kept[name] != c:
            errs.append(
                forbidden_field(FIELD, f"existing ephemeral containers {name!r} may not be changed")
            )
    return errs


# -- the EphemeralContainers kind of kubectl 1.20 and 1.21 ----------------------------------
# Before 1.22 the subresource took and answered with a v1 ``EphemeralContainers`` object
# (the pod's metadata plus the list). kubectl 1.20's ``debug`` GETs the subresource, appends
# its container and PUTs that kind back. A 1.22+ server answers the GET with the Pod, which
# 1.20 cannot read (it keeps an empty object), so the PUT it sends holds only its new
# container and no metadata. Ephemeral containers can only ever be added, so such a PUT is
# read as "add these": the stored ones it leaves out stay, any it names must be unchanged.

LEGACY_KIND = "EphemeralContainers"


def is_legacy(body: object) -> bool:
    return (
        isinstance(body, dict)
        and body.get("kind") == LEGACY_KIND
        and body.get("apiVersion") in (None, "v1")
    )


def legacy_to_pod(body: Obj, stored: Obj) -> Obj:
    """The Pod write an ``EphemeralContainers`` PUT means, against the ``stored`` pod."""
    items = body.get("ephemeralContainers")
    if items is None:
        items = []
    if not isinstance(items, list) or len(items) > MAX_EPHEMERAL:
        raise bad_request(
            f"ephemeralContainers must be a list of at most {MAX_EPHEMERAL} containers"
        )
    named = {c.get("name") for c in items if isinstance(c, dict)}
    kept = [
        c
        for c in (stored.get("spec") or {}).get("ephemeralContainers") or []
        if isinstance(c, dict) and c.get("name") not in named
    ]
    raw_meta = body.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    stored_meta = stored.get("metadata") or {}
    metadata = {
        "name": stored_meta.get("name"),
        "namespace": stored_meta.get("namespace"),
        # the client's precondition if it sent one, else the version the list was built on
        "resourceVersion": meta.get("resourceVersion") or stored_meta.get("resourceVersion"),
    }
    if meta.get("uid"):
        metadata["uid"] = meta["uid"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"ephemeralContainers": [*copy.deepcopy(kept), *items]},
    }


def pod_to_legacy(pod: Obj) -> Obj:
    """The ``EphemeralContainers`` object a pre-1.22 client reads back."""
    return {
        "kind": LEGACY_KIND,
        "apiVersion": "v1",
        "metadata": copy.deepcopy(pod.get("metadata") or {}),
        "ephemeralContainers": copy.deepcopy(
            (pod.get("spec") or {}).get("ephemeralContainers") or []
        ),
    }
