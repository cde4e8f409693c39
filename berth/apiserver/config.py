"""API server configuration: a YAML (or JSON) file, overridable by command-line flags.

Example ``apiserver.yaml``::

    bindAddress: 0.0.0.0
    port: 6443
    advertiseAddress: 10.231.1.11        # what /api and the `kubernetes` endpoints report
    tls:
      certFile: /etc/berth/pki/apiserver.crt
      keyFile: /etc/berth/pki/apiserver.key
      clientCAFile: /etc/berth/pki/ca.crt
    datastore: {type: sqlite, path: /var/lib/berth/state.db}   # or {type: memory}, or:
    # datastore: {type: etcd, endpoints: [https://10.231.1.11:2379, ...],
    #             caFile: etcd-ca.crt, certFile: apiserver-etcd-client.crt, keyFile: ...}
    serviceCIDR: 10.96.0.0/12
    nodePortRange: 30000-32767
    secretsEncryptionKeyFile: /etc/berth/pki/secrets.key      # 32 bytes (raw or base64)
    tokenAuthFile: /etc/berth/tokens.csv                      # optional: token,user,uid,"g1,g2"
    serviceAccountSigningKeyFile: /etc/berth/pki/sa.key       # ES256 key that signs SA tokens
    serviceAccountKeyFile: /etc/berth/pki/sa.pub              # key(s) that verify them (or a list)
    serviceAccountIssuer: https://kubernetes.default.svc.cluster.local   # the tokens' "iss"
    apiAudiences: [https://kubernetes.default.svc.cluster.local]         # default: the issuer
    serviceAccountMaxTokenExpiration: 172800                  # seconds; longer requests shortened
    agentClient:                                              # for pods/log proxying to agents
      certFile: /etc/berth/pki/apiserver-agent-client.crt
      keyFile: /etc/berth/pki/apiserver-agent-client.key
    podSecurity:              # Pod Security Admission defaults (berth.apiserver.podsecurity);
      enforce: baseline       # left out: these secure defaults
      enforceVersion: latest
      audit: restricted
      warn: restricted
      exemptions: {usernames: [], runtimeClasses: [], namespaces: [kube-system]}
    defaultTolerationSeconds: # DefaultTolerationSeconds admission (berth.apiserver.tolerations)
      notReady: 300           # seconds a pod stays on a not-ready / unreachable node
      unreachable: 300
    eventTTL: 1h              # an Event is deleted this long after its last write (or seconds)
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from berth.api.watch import BOOKMARK_INTERVAL
from berth.store.config import DatastoreConfig, DatastoreConfigError

from .podsecurity import SECURE_POD_SECURITY, PodSecurityConfig
from .tolerations import DefaultTolerationSeconds

MEMORY = DatastoreConfig(type="memory")
DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_MAX_TOKEN_EXPIRATION = 48 * 3600
"""Seconds; upstream has no cap by default, a shorter bound limits what a leaked token is worth
(pods' projected tokens are refreshed long before, so nothing depends on longer ones)."""


DEFAULT_EVENT_TTL = 3600
"""Seconds an Event lives after its last write (kube-apiserver's ``--event-ttl`` default)."""
MAX_EVENT_TTL = 366 * 24 * 3600
_DURATION = re.compile(r"(?:(\d{1,7})h)?(?:(\d{1,9})m)?(?:(\d{1,10})s)?")


class ConfigError(Exception):
    """The configuration file or flags are wrong; the message says where and what."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    tls_cert_file: Path
    tls_key_file: Path
    client_ca_file: Path
    bind_address: str = "127.0.0.1"
    port: int = 6443
    advertise_address: str = "127.0.0.1"
    datastore: DatastoreConfig = MEMORY  # see berth.store.config
    service_cidr: str = "10.96.0.0/12"
    node_port_range: tuple[int, int] = (30000, 32767)
    encryption_key_file: Path | None = None
    token_auth_file: Path | None = None
    agent_client_cert_file: Path | None = None
    agent_client_key_file: Path | None = None
    watch_bookmark_interval: float = BOOKMARK_INTERVAL  # informers count on it (SILENCE_LIMIT)
    # Service-account tokens. Without a signing key the server signs with a key it makes at
    # start (tokens then die with the process and other servers refuse them).
    service_account_signing_key_file: Path | None = None
    service_account_key_files: tuple[Path, ...] = ()
    service_account_issuer: str = DEFAULT_ISSUER
    api_audiences: tuple[str, ...] = ()  # empty: the issuer, as upstream
    service_account_max_token_expiration: int = DEFAULT_MAX_TOKEN_EXPIRATION
    pod_security: PodSecurityConfig = SECURE_POD_SECURITY
    default_tolerations: DefaultTolerationSeconds = field(default_factory=DefaultTolerationSeconds)
    event_ttl: int = DEFAULT_EVENT_TTL  # seconds; Events expire this long after their last write
    extra: dict[str, Any] = field(default_factory=dict)


def _path(v: Any, base: Path) -> Path | None:
    if v in (None, ""):
        return None
    p = Path(str(v))
    return p if p.is_absolute() else base / p


def _port_range(v: Any, where: str) -> tuple[int, int]:
    try:
        low, high = (int(x) for x in str(v).split("-", 1))
    except ValueError as exc:
        raise ConfigError(f"{where}: nodePortRange must look like 30000-32767, got {v!r}") from exc
    if not 0 < low <= high < 65536:
        raise ConfigError(f"{where}: nodePortRange {v!r} is not a valid port range")
    return low, high


def _datastore(section: dict[str, Any], base: Path, where: str) -> DatastoreConfig:
    """The ``datastore`` section through :mod:`berth.store.config` (the one parser for every
    backend), file paths resolved against ``base``."""
    resolved = dict(section)
    for key in ("path", "caFile", "certFile", "keyFile"):
        value = resolved.get(key)
        if isinstance(value, str) and value:
            resolved[key] = str(_path(value, base))
    try:
        return DatastoreConfig.from_mapping(resolved)
    except DatastoreConfigError as exc:
        lines = str(exc).splitlines()
        raise ConfigError("\n".join(f"{where}: {line}" for line in lines)) from exc


def load_config(path: Path) -> ServerConfig:
    """Read a config file; relative paths resolve against the file's directory."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the configuration must be a mapping")
    base = path.parent
    tls = data.get("tls") or {}
    ds = data.get("datastore") or {"type": "memory"}
    agent = data.get("agentClient") or {}
    missing = [k for k in ("certFile", "keyFile", "clientCAFile") if not tls.get(k)]
    if missing:
        raise ConfigError(f"{path}: tls.{missing[0]} is required")
    if not isinstance(ds, dict):
        raise ConfigError(f"{path}: datastore must be a mapping")
    datastore = _datastore(ds, base, str(path))
    try:
        pod_security = PodSecurityConfig.from_mapping(data.get("podSecurity", {}))
        default_tolerations = DefaultTolerationSeconds.from_mapping(
            data.get("defaultTolerationSeconds")
        )
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    cert, key, ca = (_path(tls[k], base) for k in ("certFile", "keyFile", "clientCAFile"))
    assert cert is not None
    assert key is not None
    assert ca is not None
    return ServerConfig(
        tls_cert_file=cert,
        tls_key_file=key,
        client_ca_file=ca,
        bind_address=str(data.get("bindAddress", "127.0.0.1")),
        port=int(data.get("port", 6443)),
        advertise_address=str(data.get("advertiseAddress", data.get("bindAddress", "127.0.0.1"))),
        datastore=datastore,
        service_cidr=str(data.get("serviceCIDR", "10.96.0.0/12")),
        node_port_range=_port_range(data.get("nodePortRange", "30000-32767"), str(path)),
        encryption_key_file=_path(data.get("secretsEncryptionKeyFile"), base),
        token_auth_file=_path(data.get("tokenAuthFile"), base),
        agent_client_cert_file=_path(agent.get("certFile"), base),
        agent_client_key_file=_path(agent.get("keyFile"), base),
        watch_bookmark_interval=float(data.get("watchBookmarkInterval", BOOKMARK_INTERVAL)),
        service_account_signing_key_file=_path(data.get("serviceAccountSigningKeyFile"), base),
        service_account_key_files=_paths(data.get("serviceAccountKeyFile"), base),
        service_account_issuer=str(data.get("serviceAccountIssuer") or DEFAULT_ISSUER),
        api_audiences=tuple(str(a) for a in _list(data.get("apiAudiences"))),
        service_account_max_token_expiration=_max_expiration(
            data.get("serviceAccountMaxTokenExpiration"), str(path)
        ),
        pod_security=pod_security,
        default_tolerations=default_tolerations,
        event_ttl=parse_ttl(data.get("eventTTL", DEFAULT_EVENT_TTL), f"{path}: eventTTL"),
    )


def parse_ttl(v: Any, where: str) -> int:
    """Whole seconds from a number of seconds or a duration as Go writes it (``1h``, ``30m``,
    ``1h0m0s``, ``90s``): between 1 s and a year."""
    seconds = -1
    if isinstance(v, int) and not isinstance(v, bool):
        seconds = v
    elif isinstance(v, str) and 0 < len(v) <= 32:
        if v.isdigit():
            seconds = int(v)
        elif (m := _DURATION.fullmatch(v)) is not None and any(m.groups()):
            h, mi, s = (int(g or 0) for g in m.groups())
            seconds = h * 3600 + mi * 60 + s
    if not 1 <= seconds <= MAX_EVENT_TTL:
        raise ConfigError(
            f"{where}: must be seconds or a duration such as 1h, 30m or 90s, between 1s and"
            f" {MAX_EVENT_TTL}s, got {v!r}"
        )
    return seconds


def _list(v: Any) -> list[Any]:
    if v in (None, ""):
        return []
    return list(v) if isinstance(v, list) else [v]


def _paths(v: Any, base: Path) -> tuple[Path, ...]:
    return tuple(p for p in (_path(x, base) for x in _list(v)) if p is not None)


def _max_expiration(v: Any, where: str) -> int:
    if v in (None, ""):
        return DEFAULT_MAX_TOKEN_EXPIRATION
    try:
        seconds = int(v)
    except (TypeError, ValueError):
        seconds = 0
    if seconds < 600:
        raise ConfigError(
            f"{where}: serviceAccountMaxTokenExpiration must be a number of seconds of at least"
            f" 600, got {v!r}"
        )
    return seconds


def parse_args(argv: list[str] | None = None) -> ServerConfig:
    """``python -m berth.apiserver --config FILE [--port N ...]``: flags override the file."""
    p = argparse.ArgumentParser(prog="python -m berth.apiserver", description="berth API server")
    p.add_argument("--config", type=Path, help="YAML configuration file")
    p.add_argument("--bind-address")
    p.add_argument("--port", type=int)
    p.add_argument("--advertise-address")
    p.add_argument("--tls-cert-file", type=Path)
    p.add_argument("--tls-private-key-file", type=Path)
    p.add_argument("--client-ca-file", type=Path)
    p.add_argument(
        "--datastore",
        help="memory, sqlite:/path/to/state.db or etcd:http://host:2379[,...] (etcd over TLS:"
        " give the datastore section in --config)",
    )
    p.add_argument("--service-cidr")
    p.add_argument("--node-port-range")
    p.add_argument("--encryption-key-file", type=Path)
    p.add_argument("--token-auth-file", type=Path)
    p.add_argument("--agent-client-cert", type=Path)
    p.add_argument("--agent-client-key", type=Path)
    p.add_argument("--service-account-signing-key-file", type=Path)
    p.add_argument("--service-account-key-file", type=Path, action="append")
    p.add_argument("--service-account-issuer")
    p.add_argument(
        "--event-ttl", help="how long an Event is kept after its last write (default 1h)"
    )
    a = p.parse_args(argv)
    if a.config is not None:
        cfg = load_config(a.config)
    else:
        if not (a.tls_cert_file and a.tls_private_key_file and a.client_ca_file):
            raise ConfigError(
                "give --config FILE, or all of --tls-cert-file, --tls-private-key-file and"
                " --client-ca-file"
            )
        cfg = ServerConfig(a.tls_cert_file, a.tls_private_key_file, a.client_ca_file)
    changes: dict[str, Any] = {}
    for flag, attr in (
        ("bind_address", "bind_address"),
        ("port", "port"),
        ("advertise_address", "advertise_address"),
        ("tls_cert_file", "tls_cert_file"),
        ("tls_private_key_file", "tls_key_file"),
        ("client_ca_file", "client_ca_file"),
        ("service_cidr", "service_cidr"),
        ("encryption_key_file", "encryption_key_file"),
        ("token_auth_file", "token_auth_file"),
        ("agent_client_cert", "agent_client_cert_file"),
        ("agent_client_key", "agent_client_key_file"),
        ("service_account_signing_key_file", "service_account_signing_key_file"),
        ("service_account_issuer", "service_account_issuer"),
    ):
        value = getattr(a, flag)
        if value is not None:
            changes[attr] = value
    if a.service_account_key_file:
        changes["service_account_key_files"] = tuple(a.service_account_key_file)
    if a.event_ttl is not None:
        changes["event_ttl"] = parse_ttl(a.event_ttl, "--event-ttl")
    if a.node_port_range:
        changes["node_port_range"] = _port_range(a.node_port_range, "--node-port-range")
    if a.datastore:
        kind, _, rest = a.datastore.partition(":")
        section: dict[str, Any] = {"type": kind}
        if kind == "sqlite" and rest:
            section["path"] = rest
        elif kind == "etcd" and rest:
            section["endpoints"] = rest.split(",")
        elif kind != "memory" or rest:
            raise ConfigError(
                "--datastore must be memory, sqlite:/path or etcd:http://host:port[,...]"
            )
        changes["datastore"] = _datastore(section, Path.cwd(), "--datastore")
    return replace(cfg, **changes)
