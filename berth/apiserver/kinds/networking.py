"""Ingress and IngressClass (networking.k8s.io/v1).

Validation follows upstream's: an Ingress has rules or a default backend; every backend is a
Service (name, and a port number or name, not both) or a typed object reference, never both;
every path has a ``pathType`` (Exact, Prefix, ImplementationSpecific), Exact and Prefix paths
are absolute and free of ``//``, ``/./``, ``/../``, ``%2f``; hosts are DNS names (a leading
``*.`` allowed), never IP addresses. An IngressClass names its controller (immutable) and
optionally a parameters reference.

Admission, as upstream's DefaultIngressClass plugin: a new Ingress without
``spec.ingressClassName`` (and without the legacy class annotation) gets the default class,
the IngressClass annotated ``ingressclass.kubernetes.io/is-default-class: "true"``.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from berth.api import ingress as ing
from berth.api.meta import Obj, get_path
from berth.api.resources import INGRESSCLASSES, ResourceDef
from berth.apiserver.dnsnames import SUBDOMAIN_HELP, is_dns_subdomain, is_iana_svc_name
from berth.apiserver.errors import (
    FieldError,
    forbidden_field,
    invalid_value,
    not_supported,
    required,
)
from berth.apiserver.options import ListOptions
from berth.apiserver.tables import AGE, NAME, Cell, Column, Printer, age, created, name_of

from .base import KindStrategy

if TYPE_CHECKING:
    from berth.apiserver.registry import Registry

MAX_RULES = 1000
MAX_PATHS = 1000
MAX_TLS = 1000
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONTROLLER = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9._~%!$&'()*+,;=:@/-]+$")
SCOPES = ("Cluster", "Namespace")


def _too_many(field: str, n: int, limit: int) -> FieldError:
    return FieldError("FieldValueTooMany", field, f"Too many: {n}: must have at most {limit} items")


def _service_backend(svc: Any, where: str) -> list[FieldError]:
    if not isinstance(svc, dict):
        return [invalid_value(where, svc, "must be an object")]
    errs: list[FieldError] = []
    name = svc.get("name")
    if not name:
        errs.append(required(f"{where}.name"))
    elif not isinstance(name, str) or len(name) > 63 or not _DNS1035.match(name):
        errs.append(
            invalid_value(
                f"{where}.name",
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-',"
                " start with an alphabetic character, and end with an alphanumeric character",
            )
        )
    port = svc.get("port")
    if not isinstance(port, dict):
        errs.append(required(f"{where}.port"))
        return errs
    number, pname = port.get("number"), port.get("name")
    if number and pname:
        errs.append(invalid_value(f"{where}.port", port, "cannot set both port name & port number"))
    elif pname:
        if not is_iana_svc_name(pname):
            errs.append(invalid_value(f"{where}.port.name", pname, "must be an IANA_SVC_NAME"))
    elif number:
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            errs.append(
                invalid_value(f"{where}.port.number", number, "must be between 1 and 65535")
            )
    else:
        errs.append(required(f"{where}.port.name"))
    return errs


def _resource_backend(ref: Any, where: str) -> list[FieldError]:
    if not isinstance(ref, dict):
        return [invalid_value(where, ref, "must be an object")]
    errs: list[FieldError] = []
    group = ref.get("apiGroup")
    if group is not None and (
        not isinstance(group, str) or (group and not is_dns_subdomain(group))
    ):
        errs.append(invalid_value(f"{where}.apiGroup", group, SUBDOMAIN_HELP))
    for field in ("kind", "name"):
        v = ref.get(field)
        if not v:
            errs.append(required(f"{where}.{field}"))
        elif not isinstance(v, str) or len(v) > 253 or "/" in v or "%" in v:
            errs.append(invalid_value(f"{where}.{field}", v, "must be a valid path segment name"))
    return errs


def validate_backend(backend: Any, where: str) -> list[FieldError]:
    if not isinstance(backend, dict):
        return [invalid_value(where, backend, "must be an object")]
    svc, res = backend.get("service"), backend.get("resource")
    if svc is not None and res is not None:
        return [invalid_value(where, "", "cannot set both resource and service backends")]
    if svc is not None:
        return _service_backend(svc, f"{where}.service")
    if res is not None:
        return _resource_backend(res, f"{where}.resource")
    return [invalid_value(where, "", "resource or service backend is required")]


def _host(host: Any, where: str) -> list[FieldError]:
    if isinstance(host, str) and ing.is_ip_literal(host):
        return [invalid_value(where, host, "must be a DNS name, not an IP address")]
    if not ing.is_host(host):
        return [
            invalid_value(
                where,
                host,
                "a lowercase RFC 1123 subdomain (optionally starting with '*.') must consist of"
                " lower case alphanumeric characters, '-' or '.'",
            )
        ]
    return []


def _paths(http: Any, where: str) -> list[FieldError]:
    if not isinstance(http, dict):
        return [invalid_value(where, http, "must be an object")]
    paths = http.get("paths")
    if not isinstance(paths, list) or not paths:
        return [required(f"{where}.paths")]
    if len(paths) > MAX_PATHS:
        return [_too_many(f"{where}.paths", len(paths), MAX_PATHS)]
    errs: list[FieldError] = []
    for i, p in enumerate(paths):
        at = f"{where}.paths[{i}]"
        if not isinstance(p, dict):
            errs.append(invalid_value(at, p, "must be an object"))
            continue
        ptype = p.get("pathType")
        if ptype is None:
            errs.append(required(f"{at}.pathType"))
        elif ptype not in ing.PATH_TYPES:
            errs.append(not_supported(f"{at}.pathType", ptype, ing.PATH_TYPES))
        else:
            problem = ing.path_problem(p.get("path", ""), ptype)
            if problem:
                errs.append(invalid_value(f"{at}.path", p.get("path"), problem))
        errs += validate_backend(p.get("backend"), f"{at}.backend")
    return errs


def validate_ingress(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    rules, default = spec.get("rules"), spec.get("defaultBackend")
    if not rules and default is None:
        errs.append(
            invalid_value("spec", "", "either `defaultBackend` or `rules` must be specified")
        )
    if default is not None:
        errs += validate_backend(default, "spec.defaultBackend")
    if rules is not None:
        if not isinstance(rules, list):
            errs.append(invalid_value("spec.rules", rules, "must be a list"))
        elif len(rules) > MAX_RULES:
            errs.append(_too_many("spec.rules", len(rules), MAX_RULES))
        else:
            for i, r in enumerate(rules):
                at = f"spec.rules[{i}]"
                if not isinstance(r, dict):
                    errs.append(invalid_value(at, r, "must be an object"))
                    continue
                host = r.get("host")
                if host:
                    errs += _host(host, f"{at}.host")
                if r.get("http") is not None:
                    errs += _paths(r["http"], f"{at}.http")
    tls = spec.get("tls")
    if tls is not None:
        if not isinstance(tls, list):
            errs.append(invalid_value("spec.tls", tls, "must be a list"))
        elif len(tls) > MAX_TLS:
            errs.append(_too_many("spec.tls", len(tls), MAX_TLS))
        else:
            for i, t in enumerate(tls):
                at = f"spec.tls[{i}]"
                if not isinstance(t, dict):
                    errs.append(invalid_value(at, t, "must be an object"))
                    continue
                hosts = t.get("hosts") or []
                if not isinstance(hosts, list):
                    errs.append(invalid_value(f"{at}.hosts", hosts, "must be a list"))
                else:
                    for j, h in enumerate(hosts):
                        errs += _host(h, f"{at}.hosts[{j}]")
                secret = t.get("secretName")
                if secret and not is_dns_subdomain(secret):
                    errs.append(invalid_value(f"{at}.secretName", secret, SUBDOMAIN_HELP))
    cls = spec.get("ingressClassName")
    if cls is not None and not is_dns_subdomain(cls):
        errs.append(invalid_value("spec.ingressClassName", cls, SUBDOMAIN_HELP))
    return errs


def _hosts_cell(o: Obj) -> str:
    hosts = [
        str(r.get("host") or "*") for r in get_path(o, "spec", "rules") or [] if isinstance(r, dict)
    ]
    if not hosts:
        return "*"
    shown = ",".join(hosts[:4])
    return shown + (f" + {len(hosts) - 4} more..." if len(hosts) > 4 else "")


def _address_cell(o: Obj) -> str:
    out = []
    for e in get_path(o, "status", "loadBalancer", "ingress") or []:
        if isinstance(e, dict):
            out.append(str(e.get("ip") or e.get("hostname") or ""))
    return ",".join(x for x in out if x)


def _ingress_row(o: Obj) -> list[Cell]:
    cls = get_path(o, "spec", "ingressClassName") or "<none>"
    ports = "80, 443" if get_path(o, "spec", "tls") else "80"
    return [name_of(o), str(cls), _hosts_cell(o), _address_cell(o), ports, age(created(o))]


INGRESS_COLUMNS = Printer(
    (NAME, Column("Class"), Column("Hosts"), Column("Address"), Column("Ports"), AGE),
    _ingress_row,
)


def _class_row(o: Obj) -> list[Cell]:
    params = get_path(o, "spec", "parameters")
    shown = "<none>"
    if isinstance(params, dict):
        group = params.get("apiGroup")
        kind = f"{params.get('kind')}.{group}" if group else str(params.get("kind"))
        shown = f"{kind}/{params.get('name')}"
    return [name_of(o), str(get_path(o, "spec", "controller") or ""), shown, age(created(o))]


INGRESS_CLASS_COLUMNS = Printer((NAME, Column("Controller"), Column("Parameters"), AGE), _class_row)


class IngressStrategy(KindStrategy):
    group = "networking.k8s.io"
    kind = "Ingress"
    columns = INGRESS_COLUMNS
    empty_status = {"loadBalancer": {}}

    async def admit_create(
        self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj
    ) -> Hashable | None:
        spec = obj.get("spec")
        annotations = get_path(obj, "metadata", "annotations") or {}
        if (
            isinstance(spec, dict)
            and spec.get("ingressClassName") is None
            and ing.LEGACY_CLASS_ANNOTATION not in annotations
        ):
            page = await reg.list_objects(INGRESSCLASSES, "", ListOptions())
            default = ing.default_class(page.items)
            if default is not None:
                spec["ingressClassName"] = default
        return None

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        errs = validate_ingress(obj)
        annotations = get_path(obj, "metadata", "annotations") or {}
        if (
            get_path(obj, "spec", "ingressClassName") is not None
            and ing.LEGACY_CLASS_ANNOTATION in annotations
        ):
            errs.append(
                invalid_value(
                    f"metadata.annotations[{ing.LEGACY_CLASS_ANNOTATION}]",
                    annotations[ing.LEGACY_CLASS_ANNOTATION],
                    "can not be set when the class field is also set",
                )
            )
        return errs


def validate_ingress_class(obj: Obj) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    controller = spec.get("controller")
    if not controller:
        errs.append(required("spec.controller"))
    elif (
        not isinstance(controller, str)
        or len(controller) > 250
        or not _CONTROLLER.match(controller)
    ):
        errs.append(
            invalid_value(
                "spec.controller",
                controller,
                'must be a domain-prefixed path (such as "acme.io/foo") of at most 250 characters',
            )
        )
    params = spec.get("parameters")
    if params is not None:
        if not isinstance(params, dict):
            return [*errs, invalid_value("spec.parameters", params, "must be an object")]
        errs += _resource_backend(
            {k: params.get(k) for k in ("apiGroup", "kind", "name")}, "spec.parameters"
        )
        scope, namespace = params.get("scope"), params.get("namespace")
        if scope not in SCOPES:
            errs.append(not_supported("spec.parameters.scope", scope, SCOPES))
        elif scope == "Namespace" and not namespace:
            errs.append(required("spec.parameters.namespace"))
        elif scope == "Cluster" and namespace:
            errs.append(
                forbidden_field(
                    "spec.parameters.namespace", "`parameters.scope` is set to 'Cluster'"
                )
            )
        if namespace and not is_dns_subdomain(namespace):
            errs.append(invalid_value("spec.parameters.namespace", namespace, SUBDOMAIN_HELP))
    return errs


class IngressClassStrategy(KindStrategy):
    group = "networking.k8s.io"
    kind = "IngressClass"
    columns = INGRESS_CLASS_COLUMNS

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        params = get_path(obj, "spec", "parameters")
        if isinstance(params, dict):
            params.setdefault("scope", "Cluster")

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        return validate_ingress_class(obj)

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        before, after = get_path(old, "spec", "controller"), get_path(new, "spec", "controller")
        if before != after:
            return [invalid_value("spec.controller", after, "field is immutable")]
        return []
