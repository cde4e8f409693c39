"""Running the pods bound to this process's nodes: reconcile(pod key) drives a pod's
containers through the runtime toward its spec and reports what happened as pod status.

Per pod, level-triggered: start the sandbox; run init containers in order; start app
containers; restart exited ones per ``restartPolicy`` with crash-loop backoff (10s doubling to
5 minutes, reported as ``CrashLoopBackOff``); run startup/liveness/readiness probes on their
periods (a failed liveness or startup probe restarts the container); report phase, conditions
(PodScheduled, Initialized, ContainersReady, Ready), containerStatuses with restartCount, host
and pod IP. A pod with ``deletionTimestamp`` is first withdrawn from Services (its signal is
held until no Endpoints object lists it, see :mod:`berth.agent.withdrawal`), then gets its
containers stopped within what is left of ``deletionGracePeriodSeconds``, then is deleted with
grace 0 (uid precondition).

Concurrency contract: a keyed :class:`WorkQueue` serialises work per pod; runtime changes and
probe deadlines only *enqueue* the pod's key. Records live on one loop and are touched only by
the reconcile of their own key.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

from berth.agent.config import POD_WORKERS
from berth.agent.env import SharedFor, SharedSources, SourceError, resolve_env, resolve_volume_files
from berth.agent.runtime import (
    ContainerConfig,
    ContainerStatus,
    ImagePullFailed,
    ProbeKind,
    Runtime,
    SandboxConfig,
)
from berth.agent.tokens import ProjectedTokens, has_projected_token
from berth.agent.volumes import ClaimNotReady, LocalVolumes, resolve_claims, with_claims
from berth.agent.withdrawal import EndpointWithdrawal, hold_limit
from berth.api.meta import format_time
from berth.api.resources import PODS
from berth.client import errors
from berth.client.interface import ApiClient, Obj
from berth.client.keys import ObjectKey, make_key
from berth.machinery.clock import Clock
from berth.machinery.controller import Controller, Retry
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Informer
from berth.machinery.objects import Frozen, key_of, meta, name, namespace, thaw
from berth.machinery.prometheus import POD_START_BUCKETS, REGISTRY
from berth.machinery.queue import WorkQueue
from berth.runtime import timeline
from berth.runtime.safepath import UnsafePath

POD_START = REGISTRY.histogram(
    "kubelet_pod_start_duration_seconds",
    "Duration in seconds from the agent seeing a pod for the first time to all its containers"
    " running.",
    POD_START_BUCKETS,
)
RUNTIME_ERRORS = REGISTRY.counter(
    "kubelet_runtime_operations_errors_total",
    "Cumulative number of runtime operation errors by operation type.",
)
T = TypeVar("T")


async def _counted(operation: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await call(*args)``, counting a failure in kubelet_runtime_operations_errors_total."""
    try:
        return await call(*args)
    except Exception:
        RUNTIME_ERRORS.inc(operation_type=operation)
        raise


log = logging.getLogger(__name__)

BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
CONFIG_RETRY = 10.0  # retry a container whose ConfigMap/Secret is missing
MAX_FIRST_SEEN = 10_000  # first-seen times kept for pods not yet reconciled
PULL_BACKOFF_REPORT = 1.0  # ErrImagePull shows this long before it becomes ImagePullBackOff
# An exit the runtime reports without a code (it has no record of how the container ended) is
# believed only once it stayed so this long, looked at every UNKNOWN_RECHECK seconds: a
# runtime records an exit within milliseconds, so a transient unknown (the exit still being
# written) never decides a pod's phase, while a lost one (node rebooted, shim killed) does.
UNKNOWN_CONFIRM = 10.0
UNKNOWN_RECHECK = 1.0
# What an exit without a code is reported as (the kubelet's code for a container it can no
# longer locate, reason ContainerStatusUnknown): never 0, so never mistaken for success.
UNKNOWN_EXIT_CODE = 137
SHUTDOWN_POD_MESSAGE = "Pod was terminated in response to imminent node shutdown."
_PROBE_KINDS: tuple[ProbeKind, ...] = ("startup", "liveness", "readiness")
_NOT_SPEC = frozenset({"status", "metadata"})  # what is_status_echo compares apart
_VOLATILE = frozenset({"resourceVersion", "managedFields"})  # changed by any write


@dataclass(slots=True)
class ContainerRecord:
    name: str
    current: str | None = None  # runtime id of the latest instance
    previous: str | None = None
    restarts: int = 0
    started: bool = False  # startup probe passed (or none)
    ready: bool = False
    successes: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    next_probe: dict[str, float] = field(default_factory=dict)
    last_status: ContainerStatus | None = None
    previous_status: ContainerStatus | None = None
    # Monotonic time the runtime first said the current instance exited without a code.
    unknown_since: float | None = None
    config_error: str = ""  # why it could not be created (CreateContainerConfigError)
    # Image pulls: the waiting reason (ErrImagePull, ImagePullBackOff, ErrImageNeverPull),
    # its message, how many pulls failed in a row and when the next may be tried.
    pull_reason: str = ""
    pull_message: str = ""
    pull_failures: int = 0
    pull_retry_at: float = 0.0
    # The current instance ran in a sandbox that died (the node rebooted): it runs no more,
    # whatever the runtime last said, and is started again in the pod's new sandbox (init
    # containers all over again, app containers as the restartPolicy says), restartCount+1.
    stale: bool = False


@dataclass(frozen=True, slots=True)
class PendingEvent:
    warning: bool
    reason: str
    message: str


@dataclass(slots=True)
class PodRecord:
    uid: str
    key: ObjectKey
    node: str
    sandbox: str = ""
    # ``sandbox`` is dead (its network namespace went with a reboot): the pod gets a new one.
    sandbox_dead: bool = False
    pod_ip: str = ""
    start_time: datetime | None = None
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    last_report: Obj | None = None
    finished: bool = False
    init_failed: bool = False  # an init container failed for good (restartPolicy Never)
    # The terminal phase once decided (Succeeded/Failed): reported from then on, never
    # recomputed (upstream's kubelet never moves a pod out of a terminal phase either).
    terminal_phase: str = ""
    settled: bool = False  # its terminal status is in the API: nothing more to report
    terminating_since: float | None = None  # monotonic time the deletion was first seen
    events: list[PendingEvent] = field(default_factory=list)  # posted after the status
    # Pod start latency (kubelet_pod_start_duration_seconds): when this agent first saw the
    # pod (None: adopted after a restart, not measured) until all its containers ran.
    seen_at: float | None = None

    def event(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append(PendingEvent(warning, reason, message))


def _probe_spec(container: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    spec: Mapping[str, Any] | None = container.get(f"{kind}Probe")
    return spec


def _config(c: Mapping[str, Any], *, init: bool, env: Mapping[str, str]) -> ContainerConfig:
    return ContainerConfig(
        name=str(c["name"]),
        image=str(c.get("image", "")),
        command=tuple(str(x) for x in c.get("command") or ()),
        args=tuple(str(x) for x in c.get("args") or ()),
        env=dict(env),
        init=init,
        spec=thaw(c),
    )


class IPAllocator:
    """Pod IPs per node from the node's podCIDR (a fallback range when none is assigned)."""

    def __init__(self, fallback: str = "10.255.0.0/16") -> None:
        self._used: dict[str, set[str]] = {}
        self._fallback = ipaddress.ip_network(fallback)
        self._fallback_used: set[str] = set()

    def allocate(self, node: str, cidr: str) -> str:
        if cidr:
            net = ipaddress.ip_network(cidr, strict=False)
            used = self._used.setdefault(node, set())
        else:
            net, used = self._fallback, self._fallback_used
        for host in net.hosts():
            ip = str(host)
            if ip.endswith(".1") and host == next(net.hosts()):
                continue  # the first address is the node's bridge
            if ip not in used:
                used.add(ip)
                return ip
        raise RuntimeError(f"no free pod IPs in {net} on node {node}")

    def claim(self, node: str, ip: str) -> None:
        """Mark ``ip`` used (recovered after a restart)."""
        self._used.setdefault(node, set()).add(ip)
        self._fallback_used.add(ip)

    def release(self, node: str, ip: str) -> None:
        self._used.get(node, set()).discard(ip)
        self._fallback_used.discard(ip)


class PodManager:
    def __init__(
        self,
        client: ApiClient,
        clock: Clock,
        runtime: Runtime,
        *,
        pods: Informer,
        node_address: Callable[[str], str | None],
        node_cidr: Callable[[str], str],
        workers: int = POD_WORKERS,
        node_client: Callable[[str], ApiClient] | None = None,
        recorder: Callable[[str], EventRecorder] | None = None,
        withdrawal: EndpointWithdrawal | None = None,
        local_volumes: LocalVolumes | None = None,
    ) -> None:
        self.client = client
        # This node's local volume directories (runc nodes); None: nothing is made on disk.
        self.local_volumes = local_volumes
        # A deleted pod is signalled only once Services stopped routing to it (see
        # berth.agent.withdrawal); None (no service proxy on these nodes) signals at once.
        self.withdrawal = withdrawal
        # Writes for a pod go out with its node's identity (the API server lets a node
        # modify only its own pods); without per-node clients, ``client`` is used.
        self.client_for: Callable[[str], ApiClient] = node_client or (lambda _node: client)
        # What users read in ``kubectl describe pod`` (Created, Started, Killing, BackOff,
        # Unhealthy), recorded per node; None records nothing.
        self.recorder_for = recorder
        self.clock = clock
        self.runtime = runtime
        self.pods = pods
        self.node_address = node_address
        self.node_cidr = node_cidr
        self.queue: WorkQueue[ObjectKey] = WorkQueue(clock, name="agent-pods")
        self.controller = Controller("agent-pods", self, self.queue, workers=workers)
        self.records: dict[ObjectKey, PodRecord] = {}
        self.ips = IPAllocator()
        self.status_writes = 0
        # Projected service-account tokens of the pods here, renewed before they expire.
        self.tokens = ProjectedTokens(clock)
        # ConfigMap/Secret reads shared by pods seen before they were sent, and when each pod
        # (by uid) was first seen (see berth.agent.env.SharedSources).
        self.sources = SharedSources(clock)
        self._first_seen: dict[str, float] = {}

    def observe(self, pod: Frozen) -> None:
        """Note when a pod of these nodes was first seen (before its key is queued). Not for
        a pod reconciled already or being deleted: nothing would forget it again."""
        uid = str(meta(pod).get("uid") or "")
        rec = self.records.get(key_of(pod))
        if (rec is not None and rec.uid == uid) or meta(pod).get("deletionTimestamp"):
            return
        if uid and uid not in self._first_seen:
            if len(self._first_seen) >= MAX_FIRST_SEEN:  # pods that left before a reconcile
                del self._first_seen[next(iter(self._first_seen))]
            self._first_seen[uid] = self.clock.monotonic()

    def _shared(self, rec: PodRecord) -> SharedFor:
        seen = self._first_seen.get(rec.uid)
        return SharedFor(
            self.sources, rec.node, seen if seen is not None else self.clock.monotonic()
        )

    def is_status_echo(self, old: Frozen, new: Frozen) -> bool:
        """True when ``new`` differs from ``old`` only in its status (and resourceVersion), and
        that status shows what this agent last reported for the pod: the watch bringing back
        the agent's own status write. Nothing in it is news to the pod's reconcile (the
        runtime's changes and the pod's timers enqueue it themselves; the kubelet's pod
        config ignores status-only updates too); a status another writer changed away from
        the report, or any change to the rest of the pod, is not an echo."""
        rec = self.records.get(key_of(new))
        if rec is None or rec.last_report is None or rec.uid != meta(new).get("uid"):
            return False
        if any(old.get(k) != new.get(k) for k in old.keys() | new.keys() if k not in _NOT_SPEC):
            return False
        was, now = meta(old), meta(new)
        if any(was.get(k) != now.get(k) for k in was.keys() | now.keys() if k not in _VOLATILE):
            return False
        current = thaw(new.get("status") or {})
        return all(_reported(k, current.get(k), v) for k, v in rec.last_report.items())

    def mine(self, pod: Frozen) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        return bool(node) and self.node_address(str(node)) is not None

    def enqueue(self, key: ObjectKey) -> None:
        self.queue.add(key)

    def on_sandbox_change(self, config: SandboxConfig) -> None:
        self.queue.add(make_key(config.namespace, config.name))

    def relist(self) -> None:
        """Enqueue every pod this manager runs (for runtimes that do not notify changes, the
        kubelet's "PLEG relist": exits and probe deadlines are noticed on the next pass)."""
        for key in list(self.records):
            self.queue.add(key)

    async def recover(self, nodes: Collection[str]) -> int:
        """Adopt what the runtime still runs for ``nodes`` after an agent restart, so pods
        keep their containers, IPs and restart counts. Returns how many pods were adopted."""
        adopted = 0
        for sb in await self.runtime.list_sandboxes():
            cfg = sb.config
            if cfg.node not in nodes:
                continue
            key = make_key(cfg.namespace, cfg.name)
            # A sandbox that is not ready died with everything in it (after a reboot: its
            # network namespace is gone). Its containers' history (restart counts, last
            # states) is kept; the pod gets a new sandbox and address on its next reconcile.
            dead = not sb.ready
            rec = PodRecord(
                uid=cfg.uid,
                key=key,
                node=cfg.node,
                sandbox=sb.id,
                sandbox_dead=dead,
                pod_ip="" if dead else cfg.pod_ip,
            )
            by_name: dict[str, list[ContainerStatus]] = {}
            for st in sb.containers:
                by_name.setdefault(st.name, []).append(st)
            for cname, attempts in by_name.items():
                attempts.sort(key=lambda st: st.attempt)
                latest = attempts[-1]
                cr = ContainerRecord(cname, current=latest.id, restarts=latest.attempt)
                cr.stale = dead
                self._observe(cr, latest)
                # No probe state survives a restart: assume started (a startup probe that
                # already passed) and let readiness be re-probed.
                cr.started = True
                if len(attempts) > 1:
                    cr.previous, cr.previous_status = attempts[-2].id, attempts[-2]
                rec.containers[cname] = cr
                first = attempts[0].created_at
                if rec.start_time is None or first < rec.start_time:
                    rec.start_time = first
            if rec.pod_ip:
                self.ips.claim(cfg.node, rec.pod_ip)
            self.records[key] = rec
            self.queue.add(key)
            adopted += 1
        return adopted

    # ---- reconcile ----------------------------------------------------------------------
    async def reconcile(self, key: ObjectKey) -> None:
        pod = self.pods.get(key)
        try:
            await self._reconcile(key, pod)
        finally:
            # Only a pod's first pass may use reads sent since it was first seen; a retry
            # (a source missing, a runtime error) reads what is current then.
            if pod is not None:
                self._first_seen.pop(str(meta(pod).get("uid") or ""), None)

    async def _reconcile(self, key: ObjectKey, pod: Frozen | None) -> None:
        rec = self.records.get(key)
        if pod is None or not self.mine(pod):
            if rec is not None:
                await self._teardown(rec)
            return
        uid = str(meta(pod).get("uid"))
        timeline.stamp(uid, "dequeued")
        if rec is not None and rec.uid != uid:
            await self._teardown(rec)  # same name, new pod
            rec = None
        if rec is None:
            rec = PodRecord(uid=uid, key=key, node=str(pod["spec"]["nodeName"]))
            rec.seen_at = self.clock.monotonic()
            self.records[key] = rec
        if meta(pod).get("deletionTimestamp"):
            await self._terminate(pod, rec)
            return
        api_phase = str((pod.get("status") or {}).get("phase") or "")
        if api_phase in ("Succeeded", "Failed") and not rec.terminal_phase:
            # Terminal in the API already (reported before an agent restart, or stopped by a
            # graceful node shutdown before a reboot): never run again, and leave its last
            # status as it is (the kubelet never restarts a pod in a terminal phase either).
            rec.finished, rec.terminal_phase, rec.settled = True, api_phase, True
        if rec.finished:
            if not rec.settled:
                await self._report(pod, rec)
            return
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        if rec.sandbox_dead and policy == "Never" and rec.containers:
            # As the kubelet: a pod that never restarts gets no new sandbox once its
            # containers ran; what they ended with (exits unknown: failed) is its status.
            await self._report(pod, rec)
            await self._post_events(pod, rec)
            return
        if not rec.sandbox or rec.sandbox_dead:
            try:
                claims = await resolve_claims(
                    self.client_for(rec.node),
                    pod,
                    self.local_volumes,
                    note=lambda m: rec.event("VolumeSizeNotEnforced", m, warning=True),
                )
                files = await resolve_volume_files(
                    self.client_for(rec.node), pod, tokens=self.tokens, shared=self._shared(rec)
                )
            except (SourceError, ClaimNotReady, UnsafePath) as exc:
                rec.event("FailedMount", f"MountVolume.SetUp failed: {exc}", warning=True)
                await self._report(pod, rec)
                await self._post_events(pod, rec)
                raise Retry(CONFIG_RETRY, str(exc)) from None
            timeline.stamp(uid, "volumes")
            host_network = bool((pod.get("spec") or {}).get("hostNetwork"))
            if not self.runtime.assigns_pod_ips and not host_network and not rec.pod_ip:
                rec.pod_ip = self.ips.allocate(rec.node, self.node_cidr(rec.node))
            rec.sandbox = await _counted(
                "create_sandbox",
                self.runtime.create_sandbox,
                SandboxConfig(
                    namespace=namespace(pod) or "default",
                    name=name(pod),
                    uid=uid,
                    node=rec.node,
                    pod_ip=rec.pod_ip,
                    labels=dict(meta(pod).get("labels") or {}),
                    spec=with_claims(thaw(pod.get("spec") or {}), claims),
                    volume_files=files,
                ),
            )
            if self.runtime.assigns_pod_ips:
                # What the CNI IPAM granted (it also survives agent restarts in its records).
                rec.pod_ip = await self.runtime.sandbox_ip(rec.sandbox)
            if host_network:
                rec.pod_ip = self.node_address(rec.node) or ""
            rec.sandbox_dead = False
            if rec.start_time is None:  # a pod given a new sandbox keeps its startTime
                rec.start_time = self.clock.now()
        wake: list[float] = []
        await self._renew_tokens(pod, rec, wake)
        init_done = await self._run_init(pod, rec, policy=policy, wake=wake)
        if init_done is None:  # an init container failed for good
            rec.init_failed = rec.finished = True
        elif init_done:
            for c in spec.get("containers") or ():
                await self._run_container(pod, rec, c, policy=policy, wake=wake)
                await self._probe(pod, rec, c, wake=wake)
            # Ephemeral containers (kubectl debug) run once, never restarted, never probed.
            for c in spec.get("ephemeralContainers") or ():
                await self._run_container(pod, rec, c, policy="Never", wake=wake)
        self._recheck_pending(rec, wake)
        await self._report(pod, rec)
        await self._post_events(pod, rec)
        if wake:
            self.queue.add_after(key, max(min(wake) - self.clock.monotonic(), 0.001))

    async def _refresh(self, cr: ContainerRecord) -> ContainerStatus | None:
        if cr.current is None:
            return None
        self._observe(cr, await self.runtime.container_status(cr.current))
        return cr.last_status

    def _observe(self, cr: ContainerRecord, st: ContainerStatus | None) -> None:
        if cr.stale and st is not None:
            # Its sandbox died: it runs no more, and how it ended will never be recorded
            # (no wait for an exit code, see UNKNOWN_CONFIRM).
            if st.phase != "exited":
                st = replace(st, phase="exited", exit_code=None, reason="Unknown")
            cr.last_status, cr.unknown_since = st, None
            return
        cr.last_status = st
        if st is not None and st.phase == "exited" and st.exit_code is None:
            if cr.unknown_since is None:
                cr.unknown_since = self.clock.monotonic()
        else:
            cr.unknown_since = None

    def _exit_pending(self, cr: ContainerRecord | None) -> bool:
        """True while the runtime says ``cr`` exited but not how, for less than
        UNKNOWN_CONFIRM: it is not an exit yet (no phase, restart or init verdict from it)."""
        if cr is None or cr.unknown_since is None:
            return False
        return self.clock.monotonic() - cr.unknown_since < UNKNOWN_CONFIRM

    def _recheck_pending(self, rec: PodRecord, wake: list[float]) -> None:
        now = self.clock.monotonic()
        for cr in rec.containers.values():
            if self._exit_pending(cr) and cr.unknown_since is not None:
                wake.append(min(now + UNKNOWN_RECHECK, cr.unknown_since + UNKNOWN_CONFIRM))

    async def _start(
        self, pod: Frozen, rec: PodRecord, c: Mapping[str, Any], *, init: bool
    ) -> float | None:
        """Start (or restart) ``c``. Returns None when it started, else the monotonic time to
        try again (its configuration cannot be built yet, or its image pull is backing off)."""
        cr = rec.containers.setdefault(str(c["name"]), ContainerRecord(str(c["name"])))
        try:
            env = await resolve_env(
                self.client_for(rec.node),
                pod,
                c,
                pod_ip=rec.pod_ip,
                host_ip=self.node_address(rec.node) or "",
                shared=self._shared(rec),
            )
        except SourceError as exc:
            if cr.config_error != str(exc):
                rec.event("Failed", f"Error: {exc}", warning=True)
            cr.config_error = str(exc)
            return self.clock.monotonic() + CONFIG_RETRY
        cr.config_error = ""
        now = self.clock.monotonic()
        image = str(c.get("image", ""))
        if cr.pull_reason and now < cr.pull_retry_at:
            if cr.pull_reason == "ErrImagePull":
                cr.pull_reason = "ImagePullBackOff"
                cr.pull_message = f'Back-off pulling image "{image}"'
                rec.event("BackOff", cr.pull_message)
            return cr.pull_retry_at
        attempt = cr.restarts + 1 if cr.current is not None else 0
        try:
            cid = await self.runtime.start_container(
                rec.sandbox, _config(c, init=init, env=env), attempt=attempt
            )
        except ImagePullFailed as exc:
            RUNTIME_ERRORS.inc(operation_type="pull_image")
            cr.pull_failures += 1
            delay = float(min(BACKOFF_INITIAL * 2 ** (cr.pull_failures - 1), BACKOFF_MAX))
            cr.pull_retry_at = now + delay
            cr.pull_reason = "ErrImageNeverPull" if exc.never_pull else "ErrImagePull"
            cr.pull_message = str(exc)
            rec.event("Failed", f'Failed to pull image "{image}": {exc}', warning=True)
            rec.event("Failed", f"Error: {cr.pull_reason}", warning=True)
            return min(now + PULL_BACKOFF_REPORT, cr.pull_retry_at)
        except Exception:
            RUNTIME_ERRORS.inc(operation_type="start_container")
            raise
        cr.pull_reason = cr.pull_message = ""
        cr.pull_failures = 0
        if cr.current is not None:
            cr.previous, cr.previous_status = cr.current, cr.last_status
            cr.restarts += 1
        cr.stale = False
        cr.started = _probe_spec(c, "startup") is None
        cr.ready = False
        cr.successes.clear()
        cr.failures.clear()
        cr.next_probe.clear()
        cr.current = cid
        self._observe(cr, await self.runtime.container_status(cr.current))
        rec.event("Created", f"Created container {cr.name}")
        rec.event("Started", f"Started container {cr.name}")
        return None

    def _backoff_left(self, cr: ContainerRecord, st: ContainerStatus) -> float:
        if cr.restarts == 0 or st.finished_at is None:
            return 0.0
        delay = float(min(BACKOFF_INITIAL * 2 ** (cr.restarts - 1), BACKOFF_MAX))
        elapsed = (self.clock.now() - st.finished_at).total_seconds()
        return max(0.0, delay - elapsed)

    async def _run_init(
        self, pod: Frozen, rec: PodRecord, *, policy: str, wake: list[float]
    ) -> bool | None:
        """True when every init container succeeded; False while in progress; None when one
        failed and restartPolicy is Never."""
        for c in (pod.get("spec") or {}).get("initContainers") or ():
            cr = rec.containers.get(str(c["name"]))
            st = await self._refresh(cr) if cr is not None else None
            if cr is None or st is None or cr.stale:  # (stale: all init containers rerun)
                retry = await self._start(pod, rec, c, init=True)
                if retry is not None:
                    wake.append(retry)
                return False
            if st.phase != "exited" or self._exit_pending(cr):
                return False
            if st.exit_code == 0:
                continue
            if policy == "Never":
                return None
            left = self._backoff_left(cr, st)
            if left > 0:
                wake.append(self.clock.monotonic() + left)
                return False
            retry = await self._start(pod, rec, c, init=True)
            if retry is not None:
                wake.append(retry)
            return False
        return True

    async def _run_container(
        self, pod: Frozen, rec: PodRecord, c: Mapping[str, Any], *, policy: str, wake: list[float]
    ) -> None:
        cr = rec.containers.get(str(c["name"]))
        st = await self._refresh(cr) if cr is not None else None
        if cr is None or st is None:
            retry = await self._start(pod, rec, c, init=False)
            if retry is not None:
                wake.append(retry)
            return
        if st.phase != "exited" or self._exit_pending(cr):
            return
        restart = policy == "Always" or (policy == "OnFailure" and st.exit_code != 0)
        if not restart:
            return
        # In a new sandbox, the first start is at once (the kubelet's back-off lives in its
        # memory, gone with the reboot).
        left = 0.0 if cr.stale else self._backoff_left(cr, st)
        if left > 0:
            wake.append(self.clock.monotonic() + left)
            rec.event("BackOff", "Back-off restarting failed container", warning=True)
            return
        retry = await self._start(pod, rec, c, init=False)
        if retry is not None:
            wake.append(retry)

    async def _probe(
        self, pod: Frozen, rec: PodRecord, c: Mapping[str, Any], *, wake: list[float]
    ) -> None:
        cr = rec.containers.get(str(c["name"]))
        if cr is None or cr.current is None or cr.last_status is None:
            return
        st = cr.last_status
        if st.phase != "running" or st.started_at is None:
            cr.ready = False
            return
        if _probe_spec(c, "readiness") is None and cr.started:
            cr.ready = True
        now = self.clock.monotonic()
        running_for = (self.clock.now() - st.started_at).total_seconds()
        for kind in _PROBE_KINDS:
            spec = _probe_spec(c, kind)
            if spec is None or (kind != "startup" and not cr.started):
                continue
            if kind == "startup" and cr.started:
                continue
            period = float(spec.get("periodSeconds") or 10)
            due = cr.next_probe.get(kind)
            if due is None:
                initial = float(spec.get("initialDelaySeconds") or 0) - running_for
                due = now + max(initial, 0.0)
                cr.next_probe[kind] = due
            if due > now:
                wake.append(due)
                continue
            ok = await self.runtime.probe(cr.current, kind, spec, pod_ip=rec.pod_ip)
            cr.next_probe[kind] = now + period
            wake.append(now + period)
            if ok:
                cr.successes[kind] = cr.successes.get(kind, 0) + 1
                cr.failures[kind] = 0
            else:
                cr.failures[kind] = cr.failures.get(kind, 0) + 1
                cr.successes[kind] = 0
                rec.event("Unhealthy", f"{kind.capitalize()} probe failed", warning=True)
            threshold_ok = int(spec.get("successThreshold") or 1)
            threshold_fail = int(spec.get("failureThreshold") or 3)
            if kind == "startup" and cr.successes.get(kind, 0) >= 1:
                cr.started = True
                cr.ready = _probe_spec(c, "readiness") is None
            elif kind == "readiness":
                if cr.successes.get(kind, 0) >= threshold_ok:
                    cr.ready = True
                elif cr.failures.get(kind, 0) >= threshold_fail:
                    cr.ready = False
            if kind in ("liveness", "startup") and cr.failures.get(kind, 0) >= threshold_fail:
                log.info("%s: container %s failed its %s probe; restarting", rec.key, cr.name, kind)
                rec.event("Killing", f"Container {cr.name} failed {kind} probe, will be restarted")
                grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
                await self.runtime.stop_container(cr.current, grace_seconds=grace)
                await self._refresh(cr)
                cr.ready = False
                wake.append(now)  # restart on the next pass (policy + backoff apply)
                return

    # ---- graceful node shutdown ---------------------------------------------------------
    async def stop_for_shutdown(self, rec: PodRecord, *, grace_cap: float) -> None:
        """Stop ``rec``'s containers (SIGTERM, SIGKILL after min(its grace period,
        ``grace_cap``)) and report the pod Failed/Terminated with a DisruptionTarget
        condition, as the kubelet's graceful node shutdown does. The reconcile loop must be
        stopped first (nothing may restart the containers)."""
        pod = self.pods.get(rec.key)
        if pod is None or rec.finished:
            return
        spec = pod.get("spec") or {}
        grace = min(float(spec.get("terminationGracePeriodSeconds", 30)), grace_cap)
        ids = [cr.current for cr in rec.containers.values() if cr.current is not None]
        await asyncio.gather(
            *(self.runtime.stop_container(i, grace_seconds=grace) for i in ids),
            return_exceptions=True,
        )
        for cr in rec.containers.values():
            await self._refresh(cr)
            cr.ready = False
            cr.unknown_since = None  # what the runtime says now is all there will be
        rec.terminal_phase = "Failed"
        status = self._build_status(pod, rec)
        status["reason"] = "Terminated"
        status["message"] = SHUTDOWN_POD_MESSAGE
        status["conditions"] = [
            *status["conditions"],
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": SHUTDOWN_POD_MESSAGE,
                "lastProbeTime": None,
                "lastTransitionTime": format_time(self.clock.now()),
            },
        ]
        await self.client_for(rec.node).patch(
            PODS,
            name(pod),
            {"status": status},
            namespace=namespace(pod),
            subresource="status",
            patch_type="strategic",  # only the agent's own conditions (see _report)
        )

    # ---- termination --------------------------------------------------------------------
    async def _terminate(self, pod: Frozen, rec: PodRecord) -> None:
        grace = float(meta(pod).get("deletionGracePeriodSeconds") or 0)
        now = self.clock.monotonic()
        if rec.terminating_since is None:
            rec.terminating_since = now
        held = now - rec.terminating_since
        wait = self._withdrawal_wait(pod, rec, grace=grace, held=held)
        if wait > 0:
            self.queue.add_after(rec.key, wait)  # level-triggered: look again, hold no worker
            return
        grace = max(0.0, grace - held)  # the hold came out of the grace period
        ids = [cr.current for cr in rec.containers.values() if cr.current is not None]
        for cr in rec.containers.values():
            if cr.last_status is not None and cr.last_status.phase == "running":
                rec.event("Killing", f"Stopping container {cr.name}")
        # The Killing events go out beside the stop, not before it: the signal does not wait
        # for an Event's round trip to the API server (the recorder never raises).
        await asyncio.gather(
            self._post_events(pod, rec),
            *(self.runtime.stop_container(i, grace_seconds=grace) for i in ids),
        )
        for cr in rec.containers.values():
            await self._refresh(cr)
            cr.ready = False
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self._report(pod, rec)
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.client_for(rec.node).delete(
                PODS,
                name(pod),
                namespace=namespace(pod),
                grace_period_seconds=0,
                precondition_uid=rec.uid,
            )
        await self._teardown(rec)

    def _withdrawal_wait(self, pod: Frozen, rec: PodRecord, *, grace: float, held: float) -> float:
        """Seconds more to keep a deleted pod running while Services withdraw it."""
        if self.withdrawal is None or not rec.pod_ip or rec.finished:
            return 0.0
        if (pod.get("spec") or {}).get("hostNetwork"):
            return 0.0  # its address is the node's: no Service withdrawal to wait for
        left = hold_limit(grace) - held
        if left <= 0:
            return 0.0
        return min(self.withdrawal.hold(rec.pod_ip), left)

    async def _post_events(self, pod: Frozen, rec: PodRecord) -> None:
        events, rec.events = rec.events, []
        if self.recorder_for is None:
            return
        recorder = self.recorder_for(rec.node)
        for ev in events:
            if ev.warning:
                await recorder.warning(pod, ev.reason, ev.message)
            else:
                await recorder.normal(pod, ev.reason, ev.message)

    async def _renew_tokens(self, pod: Frozen, rec: PodRecord, wake: list[float]) -> None:
        """Rewrite the pod's volumes once a projected token is due for renewal (the kubelet
        renews at 80% of a token's lifetime); wake up again at the next due time."""
        due = self.tokens.refresh_due(rec.uid)
        if due is None:
            if not has_projected_token(pod):
                return
            # A pod adopted after an agent restart: its token files were written by the
            # previous agent, whose tokens this one does not know; write fresh ones now.
            due = self.clock.monotonic()
        if self.clock.monotonic() >= due:
            try:
                files = await resolve_volume_files(
                    self.client_for(rec.node), pod, tokens=self.tokens
                )
                await self.runtime.update_volume_files(rec.sandbox, files)
            except (SourceError, errors.ApiError) as exc:
                rec.event("FailedMount", f"MountVolume.SetUp failed: {exc}", warning=True)
                wake.append(self.clock.monotonic() + CONFIG_RETRY)
                return
            due = self.tokens.refresh_due(rec.uid)
        if due is not None:
            wake.append(due)

    async def _teardown(self, rec: PodRecord) -> None:
        self.tokens.forget(rec.uid)
        if rec.sandbox:
            await _counted("remove_sandbox", self.runtime.remove_sandbox, rec.sandbox)
        if rec.pod_ip:
            self.ips.release(rec.node, rec.pod_ip)
        self.records.pop(rec.key, None)

    # ---- status -------------------------------------------------------------------------
    def _container_status(
        self,
        c: Mapping[str, Any],
        cr: ContainerRecord | None,
        *,
        waiting_reason: str,
        pod: Frozen,
        init: bool = False,
    ) -> Obj:
        image = str(c.get("image", ""))
        out: Obj = {
            "name": str(c["name"]),
            "image": image,
            # what the runtime runs (kubelet's imageID); empty until a container exists
            "imageID": cr.last_status.image_id if cr and cr.last_status else "",
            "ready": bool(cr and cr.ready),
            "restartCount": cr.restarts if cr else 0,
            "started": False,
            "state": {"waiting": {"reason": waiting_reason}},
            "lastState": {},
        }
        waiting = None
        if cr is not None and cr.config_error:
            waiting = {"reason": "CreateContainerConfigError", "message": cr.config_error}
        elif cr is not None and cr.pull_reason:
            waiting = {"reason": cr.pull_reason, "message": cr.pull_message}
        if cr is not None and waiting is not None:
            out["state"] = {"waiting": waiting}
            if cr.last_status is not None and cr.last_status.phase == "exited":
                out["lastState"] = {"terminated": _terminated(cr.last_status, self.runtime.name)}
            return out
        if cr is None or cr.last_status is None:
            return out
        st = cr.last_status
        out["containerID"] = f"{self.runtime.name}://{st.id}"
        # An exit still pending (see UNKNOWN_CONFIRM) is not one yet: shown as last known.
        pending = self._exit_pending(cr)
        if (pending or st.phase == "running") and st.started_at is not None:
            out["state"] = {"running": {"startedAt": format_time(st.started_at)}}
            out["started"] = cr.started
        elif st.phase == "exited" and not pending:
            term = _terminated(st, self.runtime.name)
            policy = str((pod.get("spec") or {}).get("restartPolicy") or "Always")
            if init:
                restarting = policy != "Never" and st.exit_code != 0
            else:
                restarting = policy == "Always" or (policy == "OnFailure" and st.exit_code != 0)
            if restarting:
                left = self._backoff_left(cr, st) if cr.restarts else 0.0
                delay = min(BACKOFF_INITIAL * 2 ** max(cr.restarts - 1, 0), BACKOFF_MAX)
                if left > 0 or cr.restarts > 0:
                    out["state"] = {
                        "waiting": {
                            "reason": "CrashLoopBackOff",
                            "message": f"back-off {int(delay)}s restarting failed "
                            f"container={c['name']} pod={name(pod)}_{namespace(pod)}"
                            f"({meta(pod).get('uid')})",
                        }
                    }
                    out["lastState"] = {"terminated": term}
                else:
                    out["state"] = {"terminated": term}
            else:
                out["state"] = {"terminated": term}
        if cr.previous_status is not None and not out["lastState"]:
            out["lastState"] = {"terminated": _terminated(cr.previous_status, self.runtime.name)}
        return out

    def _build_status(self, pod: Frozen, rec: PodRecord) -> Obj:
        spec = pod.get("spec") or {}
        policy = str(spec.get("restartPolicy") or "Always")
        now = self.clock.now()
        inits = list(spec.get("initContainers") or ())
        apps = list(spec.get("containers") or ())
        init_states = [rec.containers.get(str(c["name"])) for c in inits]
        init_ok = all(
            cr is not None
            and cr.last_status is not None
            and cr.last_status.phase == "exited"
            and cr.last_status.exit_code == 0
            for cr in init_states
        )
        # The phase follows recorded exits only: a pending one still counts as running, a
        # confirmed exit without a code as a failure (UNKNOWN_EXIT_CODE), never as success.
        init_failed = rec.init_failed
        app_recs = [rec.containers.get(str(c["name"])) for c in apps]
        statuses = [
            self._container_status(
                c,
                cr,
                waiting_reason="ContainerCreating" if init_ok else "PodInitializing",
                pod=pod,
            )
            for c, cr in zip(apps, app_recs, strict=True)
        ]
        init_statuses = [
            self._container_status(c, cr, waiting_reason="PodInitializing", pod=pod, init=True)
            for c, cr in zip(inits, init_states, strict=True)
        ]
        phases = [
            "running"
            if self._exit_pending(cr)
            else (cr.last_status.phase if cr and cr.last_status else "none")
            for cr in app_recs
        ]
        codes = [_exit_code(cr.last_status) if cr and cr.last_status else None for cr in app_recs]
        if rec.terminal_phase:
            phase = rec.terminal_phase
        elif init_failed:
            phase = "Failed"
        elif not init_ok:
            phase = "Pending"
        elif all(p == "exited" for p in phases) and policy != "Always":
            if all(code == 0 for code in codes):
                phase = "Succeeded"
            elif policy == "Never":
                phase = "Failed"
            else:
                phase = "Running"
        elif (
            any(p == "running" for p in phases)
            or any(cr is not None and cr.restarts > 0 for cr in app_recs)
            or (policy == "Always" and any(p == "exited" for p in phases))
        ):
            phase = "Running"
        else:
            phase = "Pending"
        if (
            rec.seen_at is not None
            and phases
            and all(p == "running" for p in phases)
            and all(cr is not None and cr.restarts == 0 for cr in app_recs)
        ):
            POD_START.observe(self.clock.monotonic() - rec.seen_at)
            rec.seen_at = None
        if phase in ("Succeeded", "Failed"):
            rec.finished = True
            rec.terminal_phase = phase
        all_ready = bool(app_recs) and all(cr is not None and cr.ready for cr in app_recs)
        if phase in ("Succeeded", "Failed"):
            all_ready = False
        unready = [
            str(c["name"]) for c, cr in zip(apps, app_recs, strict=True) if not (cr and cr.ready)
        ]
        old = {c.get("type"): c for c in (pod.get("status") or {}).get("conditions") or ()}

        def cond(type_: str, ok: bool, *, reason: str = "", message: str = "") -> Obj:
            status = "True" if ok else "False"
            prev = old.get(type_)
            since = (
                prev.get("lastTransitionTime")
                if prev is not None and prev.get("status") == status
                else format_time(now)
            )
            out: Obj = {
                "type": type_,
                "status": status,
                "lastProbeTime": None,
                "lastTransitionTime": since,
            }
            if not ok and reason:
                out["reason"] = reason
                out["message"] = message
            return out

        not_ready_msg = f"containers with unready status: [{' '.join(unready)}]"
        reason = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
        incomplete = " ".join(
            str(c["name"])
            for c, cr in zip(inits, init_states, strict=True)
            if not (cr and cr.last_status and cr.last_status.exit_code == 0)
        )
        conditions = [
            cond(
                "Initialized",
                init_ok or phase == "Succeeded",
                reason="ContainersNotInitialized",
                message=f"containers with incomplete status: [{incomplete}]",
            ),
            cond("Ready", all_ready, reason=reason, message=not_ready_msg),
            cond("ContainersReady", all_ready, reason=reason, message=not_ready_msg),
            cond("PodScheduled", True),
        ]
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.node_address(rec.node) or "",
            "podIP": rec.pod_ip,
            "podIPs": [{"ip": rec.pod_ip}] if rec.pod_ip else [],
            "startTime": format_time(rec.start_time or now),
            "containerStatuses": statuses,
        }
        if init_statuses:
            status["initContainerStatuses"] = init_statuses
        ephemeral = list(spec.get("ephemeralContainers") or ())
        if ephemeral:
            status["ephemeralContainerStatuses"] = [
                self._container_status(
                    c,
                    rec.containers.get(str(c["name"])),
                    waiting_reason="ContainerCreating",
                    pod=pod,
                    init=True,
                )
                for c in ephemeral
            ]
        return status

    async def _report(self, pod: Frozen, rec: PodRecord) -> None:
        status = self._build_status(pod, rec)
        if status == rec.last_report:
            return
        current = thaw(pod.get("status") or {})
        if all(_reported(k, current.get(k), v) for k, v in status.items()):
            rec.last_report = status
            return
        # Strategic: conditions merge by type, so only the agent's own are written and a
        # condition another writer added (DisruptionTarget, a readiness gate's) stays even when
        # the cached pod predates it; every other status field is a scalar or an atomic list.
        await self.client_for(rec.node).patch(
            PODS,
            name(pod),
            {"status": status},
            namespace=namespace(pod),
            subresource="status",
            patch_type="strategic",
        )
        self.status_writes += 1
        rec.last_report = status
        if status["phase"] != "Pending":
            timeline.stamp(rec.uid, "patched")
            timeline.flush(rec.uid)

    # ---- logs ---------------------------------------------------------------------------
    def container_id(
        self, namespace_: str, pod: str, container: str, *, previous: bool = False
    ) -> str | None:
        rec = self.records.get(make_key(namespace_, pod))
        if rec is None:
            return None
        cr = rec.containers.get(container)
        if cr is None:
            return None
        return cr.previous if previous else cr.current


def _reported(field: str, current: Any, wanted: Any) -> bool:
    """Whether the pod's status ``field`` already shows what the agent would write. The agent's
    conditions are compared by type, whatever their order among the others' conditions, and
    without their null fields (the strategic merge drops them, as it drops any null)."""
    if field != "conditions" or not isinstance(current, list) or not isinstance(wanted, list):
        return bool(current == wanted)
    ours = {c.get("type"): _without_nulls(c) for c in wanted}
    shown = {
        c.get("type"): _without_nulls(c)
        for c in current
        if isinstance(c, dict) and c.get("type") in ours
    }
    return shown == ours


def _without_nulls(condition: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in condition.items() if v is not None}


def _exit_code(st: ContainerStatus) -> int | None:
    """The code to judge an exited container by (None while it runs)."""
    if st.phase != "exited":
        return None
    return st.exit_code if st.exit_code is not None else UNKNOWN_EXIT_CODE


def _terminated(st: ContainerStatus, runtime: str) -> Obj:
    code = st.exit_code if st.exit_code is not None else UNKNOWN_EXIT_CODE
    out: Obj = {
        "exitCode": code,
        "reason": st.reason
        or ("Completed" if code == 0 else "Error" if st.exit_code is not None else "Unknown"),
        "startedAt": format_time(st.started_at) if st.started_at else None,
        "finishedAt": format_time(st.finished_at) if st.finished_at else None,
        "containerID": f"{runtime}://{st.id}",
    }
    if st.exit_code is None and st.message:
        out["message"] = st.message
    return out
