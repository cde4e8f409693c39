"""A container's environment and a pod's ConfigMap/Secret volume files, resolved as the
kubelet resolves them.

Order and rules: ``envFrom`` sources first (ConfigMaps and Secrets, keys optionally prefixed),
then ``env`` in order, later entries overriding earlier ones. A literal ``value`` expands
``$(NAME)`` references to variables defined before it (``$$`` escapes a ``$``; unknown
references stay as written). ``valueFrom`` reads the downward API (``fieldRef``:
metadata.name/namespace/uid/labels['k']/annotations['k'], spec.nodeName,
spec.serviceAccountName, status.podIP/hostIP), container resources (``resourceFieldRef``) and
ConfigMap/Secret keys (``optional`` honoured). A missing required source raises
:class:`SourceError`, which the agent reports as ``CreateContainerConfigError`` and retries.
Each source is read with a ``get`` of that one object (never a list or watch): the node
authorizer grants a node exactly the objects its pods reference.

Volume files: each ``configMap``/``secret`` volume becomes ``{file name: bytes}`` — all keys,
or only ``items`` (``key`` → ``path``) when listed — so runtimes receive content, never API
references (a missing source is reported as ``FailedMount`` and retried). A ``projected``
volume merges its sources the same way: ``secret``, ``configMap``, ``downwardAPI`` items and
``serviceAccountToken`` (a token requested for the pod, see :mod:`berth.agent.tokens`).
"""

from __future__ import annotations

import asyncio
import base64
import re
from collections import OrderedDict
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from berth.agent.tokens import DEFAULT_EXPIRATION, ProjectedTokens, TokenRequestError
from berth.api.quantity import parse_quantity
from berth.api.resources import CONFIGMAPS, SECRETS
from berth.client import errors
from berth.client.interface import ApiClient, Obj
from berth.machinery.clock import Clock, RealClock
from berth.machinery.objects import Frozen, meta

T = TypeVar("T")

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['([^']+)'\]$")
SHARED_READS = 256  # sources whose latest read a node's agent keeps (least recently used out)


class SourceError(Exception):
    """A referenced ConfigMap, Secret or key is missing (the agent retries)."""


def expand(value: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return _REF.sub(sub, value)


def field_value(pod: Frozen, path: str, *, pod_ip: str, host_ip: str) -> str:
    m = _SUBSCRIPT.match(path)
    if m:
        return str((meta(pod).get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": meta(pod).get("name"),
        "metadata.namespace": meta(pod).get("namespace"),
        "metadata.uid": meta(pod).get("uid"),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName"),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName"),
        "status.podIP": pod_ip,
        "status.hostIP": host_ip,
    }
    if path not in simple:
        raise SourceError(f"unsupported fieldRef {path!r}")
    return str(simple[path] or "")


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    kind, _, res = str(ref.get("resource", "")).partition(".")
    amount = ((container.get("resources") or {}).get(kind) or {}).get(res)
    if amount is None:
        return "0"
    divisor = parse_quantity(ref.get("divisor") or "1")
    # as the kubelet: CPU compares millicores, the rest whole units, rounded up
    if res == "cpu":
        have, unit = parse_quantity(amount).milli_value(), divisor.milli_value()
    else:
        have, unit = parse_quantity(amount).value(), divisor.value()
    if unit <= 0:
        raise SourceError(f"resourceFieldRef {ref.get('resource')!r}: divisor must be positive")
    return str(-(-have // unit))


async def _all_in_order(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Await ``calls`` concurrently (each is an API round trip); their results in order. When
    some fail, the first failure in order is raised once all have ended, as one after the
    other would have raised it."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


async def _read(client: ApiClient, namespace: str, kind: str, name: str) -> dict[str, bytes] | None:
    """ConfigMap/Secret ``name`` as raw bytes per key; None when it does not exist."""
    resource = SECRETS if kind == "secret" else CONFIGMAPS
    try:
        obj: Obj = await client.get(resource, name, namespace=namespace)
    except errors.NotFound:
        return None
    except errors.Forbidden as exc:
        # The node authorizer lets a node get only what its pods reference; an API
        # server that has not seen the pod's binding yet refuses: retry like a miss.
        raise SourceError(f'{kind} "{name}" is not readable by this node yet: {exc}') from exc
    values: dict[str, bytes] = {}
    encoded = "data" if kind == "secret" else "binaryData"
    for k, v in (obj.get(encoded) or {}).items():
        values[k] = base64.b64decode(v)
    plain = "stringData" if kind == "secret" else "data"
    for k, v in (obj.get(plain) or {}).items():
        values[k] = str(v).encode()
    return values


@dataclass(slots=True)
class _Read:
    started: float  # clock.monotonic() when the GET was sent
    task: asyncio.Task[dict[str, bytes] | None]


class SharedSources:
    """ConfigMap and Secret reads shared by the pods of a node: a burst of pods mounting the
    same ConfigMaps (every pod mounts its namespace's ``kube-root-ca.crt``) made one GET per
    pod and source. A read serves a pod only when it was sent after the agent first saw that
    pod (strictly after: a read of the same instant may have been sent first): it reflects
    every write made before the pod existed, as a read of the pod's own would (the kubelet's
    managers never give a pod an older view than the one at its registration either). Only
    a pod's first pass uses this (the pod manager forgets when it was seen after it); a
    retry reads what is current. Reads are per node: each node's identity is authorised for
    the objects of its own pods only, and a read refused for one pod is made again for the
    next.
    """

    def __init__(self, clock: Clock, capacity: int = SHARED_READS) -> None:
        self.clock = clock
        self.capacity = capacity
        self._reads: OrderedDict[tuple[str, str, str, str], _Read] = OrderedDict()
        self.gets = 0

    async def raw(
        self,
        client: ApiClient,
        node: str,
        namespace: str,
        kind: str,
        name: str,
        *,
        not_before: float,
    ) -> dict[str, bytes] | None:
        key = (node, namespace, kind, name)
        shared = self._reads.get(key)
        if shared is not None and shared.started > not_before:
            self._reads.move_to_end(key)
            try:
                return await asyncio.shield(shared.task)
            except SourceError:
                pass  # refused for the pod that sent it (authorisation lags): ask for this one
        self.gets += 1
        read = _Read(
            self.clock.monotonic(), asyncio.ensure_future(_read(client, namespace, kind, name))
        )
        # retrieved here so a read whose sender was cancelled logs nothing
        read.task.add_done_callback(lambda t: t.cancelled() or t.exception())
        self._reads[key] = read
        self._reads.move_to_end(key)
        while len(self._reads) > self.capacity:
            self._reads.popitem(last=False)
        return await asyncio.shield(read.task)


@dataclass(frozen=True, slots=True)
class SharedFor:
    """What a pod's resolution needs to use :class:`SharedSources`: its node, and when the
    agent first saw the pod (reads sent before that do not serve it)."""

    sources: SharedSources
    node: str
    seen_at: float


class _Sources:
    """ConfigMaps and Secrets fetched once per resolution, as raw bytes per key (volumes
    resolved concurrently share one fetch of a source); with ``shared``, reads made for the
    node's other pods serve this one when fresh enough (:class:`SharedSources`)."""

    def __init__(self, client: ApiClient, namespace: str, shared: SharedFor | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.shared = shared
        self._cache: dict[tuple[str, str], dict[str, bytes] | None] = {}
        self._fetching: dict[tuple[str, str], asyncio.Task[dict[str, bytes] | None]] = {}

    async def raw(self, kind: str, name: str) -> dict[str, bytes] | None:
        key = (kind, name)
        if key in self._cache:
            return self._cache[key]
        task = self._fetching.get(key)
        if task is None:
            task = self._fetching[key] = asyncio.ensure_future(self._fetch(kind, name))
            task.add_done_callback(lambda _t: self._fetching.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(self, kind: str, name: str) -> dict[str, bytes] | None:
        if (kind, name) not in self._cache:
            if self.shared is None:
                got = await _read(self.client, self.namespace, kind, name)
            else:
                got = await self.shared.sources.raw(
                    self.client,
                    self.shared.node,
                    self.namespace,
                    kind,
                    name,
                    not_before=self.shared.seen_at,
                )
            self._cache[(kind, name)] = got
        return self._cache[(kind, name)]

    async def data(self, kind: str, name: str) -> dict[str, str] | None:
        raw = await self.raw(kind, name)
        if raw is None:
            return None
        return {k: v.decode(errors="replace") for k, v in raw.items()}


async def resolve_env(
    client: ApiClient,
    pod: Frozen,
    container: Mapping[str, Any],
    *,
    pod_ip: str,
    host_ip: str,
    shared: SharedFor | None = None,
) -> dict[str, str]:
    sources = _Sources(client, str(meta(pod).get("namespace") or "default"), shared)
    env: dict[str, str] = {}
    for src in container.get("envFrom") or ():
        prefix = str(src.get("prefix") or "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = src.get(key)
            if not ref:
                continue
            data = await sources.data(kind, str(ref.get("name")))
            if data is None:
                if ref.get("optional"):
                    continue
                raise SourceError(f'{kind} "{ref.get("name")}" not found')
            for k, v in data.items():
                env[prefix + k] = v
    for item in container.get("env") or ():
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value", "")), env)
            continue
        frm = item["valueFrom"] or {}
        if "fieldRef" in frm:
            path = str(frm["fieldRef"].get("fieldPath"))
            env[name] = field_value(pod, path, pod_ip=pod_ip, host_ip=host_ip)
        elif "resourceFieldRef" in frm:
            env[name] = resource_value(container, frm["resourceFieldRef"])
        else:
            kind, ref = (
                ("configmap", frm["configMapKeyRef"])
                if "configMapKeyRef" in frm
                else ("secret", frm.get("secretKeyRef") or {})
            )
            data = await sources.data(kind, str(ref.get("name")))
            key = str(ref.get("key"))
            if data is None or key not in data:
                if ref.get("optional"):
                    continue
                what = f'{kind} "{ref.get("name")}"'
                raise SourceError(
                    f"{what} not found" if data is None else f"couldn't find key {key} in {what}"
                )
            env[name] = data[key]
    return env


async def resolve_volume_files(
    client: ApiClient,
    pod: Frozen,
    *,
    tokens: ProjectedTokens | None = None,
    shared: SharedFor | None = None,
) -> dict[str, dict[str, bytes]]:
    """``{volume name: {path: content}}`` for the pod's ConfigMap, Secret and projected
    volumes (``tokens`` caches projected service-account tokens; without it each resolution
    requests new ones; ``shared``: see :class:`SharedSources`)."""
    sources = _Sources(client, str(meta(pod).get("namespace") or "default"), shared)
    names: list[str] = []
    calls: list[Awaitable[dict[str, bytes]]] = []
    for vol in (pod.get("spec") or {}).get("volumes") or ():
        if "projected" in vol:
            names.append(str(vol["name"]))
            calls.append(_projected(client, pod, sources, vol["projected"] or {}, tokens))
            continue
        if "configMap" in vol:
            kind, ref, name = "configmap", vol["configMap"] or {}, "name"
        elif "secret" in vol:
            kind, ref, name = "secret", vol["secret"] or {}, "secretName"
        else:
            continue
        names.append(str(vol["name"]))
        calls.append(_source_files(sources, kind, ref, str(ref.get(name))))
    # Concurrently: a pod's volumes (its token, the CA ConfigMap, its own ConfigMaps) were
    # one API round trip after another on the way to its sandbox.
    return dict(zip(names, await _all_in_order(calls), strict=True))


async def _source_files(
    sources: _Sources, kind: str, ref: Mapping[str, Any], source: str
) -> dict[str, bytes]:
    """The files of ConfigMap/Secret ``source`` (all keys, or ``ref``'s ``items``); none when
    it is missing and ``ref`` says ``optional``."""
    data = await sources.raw(kind, source)
    if data is None:
        if ref.get("optional"):
            return {}
        raise SourceError(f'{kind} "{source}" not found')
    items = ref.get("items")
    if not items:
        return dict(data)
    files = {}
    for item in items:
        key = str(item["key"])
        if key not in data:
            raise SourceError(f'couldn\'t find key {key} in {kind} "{source}"')
        files[str(item.get("path") or key)] = data[key]
    return files


async def _projected(
    client: ApiClient,
    pod: Frozen,
    sources: _Sources,
    projected: Mapping[str, Any],
    tokens: ProjectedTokens | None,
) -> dict[str, bytes]:
    parts = await _all_in_order(
        [
            _projected_source(client, pod, sources, src, tokens)
            for src in projected.get("sources") or ()
        ]
    )
    files: dict[str, bytes] = {}
    for part in parts:  # later sources win, as in order
        files.update(part)
    return files


async def _projected_source(
    client: ApiClient,
    pod: Frozen,
    sources: _Sources,
    src: Mapping[str, Any],
    tokens: ProjectedTokens | None,
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    if "secret" in src or "configMap" in src:
        kind = "secret" if "secret" in src else "configmap"
        ref = src.get("secret") or src.get("configMap") or {}
        files.update(await _source_files(sources, kind, ref, str(ref.get("name"))))
    elif "downwardAPI" in src:
        for item in (src.get("downwardAPI") or {}).get("items") or ():
            path = str(item.get("path"))
            if "fieldRef" in item:
                field = str((item["fieldRef"] or {}).get("fieldPath"))
                files[path] = field_value(pod, field, pod_ip="", host_ip="").encode()
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"] or {}
                wanted = ref.get("containerName")
                containers = (pod.get("spec") or {}).get("containers") or ()
                container: Mapping[str, Any] = next(
                    (c for c in containers if c.get("name") == wanted), {}
                )
                files[path] = resource_value(container, ref).encode()
    elif "serviceAccountToken" in src:
        ref = src.get("serviceAccountToken") or {}
        audience = str(ref.get("audience") or "")
        expiration = int(ref.get("expirationSeconds") or DEFAULT_EXPIRATION)
        cache = tokens if tokens is not None else ProjectedTokens(RealClock())
        try:
            token = await cache.get(client, pod, audience=audience, expiration=expiration)
        except (errors.ApiError, TokenRequestError) as exc:
            raise SourceError(f"failed to fetch token: {exc}") from exc
        files[str(ref.get("path") or "token")] = token
    else:
        kinds = sorted(src)
        raise SourceError(f"unsupported projected volume source {kinds}")
    return files
