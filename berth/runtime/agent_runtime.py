""":class:`RuncAgentRuntime`: the node agent's :class:`berth.agent.runtime.Runtime` protocol on
top of :class:`~berth.runtime.runc.RuncRuntime` (runc containers, CNI pod network).

Mapping:

* ``create_sandbox(config)`` → :meth:`RuncRuntime.run_pod_sandbox`, pinning the agent's chosen
  ``pod_ip`` through host-local IPAM; the sandbox id is the pod uid. ``config.spec`` (the pod's
  API spec) supplies volumes, hostNetwork, hostname, securityContext, hostAliases and DNS
  (ClusterFirst → ``cluster_dns``); a ``volumeMount`` naming a volume the sandbox does not
  know gets an emptyDir instead of failing.
* ``start_container(sandbox, config, attempt)`` → create + start; ``config.spec`` (the API
  container) supplies securityContext, resources and mounts; ``config.command/args/env`` win.
  The same (pod, name, attempt) twice returns the existing container.
* ``probe`` runs exec probes with ``runc exec`` and httpGet/tcpSocket probes from the node
  against the pod IP.
* ``poll_changes()`` names the sandboxes whose running container ended since the last call
  (exit file or /proc, no runc), so the agent polls that often and cheaply instead of
  re-reconciling every pod every second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from berth.agent.runtime import (
    ContainerConfig,
    ContainerPhase,
    ImagePullFailed,
    ProbeKind,
    SandboxConfig,
    SandboxStatus,
    Usage,
    UsageSample,
)
from berth.agent.runtime import ContainerStatus as AgentContainerStatus
from berth.network.cni import CniInvoker
from berth.network.command import SubprocessRunner
from berth.network.podnet import PodNetwork, node_conflist, veth_bridge
from berth.runtime import timeline
from berth.runtime.cgroups import CGROUP_PARENT
from berth.runtime.cgroupstats import CgroupReader
from berth.runtime.errors import ContainerError, ContainerNotFound, ImageError, ImageNotPresent
from berth.runtime.images import ImageService
from berth.runtime.k8s import FilesFn, container_from_k8s, pod_from_k8s
from berth.runtime.netns_connect import open_connection_in
from berth.runtime.poddns import ResolvConf, host_resolv_conf, pod_resolv_conf
from berth.runtime.probetarget import ProbeRefused, check_headers, check_path, resolve_target
from berth.runtime.registry import RegistryClient, UrllibTransport
from berth.runtime.runc import (
    DEFAULT_RUNC_ROOT,
    DEFAULT_STATE_DIR,
    ContainerState,
    ContainerStatus,
    RuncRuntime,
    container_id,
)
from berth.runtime.safepath import child
from berth.runtime.spec import (
    ContainerID,
    EmptyDir,
    FilesVolume,
    HostPath,
    PodSpec,
    PodUID,
    Volume,
    VolumeSource,
)
from berth.runtime.store import ContentStore

log = logging.getLogger(__name__)
LOG_POLL_SECONDS = 0.25
_PHASES: dict[ContainerState, ContainerPhase] = {
    ContainerState.CREATED: "created",
    ContainerState.RUNNING: "running",
    ContainerState.EXITED: "exited",
    ContainerState.UNKNOWN: "exited",
}


def _time(text: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def to_agent_status(status: ContainerStatus) -> AgentContainerStatus:
    """Our status in the agent's terms (an unknown end is reported as exited, code unknown)."""
    return AgentContainerStatus(
        id=status.id,
        sandbox_id=status.pod_uid,
        name=status.name,
        image=status.image,
        phase=_PHASES[status.state],
        created_at=_time(status.created_at) or datetime.datetime.now(datetime.UTC),
        started_at=_time(status.started_at),
        finished_at=_time(status.finished_at),
        exit_code=status.exit_code,
        reason=status.reason,
        message=status.message or "; ".join(status.warnings),
        attempt=status.attempt,
        image_id=status.image_id,
    )


def _volume_shape(doc: Mapping[str, Any]) -> Volume:
    """A volume's kind without its content (enough to mount what the sandbox prepared)."""
    source: VolumeSource
    if "hostPath" in doc:
        source = HostPath(
            path=str(doc["hostPath"]["path"]),
            type=str(doc["hostPath"].get("type") or ""),
            read_only=bool(doc["hostPath"].get("readOnly")),
        )
    elif "secret" in doc or "configMap" in doc or "projected" in doc:
        kind = "configMap" if "configMap" in doc else "secret"  # projected: tmpfs, as secrets
        source = FilesVolume(kind=kind, files={})
    else:
        medium = str((doc.get("emptyDir") or {}).get("medium") or "")
        source = EmptyDir(medium=medium)
    return Volume(name=str(doc["name"]), source=source)


class RuncAgentRuntime:
    """Implements :class:`berth.agent.runtime.Runtime` with runc (see the module docstring)."""

    name = "runc"
    assigns_pod_ips = True  # host-local IPAM picks them; the agent reads them back

    def __init__(
        self,
        runtime: RuncRuntime,
        *,
        files: FilesFn | None = None,
        cluster_dns: str | None = None,
        cluster_domain: str = "cluster.local",
        host_resolv_conf: str = "/etc/resolv.conf",
    ) -> None:
        self.rt = runtime
        self.host_resolv_conf = host_resolv_conf
        self.files = files
        self.cluster_dns = cluster_dns
        self.cluster_domain = cluster_domain
        self.cgroups = CgroupReader()
        # Containers last seen running (by container_status), watched by poll_changes.
        self._running: dict[ContainerID, PodUID] = {}
        # Called with a pod's sandbox when one of its running containers ended: each running
        # container's shim is watched through a pidfd (readable when the shim exits, which
        # is once the exit is recorded), so an exit reaches the agent at once instead of at
        # its next poll_changes (which stays, as a safety net).
        self.on_change: list[Callable[[SandboxConfig], None]] = []
        self._watched: dict[ContainerID, int] = {}

    @classmethod
    def for_node(
        cls,
        *,
        pod_cidr: str,
        state_dir: Path = DEFAULT_STATE_DIR,
        runc_root: Path = DEFAULT_RUNC_ROOT,
        insecure_registries: frozenset[str] = frozenset(),
        registry_cas: Mapping[str, str] | None = None,
        files: FilesFn | None = None,
        cluster_dns: str | None = None,
        cluster_domain: str = "cluster.local",
    ) -> RuncAgentRuntime:
        """Everything wired for a node: image store + registry client under ``state_dir``,
        CNI bridge/host-local/portmap for ``pod_cidr``, runc under ``runc_root``."""
        runner = SubprocessRunner()
        images = ImageService(
            ContentStore(state_dir / "images"),
            RegistryClient(
                transport=UrllibTransport(ca_bundles=registry_cas),
                insecure=insecure_registries,
            ),
        )
        invoker = CniInvoker(runner, cache_dir=state_dir / "cni-results")
        conflist = node_conflist(pod_cidr=pod_cidr)
        # eth0 of pods without hostPorts made in-process (same veth, address, routes and
        # host-local files as the plugins'): the bridge + host-local plugins were two Go
        # processes per pod start and stop, serialised on host-local's lock under a burst
        network = PodNetwork(invoker, conflist, in_process=veth_bridge(conflist))
        runtime = RuncRuntime(
            images=images,
            network=network,
            state_dir=state_dir,
            runc_root=runc_root,
            runner=runner,
            shim_zygote=True,
        )
        return cls(runtime, files=files, cluster_dns=cluster_dns, cluster_domain=cluster_domain)

    # ---- sandboxes ----------------------------------------------------------------------------

    def _pod(self, uid: str) -> PodSpec:
        """The sandbox's pod, rebuilt from what :meth:`create_sandbox` stored (volume kinds
        only: their content is already in place)."""
        record = self.rt.sandboxes.record(PodUID(uid))
        if record is None:
            raise ContainerNotFound(f"no sandbox {uid} on this node")
        stored = record.extra.get("spec")
        spec = dict(stored) if isinstance(stored, dict) else {}
        volumes = spec.pop("volumes", None) or []
        doc = {"metadata": {"uid": uid, "namespace": record.namespace, "name": record.name}}
        pod, _ = pod_from_k8s({**doc, "spec": {**spec, "containers": []}})
        return dataclasses.replace(pod, volumes=tuple(_volume_shape(v) for v in volumes))

    def _dns(self, namespace: str, spec: Mapping[str, Any]) -> ResolvConf:
        """The pod's resolv.conf (``dnsPolicy``, ``dnsConfig``; see :mod:`poddns`)."""
        return pod_resolv_conf(
            spec,
            namespace,
            cluster_dns=self.cluster_dns,
            cluster_domain=self.cluster_domain,
            host=host_resolv_conf(self.host_resolv_conf),
        )

    async def create_sandbox(self, config: SandboxConfig) -> str:
        spec = {k: v for k, v in config.spec.items() if k not in ("containers", "initContainers")}
        resolv = self._dns(config.namespace, spec)
        doc = {"metadata": {"uid": config.uid, "namespace": config.namespace, "name": config.name}}
        volumes, files = _resolved_volumes(spec.get("volumes") or [], config.volume_files)
        pod, _ = pod_from_k8s(
            {**doc, "spec": {**spec, "volumes": volumes, "containers": []}},
            files=files or self.files,
            dns_nameservers=resolv.nameservers,
            dns_searches=resolv.searches,
            dns_options=resolv.options,
        )
        await self.rt.run_pod_sandbox(
            pod,
            requested_ip=config.pod_ip or None,
            extra={"node": config.node, "labels": dict(config.labels), "spec": spec},
        )
        return config.uid

    async def sandbox_ip(self, sandbox_id: str) -> str:
        record = self.rt.sandboxes.record(PodUID(sandbox_id))
        return (record.ip or "") if record is not None else ""

    async def update_volume_files(
        self, sandbox_id: str, volume_files: Mapping[str, Mapping[str, bytes]]
    ) -> None:
        record = self.rt.sandboxes.record(PodUID(sandbox_id))
        if record is None:
            raise ContainerNotFound(f"no sandbox {sandbox_id} on this node")
        stored = record.extra.get("spec")
        spec = dict(stored) if isinstance(stored, dict) else {}
        wanted = [v for v in spec.get("volumes") or [] if str(v.get("name")) in volume_files]
        volumes, files = _resolved_volumes(wanted, volume_files)
        doc = {"metadata": {"uid": sandbox_id, "namespace": record.namespace, "name": record.name}}
        pod, _ = pod_from_k8s(
            {**doc, "spec": {**spec, "volumes": volumes, "containers": []}}, files=files
        )
        self.rt.sandboxes.refresh_files(pod)

    async def remove_sandbox(self, sandbox_id: str) -> None:
        await self.rt.remove_pod_sandbox(PodUID(sandbox_id), grace_seconds=2.0)

    async def list_sandboxes(self) -> list[SandboxStatus]:
        by_pod: dict[str, list[AgentContainerStatus]] = {}
        for status in await self.rt.list_containers():
            by_pod.setdefault(status.pod_uid, []).append(to_agent_status(status))
        out = []
        for record in self.rt.sandboxes.list_records():
            labels = record.extra.get("labels") or {}
            config = SandboxConfig(
                namespace=record.namespace,
                name=record.name,
                uid=record.uid,
                node=str(record.extra.get("node") or ""),
                pod_ip=record.ip or "",
                labels=dict(labels) if isinstance(labels, dict) else {},
            )
            out.append(
                SandboxStatus(
                    id=record.uid,
                    config=config,
                    # Not ready once its network namespace is gone (node rebooted): the
                    # agent then makes the pod a new sandbox instead of adopting this one.
                    ready=self.rt.sandboxes.is_live(record),
                    containers=tuple(by_pod.get(record.uid, ())),
                )
            )
        return out

    # ---- containers ---------------------------------------------------------------------------

    async def start_container(
        self, sandbox_id: str, config: ContainerConfig, *, attempt: int
    ) -> str:
        api = dict(config.spec) or {"name": config.name, "image": config.image}
        api.setdefault("name", config.name)
        api.setdefault("image", config.image)
        spec = container_from_k8s(
            api, env_from=lambda _c, item: config.env.get(str(item["name"]), "")
        )
        spec = dataclasses.replace(
            spec,
            command=config.command,
            args=config.args,
            env=tuple(config.env.items()),
        )
        try:
            await self.rt.pull_image(spec.image, policy=spec.image_pull_policy)
        except ImageNotPresent as exc:
            raise ImagePullFailed(str(exc), never_pull=True) from exc
        except (ImageError, OSError) as exc:
            raise ImagePullFailed(str(exc)) from exc
        timeline.stamp(sandbox_id, "image")
        # Present now: creating the container must not pull a second time.
        spec = dataclasses.replace(spec, image_pull_policy="IfNotPresent")
        target = str(api.get("targetContainerName") or "")
        if target:  # an ephemeral container joins its target's processes
            spec = dataclasses.replace(
                spec, target_pid_namespace=await self._pid_namespace(sandbox_id, target)
            )
        pod = self._pod(sandbox_id)
        known = {v.name for v in pod.volumes}
        missing = [m.name for m in spec.volume_mounts if m.name not in known]
        if missing:
            pod = dataclasses.replace(
                pod,
                volumes=pod.volumes + tuple(Volume(n, EmptyDir()) for n in dict.fromkeys(missing)),
            )
            for name in missing:
                self.rt.sandboxes.volume_dir(pod.uid, name).mkdir(parents=True, exist_ok=True)
        annotations = {"apiSpec": api, "hostNetwork": pod.host_network}  # (probe targets)
        # A container this call creates is known to be created, not started: asking runc
        # (a Go process per pod, on the way to Running) is only for one found already there.
        fresh = not self.rt.has_container(container_id(pod.uid, spec.name, attempt))
        # A new one is created and started by one `runc run` (see create_container).
        cid = await self.rt.create_container(
            pod, spec, attempt=attempt, annotations=annotations, start=fresh
        )
        if fresh:
            if not self.rt.was_started(cid):
                await self.rt.start_container(cid)
        elif (await self.rt.container_status(cid)).state == ContainerState.CREATED:
            await self.rt.start_container(cid)
        timeline.stamp(sandbox_id, "started")
        return cid

    async def _pid_namespace(self, sandbox_id: str, name: str) -> str:
        """The pid namespace of the pod's running container ``name`` (its init process's)."""
        for status in await self.rt.list_containers(pod_uid=PodUID(sandbox_id)):
            if status.name == name and status.state == ContainerState.RUNNING and status.pid:
                return f"/proc/{status.pid}/ns/pid"
        raise ContainerError(f"the target container {name!r} is not running")

    async def stop_container(self, container_id: str, *, grace_seconds: float) -> None:
        await self.rt.stop_container(ContainerID(container_id), grace_seconds=grace_seconds)

    async def container_status(self, container_id: str) -> AgentContainerStatus | None:
        cid = ContainerID(container_id)
        try:
            status = await self.rt.container_status(cid)
        except ContainerNotFound:
            self._running.pop(cid, None)
            return None
        if status.state == ContainerState.RUNNING:
            self._running[cid] = status.pod_uid
            if self.on_change and cid not in self._watched:
                self._watch(cid)
        else:
            self._running.pop(cid, None)
        return to_agent_status(status)

    async def usage(self, container_ids: Sequence[str]) -> UsageSample:
        """Read from the containers' cgroups (``berth/<pod uid>/<container id>``, as the
        bundle sets ``cgroupsPath``), in a worker thread: a few small files per container."""
        return await asyncio.to_thread(self._read_usage, list(container_ids))

    def _read_usage(self, container_ids: list[str]) -> UsageSample:
        reader = self.cgroups
        found: dict[str, Usage] = {}
        for cid in container_ids:
            pod_uid = cid.rsplit("_", 2)[0]
            if not pod_uid or "/" in cid or cid.startswith("."):
                continue
            got = reader.usage(f"{CGROUP_PARENT}/{pod_uid}/{cid}")
            if got.cpu_ns is not None or got.memory_bytes is not None:
                found[cid] = Usage(got.cpu_ns, got.memory_bytes)
        node = reader.node_usage()
        return UsageSample(
            datetime.datetime.now(datetime.UTC), Usage(node.cpu_ns, node.memory_bytes), found
        )

    def _watch(self, cid: ContainerID) -> None:
        fd = self.rt.shim_pidfd(cid)
        if fd is None:
            return  # no shim to watch: poll_changes notices the exit
        self._watched[cid] = fd
        asyncio.get_running_loop().add_reader(fd, self._shim_ended, cid)

    def _shim_ended(self, cid: ContainerID) -> None:
        fd = self._watched.pop(cid, None)
        if fd is None:
            return
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        uid = self._running.pop(cid, None)
        config = self._sandbox_config(uid) if uid is not None else None
        if config is not None:
            for callback in self.on_change:
                callback(config)

    def _sandbox_config(self, uid: PodUID) -> SandboxConfig | None:
        record = self.rt.sandboxes.record(uid)
        if record is None:
            return None
        return SandboxConfig(
            namespace=record.namespace,
            name=record.name,
            uid=record.uid,
            node=str(record.extra.get("node") or ""),
            pod_ip=record.ip or "",
        )

    def poll_changes(self) -> list[SandboxConfig]:
        """The sandboxes (pods) whose container, running when the agent last asked for its
        status, has ended since: the agent reconciles just those. A stat and a /proc read
        per running container — cheap enough to call twice a second on a full node."""
        changed: dict[PodUID, SandboxConfig] = {}
        for cid, uid in list(self._running.items()):
            if not self.rt.has_ended(cid):
                continue
            del self._running[cid]
            config = self._sandbox_config(uid) if uid not in changed else None
            if config is not None:
                changed[uid] = config
        return list(changed.values())

    async def logs(
        self, container_id: str, *, tail_lines: int | None = None, follow: bool = False
    ) -> AsyncIterator[bytes]:
        cid = ContainerID(container_id)
        try:
            data = self.rt.read_log(cid, tail_bytes=1 << 24)
        except ContainerNotFound:
            return
        lines = data.splitlines(keepends=True)
        if tail_lines is not None:
            lines = lines[-tail_lines:] if tail_lines else []
        for line in lines:
            yield line
        offset = len(data)
        path = child(self.rt.containers_dir, container_id, what="container id") / "container.log"
        while follow:
            status = await self.container_status(container_id)
            size = path.stat().st_size if path.exists() else 0
            if size < offset:  # rotated (copy + truncate): start over in the new file
                offset = 0
            if size > offset:
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read(size - offset)
                offset = size
                yield chunk
            if status is None or status.phase == "exited":
                return
            await asyncio.sleep(LOG_POLL_SECONDS)

    # ---- streams (exec, port-forward) ---------------------------------------------------------

    def exec_argv(self, container_id: str, command: Sequence[str], *, tty: bool) -> list[str]:
        """``runc exec``: the process joins the container's namespaces, cgroup and
        environment; with ``-t`` runc gives it a terminal and relays its own (a pty the agent
        holds) to it, copying the size on SIGWINCH."""
        return [
            self.rt.runc,
            "--root",
            str(self.rt.runc_root),
            "exec",
            *(["--tty"] if tty else []),
            container_id,
            *command,
        ]

    async def connect_attach(
        self, container_id: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """A connection to the container's stdio, kept by its shim (see
        :mod:`berth.runtime.shim`); None when the container was started without stdin/tty."""
        try:
            sock = self.rt.attach_socket(ContainerID(container_id))
        except ContainerNotFound:
            return None
        if sock is None:
            return None
        return await asyncio.open_unix_connection(str(sock), limit=1 << 21)

    async def connect_port(
        self, sandbox_id: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        record = self.rt.sandboxes.record(PodUID(sandbox_id))
        if record is None:
            raise OSError(f"sandbox {sandbox_id} is gone")
        return await open_connection_in(record.netns, port)

    # ---- probes -------------------------------------------------------------------------------

    async def probe(
        self, container_id: str, kind: ProbeKind, probe: Mapping[str, Any], *, pod_ip: str
    ) -> bool:
        timeout = float(probe.get("timeoutSeconds") or 1)
        if "exec" in probe:
            argv = [str(a) for a in (probe["exec"] or {}).get("command") or []]
            result = await self.rt.exec_in_container(
                ContainerID(container_id), argv, time_limit=timeout
            )
            return result.ok
        try:
            annotations = self.rt.annotations(ContainerID(container_id))
        except ContainerNotFound:
            return False
        spec = annotations.get("apiSpec") or {}
        host_network = bool(annotations.get("hostNetwork"))
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                return await asyncio.wait_for(
                    _http_probe(get, spec, pod_ip, host_network=host_network), timeout
                )
            if "tcpSocket" in probe:
                port = _port(probe["tcpSocket"].get("port"), spec)
                host = await _probe_host(probe["tcpSocket"], pod_ip, host_network=host_network)
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                writer.close()
                return True
        except ProbeRefused as exc:
            log.warning("container %s: %s probe refused: %s", container_id, kind, exc)
            return False
        except (OSError, TimeoutError, ValueError):
            return False
        return False  # grpc and unknown handlers are not supported


def _resolved_volumes(
    volumes: list[Any], contents: Mapping[str, Mapping[str, bytes]]
) -> tuple[list[Any], FilesFn | None]:
    """Point ConfigMap/Secret volumes at the contents the agent resolved (``volume_files``,
    keyed by volume name, ``items`` already applied), through a ``files()`` callback keyed by
    volume name. Volumes without resolved content keep their API reference."""
    if not contents:
        return volumes, None
    out = []
    for volume in volumes:
        name = str(volume.get("name"))
        if "projected" in volume and name in contents:
            # Projected (service-account token, CA, namespace): files on a tmpfs like a
            # Secret's, with the projection's mode (0644 unless it says otherwise).
            mode = (volume["projected"] or {}).get("defaultMode")
            ref = {"secretName": name, "defaultMode": 0o644 if mode is None else mode}
            out.append({"name": name, "secret": ref})
            continue
        kind = "configMap" if "configMap" in volume else "secret" if "secret" in volume else ""
        if kind and name in contents:
            ref = dict(volume[kind] or {})
            ref.pop("items", None)
            ref["secretName" if kind == "secret" else "name"] = name
            out.append({**volume, kind: ref})
        else:
            out.append(volume)

    def files(_kind: str, name: str) -> Mapping[str, bytes]:
        return contents.get(name, {})

    return out, files


def _port(value: Any, spec: Mapping[str, Any]) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    for port in spec.get("ports") or []:
        if port.get("name") == value:
            return int(port["containerPort"])
    raise ValueError(f"named port {value!r} not found in the container spec")


async def _probe_host(handler: Mapping[str, Any], pod_ip: str, *, host_network: bool) -> str:
    """Where a probe connects: the pod IP, or its ``host`` once checked and resolved (see
    :mod:`berth.runtime.probetarget`)."""
    host = str(handler.get("host") or "")
    if not host:
        return pod_ip
    return await resolve_target(host, host_network=host_network)


async def _http_probe(
    get: Mapping[str, Any], spec: Mapping[str, Any], pod_ip: str, *, host_network: bool = False
) -> bool:
    # Checked before connecting: nothing unsafe is ever sent (CR/LF would inject headers).
    path = check_path(str(get.get("path") or "/"))
    extra = check_headers(get.get("httpHeaders") or [])
    port = _port(get.get("port"), spec)
    host = await _probe_host(get, pod_ip, host_network=host_network)
    context = None
    if str(get.get("scheme") or "HTTP").upper() == "HTTPS":
        context = ssl.create_default_context()
        context.check_hostname = False  # the kubelet does not verify probe certificates
        context.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(host, port, ssl=context)
    headers = "".join(f"{name}: {value}\r\n" for name, value in extra)
    if not any(name.lower() == "host" for name, _ in extra):  # the pod's Host header wins
        named = str(get.get("host") or host)
        headers = f"Host: {f'[{named}]' if ':' in named else named}:{port}\r\n" + headers
    request = f"GET {path} HTTP/1.1\r\nUser-Agent: berth-probe/1.0\r\n"
    writer.write(f"{request}{headers}Connection: close\r\n\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    parts = status_line.split()
    return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
