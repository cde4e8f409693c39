"""``python -m berth.agent --config FILE``: run the node agent (one node or a simulated fleet)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from berth.agent.config import AgentConfig, AgentConfigError, load_config
from berth.agent.fleet import Fleet
from berth.agent.lbspeaker import STATE_PATH as SPEAKER_STATE
from berth.agent.netpolicy import NodeNetworkPolicies
from berth.agent.network import NodeNetwork
from berth.agent.node import NodeAgent
from berth.agent.runtime import Runtime
from berth.agent.shutdown import host_shutting_down, shut_down_gracefully
from berth.agent.simulated import SimulatedRuntime
from berth.agent.volumes import LocalVolumes
from berth.api.loadbalancers import Pool
from berth.api.resources import NODES
from berth.client import errors
from berth.client.http import HttpClient
from berth.client.interface import ApiClient
from berth.client.kubeconfig import KubeconfigError
from berth.machinery.clock import Clock, RealClock
from berth.machinery.component import setup_logging, stop_on_signals
from berth.network.command import use_pidfd_child_watcher

log = logging.getLogger("berth.agent")


async def _pod_cidr(client: ApiClient, clock: Clock, node: str) -> str:
    """Wait until the controller manager has given ``node`` its podCIDR."""
    waited = 0.0
    while True:
        try:
            obj = await client.get(NODES, node)
        except (errors.ApiError, OSError) as exc:  # an API server restarting: wait, not exit
            log.warning("node %s: reading its podCIDR failed: %s", node, exc)
            obj = {}
        cidr = str((obj.get("spec") or {}).get("podCIDR") or "")
        if cidr:
            return cidr
        if waited in (0.0, 30.0):
            log.info("node %s: waiting for a podCIDR from the controller manager", node)
        await clock.sleep(1.0)
        waited += 1.0


async def _make_runtime(config: AgentConfig, clock: Clock, client: ApiClient) -> Runtime:
    if config.runtime == "simulated":
        return SimulatedRuntime(clock, start_delay=config.start_delay, stop_delay=config.stop_delay)
    # runc: the pod network is configured from the node's podCIDR, so register first.
    node = config.nodes[0]
    port = config.server.port if config.server else 10250
    # retried: an exception here ends the agent, and systemd's restart leaves a window
    # where the node's agent is not running (verify caught one on a loaded machine)
    await NodeAgent(client, clock, node, runtime_name="runc", daemon_port=port).register_retrying()
    cidr = await _pod_cidr(client, clock, node.name)
    # Imported here: only real nodes need the runc/CNI stack (and its dependencies).
    from berth.runtime.agent_runtime import RuncAgentRuntime  # noqa: PLC0415

    return RuncAgentRuntime.for_node(
        pod_cidr=cidr,
        state_dir=Path(config.runc.state_dir),
        runc_root=Path(config.runc.runc_root),
        insecure_registries=frozenset(config.runc.insecure_registries),
        registry_cas=config.runc.registry_cas,
        cluster_dns=config.network.cluster_dns or None,
        cluster_domain=config.network.cluster_domain,
    )


def _node_network(config: AgentConfig, clock: Clock, client: ApiClient) -> NodeNetwork:
    node = config.nodes[0]
    return NodeNetwork(
        client,
        clock,
        node=node.name,
        node_address=node.address,
        cluster_cidr=config.network.cluster_cidr or None,
        service_cidr=config.network.service_cidr or None,
        service_device=config.network.service_device,
        node_local_ips=frozenset(
            [config.network.cluster_dns] if config.network.cluster_dns else []
        ),
        load_balancer_pool=Pool.parse(config.network.load_balancer_pool),
        speaker_state=SPEAKER_STATE,
    )


async def _run(config_path: str) -> None:
    use_pidfd_child_watcher()  # no thread per tool the agent runs (Python 3.11)
    config = load_config(config_path)
    clock = RealClock()
    client = HttpClient.from_kubeconfig(config.kubeconfig, user_agent="berth-agent")
    node_clients = {
        n.name: HttpClient.from_kubeconfig(n.kubeconfig, user_agent=f"berth-agent/{n.name}")
        for n in config.nodes
        if n.kubeconfig
    }
    first = config.nodes[0].name
    runtime = await _make_runtime(config, clock, node_clients.get(first, client))
    # A runc node also carries the cluster network: routes to the other nodes' pods and the
    # service rules (what kube-proxy and a host-gw CNI daemon do elsewhere).
    network = (
        _node_network(config, clock, node_clients.get(first, client))
        if config.runtime == "runc"
        else None
    )
    fleet = Fleet(
        client,
        clock,
        runtime,
        nodes=config.nodes,
        server=config.server,
        lease_duration=config.lease_duration,
        renew_interval=config.renew_interval,
        status_report_interval=config.status_report_interval,
        status_check_interval=config.status_check_interval,
        workers=config.workers,
        node_clients=node_clients,
        withdrawal=network.withdrawal if network is not None else None,
        local_volumes=(
            LocalVolumes(Path(config.runc.volumes_dir), first) if config.runtime == "runc" else None
        ),
    )
    # NetworkPolicies: with the cluster network's identity, which may read every pod
    policy_client = (
        HttpClient.from_kubeconfig(config.network.policy_kubeconfig, user_agent="berth-netpol")
        if network is not None and config.network.policy_kubeconfig
        else None
    )
    if network is not None and policy_client is None:
        log.warning("node %s: no network.policyKubeconfig: NetworkPolicies not enforced", first)
    network_task: asyncio.Task[None] | None = None
    policy_task: asyncio.Task[None] | None = None
    stop = stop_on_signals()
    try:
        await fleet.start()
        if network is not None:
            network_task = asyncio.create_task(network.run(), name="agent-network")
        if policy_client is not None:
            policies = NodeNetworkPolicies(policy_client, clock, node=first)
            policy_task = asyncio.create_task(policies.run(), name="agent-netpol")
        await stop.wait()
        if await asyncio.to_thread(host_shutting_down):
            await shut_down_gracefully(fleet, grace_cap=config.shutdown_grace_period)
    finally:
        for task in (network_task, policy_task):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await fleet.stop()
        extra = [policy_client] if policy_client is not None else []
        for c in [client, *node_clients.values(), *extra]:
            await c.close()
        await asyncio.sleep(0.25)  # let TLS connections close cleanly


PROFILE_ENV = "BERTH_AGENT_PROFILE"
"""Set to a file path, the agent runs under :mod:`cProfile` and writes its stats there when it
stops (``python3 -m pstats PATH``): where the agent's own CPU per pod goes (bench/pods.py
``--profile``). The profiler's clock is the process's CPU time, not wall time: on a loaded host
wall time charges other processes' turns to whatever the agent was running. Off by default:
profiling about doubles the agent's CPU."""


@contextlib.contextmanager
def _profiled(path: str) -> Iterator[None]:
    if not path:
        yield
        return
    import cProfile  # noqa: PLC0415 - only when asked for

    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        profile.dump_stats(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-agent", description=__doc__)
    parser.add_argument("--config", required=True, help="agent YAML config")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        with _profiled(os.environ.get(PROFILE_ENV, "")):
            asyncio.run(_run(args.config))
    except (AgentConfigError, KubeconfigError) as exc:
        print(f"berth-agent: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
