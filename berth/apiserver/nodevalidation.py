"""Node validation: the pod CIDRs every agent turns into routes.

``spec.podCIDR`` and ``spec.podCIDRs`` must be canonical networks (``10.244.1.0/24``: a
network address, no host bits, no stray spaces or leading zeros), at most one per IP family,
``podCIDRs[0]`` equal to ``podCIDR``; once set they never change (kube-apiserver's rule):
moving a node's range would strand its pods and re-route a neighbour's traffic.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from berth.api.meta import Obj

from .errors import FieldError, invalid_value


def cidr_error(field: str, value: Any) -> FieldError | None:
    """Why ``value`` is not a canonical network CIDR, or ``None``."""
    if not isinstance(value, str):
        return invalid_value(field, value, "must be a CIDR string such as 10.244.1.0/24")
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        return invalid_value(field, value, f"must be a valid CIDR network ({exc})")
    if "/" not in value:
        return invalid_value(field, value, "must give a prefix length, e.g. 10.244.1.0/24")
    if str(network) != value:
        return invalid_value(field, value, f"must be written in canonical form: {network}")
    return None


def _spec(obj: Obj) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def validate_node(obj: Obj) -> list[FieldError]:
    spec = _spec(obj)
    errs: list[FieldError] = []
    single = spec.get("podCIDR")
    if single not in (None, ""):
        err = cidr_error("spec.podCIDR", single)
        if err is not None:
            errs.append(err)
    many = spec.get("podCIDRs")
    if many is None:
        return errs
    if not isinstance(many, list):
        return [*errs, invalid_value("spec.podCIDRs", many, "must be a list of CIDRs")]
    if len(many) > 2:
        errs.append(invalid_value("spec.podCIDRs", many, "may hold at most one CIDR per family"))
    versions = []
    for i, value in enumerate(many):
        err = cidr_error(f"spec.podCIDRs[{i}]", value)
        if err is not None:
            errs.append(err)
        else:
            versions.append(ipaddress.ip_network(value).version)
    if len(versions) != len(set(versions)):
        errs.append(invalid_value("spec.podCIDRs", many, "may hold at most one CIDR per family"))
    if many and single not in (None, "") and many[0] != single:
        errs.append(invalid_value("spec.podCIDRs[0]", many[0], "must equal spec.podCIDR"))
    return errs


def validate_node_update(old: Obj, new: Obj) -> list[FieldError]:
    """A pod CIDR can be set once (from empty), never changed or removed after."""
    errs = []
    for field in ("podCIDR", "podCIDRs"):
        before = _spec(old).get(field)
        if before not in (None, "", []) and _spec(new).get(field) != before:
            errs.append(
                invalid_value(f"spec.{field}", _spec(new).get(field), "field is immutable once set")
            )
    return errs
