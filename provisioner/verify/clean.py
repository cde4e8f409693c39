"""Is a host clean of berth? (after ``berth destroy`` or the removal of a host): no unit, file,
listening port or process, and nothing of a runc node's pods and network (bridge, nftables
table, routes, network namespaces, containers, CNI IP allocations)."""

from __future__ import annotations

from provisioner.connectors.base import Connector
from provisioner.phases.cluster import layout
from provisioner.phases.cluster.ops import NODE_LEFTOVER_PROBE
from provisioner.verify.testinfra_backend import testinfra_host


def clean_problems(connector: Connector, *, keep_data: bool = False) -> list[str]:
    """What berth left on the host (empty when it is clean)."""
    host = testinfra_host(connector)
    problems: list[str] = []
    for unit in layout.TEARDOWN_UNITS:
        service = host.service(unit)
        if service.is_running:
            problems.append(f"unit {unit} is still running")
        if host.file(f"{layout.UNIT_DIR}/{unit}").exists:
            problems.append(f"unit file {layout.UNIT_DIR}/{unit} is still there")
    for path in layout.INSTALL_PATHS + (() if keep_data else layout.DATA_PATHS):
        if host.file(path).exists:
            problems.append(f"{path} is still there")
    for port in (layout.API_PORT, layout.AGENT_PORT, *layout.ETCD_PORTS):
        if host.socket(f"tcp://0.0.0.0:{port}").is_listening:
            problems.append(f"port {port}/tcp is still listening")
    for item in host.run(NODE_LEFTOVER_PROBE).stdout.splitlines():
        if item.strip() and not (keep_data and item == f"state {layout.RUNTIME_STATE}"):
            problems.append(f"{item.strip()} still there")
    leftover = host.run("pgrep -a -f '^/usr/bin/python3 -m berth[.]' || true").stdout.strip()
    if leftover:
        problems.append(f"berth processes still running: {leftover.splitlines()[0]}")
    return problems
