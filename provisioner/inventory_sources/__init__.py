"""Inventory sources: generate a cluster spec from what already knows the machines.

* :func:`from_vagrant` reads ``vagrant ssh-config`` output;
* :func:`from_terraform` reads ``terraform output -json`` (an output named ``berth_hosts``);
* :func:`build_document` turns any list of :class:`HostEntry` into a Cluster document (the lab
  and other sources can use it too).

Each returns plain data; write it with :func:`provisioner.spec.dump_spec`.
"""

from __future__ import annotations

from provisioner.inventory_sources.document import HostEntry, assign_roles, build_document
from provisioner.inventory_sources.terraform import from_terraform, hosts_from_terraform
from provisioner.inventory_sources.vagrant import (
    from_vagrant,
    hosts_from_ssh_config,
    parse_ssh_config,
)

__all__ = [
    "HostEntry",
    "assign_roles",
    "build_document",
    "from_terraform",
    "from_vagrant",
    "hosts_from_ssh_config",
    "hosts_from_terraform",
    "parse_ssh_config",
]
