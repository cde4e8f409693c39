"""A Service's IP family fields and traffic-policy defaults, on berth's IPv4-only clusters.

kube-apiserver fills ``ipFamilyPolicy``, ``ipFamilies`` and ``clusterIPs`` on every Service
but ExternalName ones (from the cluster's configured families), and defaults the traffic
policies. berth's Service network is IPv4 single stack, so a Service that would need IPv6 or
dual stack (``RequireDualStack``, an ``IPv6`` family or address) is refused with a 422 that
says so; ``PreferDualStack`` is accepted and gets IPv4 alone, as on a single-stack cluster.

One exception, as upstream: a headless Service without a selector gets no address, and its
families only describe the endpoints someone else writes, so it defaults to
``RequireDualStack`` with both families, and may name any family.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from berth.api.meta import Obj

from .errors import FieldError, duplicate, forbidden_field, invalid_value, not_supported

IPV4, IPV6 = "IPv4", "IPv6"
FAMILIES = (IPV4, IPV6)
POLICIES = ("PreferDualStack", "RequireDualStack", "SingleStack")
FAMILY_FIELDS = ("clusterIPs", "ipFamilies", "ipFamilyPolicy")
IPV4_ONLY = "berth clusters are IPv4 single-stack"


def _type(spec: Obj) -> str:
    return str(spec.get("type") or "ClusterIP")


def _headless_selectorless(spec: Obj) -> bool:
    return spec.get("clusterIP") == "None" and not spec.get("selector")


def _family_of(ip: Any) -> str | None:
    try:
        return IPV4 if ipaddress.ip_address(str(ip)).version == 4 else IPV6
    except ValueError:
        return None


def carry_on_update(new_spec: Obj, old_spec: Obj) -> None:
    """An update that leaves out ``ipFamilyPolicy`` keeps the stored one (a PUT must not
    switch a Service between single and dual stack by omission); one that turns a Service
    into ExternalName drops the family fields its old type had."""
    if _type(new_spec) == "ExternalName":
        if _type(old_spec) != "ExternalName":
            for f in FAMILY_FIELDS:
                if new_spec.get(f) == old_spec.get(f):
                    new_spec.pop(f, None)
        return
    if new_spec.get("ipFamilyPolicy") is None and old_spec.get("ipFamilyPolicy") is not None:
        new_spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]


def fill_defaults(spec: Obj) -> None:
    """kube-apiserver's Service defaults that berth did not fill yet: the IP family fields,
    the traffic policies, and LoadBalancer node ports."""
    stype = _type(spec)
    if stype == "ExternalName":
        return
    # v1 keeps clusterIP and clusterIPs[0] as one: either given fills the other.
    ips = spec.get("clusterIPs")
    if not spec.get("clusterIP") and isinstance(ips, list) and ips and isinstance(ips[0], str):
        spec["clusterIP"] = ips[0]
    elif not ips and isinstance(spec.get("clusterIP"), str) and spec["clusterIP"]:
        ips = spec["clusterIPs"] = [spec["clusterIP"]]
    headless_selectorless = _headless_selectorless(spec)
    if spec.get("ipFamilyPolicy") is None:
        spec["ipFamilyPolicy"] = "RequireDualStack" if headless_selectorless else "SingleStack"
    if not spec.get("ipFamilies"):
        inferred: list[str] = []
        for ip in ips if isinstance(ips, list) else []:
            family = _family_of(ip)
            if ip == "None" or family is None:
                break
            inferred.append(family)
        spec["ipFamilies"] = inferred or [IPV4]
    families = spec["ipFamilies"]
    if (
        headless_selectorless
        and spec["ipFamilyPolicy"] != "SingleStack"
        and isinstance(families, list)
        and len(families) == 1
    ):
        families.append(IPV6 if families[0] == IPV4 else IPV4)
    if spec.get("internalTrafficPolicy") is None:
        spec["internalTrafficPolicy"] = "Cluster"
    externally_reachable = stype in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
    if externally_reachable and not spec.get("externalTrafficPolicy"):
        spec["externalTrafficPolicy"] = "Cluster"
    if stype == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts") is None:
        spec["allocateLoadBalancerNodePorts"] = True


def validate(spec: Obj) -> list[FieldError]:
    """Errors in the IP family fields, for what an IPv4 single-stack cluster can serve."""
    if _type(spec) == "ExternalName":
        return [
            forbidden_field(f"spec.{f}", "may not be set for ExternalName services")
            for f in FAMILY_FIELDS
            if spec.get(f) not in (None, [])
        ]
    errs: list[FieldError] = []
    policy = spec.get("ipFamilyPolicy")
    if policy is not None and policy not in POLICIES:
        errs.append(not_supported("spec.ipFamilyPolicy", policy, POLICIES))
    families = spec.get("ipFamilies") or []
    ips = spec.get("clusterIPs") or []
    if not isinstance(families, list):
        return [*errs, invalid_value("spec.ipFamilies", families, "must be a list")]
    if not isinstance(ips, list):
        return [*errs, invalid_value("spec.clusterIPs", ips, "must be a list")]
    for i, family in enumerate(families):
        if family not in FAMILIES:
            errs.append(not_supported(f"spec.ipFamilies[{i}]", family, FAMILIES))
        elif family in families[:i]:
            errs.append(duplicate(f"spec.ipFamilies[{i}]", family))
    if len(families) > 2:
        errs.append(invalid_value("spec.ipFamilies", families, "must have at most 2 items"))
    if policy == "SingleStack" and (len(families) > 1 or len(ips) > 1):
        errs.append(
            invalid_value(
                "spec.ipFamilyPolicy",
                policy,
                "must be 'RequireDualStack' or 'PreferDualStack' when multiple IP families or"
                " cluster IPs are specified",
            )
        )
    cluster_ip = spec.get("clusterIP")
    if ips and cluster_ip not in (None, "") and ips[0] != cluster_ip:
        errs.append(invalid_value("spec.clusterIPs", ips, "first value must match `clusterIP`"))
    if _headless_selectorless(spec):
        return errs  # no address is allocated: any family may be named, as upstream
    if policy == "RequireDualStack":
        errs.append(
            invalid_value(
                "spec.ipFamilyPolicy",
                policy,
                f"this cluster is not configured for dual-stack services ({IPV4_ONLY})",
            )
        )
    for i, family in enumerate(families):
        if family == IPV6:
            errs.append(
                invalid_value(
                    f"spec.ipFamilies[{i}]", family, f"not configured on this cluster ({IPV4_ONLY})"
                )
            )
    for i, ip in enumerate(ips):
        if _family_of(ip) == IPV6:
            errs.append(
                invalid_value(
                    f"spec.clusterIPs[{i}]",
                    ip,
                    f"IPv6 is not configured on this cluster ({IPV4_ONLY})",
                )
            )
    if len(ips) > 1 and all(_family_of(ip) == IPV4 for ip in ips):
        errs.append(
            invalid_value(
                "spec.clusterIPs", ips, f"may hold one IPv4 address at most ({IPV4_ONLY})"
            )
        )
    return errs
