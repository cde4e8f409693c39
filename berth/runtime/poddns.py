"""A pod's resolv.conf from its ``dnsPolicy`` and ``dnsConfig``, as the kubelet builds it.

* ``ClusterFirst`` (the default): the cluster DNS, search ``<ns>.svc.<domain> svc.<domain>
  <domain>`` followed by the host's own search domains, ``options ndots:5``. A pod on the host
  network gets the host's settings instead (``Default``), unless its policy is
  ``ClusterFirstWithHostNet``. Without a configured cluster DNS it falls back to ``Default``.
* ``Default``: the host's resolv.conf (nameservers, search, options).
* ``None``: only what ``dnsConfig`` says.

``dnsConfig`` then adds nameservers and search domains (duplicates dropped) and options (an
option named again replaces the earlier one). The result is trimmed to upstream's limits: 3
nameservers, 32 search domains (and 2048 characters of them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
MAX_HOST_RESOLV_BYTES = 65536


@dataclass(frozen=True, slots=True)
class ResolvConf:
    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> ResolvConf:
    nameservers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text[:MAX_HOST_RESOLV_BYTES].splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) > 1:
            nameservers.append(fields[1])
        elif fields[0] in ("search", "domain"):
            searches = fields[1:]  # the last search/domain line wins, as in glibc
        elif fields[0] == "options":
            options += fields[1:]
    return ResolvConf(tuple(nameservers), tuple(searches), tuple(options))


def host_resolv_conf(path: str = "/etc/resolv.conf") -> ResolvConf:
    try:
        return parse_resolv_conf(Path(path).read_text(errors="replace"))
    except OSError:
        return ResolvConf()


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in items if not (i in seen or seen.add(i))]  # type: ignore[func-returns-value]


def _merge_options(base: list[str], extra: Any) -> list[str]:
    by_name: dict[str, str] = {}
    for opt in base:
        by_name[opt.split(":", 1)[0]] = opt
    for opt in extra or ():
        if not isinstance(opt, Mapping) or not opt.get("name"):
            continue
        name = str(opt["name"])
        value = opt.get("value")
        by_name[name] = f"{name}:{value}" if value not in (None, "") else name
    return list(by_name.values())


def pod_resolv_conf(
    spec: Mapping[str, Any],
    namespace: str,
    *,
    cluster_dns: str | None,
    cluster_domain: str = "cluster.local",
    host: ResolvConf | None = None,
) -> ResolvConf:
    """The resolv.conf of a pod with this ``spec`` in ``namespace``."""
    host = host or ResolvConf()
    policy = str(spec.get("dnsPolicy") or "ClusterFirst")
    if policy == "ClusterFirst" and spec.get("hostNetwork"):
        policy = "Default"
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet") and not cluster_dns:
        policy = "Default"  # the kubelet's fallback when it has no cluster DNS
    if policy in ("ClusterFirst", "ClusterFirstWithHostNet"):
        domain = cluster_domain.strip(".")
        nameservers = [str(cluster_dns)]
        searches = [f"{namespace}.svc.{domain}", f"svc.{domain}", domain, *host.searches]
        options = ["ndots:5"]
    elif policy == "None":
        nameservers, searches, options = [], [], []
    else:
        nameservers, searches, options = (
            list(host.nameservers),
            list(host.searches),
            list(host.options),
        )
    config = spec.get("dnsConfig") or {}
    if isinstance(config, Mapping):
        nameservers += [str(n) for n in config.get("nameservers") or ()]
        searches += [str(s) for s in config.get("searches") or ()]
        options = _merge_options(options, config.get("options"))
    searches = _dedup([s.strip(".") for s in searches if s.strip(".")])[:MAX_SEARCHES]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return ResolvConf(tuple(_dedup(nameservers)[:MAX_NAMESERVERS]), tuple(searches), tuple(options))
