"""``python -m berth.lb --config FILE``: run the node-side API load balancer until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from berth import eventloop
from berth.lb.config import ConfigError, LBConfig
from berth.lb.proxy import LoadBalancer


async def serve(config: LBConfig) -> None:
    balancer = LoadBalancer(config)
    await balancer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await balancer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m berth.lb", description=__doc__)
    parser.add_argument("--config", required=True, type=Path, help="YAML config file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = LBConfig.load(args.config)
    except ConfigError as error:
        print(f"berth-lb: {error}", file=sys.stderr)
        return 2
    eventloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
