"""From a cluster spec to the workflow's :class:`~provisioner.workflow.Inventory` (what the engine
reaches, and what host removal reaches outside the inventory)."""

from __future__ import annotations

from pathlib import Path

from provisioner.connectors.base import HostKeyPolicy, HostName, HostTarget, JumpHost
from provisioner.spec import ClusterSpec
from provisioner.workflow import Inventory


def inventory_from_spec(spec: ClusterSpec, *, known_hosts: Path | None = None) -> Inventory:
    """Every host of ``spec`` with its effective SSH settings; ``known_hosts`` (the cluster
    state's pinned keys) is used when the spec names no known_hosts file."""
    targets = []
    for host in spec.hosts:
        ssh = spec.ssh_for(host.name, default_known_hosts=known_hosts)
        jump = None
        if ssh.jump is not None:
            jump = JumpHost(ssh.jump.address, ssh.jump.port, ssh.jump.user, ssh.jump.identity_file)
        targets.append(
            HostTarget(
                name=HostName(host.name),
                address=ssh.address,
                port=ssh.port,
                user=ssh.user,
                identity_file=ssh.identity_file,
                known_hosts=ssh.known_hosts_file,
                host_key_policy=HostKeyPolicy(ssh.host_key_policy),
                connect_timeout=ssh.connect_timeout,
                retries=ssh.retries,
                jump=jump,
                roles=tuple(host.roles),
            )
        )
    return Inventory(spec.name, tuple(targets))
