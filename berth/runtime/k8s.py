"""From a Kubernetes ``v1/Pod`` (as a dict) to the runtime's :class:`PodSpec` and
:class:`ContainerSpec` values.

What needs the API server is the caller's job and comes in through callbacks: the content of
ConfigMap/Secret volumes (``files(kind, name)``) and ``valueFrom`` environment values
(``env_from(container_name, env_var_doc)``). Without them such pods are refused clearly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from berth.api import quantity
from berth.api.quantity import Quantity
from berth.runtime.errors import ContainerError
from berth.runtime.spec import (
    ContainerSpec,
    EmptyDir,
    FilesVolume,
    HostPath,
    PodSpec,
    PodUID,
    PortMapping,
    Resources,
    Volume,
    VolumeMount,
    VolumeSource,
)

FilesFn = Callable[[str, str], Mapping[str, bytes]]
EnvFromFn = Callable[[str, Mapping[str, Any]], str]


def parse_quantity(text: str | int | float) -> Quantity:
    """A Kubernetes resource quantity (``250m``, ``64Mi``, ``1.5``, ``1e3``)."""
    try:
        return quantity.parse_quantity(text)
    except quantity.QuantityError as exc:
        raise ContainerError(f"invalid resource quantity {text!r}") from exc


def _resources(doc: Mapping[str, Any]) -> Resources:
    requests = doc.get("requests") or {}
    limits = doc.get("limits") or {}

    def millis(value: Any) -> int | None:
        return None if value is None else parse_quantity(value).milli_value()

    def count(value: Any) -> int | None:
        return None if value is None else parse_quantity(value).value()

    return Resources(
        cpu_request_millis=millis(requests.get("cpu", limits.get("cpu"))),
        cpu_limit_millis=millis(limits.get("cpu")),
        memory_limit_bytes=count(limits.get("memory")),
    )


def volume_from_k8s(doc: Mapping[str, Any], files: FilesFn | None) -> Volume:
    name = str(doc["name"])
    source: VolumeSource
    if "emptyDir" in doc:
        ed = doc.get("emptyDir") or {}
        size = ed.get("sizeLimit")
        source = EmptyDir(
            medium=str(ed.get("medium") or ""),
            size_limit_bytes=parse_quantity(size).value() if size is not None else None,
        )
    elif "hostPath" in doc:
        hp = doc["hostPath"]
        source = HostPath(
            path=str(hp["path"]),
            type=str(hp.get("type") or ""),
            read_only=bool(hp.get("readOnly")),  # set by the agent for read-only claims
        )
    elif "configMap" in doc or "secret" in doc:
        kind = "configMap" if "configMap" in doc else "secret"
        ref = doc[kind]
        ref_name = str(ref.get("name") or ref.get("secretName") or "")
        if files is None:
            raise ContainerError(f"volume {name!r}: {kind} {ref_name!r} needs a files() callback")
        content = dict(files(kind, ref_name))
        if ref.get("items"):
            content = {str(i["path"]): content[str(i["key"])] for i in ref["items"]}
        mode = ref.get("defaultMode")
        source = FilesVolume(kind=kind, files=content, default_mode=int(mode) if mode else None)
    else:
        kinds = sorted(k for k in doc if k != "name")
        raise ContainerError(f"volume {name!r}: unsupported volume type {kinds}")
    return Volume(name=name, source=source)


def container_from_k8s(
    doc: Mapping[str, Any],
    pod_security: Mapping[str, Any] | None = None,
    env_from: EnvFromFn | None = None,
) -> ContainerSpec:
    """One entry of ``spec.containers`` (``pod_security``: the pod's runAsUser/runAsGroup)."""
    name = str(doc["name"])
    security = {**(pod_security or {}), **(doc.get("securityContext") or {})}
    caps = security.get("capabilities") or {}
    env: list[tuple[str, str]] = []
    for item in doc.get("env") or []:
        if "valueFrom" in item:
            if env_from is None:
                raise ContainerError(
                    f"container {name!r}: env {item['name']} uses valueFrom; "
                    "pass an env_from() callback"
                )
            env.append((str(item["name"]), env_from(name, item)))
        else:
            env.append((str(item["name"]), str(item.get("value", ""))))
    return ContainerSpec(
        name=name,
        image=str(doc["image"]),
        command=tuple(doc.get("command") or ()),
        args=tuple(doc.get("args") or ()),
        env=tuple(env),
        working_dir=str(doc.get("workingDir") or ""),
        run_as_user=security.get("runAsUser"),
        run_as_group=security.get("runAsGroup"),
        read_only_root_filesystem=bool(security.get("readOnlyRootFilesystem", False)),
        allow_privilege_escalation=bool(security.get("allowPrivilegeEscalation", True)),
        capabilities_add=tuple(caps.get("add") or ()),
        capabilities_drop=tuple(caps.get("drop") or ()),
        resources=_resources(doc.get("resources") or {}),
        stdin=bool(doc.get("stdin", False)),
        stdin_once=bool(doc.get("stdinOnce", False)),
        tty=bool(doc.get("tty", False)),
        volume_mounts=tuple(
            VolumeMount(
                name=str(m["name"]),
                mount_path=str(m["mountPath"]),
                read_only=bool(m.get("readOnly", False)),
                sub_path=str(m.get("subPath") or ""),
            )
            for m in doc.get("volumeMounts") or []
        ),
        ports=tuple(
            PortMapping(
                container_port=int(p["containerPort"]),
                host_port=int(p["hostPort"]),
                protocol=str(p.get("protocol") or "TCP").lower(),
                host_ip=str(p.get("hostIP") or ""),
            )
            for p in doc.get("ports") or []
            if p.get("hostPort")
        ),
        image_pull_policy=str(doc.get("imagePullPolicy") or "IfNotPresent"),
    )


def pod_from_k8s(
    pod: Mapping[str, Any],
    *,
    files: FilesFn | None = None,
    env_from: EnvFromFn | None = None,
    dns_nameservers: tuple[str, ...] = (),
    dns_searches: tuple[str, ...] = (),
    dns_options: tuple[str, ...] | None = None,
) -> tuple[PodSpec, list[ContainerSpec]]:
    """Convert a Pod; ``dns_*`` is what the agent computes from ``dnsPolicy`` (ClusterFirst).
    With ``dns_options`` given, the three are the final resolv.conf
    (:func:`berth.runtime.poddns.pod_resolv_conf` already merged ``dnsConfig``)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    security = spec.get("securityContext") or {}
    pod_security = {
        k: security[k] for k in ("runAsUser", "runAsGroup") if security.get(k) is not None
    }
    dns = spec.get("dnsConfig") or {}
    podspec = PodSpec(
        uid=PodUID(str(meta["uid"])),
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta["name"]),
        hostname=str(spec.get("hostname") or ""),
        volumes=tuple(volume_from_k8s(v, files) for v in spec.get("volumes") or []),
        dns_nameservers=dns_nameservers
        if dns_options is not None
        else tuple(dns.get("nameservers") or dns_nameservers),
        dns_searches=dns_searches
        if dns_options is not None
        else tuple(dns.get("searches") or dns_searches),
        **({"dns_options": dns_options} if dns_options is not None else {}),
        supplemental_groups=tuple(int(g) for g in security.get("supplementalGroups") or ()),
        fs_group=security.get("fsGroup"),
        host_network=bool(spec.get("hostNetwork", False)),
        host_aliases=tuple(
            (str(a["ip"]), tuple(a.get("hostnames") or ())) for a in spec.get("hostAliases") or []
        ),
    )
    containers = [
        container_from_k8s(c, pod_security, env_from) for c in spec.get("containers") or []
    ]
    return podspec, containers


def secret_files(secret: Mapping[str, Any]) -> dict[str, bytes]:
    """A ``v1/Secret``'s ``data`` (base64) and ``stringData`` as file contents."""
    out = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    out.update({k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()})
    return out


def configmap_files(cm: Mapping[str, Any]) -> dict[str, bytes]:
    """A ``v1/ConfigMap``'s ``data`` and ``binaryData`` as file contents."""
    out = {k: str(v).encode() for k, v in (cm.get("data") or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
    return out
