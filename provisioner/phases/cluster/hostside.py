"""The per-host phases of a cluster install: bundle, PKI, datastore, control plane, agents.

Every phase only declares operations; the engine plans and applies them. Services restart only
when their unit, their config, a credential they read or the active bundle changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

import berth
from provisioner import footprint
from provisioner import hostlayout as layout
from provisioner.artifacts.debs import DEB_ARCH, DebCache
from provisioner.connectors.base import HostTarget
from provisioner.errors import PhaseError
from provisioner.facts.base import Fact
from provisioner.facts.packages import Packages
from provisioner.facts.system import Machine, OsRelease, PythonVersion
from provisioner.operations.base import Operation
from provisioner.operations.cluster import (
    BundleInstalled,
    Capacity,
    DirEntries,
    HostCapacity,
    ImageLoaded,
    StateFile,
)
from provisioner.operations.files import Absent, Directory, File, Symlink
from provisioner.operations.kernel import KernelModule, Sysctl
from provisioner.operations.packages import DebPackages
from provisioner.operations.systemd import Service, ServicesStarted, UnitFile
from provisioner.phases.cluster import ha
from provisioner.phases.cluster.context import (
    bundle_of,
    release,
    spec_of,
    state_of,
)
from provisioner.phases.host_platform import host_platform
from provisioner.pki import ensure, files_for_host
from provisioner.smoke_image import smoke_image
from provisioner.spec import ClusterSpec
from provisioner.templating import render
from provisioner.workflow import PhaseData

CURRENT_ID = f"symlink:{layout.CURRENT}"


def _yaml(document: dict[str, Any]) -> bytes:
    return yaml.safe_dump(document, sort_keys=False).encode()


def _unit(name: str, context: dict[str, Any]) -> UnitFile:
    return UnitFile(name, render(f"{name}.j2", context).encode())


# -- artifacts -------------------------------------------------------------------------------


def prepare_bundle(data: PhaseData) -> None:
    """Refuse a spec asking for another berth release (the operator ships itself), then build
    or reuse the bundle."""
    spec = spec_of(data, "artifacts")
    if release(spec) != berth.__version__:
        raise PhaseError(
            "artifacts",
            f"the spec asks for berth {release(spec)}, but this is berth {berth.__version__}",
            hint=f"run berth {release(spec)} to install it, or set spec.version to "
            f"{berth.__version__}",
        )
    bundle_of(data)


def artifact_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    bundle = bundle_of(data, host)  # built for the host's own python3
    return (
        footprint.FootprintRecorded(),  # first: its facts show the host as it was before berth
        Directory(layout.OPT),
        Directory(layout.VERSIONS),
        Directory(layout.INCOMING, mode=0o700),
        BundleInstalled(bundle),
        Symlink(layout.CURRENT, f"versions/{bundle.id}"),
        Directory(layout.VAR),
        File(layout.MARKER, f"{data.inventory.cluster}\n".encode()),
    )


def prune_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """Remove bundles other than the active one (after every service switched to it)."""
    bundle = bundle_of(data)
    entries = data.host_facts(host.name, (DirEntries(layout.VERSIONS),)).get(
        DirEntries(layout.VERSIONS)
    )
    return tuple(
        Absent(layout.version_dir(name), recursive=True)
        for name in entries or ()
        if name != bundle.id
    )


# -- pki -------------------------------------------------------------------------------------


def prepare_pki(data: PhaseData) -> None:
    if data.dry_run:
        return  # planning never writes the state; the apply generates what is missing
    spec = spec_of(data, "pki")
    state = state_of(data)
    with state.lock("berth apply (pki)"):
        ensure(spec, state)


def pki_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    spec = spec_of(data, "pki")
    files = files_for_host(spec, state_of(data), host.name)
    return (
        Directory(layout.ETC),
        Directory(layout.PKI, mode=0o700),
        Directory(layout.KUBECONFIGS, mode=0o700),
        *(StateFile(f.remote_path, f.source, f.mode) for f in files),
    )


def _pki_ids(data: PhaseData, host: HostTarget) -> tuple[str, ...]:
    spec = spec_of(data, "pki")
    return tuple(f"file:{f.remote_path}" for f in files_for_host(spec, state_of(data), host.name))


# -- datastore -------------------------------------------------------------------------------


def datastore_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    """SQLite's directory; with etcd (installed by the etcd phase) the directory still exists:
    the API server's unit names it in ReadWritePaths, which systemd needs to exist."""
    return (Directory(layout.DATASTORE_DIR, mode=0o700),)


# -- control plane ---------------------------------------------------------------------------


def apiserver_config(spec: ClusterSpec, host: HostTarget) -> dict[str, Any]:
    config: dict[str, Any] = {
        "bindAddress": "0.0.0.0",  # noqa: S104 - the API server serves the whole cluster
        "port": spec.api_port,
        "advertiseAddress": host.address,
        "tls": {
            "certFile": f"{layout.PKI}/apiserver.crt",
            "keyFile": f"{layout.PKI}/apiserver.key",
            "clientCAFile": f"{layout.PKI}/ca.crt",
        },
        "datastore": ha.apiserver_datastore_for(spec, host),
        "serviceCIDR": str(spec.spec.network.service_cidr),
        "agentClient": {
            "certFile": f"{layout.PKI}/apiserver-agent-client.crt",
            "keyFile": f"{layout.PKI}/apiserver-agent-client.key",
        },
        # Pod Security Admission's cluster defaults (berth.apiserver.podsecurity).
        "podSecurity": spec.spec.pod_security.model_dump(by_alias=True, mode="json"),
        # DefaultTolerationSeconds admission (berth.apiserver.tolerations).
        "defaultTolerationSeconds": {
            "notReady": spec.spec.pod_eviction_timeout,
            "unreachable": spec.spec.pod_eviction_timeout,
        },
        # Events expire this long after their last write (berth.apiserver.config).
        "eventTTL": spec.spec.event_ttl,
    }
    # Service-account tokens: signed with the PKI's sa.key, checked with sa.pub.
    config["serviceAccountSigningKeyFile"] = f"{layout.PKI}/sa.key"
    config["serviceAccountKeyFile"] = f"{layout.PKI}/sa.pub"
    config["serviceAccountIssuer"] = (
        f"https://kubernetes.default.svc.{spec.spec.network.cluster_domain}"
    )
    if spec.spec.secrets_encryption:
        config["secretsEncryptionKeyFile"] = f"{layout.PKI}/encryption-key"
    return config


def _context(data: PhaseData, host: HostTarget, **extra: Any) -> dict[str, Any]:
    return {"cluster": data.inventory.cluster, "host": host.name, "site": layout.SITE, **extra}


def control_plane_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    spec = spec_of(data, "control-plane")
    network = spec.spec.network
    credentials = _pki_ids(data, host)
    config = f"file:{layout.APISERVER_CONFIG}"
    return (
        File(layout.APISERVER_CONFIG, _yaml(apiserver_config(spec, host)), mode=0o600),
        _unit(
            layout.APISERVER,
            _context(
                data, host, config=layout.APISERVER_CONFIG, datastore_dir=layout.DATASTORE_DIR
            ),
        ),
        _unit(
            layout.CONTROLLER_MANAGER,
            _context(
                data,
                host,
                kubeconfig=ha.kubeconfig_path(spec, "controller-manager.conf"),
                pod_cidr=str(network.pod_cidr),
                node_cidr_mask_size=network.node_cidr_mask_size,
                pki=layout.PKI,
                pod_eviction_timeout=spec.spec.pod_eviction_timeout,
                controller_manager_metrics_port=layout.CONTROLLER_MANAGER_METRICS_PORT,
                load_balancer_pool=",".join(network.load_balancer_pool),
            ),
        ),
        _unit(
            layout.SCHEDULER,
            _context(
                data,
                host,
                kubeconfig=ha.kubeconfig_path(spec, "scheduler.conf"),
                scheduler_metrics_port=layout.SCHEDULER_METRICS_PORT,
            ),
        ),
        # the three start side by side (one systemctl; the others retry until the API answers)
        ServicesStarted((layout.APISERVER, layout.CONTROLLER_MANAGER, layout.SCHEDULER)),
        Service(layout.APISERVER, restart_on=(config, CURRENT_ID, *credentials)),
        Service(layout.CONTROLLER_MANAGER, restart_on=(CURRENT_ID, *credentials)),
        Service(layout.SCHEDULER, restart_on=(CURRENT_ID, *credentials)),
        *ha.vip_ops(data, host),
    )


# -- agents ----------------------------------------------------------------------------------


def _runc(data: PhaseData) -> bool:
    return spec_of(data, "agents").spec.runtime == "runc"


def agent_facts(data: PhaseData, host: HostTarget) -> tuple[Fact[Any], ...]:
    if _runc(data):
        # the host's release picks the .debs of runc, the CNI plugins and nftables
        return (Capacity(), Packages(), Machine(), OsRelease(), PythonVersion())
    return (Capacity(),)


def agent_config(spec: ClusterSpec, host: HostTarget, capacity: HostCapacity) -> dict[str, Any]:
    """The agent's config. Labels and taints are not in it: they are patched onto the Node by
    the ``nodes`` phase, so changing them never restarts the agent.

    ``runtime: runc`` runs real containers: the runtime's state and runc root, and the cluster
    network the agent keeps on the node (host-gw routes to the other nodes' pod blocks, the
    nftables service proxy, the nameserver of ClusterFirst pods)."""
    node = {
        "name": host.name,
        "address": host.address,
        "capacity": {
            "cpu": str(capacity.cpus),
            "memory": f"{capacity.memory_kib}Ki",
            "pods": "110",
        },
    }
    config: dict[str, Any] = {
        "kubeconfig": ha.kubeconfig_path(spec, "agent.conf"),
        "runtime": spec.spec.runtime,
        "nodes": [node],
        "server": {
            "address": host.address,
            "port": layout.AGENT_PORT,
            "certFile": f"{layout.PKI}/agent-serving.crt",
            "keyFile": f"{layout.PKI}/agent-serving.key",
            "clientCAFile": f"{layout.PKI}/ca.crt",
        },
    }
    network = spec.spec.network
    # every node runs the cluster DNS (berth-dns.service), which reads these two
    config["network"] = {
        "clusterDNS": str(network.cluster_dns),
        "clusterDomain": str(network.cluster_domain),
    }
    if spec.spec.runtime == "runc":
        config["runc"] = {
            "stateDir": layout.RUNTIME_STATE,
            "runcRoot": layout.RUNC_ROOT,
            "volumesDir": layout.LOCAL_VOLUMES,
            **registry_settings(spec),
        }
        config["network"] = {
            "clusterCIDR": str(network.pod_cidr),
            "serviceCIDR": str(network.service_cidr),
            # NetworkPolicy enforcement reads every pod: the cluster network's identity
            "policyKubeconfig": ha.kubeconfig_path(spec, "proxy.conf"),
            **config["network"],
        }
        if network.load_balancer_pool:
            config["network"]["loadBalancerPool"] = list(network.load_balancer_pool)
    return config


def registry_settings(spec: ClusterSpec) -> dict[str, Any]:
    """``spec.registries`` as the agent reads them: the plain-HTTP ones, and the PEM CA bundle
    of each private-CA one (inlined: the agent config changes, and the agent restarts, when a
    bundle does; the spec loader already checked every bundle)."""
    registries = spec.spec.registries
    settings: dict[str, Any] = {}
    insecure = [r.host.lower() for r in registries if r.insecure]
    if insecure:
        settings["insecureRegistries"] = insecure
    bundles = {}
    for registry in registries:
        path = spec.resolve_path(registry.ca_file)
        if path is not None:
            bundles[registry.host.lower()] = path.read_text(encoding="ascii")
    if bundles:
        settings["registryCAs"] = bundles
    return settings


def node_software_ops(data: PhaseData, host: HostTarget) -> tuple[Operation, ...]:
    """runc, the CNI plugins and nftables (with the dependencies the host lacks) shipped as
    .debs, and the verify smoke image in the node's image store. Nothing for simulated nodes."""
    if not _runc(data):
        return ()
    facts = data.host_facts(host.name, agent_facts(data, host))
    machine = facts.get(Machine()).arch
    installed = facts.get(Packages())
    # the packages of the host's own release (a cluster may mix Debian 12 and 13)
    cache = DebCache(
        data.cache_dir / "debs", release=host_platform(data, host.name, "agents").codename
    )
    wanted = cache.resolve(layout.NODE_PACKAGES, installed)
    debs = cache.fetch(wanted, arch=DEB_ARCH.get(machine, machine))
    image = smoke_image(data.cache_dir)
    mask, stopped = stock_haproxy_ops()
    return (
        mask,
        DebPackages(debs, record=footprint.PACKAGES),
        stopped,
        ImageLoaded(image.reference, image.archive, image.ref_name),
    )


def node_kernel_ops(spec: ClusterSpec) -> tuple[Operation, ...]:
    """What a runc node needs from its kernel (:data:`layout.NODE_MODULES`,
    :data:`layout.NODE_SYSCTLS`), now and persisted for every boot: a real host (a VM) that
    reboots has none of it until the agent would set it, and a container lab never showed it."""
    if spec.spec.runtime != "runc":
        return ()
    return (
        *(KernelModule(name, provides=path) for name, path in layout.NODE_MODULES),
        *(Sysctl(key, value) for key, value in layout.NODE_SYSCTLS),
    )


def stock_haproxy_ops() -> tuple[Symlink, Service]:
    """Debian's ``haproxy.service`` masked, before the package is installed (its postinst would
    enable and start it), and stopped, after (a node set up before the mask runs it)."""
    return (
        Symlink(f"{layout.UNIT_DIR}/{layout.STOCK_HAPROXY}", "/dev/null"),
        Service(layout.STOCK_HAPROXY, enabled=None, running=False),
    )


def agent_ops(data: PhaseData, host: HostTarget) -> Sequence[Operation]:
    spec = spec_of(data, "agents")
    config = f"file:{layout.AGENT_CONFIG}"
    capacity = data.host_facts(host.name, (Capacity(),)).get(Capacity())
    ingress = ingress_ops(data, host)
    return (
        *node_kernel_ops(spec),
        *node_software_ops(data, host),
        File(layout.AGENT_CONFIG, _yaml(agent_config(spec, host, capacity)), mode=0o600),
        _unit(layout.AGENT, _context(data, host, config=layout.AGENT_CONFIG)),
        # the node-local cluster DNS reads the agent's config (kubeconfig, clusterDNS/domain)
        _unit(
            layout.DNS,
            _context(
                data,
                host,
                config=layout.AGENT_CONFIG,
                cluster_dns=str(spec.spec.network.cluster_dns),
                device=layout.DNS_DEVICE,
            ),
        ),
        *ingress[:1],
        # a new node's services start side by side, with one systemctl
        ServicesStarted((layout.AGENT, layout.DNS, *((layout.INGRESS,) if ingress else ()))),
        Service(layout.AGENT, restart_on=(config, CURRENT_ID, *_pki_ids(data, host))),
        Service(layout.DNS, restart_on=(config, CURRENT_ID, *_pki_ids(data, host))),
        *ingress[1:],
    )


def ingress_ops(data: PhaseData, host: HostTarget) -> tuple[Operation, ...]:
    """``berth-ingress`` on a runc node (HAProxy comes with the node packages), with its own
    identity's kubeconfig (see berth.apiserver.component_roles.ingress_rules): its unit file,
    then its service (nothing on other nodes)."""
    if not _runc(data):
        return ()
    spec = spec_of(data, "agents")
    kubeconfig = ha.kubeconfig_path(spec, layout.INGRESS_KUBECONFIG)
    return (
        _unit(
            layout.INGRESS,
            _context(data, host, kubeconfig=kubeconfig, state_dir=layout.INGRESS_STATE),
        ),
        Service(layout.INGRESS, restart_on=(CURRENT_ID, *_pki_ids(data, host))),
    )


def is_control_plane(host: HostTarget) -> bool:
    return "control-plane" in host.roles
