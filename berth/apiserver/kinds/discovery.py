"""EndpointSlices (discovery.k8s.io/v1).

Validation follows upstream's: ``addressType`` is one of IPv4/IPv6/FQDN and immutable, at most
1000 endpoints of 1..100 addresses each (every address of the slice's type), at most 100 ports
(names unique, valid port numbers and protocols), ``nodeName``/``hostname`` DNS labels. Topology
``hints`` and ``zone`` are accepted as they are (no controller of berth's sets them).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from berth.api.meta import Obj
from berth.api.resources import ResourceDef
from berth.apiserver.errors import FieldError, invalid_value, required
from berth.apiserver.service_validation import _loopback_allowed, routable_ip
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")
MAX_ENDPOINTS = 1000
MAX_ADDRESSES = 100
MAX_PORTS = 100
PROTOCOLS = ("TCP", "UDP", "SCTP")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _slice_row(o: Obj) -> list[Cell]:
    ports = [p for p in o.get("ports") or [] if isinstance(p, dict)]
    shown_ports = ",".join(str(p.get("port", "")) for p in ports) or "<unset>"
    addresses = [
        str(a)
        for ep in o.get("endpoints") or []
        if isinstance(ep, dict)
        for a in ep.get("addresses") or []
    ]
    shown = ",".join(addresses[:3]) or "<unset>"
    if len(addresses) > 3:
        shown += f" + {len(addresses) - 3} more..."
    return [name_of(o), str(o.get("addressType") or ""), shown_ports, shown, age(created(o))]


ENDPOINT_SLICE = Printer(
    (NAME, Column("AddressType"), Column("Ports"), Column("Endpoints"), AGE), _slice_row
)


def _address_ok(kind: str, value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if kind == "FQDN":
        return len(value) <= 253 and _SUBDOMAIN.match(value) is not None
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return ip.version == (4 if kind == "IPv4" else 6) and str(ip) == value


def _endpoint(ep: Any, where: str, kind: str) -> list[FieldError]:
    if not isinstance(ep, dict):
        return [invalid_value(where, ep, "must be an object")]
    errs: list[FieldError] = []
    addresses = ep.get("addresses")
    if not isinstance(addresses, list) or not addresses:
        errs.append(required(f"{where}.addresses"))
    elif len(addresses) > MAX_ADDRESSES:
        errs.append(
            FieldError(
                "FieldValueTooMany",
                f"{where}.addresses",
                f"Too many: {len(addresses)}: must have at most {MAX_ADDRESSES} items",
            )
        )
    else:
        for i, a in enumerate(addresses):
            if not _address_ok(kind, a):
                errs.append(
                    invalid_value(f"{where}.addresses[{i}]", a, f"must be a valid {kind} address")
                )
            elif kind != "FQDN":
                # the proxy forwards to these: the same rule as Endpoints' addresses
                errs += routable_ip(
                    a, f"{where}.addresses[{i}]", allow_loopback=_loopback_allowed.get()
                )
    conditions = ep.get("conditions")
    if conditions is not None:
        if not isinstance(conditions, dict):
            errs.append(invalid_value(f"{where}.conditions", conditions, "must be an object"))
        else:
            for c in ("ready", "serving", "terminating"):
                v = conditions.get(c)
                if v is not None and not isinstance(v, bool):
                    errs.append(invalid_value(f"{where}.conditions.{c}", v, "must be a boolean"))
    for field, pattern in (("nodeName", _SUBDOMAIN), ("hostname", _LABEL)):
        v = ep.get(field)
        if v is not None and (not isinstance(v, str) or len(v) > 253 or not pattern.match(v)):
            errs.append(invalid_value(f"{where}.{field}", v, "must be a valid DNS name"))
    return errs


def _ports(ports: Any) -> list[FieldError]:
    if ports is None:
        return []
    if not isinstance(ports, list):
        return [invalid_value("ports", ports, "must be a list")]
    if len(ports) > MAX_PORTS:
        return [
            FieldError("FieldValueTooMany", "ports", f"Too many: {len(ports)}: at most {MAX_PORTS}")
        ]
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, p in enumerate(ports):
        where = f"ports[{i}]"
        if not isinstance(p, dict):
            errs.append(invalid_value(where, p, "must be an object"))
            continue
        name = p.get("name", "")
        if name is None:
            name = ""
        if not isinstance(name, str) or (name and (len(name) > 63 or not _LABEL.match(name))):
            errs.append(invalid_value(f"{where}.name", name, "must be a DNS label"))
        elif name in names:
            errs.append(
                FieldError("FieldValueDuplicate", f"{where}.name", f"Duplicate value: {name!r}")
            )
        else:
            names.add(name)
        port = p.get("port")
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
        ):
            errs.append(invalid_value(f"{where}.port", port, "must be between 1 and 65535"))
        proto = p.get("protocol")
        if proto is not None and proto not in PROTOCOLS:
            errs.append(
                FieldError(
                    "FieldValueNotSupported",
                    f"{where}.protocol",
                    f'Unsupported value: {proto!r}: supported values: "SCTP", "TCP", "UDP"',
                )
            )
    return errs


def validate_endpoint_slice(obj: Obj) -> list[FieldError]:
    kind = obj.get("addressType")
    if kind is None:
        return [required("addressType")]
    if kind not in ADDRESS_TYPES:
        return [
            FieldError(
                "FieldValueNotSupported",
                "addressType",
                f'Unsupported value: {kind!r}: supported values: "FQDN", "IPv4", "IPv6"',
            )
        ]
    errs: list[FieldError] = []
    endpoints = obj.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, list):
        errs.append(invalid_value("endpoints", endpoints, "must be a list"))
    elif endpoints:
        if len(endpoints) > MAX_ENDPOINTS:
            errs.append(
                FieldError(
                    "FieldValueTooMany",
                    "endpoints",
                    f"Too many: {len(endpoints)}: must have at most {MAX_ENDPOINTS} items",
                )
            )
        else:
            for i, ep in enumerate(endpoints):
                errs += _endpoint(ep, f"endpoints[{i}]", str(kind))
    return errs + _ports(obj.get("ports"))


class EndpointSliceStrategy(KindStrategy):
    group = "discovery.k8s.io"
    kind = "EndpointSlice"
    specless = True
    columns = ENDPOINT_SLICE

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        for p in obj.get("ports") or []:
            if isinstance(p, dict):
                p.setdefault("protocol", "TCP")
                p.setdefault("name", "")
        for ep in obj.get("endpoints") or []:
            if isinstance(ep, dict) and ep.get("conditions") is None:
                ep["conditions"] = {}

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return validate_endpoint_slice(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        errs = super().validate_update(rd, old, new)
        if old.get("addressType") != new.get("addressType"):
            errs.append(invalid_value("addressType", new.get("addressType"), "field is immutable"))
        return errs
