"""NetworkPolicies (networking.k8s.io/v1); every node enforces them (:mod:`berth.netpol`).

Defaults and validation follow upstream's:

* ``policyTypes`` left out: ``Ingress`` always, plus ``Egress`` when egress rules are present;
  given: only ``Ingress``/``Egress``, at most two, no repeats;
* a rule's ports: ``protocol`` TCP (default), UDP or SCTP; ``port`` a number 1..65535 or an
  IANA port name; ``endPort`` only with a numeric ``port`` and not below it;
* a peer is either an ``ipBlock`` or pod/namespace selectors (one or both), never both kinds
  and never nothing; ``ipBlock.cidr`` a CIDR, each ``except`` a strict subset of it;
* selectors are valid label selectors.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.api.selectors import SelectorError, label_selector_from_object, selector_to_string
from berth.apiserver.errors import FieldError, invalid_value, required
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

POLICY_TYPES = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "SCTP")
MAX_RULES = 1000
"""A bound on what one object may carry (rules, peers, ports, excepts): the node renders every
policy, so an unbounded object would be an unbounded cost on every node."""
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _policy_row(o: Obj) -> list[Cell]:
    sel = get_path(o, "spec", "podSelector")
    shown = selector_to_string(sel) if isinstance(sel, dict) and sel else "<none>"
    return [name_of(o), shown, age(created(o))]


NETWORK_POLICY = Printer((NAME, Column("Pod-Selector"), AGE), _policy_row)


def port_name_errors(name: str) -> list[str]:
    """Why ``name`` is not an IANA service name (upstream's ``IsValidPortName``)."""
    if not 1 <= len(name) <= 15:
        return ["must be no more than 15 characters"]
    if not _PORT_NAME.match(name):
        return ["must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"]
    if "--" in name:
        return ["must not contain consecutive hyphens"]
    if not any(c.isalpha() for c in name):
        return ["must contain at least one letter (a-z)"]
    return []


def _too_many(where: str, items: list[Any]) -> list[FieldError]:
    if len(items) > MAX_RULES:
        return [
            FieldError(
                "FieldValueTooMany",
                where,
                f"Too many: {len(items)}: must have at most {MAX_RULES} items",
            )
        ]
    return []


def _objects(value: Any, where: str) -> tuple[list[FieldError], list[tuple[str, dict[str, Any]]]]:
    """A bounded optional list of objects (rules, ports, peers): the errors of its shape, and
    each object with its path (``None`` is an empty list)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [invalid_value(where, value, "must be a list")], []
    errs = _too_many(where, value)
    if errs:
        return errs, []
    items = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if isinstance(item, dict):
            items.append((at, item))
        else:
            errs.append(invalid_value(at, item, "must be an object"))
    return errs, items


def _selector(sel: Any, where: str) -> list[FieldError]:
    if not isinstance(sel, dict):
        return [invalid_value(where, sel, "must be an object")]
    labels = sel.get("matchLabels")
    if labels is not None and not isinstance(labels, dict):
        return [invalid_value(f"{where}.matchLabels", labels, "must be an object")]
    exprs = sel.get("matchExpressions")
    if exprs is not None and not isinstance(exprs, list):
        return [invalid_value(f"{where}.matchExpressions", exprs, "must be a list")]
    try:
        label_selector_from_object(sel)
    except SelectorError as exc:
        return [invalid_value(where, sel, str(exc))]
    return []


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ports(ports: Any, where: str) -> list[FieldError]:
    errs, items = _objects(ports, where)
    for at, p in items:
        proto = p.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            errs.append(
                FieldError(
                    "FieldValueNotSupported",
                    f"{at}.protocol",
                    f'Unsupported value: {proto!r}: supported values: "SCTP", "TCP", "UDP"',
                )
            )
        port = p.get("port")
        end = p.get("endPort")
        if port is not None:
            if _int(port):
                if not 1 <= port <= 65535:
                    errs.append(
                        invalid_value(f"{at}.port", port, "must be between 1 and 65535, inclusive")
                    )
            elif isinstance(port, str):
                errs += [invalid_value(f"{at}.port", port, m) for m in port_name_errors(port)]
            else:
                errs.append(invalid_value(f"{at}.port", port, "must be a number or a port name"))
        if end is None:
            continue
        if not _int(end):
            errs.append(invalid_value(f"{at}.endPort", end, "must be an integer"))
        elif port is None or not _int(port):
            errs.append(
                invalid_value(
                    f"{at}.endPort",
                    end,
                    "may not be specified when `port` is non-numeric"
                    if port is not None
                    else "may not be specified when `port` is not specified",
                )
            )
        elif not 1 <= end <= 65535:
            errs.append(
                invalid_value(f"{at}.endPort", end, "must be between 1 and 65535, inclusive")
            )
        elif end < port:
            errs.append(
                invalid_value(f"{at}.endPort", end, "must be greater than or equal to `port`")
            )
    return errs


def _network(
    text: Any, where: str
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network | None, list[FieldError]]:
    if not isinstance(text, str) or not text:
        return None, [required(where)]
    try:
        # strict=False as upstream's ParseCIDR: host bits may be set (10.0.0.1/24 is 10.0.0.0/24)
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None, [invalid_value(where, text, "must be a valid CIDR (e.g. 10.0.0.0/16)")]
    if "/" not in text:
        return None, [invalid_value(where, text, "must be a valid CIDR (e.g. 10.0.0.0/16)")]
    return net, []


def _ip_block(block: Any, where: str) -> list[FieldError]:
    if not isinstance(block, dict):
        return [invalid_value(where, block, "must be an object")]
    net, errs = _network(block.get("cidr"), f"{where}.cidr")
    excepts = block.get("except")
    if excepts is None:
        return errs
    if not isinstance(excepts, list):
        return [*errs, invalid_value(f"{where}.except", excepts, "must be a list")]
    errs += _too_many(f"{where}.except", excepts)
    if errs:
        return errs
    for i, text in enumerate(excepts):
        sub, sub_errs = _network(text, f"{where}.except[{i}]")
        errs += sub_errs
        if sub is None or net is None:
            continue
        if (
            sub.version != net.version or sub.prefixlen <= net.prefixlen or not sub.subnet_of(net)  # type: ignore[arg-type]
        ):
            errs.append(
                invalid_value(f"{where}.except[{i}]", text, "must be a strict subset of `cidr`")
            )
    return errs


def _peers(peers: Any, where: str) -> list[FieldError]:
    errs, items = _objects(peers, where)
    for at, peer in items:
        given = [
            k for k in ("podSelector", "namespaceSelector", "ipBlock") if peer.get(k) is not None
        ]
        if not given:
            errs.append(FieldError("FieldValueRequired", at, "Required value: must specify a peer"))
            continue
        if "ipBlock" in given and len(given) > 1:
            errs.append(
                FieldError("FieldValueForbidden", at, "Forbidden: may not specify more than 1 peer")
            )
            continue
        for key in ("podSelector", "namespaceSelector"):
            if key in given:
                errs += _selector(peer[key], f"{at}.{key}")
        if "ipBlock" in given:
            errs += _ip_block(peer["ipBlock"], f"{at}.ipBlock")
    return errs


def _rules(rules: Any, where: str, peers_key: str) -> list[FieldError]:
    errs, items = _objects(rules, where)
    for at, rule in items:
        errs += _ports(rule.get("ports"), f"{at}.ports")
        errs += _peers(rule.get(peers_key), f"{at}.{peers_key}")
    return errs


def validate_network_policy(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    sel = spec.get("podSelector")
    if sel is None:
        errs.append(required("spec.podSelector"))
    else:
        errs += _selector(sel, "spec.podSelector")
    errs += _rules(spec.get("ingress"), "spec.ingress", "from")
    errs += _rules(spec.get("egress"), "spec.egress", "to")
    types = spec.get("policyTypes")
    if types is not None:
        if not isinstance(types, list):
            errs.append(invalid_value("spec.policyTypes", types, "must be a list"))
        elif len(types) > len(POLICY_TYPES):
            errs.append(
                FieldError(
                    "FieldValueForbidden",
                    "spec.policyTypes",
                    "Forbidden: may not specify more than two policyTypes",
                )
            )
        else:
            seen: set[str] = set()
            for i, t in enumerate(types):
                if t not in POLICY_TYPES:
                    errs.append(
                        FieldError(
                            "FieldValueNotSupported",
                            f"spec.policyTypes[{i}]",
                            f'Unsupported value: {t!r}: supported values: "Ingress", "Egress"',
                        )
                    )
                elif t in seen:
                    errs.append(
                        FieldError(
                            "FieldValueDuplicate",
                            f"spec.policyTypes[{i}]",
                            f"Duplicate value: {t!r}",
                        )
                    )
                else:
                    seen.add(t)
    return errs


def default_network_policy(obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if spec.get("podSelector") is None:
        # the Go type's podSelector is a struct: a client leaving it out sends {}
        spec["podSelector"] = {}
    for key in ("ingress", "egress"):
        rules = spec.get(key)
        if not isinstance(rules, list):
            continue
        for rule in rules:
            if not isinstance(rule, dict) or not isinstance(rule.get("ports"), list):
                continue
            for p in rule["ports"]:
                if isinstance(p, dict) and p.get("protocol") is None:
                    p["protocol"] = "TCP"
    if not spec.get("policyTypes"):
        egress = spec.get("egress")
        spec["policyTypes"] = (
            ["Ingress", "Egress"] if isinstance(egress, list) and egress else ["Ingress"]
        )


class NetworkPolicyStrategy(KindStrategy):
    group = "networking.k8s.io"
    kind = "NetworkPolicy"
    columns = NETWORK_POLICY

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        super().defaults(rd, obj)
        default_network_policy(obj)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return validate_network_policy(obj)
