"""Hosts from ``vagrant ssh-config`` output.

``vagrant ssh-config`` prints one OpenSSH ``Host`` block per running machine::

    Host cp1
      HostName 192.168.121.17
      User vagrant
      Port 22
      IdentityFile /home/me/proj/.vagrant/machines/cp1/libvirt/private_key

Each block becomes a host named after ``Host``. Its node address is ``HostName``, unless an
explicit address is given for it (``addresses``), which is needed when ``HostName`` is a
loopback port forward (VirtualBox's NAT: ``127.0.0.1`` port ``2222``); SSH then keeps going
through the forward. berth logs in as ``root`` by default: the project's ``Vagrantfile``
authorizes the machine's Vagrant key for root.
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import SpecError
from provisioner.inventory_sources.document import HostEntry, build_document


@dataclass
class SshConfigBlock:
    """One ``Host`` block: its alias, options (lower-cased keys) and the line it starts on."""

    alias: str
    line: int
    options: dict[str, str] = field(default_factory=dict)


def parse_ssh_config(text: str) -> list[SshConfigBlock]:
    """The ``Host`` blocks of an OpenSSH client config, in order (first value of a key wins,
    as in ssh itself)."""
    blocks: list[SshConfigBlock] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        if "=" in key:
            key, _, rest = line.partition("=")
        value = rest.strip().lstrip("=").strip()
        if key.lower() == "host":
            blocks.append(SshConfigBlock(alias=value.split()[0] if value else "", line=number))
        elif blocks:
            blocks[-1].options.setdefault(key.lower(), _unquoted(value))
    return blocks


def _unquoted(value: str) -> str:
    """``"a b"`` -> ``a b`` (ssh's quoting); an unbalanced quote is taken literally."""
    if not value.startswith('"'):
        return value
    try:
        words = shlex.split(value)
    except ValueError:
        return value.strip('"')
    return words[0] if words else ""


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def hosts_from_ssh_config(
    text: str, *, filename: str = "vagrant ssh-config", addresses: Mapping[str, str] = {}
) -> list[HostEntry]:
    """One :class:`HostEntry` per ``Host`` block (``addresses`` overrides node addresses)."""
    problems: list[str] = []
    hosts: list[HostEntry] = []
    blocks = parse_ssh_config(text)
    if not blocks:
        raise SpecError(
            [f"{filename}:1:1: no 'Host' blocks found"],
            hint="run `vagrant up` first; `vagrant ssh-config` lists only created machines",
        )
    for block in blocks:
        ssh_address = block.options.get("hostname")
        if not ssh_address:
            problems.append(f"{filename}:{block.line}:1: Host {block.alias}: no HostName line")
            continue
        node_address = addresses.get(block.alias, ssh_address)
        if _is_loopback(node_address):
            problems.append(
                f"{filename}:{block.line}:1: Host {block.alias}: HostName {ssh_address} is a "
                "port forward on this machine, not the machine's own address; "
                f"hint: pass --address {block.alias}=IP with its private network address"
            )
            continue
        port = block.options.get("port")
        hosts.append(
            HostEntry(
                name=block.alias,
                address=node_address,
                port=int(port) if port and port.isdigit() else None,
                identity_file=block.options.get("identityfile"),
                ssh_address=ssh_address,
            )
        )
    unknown = sorted(set(addresses) - {b.alias for b in blocks})
    if unknown:
        problems.append(f"{filename}: --address names unknown machine(s): {', '.join(unknown)}")
    if problems:
        raise SpecError(problems)
    return hosts


def from_vagrant(
    text: str,
    *,
    name: str,
    filename: str = "vagrant ssh-config",
    control_planes: Collection[str] = (),
    addresses: Mapping[str, str] = {},
    user: str = "root",
) -> dict[str, Any]:
    """A Cluster document for the machines in ``vagrant ssh-config`` output ``text``.

    Vagrant regenerates host keys when a machine is created, so the document pins them on first
    contact (``hostKeyPolicy: accept-new``) into the cluster state's known_hosts.
    """
    hosts = hosts_from_ssh_config(text, filename=filename, addresses=addresses)
    unknown = sorted(set(control_planes) - {h.name for h in hosts})
    if unknown:
        names = ", ".join(unknown)
        raise SpecError([f"{filename}: --control-plane names unknown machine(s): {names}"])
    return build_document(
        name, hosts, control_planes=control_planes, user=user, host_key_policy="accept-new"
    )
