"""``python -m berth.vip --config FILE``: campaign for the API VIP and hold it while elected,
until SIGTERM (then drop it and hand the lease over)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from berth.machinery.clock import RealClock
from berth.machinery.leaderelection import LeaderElectionConfig, LeaderElector
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
    elector = LeaderElector(
        client,
        clock,
        LeaderElectionConfig(
            name=config.lease_name,
            identity=config.identity,
            namespace=config.lease_namespace,
            lease_duration=config.lease_duration,
            renew_deadline=config.renew_deadline,
            retry_period=config.retry_period,
        ),
    )
    holder = VipHolder(
        elector,
        IpAddresses(config.address, interface),
        ArpAnnouncer(config.address, interface),
        clock,
        config,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    task = asyncio.create_task(holder.run())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (task, stopper):
            t.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
        with contextlib.suppress(Exception):
            await client.close()
    if task.done() and not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]


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
    asyncio.run(serve(config, interface))
    return 0


if __name__ == "__main__":
    sys.exit(main())
