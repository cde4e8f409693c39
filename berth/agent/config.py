"""Agent configuration: which nodes this process runs (one, or a simulated fleet), how they
look (capacity, labels, taints), the runtime, heartbeat timings and the log server."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from berth.api.loadbalancers import Pool, PoolError

# Pods reconciled at once per agent process. Most of a pod's start and stop is waiting (API
# calls, CNI plugins, the shim, runc): with 8 workers a burst of 15 pods on a node queued the
# last 7 behind the first 8. bench/pods.py --workers, 30-pod burst, two runs at load 35-70:
# queueing p99 15.7 s / 10.1 s at 8 workers, 0.6 s / 0.3 s at 32; all Ready 32.0 vs 15.4 s in
# the first run, 26.1 vs 45.5 s in the second (its 32-worker burst met a starved control
# plane: created -> scheduled 8.5 s); node CPU per pod 130 vs 167 ms (n2, second run). 128
# workers (one per pod, as the kubelet) ran a 50-pod node's CNI plugins and runc all at once
# on 2 cores and was the slowest in the first run (42.8 s): the pool stays bounded.
POD_WORKERS = 32


class AgentConfigError(Exception):
    pass


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    address: str = "127.0.0.1"
    kubeconfig: str = ""  # this node's own credentials (default: the agent's kubeconfig)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, str]] = field(default_factory=list)
    capacity: dict[str, str] = field(
        default_factory=lambda: {"cpu": "4", "memory": "8Gi", "pods": "110"}
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    address: str = "127.0.0.1"
    port: int = 10250
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""


@dataclass(frozen=True, slots=True)
class RuncConfig:
    state_dir: str = "/var/lib/berth/runtime"
    runc_root: str = "/run/berth/runc"
    # The local provisioner's volume directories on this node (berth.agent.volumes).
    volumes_dir: str = "/var/lib/berth/volumes"
    insecure_registries: tuple[str, ...] = ()
    registry_cas: Mapping[str, str] = field(default_factory=dict)  # registry -> PEM CA bundle


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """The cluster network as the runc node sees it (routes + service proxy)."""

    cluster_cidr: str = ""  # all pod CIDRs (the proxy masquerades traffic from outside it)
    service_cidr: str = ""  # routed out of ``service_device`` so ClusterIPs are reachable
    service_device: str = ""  # default: the interface carrying the node's address
    cluster_dns: str = ""  # nameserver written into pods' resolv.conf (ClusterFirst)
    cluster_domain: str = "cluster.local"  # the search path's base and berth-dns's zone
    # credentials of the cluster network's identity, which may list every pod, namespace and
    # NetworkPolicy (the node's own may not): empty = NetworkPolicies are not enforced here
    policy_kubeconfig: str = ""
    # LoadBalancer Services' address pool (CIDRs or first-last ranges); empty: node addresses
    load_balancer_pool: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AgentConfig:
    kubeconfig: str
    nodes: tuple[NodeConfig, ...]
    runtime: str = "simulated"
    start_delay: float = 0.0
    stop_delay: float = 0.0
    lease_duration: int = 40
    renew_interval: float = 10.0
    status_report_interval: float = 60.0
    status_check_interval: float = 10.0
    workers: int = POD_WORKERS
    # Graceful node shutdown (berth.agent.shutdown): at most this long to stop the pods when
    # the host powers off cleanly (each pod gets min(its terminationGracePeriodSeconds, this)).
    shutdown_grace_period: float = 30.0
    server: ServerConfig | None = None
    runc: RuncConfig = field(default_factory=RuncConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)


def _node(raw: dict[str, Any], where: str) -> NodeConfig:
    if not raw.get("name"):
        raise AgentConfigError(f"{where}: name is required")
    return NodeConfig(
        name=str(raw["name"]),
        kubeconfig=str(raw.get("kubeconfig", "")),
        address=str(raw.get("address", "127.0.0.1")),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        taints=[dict(t) for t in raw.get("taints") or []],
        capacity={str(k): str(v) for k, v in (raw.get("capacity") or {}).items()}
        or {"cpu": "4", "memory": "8Gi", "pods": "110"},
    )


def load_config(path: str | Path) -> AgentConfig:
    """Parse the agent's YAML config.

    ``nodes`` lists nodes explicitly; ``simulate: {count, namePrefix, ...}`` adds a fleet of
    identical simulated nodes (``namePrefix`` + index).

    ``runtime: runc`` runs real containers on exactly one node: ``runc: {stateDir, runcRoot,
    volumesDir, insecureRegistries, registryCAs: {registry: PEM}}`` and ``network: {clusterCIDR,
    serviceCIDR, serviceDevice, clusterDNS, clusterDomain, policyKubeconfig}`` (the agent then
    also keeps the node's host-gw routes and service rules, and enforces NetworkPolicies when
    ``policyKubeconfig`` names credentials that may read every pod). Its systemd unit needs
    ``KillMode=process`` so container shims outlive agent restarts."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AgentConfigError(f"{path}: cannot read agent config: {exc}") from exc
    if not isinstance(raw, dict) or not raw.get("kubeconfig"):
        raise AgentConfigError(f"{path}: kubeconfig is required")
    nodes = [_node(n, f"{path}: nodes[{i}]") for i, n in enumerate(raw.get("nodes") or [])]
    base = path.parent
    nodes = [
        replace(n, kubeconfig=str(base / n.kubeconfig))
        if n.kubeconfig and not Path(n.kubeconfig).is_absolute()
        else n
        for n in nodes
    ]
    sim = raw.get("simulate") or {}
    for i in range(int(sim.get("count", 0))):
        template = {k: v for k, v in sim.items() if k not in ("count", "namePrefix")}
        nodes.append(_node({**template, "name": f"{sim.get('namePrefix', 'sim-')}{i}"}, str(path)))
    if not nodes:
        raise AgentConfigError(f"{path}: no nodes (set nodes: or simulate.count)")
    runtime = str(raw.get("runtime", "simulated"))
    if runtime not in ("simulated", "runc"):
        raise AgentConfigError(
            f"{path}: runtime: {runtime!r} is not a runtime (use simulated or runc)"
        )
    if runtime == "runc" and len(nodes) != 1:
        raise AgentConfigError(
            f"{path}: runtime runc runs exactly one node per agent (found {len(nodes)})"
        )
    runc_raw = raw.get("runc") or {}
    defaults = RuncConfig()
    runc = RuncConfig(
        state_dir=str(runc_raw.get("stateDir", defaults.state_dir)),
        runc_root=str(runc_raw.get("runcRoot", defaults.runc_root)),
        volumes_dir=str(runc_raw.get("volumesDir", defaults.volumes_dir)),
        insecure_registries=tuple(str(r) for r in runc_raw.get("insecureRegistries") or ()),
        registry_cas={
            str(host).lower(): str(pem) for host, pem in (runc_raw.get("registryCAs") or {}).items()
        },
    )
    net_raw = raw.get("network") or {}
    network = NetworkConfig(
        cluster_cidr=str(net_raw.get("clusterCIDR") or ""),
        service_cidr=str(net_raw.get("serviceCIDR") or ""),
        service_device=str(net_raw.get("serviceDevice") or ""),
        cluster_dns=str(net_raw.get("clusterDNS") or ""),
        cluster_domain=str(net_raw.get("clusterDomain") or "cluster.local").strip(".").lower(),
        policy_kubeconfig=str(net_raw.get("policyKubeconfig") or ""),
        load_balancer_pool=tuple(str(b) for b in net_raw.get("loadBalancerPool") or ()),
    )
    try:
        Pool.parse(network.load_balancer_pool)
    except PoolError as exc:
        raise AgentConfigError(f"{path}: network.loadBalancerPool: {exc}") from exc
    for key, value in (
        ("clusterCIDR", network.cluster_cidr),
        ("serviceCIDR", network.service_cidr),
    ):
        if value:
            try:
                ipaddress.ip_network(value)
            except ValueError as exc:
                raise AgentConfigError(f"{path}: network.{key}: {exc}") from exc
    server = raw.get("server")

    def resolve(p: str) -> str:
        return str(p if not p or Path(p).is_absolute() else base / p)

    if network.policy_kubeconfig:
        network = replace(network, policy_kubeconfig=resolve(network.policy_kubeconfig))
    return AgentConfig(
        kubeconfig=resolve(str(raw["kubeconfig"])),
        nodes=tuple(nodes),
        runtime=runtime,
        runc=runc,
        network=network,
        start_delay=float(raw.get("startDelay", 0.0)),
        stop_delay=float(raw.get("stopDelay", 0.0)),
        lease_duration=int(raw.get("leaseDurationSeconds", 40)),
        renew_interval=float(raw.get("renewIntervalSeconds", 10.0)),
        status_report_interval=float(raw.get("statusReportSeconds", 60.0)),
        status_check_interval=float(raw.get("statusCheckSeconds", 10.0)),
        workers=int(raw.get("workers", POD_WORKERS)),
        shutdown_grace_period=float(raw.get("shutdownGracePeriodSeconds", 30.0)),
        server=ServerConfig(
            address=str(server.get("address", "127.0.0.1")),
            port=int(server.get("port", 10250)),
            cert_file=resolve(str(server.get("certFile", ""))),
            key_file=resolve(str(server.get("keyFile", ""))),
            client_ca_file=resolve(str(server.get("clientCAFile", ""))),
        )
        if server
        else None,
    )
