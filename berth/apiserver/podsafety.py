"""Pod spec fields that end up as host paths, file contents or wire bytes on a node.

Upstream's ``ValidatePodSpec`` rules for volumes, mounts, container names and probe/lifecycle
handlers (``pkg/apis/core/validation``), stricter where the node can only be safer:

* volume names are DNS-1123 labels, unique in the pod; a volume has at most one source;
* ConfigMap/Secret/downwardAPI/projected ``items[].path`` (and a projected token's ``path``)
  are relative, without a ``..`` element and not starting with ``..``; modes within 0..0777;
  ``hostPath.path`` has no ``..`` element;
* container names are unique across ``containers`` and ``initContainers``;
* every ``volumeMounts[]`` names a volume of the pod, its ``mountPath`` is absolute, unique in
  the container and has no ``..`` element; ``subPath``/``subPathExpr`` are relative without
  ``..`` and exclusive;
* httpGet handlers: ``path`` starts with ``/`` and holds printable ASCII without spaces,
  header names are HTTP tokens and values hold no control character (CR/LF injected
  requests), ``scheme`` is HTTP or HTTPS, ports are 1..65535 or a port name; ``host`` (httpGet
  and tcpSocket) is an IP address or DNS name;
* ``hostname``/``subdomain`` are DNS labels, ``hostAliases`` IPs and DNS names (they are written
  into the pod's /etc/hosts by the node).

The node checks again what it uses (``berth.runtime.safepath``, ``berth.runtime.probetarget``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

import orjson

from berth.api.probes import has_control_character, is_header_name, is_host_syntax, is_probe_path

from .dnsnames import LABEL_HELP, is_dns_label, is_dns_subdomain, is_iana_svc_name
from .errors import (
    FieldError,
    duplicate,
    forbidden_field,
    invalid_value,
    not_found_value,
    not_supported,
    required,
)

_MODE_HELP = "must be a number between 0 and 0777 (octal), both inclusive"
# Every source a v1 Volume may have (a volume naming none is an emptyDir, as upstream defaults).
_VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret",
    "nfs", "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder",
    "cephfs", "flocker", "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume",
    "quobyte", "azureDisk", "photonPersistentDisk", "projected", "portworxVolume", "scaleIO",
    "storageos", "csi", "ephemeral", "image",
)  # fmt: skip
_SOURCE_RANK = {source: i for i, source in enumerate(_VOLUME_SOURCES)}
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
# Volume sources the server itself builds (ServiceAccount admission's kube-api-access-<x>
# volume, added to nearly every pod), as (source key, source value). Each was checked with
# the rules below once, when registered (:func:`trust_volume_source`): a volume whose only
# fields are its name and a source serialising to the very same JSON bytes (so the same
# types too: 420.0 or true is not 420) is valid whatever its name, so the per-create check
# of that source is skipped (the name is still checked as any other's).
_TRUSTED_SOURCES: list[tuple[str, bytes]] = []


def _elements(path: str) -> list[str]:
    return path.split("/")


def descending_path(path: Any, field: str) -> list[FieldError]:
    """A path below some directory: relative, no ``..`` element (upstream's
    validateLocalDescendingPath)."""
    if not isinstance(path, str):
        return [invalid_value(field, path, "must be a string")]
    errs = []
    if path.startswith("/"):
        errs.append(invalid_value(field, path, "must be a relative path"))
    if ".." in _elements(path):
        errs.append(invalid_value(field, path, "must not contain '..'"))
    if "\x00" in path:
        errs.append(invalid_value(field, path, "must not contain NUL"))
    return errs


def item_path(path: Any, field: str) -> list[FieldError]:
    """A file a volume projects: required, descending, and not starting with ``..`` (names
    such as ``..data`` are the node's own, upstream's validateLocalNonReservedPath)."""
    if path is None or path == "":
        return [required(field)]
    errs = descending_path(path, field)
    if not errs and isinstance(path, str) and path.startswith(".."):
        errs.append(invalid_value(field, path, "must not start with '..'"))
    return errs


def _mode(value: Any, field: str) -> list[FieldError]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        return [invalid_value(field, value, _MODE_HELP)]
    return []


def _items(items: Any, field: str, *, needs_key: bool) -> list[FieldError]:
    if items is None:
        return []
    if not isinstance(items, list):
        return [invalid_value(field, items, "must be a list")]
    errs: list[FieldError] = []
    for i, item in enumerate(items):
        where = f"{field}[{i}]"
        if not isinstance(item, dict):
            errs.append(invalid_value(where, item, "must be an object"))
            continue
        if needs_key and (not isinstance(item.get("key"), str) or not item.get("key")):
            errs.append(required(f"{where}.key"))
        errs += item_path(item.get("path"), f"{where}.path")
        errs += _mode(item.get("mode"), f"{where}.mode")
    return errs


def _files_source(
    source: Any, field: str, name_field: str | None, *, needs_key: bool = True
) -> list[FieldError]:
    """A secret/configMap (items by ``key``) or downwardAPI source, volume or projection."""
    if source is None:
        return []
    if not isinstance(source, dict):
        return [invalid_value(field, source, "must be an object")]
    errs: list[FieldError] = []
    if name_field is not None and not source.get(name_field):
        errs.append(required(f"{field}.{name_field}"))
    errs += _items(source.get("items"), f"{field}.items", needs_key=needs_key)
    errs += _mode(source.get("defaultMode"), f"{field}.defaultMode")
    return errs


def _projected(source: Any, field: str) -> list[FieldError]:
    if not isinstance(source, dict):
        return [invalid_value(field, source, "must be an object")]
    errs = _mode(source.get("defaultMode"), f"{field}.defaultMode")
    sources = source.get("sources") or []
    if not isinstance(sources, list):
        return [*errs, invalid_value(f"{field}.sources", sources, "must be a list")]
    for i, projection in enumerate(sources):
        where = f"{field}.sources[{i}]"
        if not isinstance(projection, dict):
            errs.append(invalid_value(where, projection, "must be an object"))
            continue
        errs += _files_source(projection.get("secret"), f"{where}.secret", None)
        errs += _files_source(projection.get("configMap"), f"{where}.configMap", None)
        errs += _files_source(
            projection.get("downwardAPI"), f"{where}.downwardAPI", None, needs_key=False
        )
        token = projection.get("serviceAccountToken")
        if isinstance(token, dict):
            errs += item_path(token.get("path"), f"{where}.serviceAccountToken.path")
    return errs


def trust_volume_source(key: str, source: Any) -> None:
    """Register a volume source the server builds itself (see ``_TRUSTED_SOURCES``); raise
    ``ValueError`` if it breaks a rule of this module (a programming error)."""
    errs = _volume_source({"name": "trusted", key: source}, "volume")
    if errs:
        raise ValueError(f"a server-built volume source is invalid: {errs}")
    _TRUSTED_SOURCES.append((key, orjson.dumps(source)))


def _is_trusted(volume: dict[str, Any]) -> bool:
    if len(volume) != 2:
        return False
    for key, source in _TRUSTED_SOURCES:
        value = volume.get(key)
        if value is not None:
            try:
                return orjson.dumps(value) == source
            except orjson.JSONEncodeError:
                return False
    return False


def _volume_source(volume: dict[str, Any], where: str) -> list[FieldError]:
    # The volume's own keys (a handful) against the ~30 known sources, in their declared
    # order for the message.
    present = sorted(
        (k for k in volume if k in _SOURCE_RANK and volume[k] is not None),
        key=_SOURCE_RANK.__getitem__,
    )
    if len(present) > 1:
        return [forbidden_field(f"{where}.{present[1]}", "may not specify more than 1 volume type")]
    errs: list[FieldError] = []
    errs += _files_source(volume.get("secret"), f"{where}.secret", "secretName")
    errs += _files_source(volume.get("configMap"), f"{where}.configMap", "name")
    errs += _files_source(volume.get("downwardAPI"), f"{where}.downwardAPI", None, needs_key=False)
    if volume.get("projected") is not None:
        errs += _projected(volume["projected"], f"{where}.projected")
    host_path = volume.get("hostPath")
    if host_path is not None:
        path = host_path.get("path") if isinstance(host_path, dict) else None
        if not isinstance(path, str) or not path:
            errs.append(required(f"{where}.hostPath.path"))
        elif ".." in _elements(path):
            errs.append(invalid_value(f"{where}.hostPath.path", path, "must not contain '..'"))
    return errs


def _volumes(spec: dict[str, Any], field: str) -> tuple[list[FieldError], set[str]]:
    volumes = spec.get("volumes")
    if volumes is None:
        return [], set()
    if not isinstance(volumes, list):
        return [invalid_value(f"{field}.volumes", volumes, "must be a list")], set()
    errs: list[FieldError] = []
    names: set[str] = set()
    for i, volume in enumerate(volumes):
        where = f"{field}.volumes[{i}]"
        if not isinstance(volume, dict):
            continue  # reported by the caller's required-name check
        name = volume.get("name")
        if isinstance(name, str) and name:
            if not is_dns_label(name):
                errs.append(invalid_value(f"{where}.name", name, LABEL_HELP))
            elif name in names:
                errs.append(duplicate(f"{where}.name", name))
            names.add(name)
        if "name" in volume and _is_trusted(volume):
            continue
        errs += _volume_source(volume, where)
    return errs, names


def _containers(spec: dict[str, Any], field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for list_name in ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(list_name)
        if not isinstance(items, list):
            continue
        for i, c in enumerate(items):
            if isinstance(c, dict):
                yield f"{field}.{list_name}[{i}]", c


def _mounts(container: dict[str, Any], where: str, volumes: set[str]) -> list[FieldError]:
    mounts = container.get("volumeMounts")
    if mounts is None:
        return []
    if not isinstance(mounts, list):
        return [invalid_value(f"{where}.volumeMounts", mounts, "must be a list")]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, mount in enumerate(mounts):
        at = f"{where}.volumeMounts[{i}]"
        if not isinstance(mount, dict):
            errs.append(invalid_value(at, mount, "must be an object"))
            continue
        name = mount.get("name")
        if not isinstance(name, str) or not name:
            errs.append(required(f"{at}.name"))
        elif name not in volumes:
            errs.append(not_found_value(f"{at}.name", name))
        path = mount.get("mountPath")
        if not isinstance(path, str) or not path:
            errs.append(required(f"{at}.mountPath"))
        else:
            if path in seen:
                errs.append(invalid_value(f"{at}.mountPath", path, "must be unique"))
            seen.add(path)
            if not path.startswith("/"):
                errs.append(invalid_value(f"{at}.mountPath", path, "must be an absolute path"))
            if ".." in _elements(path):
                errs.append(invalid_value(f"{at}.mountPath", path, "must not contain '..'"))
        sub, expr = mount.get("subPath"), mount.get("subPathExpr")
        if sub:
            errs += descending_path(sub, f"{at}.subPath")
        if expr:
            if sub:
                errs.append(
                    invalid_value(
                        f"{at}.subPathExpr", expr, "subPathExpr and subPath are mutually exclusive"
                    )
                )
            errs += descending_path(expr, f"{at}.subPathExpr")
    return errs


def _port(value: Any, field: str) -> list[FieldError]:
    if isinstance(value, bool) or value is None:
        return [required(field)] if value is None else [invalid_value(field, value, "bad port")]
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            return [invalid_value(field, value, "must be between 1 and 65535, inclusive")]
        return []
    if isinstance(value, str) and (value.isdigit() or is_iana_svc_name(value)):
        if value.isdigit() and not 1 <= int(value) <= 65535:
            return [invalid_value(field, value, "must be between 1 and 65535, inclusive")]
        return []
    return [invalid_value(field, value, "must contain only alpha-numeric characters (a-z, 0-9)")]


def _host(value: Any, field: str) -> list[FieldError]:
    if value is None or value == "":
        return []
    if isinstance(value, str) and is_host_syntax(value):
        return []
    return [invalid_value(field, value, "must be a valid IP address or DNS name")]


def _http_get(get: Any, field: str) -> list[FieldError]:
    if not isinstance(get, dict):
        return [invalid_value(field, get, "must be an object")]
    errs = _port(get.get("port"), f"{field}.port")
    path = get.get("path")
    if path not in (None, "") and (not isinstance(path, str) or not is_probe_path(path)):
        errs.append(
            invalid_value(
                f"{field}.path",
                path,
                "must start with '/' and contain only printable ASCII characters without spaces "
                "(percent-encode the rest)",
            )
        )
    scheme = get.get("scheme")
    if scheme not in (None, "", "HTTP", "HTTPS"):
        errs.append(not_supported(f"{field}.scheme", scheme, ("HTTP", "HTTPS")))
    errs += _host(get.get("host"), f"{field}.host")
    headers = get.get("httpHeaders") or []
    if not isinstance(headers, list):
        return [*errs, invalid_value(f"{field}.httpHeaders", headers, "must be a list")]
    for i, header in enumerate(headers):
        at = f"{field}.httpHeaders[{i}]"
        if not isinstance(header, dict):
            errs.append(invalid_value(at, header, "must be an object"))
            continue
        name, value = header.get("name"), header.get("value", "")
        if not isinstance(name, str) or not is_header_name(name):
            errs.append(
                invalid_value(
                    f"{at}.name", name, "a valid HTTP header must consist of alphanumeric "
                    "characters, '-' and the token symbols of RFC 9110 (no ':', space or CR/LF)"
                )
            )  # fmt: skip
        if not isinstance(value, str) or has_control_character(value):
            errs.append(
                invalid_value(f"{at}.value", value, "must not contain control characters (CR, LF)")
            )
    return errs


def _handler(handler: Any, field: str) -> list[FieldError]:
    if not isinstance(handler, dict):
        return []
    errs: list[FieldError] = []
    if "httpGet" in handler:
        errs += _http_get(handler["httpGet"], f"{field}.httpGet")
    tcp = handler.get("tcpSocket")
    if isinstance(tcp, dict):
        errs += _port(tcp.get("port"), f"{field}.tcpSocket.port")
        errs += _host(tcp.get("host"), f"{field}.tcpSocket.host")
    return errs


def _names(spec: dict[str, Any], field: str) -> list[FieldError]:
    """Container names unique across init and app containers (each list checks its own)."""
    errs: list[FieldError] = []
    inits = spec.get("initContainers")
    if not isinstance(inits, list):
        return []
    init_names = {c.get("name") for c in inits if isinstance(c, dict)}
    for i, c in enumerate(spec.get("containers") or []):
        if isinstance(c, dict) and c.get("name") and c.get("name") in init_names:
            errs.append(duplicate(f"{field}.containers[{i}].name", c["name"]))
    return errs


def _etc_hosts(spec: dict[str, Any], field: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value not in (None, "") and not is_dns_label(value):
            errs.append(invalid_value(f"{field}.{key}", value, LABEL_HELP))
    aliases = spec.get("hostAliases") or []
    if not isinstance(aliases, list):
        return [*errs, invalid_value(f"{field}.hostAliases", aliases, "must be a list")]
    for i, alias in enumerate(aliases):
        at = f"{field}.hostAliases[{i}]"
        if not isinstance(alias, dict):
            errs.append(invalid_value(at, alias, "must be an object"))
            continue
        try:
            ipaddress.ip_address(str(alias.get("ip")))
        except ValueError:
            errs.append(invalid_value(f"{at}.ip", alias.get("ip"), "must be a valid IP address"))
        for j, host in enumerate(alias.get("hostnames") or []):
            if not is_dns_subdomain(host):
                errs.append(
                    invalid_value(f"{at}.hostnames[{j}]", host, "must be a lowercase DNS name")
                )
    return errs


def validate_pod_spec_safety(
    spec: Any, field: str, claim_volumes: frozenset[str] = frozenset()
) -> list[FieldError]:
    """The rules of the module docstring for the pod spec at ``field`` (``spec`` or
    ``spec.template.spec``); ``claim_volumes``: volume names the pods get besides their own
    (a StatefulSet's ``volumeClaimTemplates``), which mounts may name too."""
    if not isinstance(spec, dict):
        return []
    errs, volumes = _volumes(spec, field)
    volumes |= claim_volumes
    errs += _names(spec, field)
    for where, container in _containers(spec, field):
        errs += _mounts(container, where, volumes)
        for probe in _PROBES:
            errs += _handler(container.get(probe), f"{where}.{probe}")
        lifecycle = container.get("lifecycle")
        if isinstance(lifecycle, dict):
            for hook in ("postStart", "preStop"):
                errs += _handler(lifecycle.get(hook), f"{where}.lifecycle.{hook}")
    errs += _etc_hosts(spec, field)
    return errs
