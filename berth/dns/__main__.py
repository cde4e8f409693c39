"""``python -m berth.dns --config AGENT_CONFIG``: the node-local cluster DNS.

Reads the node agent's config (its kubeconfig, ``network.clusterDNS`` and
``network.clusterDomain``), listens on UDP and TCP port 53 of the clusterDNS address (which the
systemd unit puts on the loopback interface; the node's proxy leaves that address alone) and of any
``--listen`` address, and forwards other names to the resolvers in the host's resolv.conf."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from berth import eventloop
from berth.agent.config import AgentConfigError, load_config
from berth.client.http import HttpClient
from berth.dns.feed import ZoneFeed
from berth.dns.forward import Forwarder, host_nameservers
from berth.dns.records import build_zone
from berth.dns.server import DnsServer
from berth.machinery.clock import RealClock

log = logging.getLogger("berth.dns")


async def _run(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    dns_ip = config.network.cluster_dns
    domain = config.network.cluster_domain
    listen = [a for a in [dns_ip, *args.listen] if a]
    if not listen:
        raise AgentConfigError(f"{args.config}: network.clusterDNS is not set and no --listen")
    upstreams = host_nameservers(args.resolv_conf, exclude=listen)
    server = DnsServer(
        build_zone([], [], domain=domain, dns_ip=dns_ip), Forwarder(upstreams), synced=False
    )
    client = HttpClient.from_kubeconfig(config.kubeconfig, user_agent="berth-dns")
    feed = ZoneFeed(client, RealClock(), server, domain=domain, dns_ip=dns_ip)
    await server.start([(a, args.port) for a in listen])
    log.info("serving %s on %s port %d; forwarding to %s", domain, listen, args.port, upstreams)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(feed.run())
    try:
        await stop.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await server.stop()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-dns", description=__doc__)
    parser.add_argument("--config", required=True, help="the node agent's YAML config")
    parser.add_argument("--listen", action="append", default=[], help="another address")
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--resolv-conf", default="/etc/resolv.conf")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        eventloop.run(_run(args))
    except AgentConfigError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
