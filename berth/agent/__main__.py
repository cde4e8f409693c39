"""``python -m berth.agent --config FILE``: run the node agent (one node or a simulated fleet)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from berth.agent.config import AgentConfigError, load_config
from berth.agent.fleet import Fleet
from berth.agent.simulated import SimulatedRuntime
from berth.client.http import HttpClient
from berth.client.kubeconfig import KubeconfigError
from berth.machinery.clock import RealClock
from berth.machinery.component import setup_logging


async def _run(config_path: str) -> None:
    config = load_config(config_path)
    clock = RealClock()
    client = HttpClient.from_kubeconfig(config.kubeconfig, user_agent="berth-agent")
    node_clients = {
        n.name: HttpClient.from_kubeconfig(n.kubeconfig, user_agent=f"berth-agent/{n.name}")
        for n in config.nodes
        if n.kubeconfig
    }
    runtime = SimulatedRuntime(clock, start_delay=config.start_delay, stop_delay=config.stop_delay)
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
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await fleet.start()
        await stop.wait()
    finally:
        await fleet.stop()
        for c in [client, *node_clients.values()]:
            await c.close()
        await asyncio.sleep(0.25)  # let TLS connections close cleanly


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-agent", description=__doc__)
    parser.add_argument("--config", required=True, help="agent YAML config")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        asyncio.run(_run(args.config))
    except (AgentConfigError, KubeconfigError) as exc:
        print(f"berth-agent: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
