"""The cluster spec: a versioned YAML document (``berth.dev/v1alpha1``, ``kind: Cluster``).

The pydantic models below are the single source of truth for the format: field validation, the
JSON Schema printed by ``berth schema`` and the Python API other areas read. YAML keys are
camelCase (``identityFile``, ``podCIDR``); Python attributes are snake_case. Every model is frozen
and rejects unknown keys. Cross-field rules (unique names, CIDR overlaps, datastore quorum ...)
live in :mod:`provisioner.spec.checks`, because they need the whole document.

Load a spec with :func:`provisioner.spec.load_spec`, never with ``ClusterSpec.model_validate``
directly: only the loader reports every problem with its file, line and column.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

import berth
from berth.api.loadbalancers import PoolError, parse_block
from provisioner.spec import syntax

API_VERSION = "berth.dev/v1alpha1"
KIND = "Cluster"

Role = Literal["control-plane", "worker"]
CONTROL_PLANE: Role = "control-plane"
WORKER: Role = "worker"
TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
HostKeyPolicy = Literal["strict", "accept-new"]
DatastoreType = Literal["sqlite", "etcd"]
Runtime = Literal["runc", "simulated"]
PodSecurityLevel = Literal["privileged", "baseline", "restricted"]


def _checked(check: Callable[[str], str | None], hint: str | None = None) -> AfterValidator:
    """An AfterValidator that raises a berth-typed error (no "Value error," prefix) with a hint."""

    def validate(value: str) -> str:
        problem = check(value)
        if problem:
            raise PydanticCustomError("berth", problem, {"hint": hint} if hint else {})
        return value

    return AfterValidator(validate)


def _normalized_ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise PydanticCustomError(
            "berth",
            "is not a valid IP address",
            {"hint": "write an IPv4 or IPv6 address, e.g. 10.231.0.11"},
        ) from None


def _normalized_cidr(value: str) -> str:
    if "/" not in value:
        raise PydanticCustomError(
            "berth",
            "is not a CIDR: the prefix length is missing",
            {"hint": f"write an address block with its prefix length, e.g. {value}/16"},
        )
    try:
        return str(ipaddress.ip_network(value))
    except ValueError as error:
        try:
            network = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise PydanticCustomError(
                "berth", "is not a valid CIDR", {"hint": "write e.g. 10.244.0.0/16"}
            ) from None
        if "host bits set" in str(error):
            raise PydanticCustomError(
                "berth",
                "has host bits set",
                {"hint": f"did you mean {network}?"},
            ) from None
        raise


def _pool_entry(value: str) -> str:
    try:
        return str(parse_block(value))
    except PoolError as error:
        raise PydanticCustomError(
            "berth",
            "is neither an IPv4 CIDR nor an address range",
            {"hint": f"write e.g. 10.231.0.240/28 or 10.231.0.240-10.231.0.250 ({error})"},
        ) from None


IpAddress = Annotated[str, AfterValidator(_normalized_ip)]
"""An IPv4 or IPv6 address, stored in its canonical text form."""
Cidr = Annotated[str, AfterValidator(_normalized_cidr)]
LoadBalancerBlock = Annotated[str, AfterValidator(_pool_entry)]
"""A load-balancer pool entry (CIDR or ``first-last``), stored as ``first-last``."""
"""An address block such as ``10.244.0.0/16``, stored in canonical text form."""
DnsLabel = Annotated[str, _checked(syntax.dns1123_label, "e.g. 'demo' or 'prod-eu1'")]
NodeName = Annotated[str, _checked(syntax.dns1123_subdomain, "e.g. 'n1' or 'cp1.lab'")]
Address = Annotated[
    str, _checked(syntax.hostname_or_ip, "write an IP address or a DNS name, e.g. api.example.com")
]


def _interface_name(value: str) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", value) and value not in (".", ".."):
        return None
    return "is not a network interface name (1-15 letters, digits, '.', '-', '_')"


InterfaceName = Annotated[str, _checked(_interface_name, "e.g. eth0 or ens3; see `ip link`")]
RegistryHost = Annotated[
    str,
    _checked(syntax.registry_host, "as image references name it, e.g. registry.example.com:5000"),
]
LabelKey = Annotated[str, _checked(syntax.qualified_name, "e.g. 'gpu' or 'example.com/zone'")]
LabelValue = Annotated[str, _checked(syntax.label_value, "e.g. 'true' or 'eu-west-1a'")]
Version = Annotated[
    str,
    _checked(
        lambda v: None if syntax.SEMVER.match(v) else "is not a release version",
        "write MAJOR.MINOR.PATCH, e.g. 0.1.0",
    ),
]
Port = Annotated[int, Field(ge=1, le=65535)]
PodSecurityVersion = Annotated[
    str,
    _checked(
        lambda v: (
            None
            if v == "latest" or re.fullmatch(r"v1\.(0|[1-9][0-9]*)", v)
            else ("is not a Pod Security version")
        ),
        "write latest or v1.MINOR, e.g. v1.32",
    ),
]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
    )


class Metadata(_Model):
    """Names the cluster; the name also names its state directory."""

    name: DnsLabel


class JumpHostSettings(_Model):
    """A bastion every SSH connection goes through first."""

    address: Address
    port: Port = 22
    user: str | None = Field(None, description="defaults to ssh.user")
    identity_file: str | None = Field(None, description="defaults to ssh.identityFile")


class SshSettings(_Model):
    """How berth reaches every host (each host may override port, user, identityFile)."""

    user: str = "root"
    port: Port = 22
    identity_file: str | None = Field(
        None, description="private key; relative paths resolve against the spec file's directory"
    )
    known_hosts_file: str | None = Field(
        None,
        description="OpenSSH known_hosts with pinned host keys; defaults to the cluster state's",
    )
    host_key_policy: HostKeyPolicy = Field(
        "strict",
        description="strict: only pinned keys; accept-new: pin a key on first contact",
    )
    connect_timeout: float = Field(10.0, gt=0, description="seconds")
    retries: int = Field(3, ge=0)
    jump_host: JumpHostSettings | None = None


class HostSshOverrides(_Model):
    """Per-host SSH settings that differ from ``spec.ssh``."""

    address: Address | None = Field(
        None,
        description="address to SSH to when it differs from the host address (NAT port forward)",
    )
    port: Port | None = None
    user: str | None = None
    identity_file: str | None = None


class Taint(_Model):
    """A node taint, as in Kubernetes."""

    key: LabelKey
    value: LabelValue = ""
    effect: TaintEffect


class Host(_Model):
    """One machine of the cluster."""

    name: NodeName
    address: IpAddress
    roles: list[Role] = Field(min_length=1)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict)
    taints: list[Taint] = Field(default_factory=list)
    ssh: HostSshOverrides = Field(default_factory=HostSshOverrides)

    @field_validator("roles")
    @classmethod
    def _roles_unique(cls, roles: list[Role]) -> list[Role]:
        if len(set(roles)) != len(roles):
            raise PydanticCustomError(
                "berth", "lists a role twice", {"hint": "write each role once"}
            )
        return roles

    @property
    def is_control_plane(self) -> bool:
        return CONTROL_PLANE in self.roles

    @property
    def is_worker(self) -> bool:
        return WORKER in self.roles

    @property
    def ip(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(self.address)


class Datastore(_Model):
    """Where the API server keeps its objects."""

    type: DatastoreType = Field(
        "sqlite",
        description="sqlite: embedded, one control-plane host; etcd: HA, odd number of them",
    )


class Network(_Model):
    """Cluster address plan."""

    pod_cidr: Cidr = Field("10.244.0.0/16", alias="podCIDR")
    service_cidr: Cidr = Field("10.96.0.0/12", alias="serviceCIDR")
    node_cidr_mask_size: int = Field(
        24,
        alias="nodeCIDRMaskSize",
        ge=1,
        le=128,
        description="prefix length of each node's pod block",
    )
    cluster_dns: IpAddress = Field("10.96.0.10", alias="clusterDNS")
    cluster_domain: NodeName = "cluster.local"
    load_balancer_pool: list[LoadBalancerBlock] = Field(
        default_factory=list,
        alias="loadBalancerPool",
        description="addresses LoadBalancer Services get (IPv4 CIDRs or ranges first-last), "
        "free addresses of the hosts' own subnet: one node holds each and answers ARP for it. "
        "Empty: LoadBalancer Services get the nodes' addresses",
    )

    @property
    def pod_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.pod_cidr)

    @property
    def service_network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        return ipaddress.ip_network(self.service_cidr)


class ApiServer(_Model):
    """How clients reach the API server."""

    endpoint: Address | None = Field(
        None,
        description="address clients dial (VIP, load balancer, DNS name); "
        "defaults to the first control-plane host's address",
    )
    port: Port = 6443
    extra_sans: list[Address] = Field(default_factory=list, alias="extraSANs")
    vip: IpAddress | None = Field(
        None,
        description="a virtual IPv4 address one control-plane host holds (elected through the "
        "datastore, announced by gratuitous ARP, moved within seconds when its holder fails); "
        "kubeconfigs dial it. etcd datastore only; a free address of the hosts' subnet",
    )
    vip_interface: InterfaceName | None = Field(
        None,
        alias="vipInterface",
        description="network interface the VIP is added to; defaults to the interface whose "
        "subnet contains the VIP on each control-plane host",
    )


class Certificates(_Model):
    """Lifetimes of the cluster PKI."""

    ca_validity_days: int = Field(3650, ge=1)
    leaf_validity_days: int = Field(365, ge=1)
    renew_before_days: int = Field(
        30, ge=0, description="leaves that expire within this many days are re-issued"
    )


class Upgrade(_Model):
    """Rolling upgrade strategy."""

    max_unavailable: int = Field(1, ge=1, description="hosts upgraded at once (workers)")
    drain_timeout_seconds: int = Field(120, ge=0)


class Registry(_Model):
    """A container registry the nodes pull images from, and how they trust it. Registries not
    listed are spoken to over HTTPS, verified against the host's system CAs."""

    host: RegistryHost = Field(description="host[:port], exactly as image references name it")
    insecure: bool = Field(
        False,
        description="plain HTTP without TLS: only for a registry on a network you trust",
    )
    ca_file: str | None = Field(
        None,
        description="PEM CA bundle the nodes trust for this registry's HTTPS certificate (on "
        "top of the system CAs); relative paths resolve against the spec file's directory",
    )

    @model_validator(mode="after")
    def _tls_or_not(self) -> Registry:
        if self.insecure and self.ca_file:
            raise PydanticCustomError(
                "berth",
                "sets both insecure and caFile",
                {"hint": "an insecure registry speaks plain HTTP; drop insecure to use caFile"},
            )
        return self


class PodSecurityExemptions(_Model):
    """Requests Pod Security Admission never checks."""

    usernames: list[str] = Field(default_factory=list, description="authenticated user names")
    runtime_classes: list[str] = Field(default_factory=list, description="runtimeClassName values")
    namespaces: list[DnsLabel] = Field(
        default_factory=lambda: ["kube-system"],
        description="namespaces whose pods are never checked (berth's default: kube-system)",
    )


class PodSecurity(_Model):
    """The cluster-wide Pod Security Standards level of each mode, for namespaces without
    their own ``pod-security.kubernetes.io/<mode>`` label (as Kubernetes' PodSecurity admission
    configuration). The default refuses what takes a node (hostPath, privileged, host
    namespaces, added capabilities ...) and warns about the rest of ``restricted``."""

    enforce: PodSecurityLevel = Field("baseline", description="pods violating it are refused")
    enforce_version: PodSecurityVersion = "latest"
    audit: PodSecurityLevel = Field(
        "restricted", description="violations are written to the API server's audit log"
    )
    audit_version: PodSecurityVersion = "latest"
    warn: PodSecurityLevel = Field(
        "restricted", description="violations come back to the client as warnings"
    )
    warn_version: PodSecurityVersion = "latest"
    exemptions: PodSecurityExemptions = Field(default_factory=PodSecurityExemptions)


class ClusterSpecBody(_Model):
    """The ``spec`` section of a Cluster document."""

    version: Version | None = Field(
        None, description="berth release to install on hosts; defaults to the operator's"
    )
    ssh: SshSettings = Field(default_factory=SshSettings)
    hosts: list[Host] = Field(min_length=1)
    datastore: Datastore = Field(default_factory=Datastore)
    network: Network = Field(default_factory=Network)
    api_server: ApiServer = Field(default_factory=ApiServer)
    certificates: Certificates = Field(default_factory=Certificates)
    upgrade: Upgrade = Field(default_factory=Upgrade)
    secrets_encryption: bool = Field(True, description="encrypt Secrets at rest in the datastore")
    pod_security: PodSecurity = Field(default_factory=PodSecurity)
    pod_eviction_timeout: int = Field(
        300,
        ge=0,
        le=86400,
        description="seconds a pod stays bound to a node that stopped being ready or reachable "
        "before it is evicted and replaced elsewhere (Kubernetes' default not-ready/unreachable "
        "tolerations, 300); the node is noticed as down 40 s after its last heartbeat first",
    )
    event_ttl: int = Field(
        3600,
        alias="eventTTL",
        ge=1,
        le=366 * 24 * 3600,
        description="seconds an Event is kept after its last write, then deleted by the "
        "datastore (kube-apiserver's --event-ttl, default 1 hour); shorter keeps a busy "
        "cluster's datastore smaller, longer keeps more history for `kubectl get events`",
    )
    registries: list[Registry] = Field(
        default_factory=list,
        description="registries needing a CA bundle or plain HTTP (runc nodes)",
    )
    runtime: Runtime = Field(
        "runc",
        description="runc: real containers (runc, CNI bridge, nftables service proxy shipped to "
        "every host); simulated: pods only pretend to run (scale tests)",
    )


@dataclass(frozen=True)
class JumpHostTarget:
    """A resolved jump host: every default filled in, paths absolute."""

    address: str
    port: int
    user: str
    identity_file: Path | None


@dataclass(frozen=True)
class HostSsh:
    """Everything needed to reach one host: spec.ssh merged with the host's overrides."""

    name: str
    address: str
    port: int
    user: str
    identity_file: Path | None
    known_hosts_file: Path | None
    host_key_policy: HostKeyPolicy
    connect_timeout: float
    retries: int
    jump: JumpHostTarget | None


class ClusterSpec(_Model):
    """A whole Cluster document, with accessors the other areas use."""

    model_config = ConfigDict(title="berth Cluster")

    api_version: Literal["berth.dev/v1alpha1"]
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: ClusterSpecBody

    _source: Path | None = PrivateAttr(default=None)

    # -- where it came from -------------------------------------------------------------------

    @property
    def source_path(self) -> Path | None:
        """The file the spec was loaded from (``None`` when built in memory)."""
        return self._source

    def with_source(self, path: Path | None) -> ClusterSpec:
        """Record the file this spec came from (relative paths resolve against its directory)."""
        self._source = path.resolve() if path else None
        return self

    @property
    def base_dir(self) -> Path:
        return self._source.parent if self._source else Path.cwd()

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the spec, made absolute against the spec file's directory (``~`` works)."""
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    # -- hosts ----------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def hosts(self) -> list[Host]:
        return self.spec.hosts

    def host(self, name: str) -> Host:
        """The host called ``name`` (``KeyError`` if there is none)."""
        for host in self.spec.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def control_plane_hosts(self) -> list[Host]:
        return [h for h in self.spec.hosts if h.is_control_plane]

    @property
    def workers(self) -> list[Host]:
        """Hosts that run workloads (the worker role; a control-plane host may have it too)."""
        return [h for h in self.spec.hosts if h.is_worker]

    @property
    def berth_version(self) -> str:
        """The berth release to install on hosts: ``spec.version``, or the operator's own."""
        # berth.__version__ searches the installed distributions (importlib.metadata): looked
        # up here, when asked, not when the spec module is imported by every command
        return self.spec.version or berth.__version__

    @property
    def uses_etcd(self) -> bool:
        return self.spec.datastore.type == "etcd"

    # -- API server -----------------------------------------------------------------------------

    @property
    def api_endpoint(self) -> str:
        """The address clients dial: ``apiServer.endpoint``, else ``apiServer.vip``, else the
        first control-plane address."""
        api = self.spec.api_server
        return api.endpoint or api.vip or self.control_plane_hosts[0].address

    @property
    def api_vip(self) -> str | None:
        """The virtual IP the control-plane hosts elect a holder for (``None``: no VIP)."""
        return self.spec.api_server.vip

    @property
    def api_port(self) -> int:
        return self.spec.api_server.port

    @property
    def api_server_url(self) -> str:
        """``https://ENDPOINT:PORT`` (IPv6 addresses bracketed)."""
        return https_url(self.api_endpoint, self.api_port)

    @property
    def kubernetes_service_ip(self) -> str:
        """ClusterIP of the ``kubernetes`` Service: the first address of the service CIDR."""
        return str(self.spec.network.service_network.network_address + 1)

    @property
    def cluster_dns(self) -> str:
        return self.spec.network.cluster_dns

    # -- SSH ------------------------------------------------------------------------------------

    @property
    def identity_file(self) -> Path | None:
        return self.resolve_path(self.spec.ssh.identity_file)

    @property
    def known_hosts_file(self) -> Path | None:
        return self.resolve_path(self.spec.ssh.known_hosts_file)

    def ssh_for(self, host_name: str, *, default_known_hosts: Path | None = None) -> HostSsh:
        """The effective SSH settings of one host; ``default_known_hosts`` (usually the cluster
        state's pinned keys) is used when the spec names no known_hosts file."""
        host = self.host(host_name)
        ssh = self.spec.ssh
        over = host.ssh
        jump = None
        if ssh.jump_host is not None:
            jh = ssh.jump_host
            jump = JumpHostTarget(
                address=jh.address,
                port=jh.port,
                user=jh.user or ssh.user,
                identity_file=self.resolve_path(jh.identity_file or ssh.identity_file),
            )
        return HostSsh(
            name=host.name,
            address=over.address or host.address,
            port=over.port or ssh.port,
            user=over.user or ssh.user,
            identity_file=self.resolve_path(over.identity_file or ssh.identity_file),
            known_hosts_file=self.known_hosts_file or default_known_hosts,
            host_key_policy=ssh.host_key_policy,
            connect_timeout=ssh.connect_timeout,
            retries=ssh.retries,
            jump=jump,
        )


def https_url(host: str, port: int) -> str:
    """``https://host:port`` with IPv6 literals bracketed."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            host = f"[{host}]"
    except ValueError:
        pass
    return f"https://{host}:{port}"
