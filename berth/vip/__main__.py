"""``python -m berth.vip --config FILE``: campaign for the API VIP and hold it while elected,
until SIGTERM (then drop it and hand the lease over)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from pathlib import Path

from berth import eventloop
from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from berth.machinery.clock import RealClock
from berth.machinery.component import (
    election_config,
    raise_failure,
    run_until_stopped,
    stop_on_signals,
)
from berth.machinery.leaderelection import LeaderElector
from berth.vip.addresses import AddressError, IpAddresses, interface_for
from berth.vip.arp import ArpAnnouncer
from berth.vip.config import ConfigError, VipConfig
from berth.vip.holder import VipHolder


async def serve(config: VipConfig, interface: str) -> None:
    creds = load_kubeconfig(config.kubeconfig)
    # short requests: a renewal that cannot finish within the renew deadline is a failure
    client = HttpClient(
        creds.server,
        creds.ssl_context(),
        request_timeout=config.renew_deadline - config.retry_period,
        user_agent="berth-vip",
    )
    clock = RealClock()
    elector = LeaderElector(client, clock, election_config(config))
    holder = VipHolder(
        elector,
        IpAddresses(config.address, interface),
        ArpAnnouncer(config.address, interface),
        clock,
        config,
    )
    stop = stop_on_signals()
    task = asyncio.create_task(holder.run())
    try:
        await run_until_stopped(task, stop)
    finally:
        with contextlib.suppress(Exception):
            await client.close()
    raise_failure(task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth.vip", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = VipConfig.load(args.config)
        interface = config.interface or interface_for(config.address)
    except (ConfigError, AddressError) as error:
        print(f"berth-vip: {error}", file=sys.stderr)
        return 2
    logging.getLogger(__name__).info("vip: %s on %s", config.address, interface)
    eventloop.run(serve(config, interface))
    return 0


if __name__ == "__main__":
    sys.exit(main())
