"""Where berth puts things on a host: one place, so install, verify and destroy agree."""

from __future__ import annotations

OPT = "/opt/berth"
VERSIONS = f"{OPT}/versions"
CURRENT = f"{OPT}/current"
SITE = f"{CURRENT}/site"
"""``PYTHONPATH`` of every berth unit: the active bundle's site-packages."""
INCOMING = f"{OPT}/incoming"
ETC = "/etc/berth"
PKI = f"{ETC}/pki"
KUBECONFIGS = f"{ETC}/kubeconfigs"
VAR = "/var/lib/berth"
MARKER = f"{VAR}/cluster"
"""Names the cluster a host belongs to (preflight treats marked hosts as berth's own)."""
DATASTORE_DIR = f"{VAR}/datastore"
AGENT_DIR = f"{VAR}/agent"
RUNTIME_STATE = f"{VAR}/runtime"
"""The runc node runtime's state: image store, sandboxes, CNI results (``berth.runtime``)."""
LOCAL_VOLUMES = f"{VAR}/volumes"
"""The default StorageClass's node-local volumes (``berth.agent.volumes``; kept by
``destroy --keep-data`` with the rest of VAR)."""
RUN = "/run/berth"
RUNC_ROOT = f"{RUN}/runc"
INCOMING_IMAGES = f"{VAR}/incoming-images"
NODE_PACKAGES = ("runc", "containernetworking-plugins", "nftables", "iptables", "haproxy")
"""What a runc node needs from Debian (iptables: the CNI portmap plugin for hostPort; haproxy:
the ingress data plane)."""
NODE_MODULES = (("br_netfilter", "/proc/sys/net/bridge"),)
"""Kernel modules a runc node needs, loaded by the agents phase and at every boot, each with the
path that shows it is in the kernel (built in, or a container's host has it): br_netfilter
hands bridged pod traffic to nftables (NetworkPolicy between two pods of one node)."""
NODE_SYSCTLS = (("net.ipv4.ip_forward", "1"), ("net.bridge.bridge-nf-call-iptables", "1"))
"""Sysctls a runc node needs, set by the agents phase and at every boot (systemd-sysctl, after
systemd-modules-load): a node routes pod and Service traffic between its pod bridge and the
other nodes; bridged IPv4 goes through the netfilter hooks (needs br_netfilter above).
``destroy`` removes the persisted files; the running values stay until the next boot."""
APISERVER_CONFIG = f"{ETC}/apiserver.yaml"
AGENT_CONFIG = f"{ETC}/agent.yaml"
UNIT_DIR = "/etc/systemd/system"

APISERVER = "berth-apiserver.service"
CONTROLLER_MANAGER = "berth-controller-manager.service"
SCHEDULER = "berth-scheduler.service"
AGENT = "berth-agent.service"
DNS = "berth-dns.service"
"""The node-local cluster DNS (:mod:`berth.dns`), on every node."""
DNS_DEVICE = "lo"
"""Where the cluster DNS address lives on every node: the loopback interface (a dummy interface,
as NodeLocal DNSCache uses, needs a kernel module lab hosts cannot load)."""
INGRESS = "berth-ingress.service"
"""The ingress controller and its HAProxy (:mod:`berth.ingress`), on every runc node (ports 80
and 443 of the host network; it serves traffic only where containers run)."""
STOCK_HAPROXY = "haproxy.service"
"""Debian's own HAProxy unit: masked before the package lands and stopped, so the only HAProxy
on a node is berth-ingress's child (the stock one would run Debian's config, enabled at boot)."""
INGRESS_STATE = f"{RUN}/ingress"
"""Its generations of HAProxy config, TLS certificates and keys (tmpfs, 0700, the unit's
RuntimeDirectory: keys never reach a disk)."""
INGRESS_KUBECONFIG = "ingress.conf"
CONTROL_PLANE_UNITS = (APISERVER, CONTROLLER_MANAGER, SCHEDULER)
NODE_UNITS = (AGENT, DNS)
ALL_UNITS = (*CONTROL_PLANE_UNITS, *NODE_UNITS)

API_PORT = 6443
AGENT_PORT = 10250
# Prometheus /metrics of the scheduler and the controller manager, on 127.0.0.1 only (the
# ports of kube's former insecure endpoints; nothing else of theirs listens)
SCHEDULER_METRICS_PORT = 10251
CONTROLLER_MANAGER_METRICS_PORT = 10252
ETCD_PORTS = (2379, 2380)

ETCD_UNIT = "berth-etcd.service"
"""The etcd member's unit (:mod:`provisioner.phases.etcd`); its files live under ETC and VAR."""
LB_UNIT = "berth-lb.service"
"""The node's API load balancer in an etcd (HA) cluster (:mod:`provisioner.phases.cluster.ha`)."""
VIP_UNIT = "berth-vip.service"
"""The API VIP's holder on each control-plane host when the spec sets ``apiServer.vip``."""
TEARDOWN_UNITS = (*ALL_UNITS, ETCD_UNIT, LB_UNIT, VIP_UNIT, INGRESS)
"""Every unit ``berth destroy`` stops and removes."""

INSTALL_PATHS = (OPT, ETC, RUN)
DATA_PATHS = (VAR,)
"""With the units, everything berth creates on a host (``destroy --keep-data`` keeps DATA_PATHS).
What berth adds outside these (packages, shared paths) is in the host's footprint
(:mod:`provisioner.phases.cluster.footprint`)."""
OWN_PATHS = INSTALL_PATHS + DATA_PATHS


def version_dir(bundle_id: str) -> str:
    return f"{VERSIONS}/{bundle_id}"


def units_for(roles: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """The units a host with ``roles`` runs (every host is a node)."""
    return (*CONTROL_PLANE_UNITS, *NODE_UNITS) if "control-plane" in roles else NODE_UNITS
