"""``python -m berth.ingress --kubeconfig FILE``: the node's ingress controller and its HAProxy.

Runs as ``berth-ingress.service`` on every runc node, with its own identity
(``system:berth-ingress``, see :func:`berth.apiserver.component_roles.ingress_rules`), and
serves the node's ports 80 and 443 on the host network. HAProxy is this process's child
(master-worker mode): it stops with the service and is reloaded without dropping connections
when the configuration changes. The node agent is another service: restarting it does not
touch the ingress.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from berth.client.http import HttpClient
from berth.machinery.clock import RealClock

from .controller import IngressController
from .haproxy import Listen
from .proxy import HAPROXY, HaproxyProxy

log = logging.getLogger("berth.ingress")

STATE_DIR = "/run/berth/ingress"


async def _run(args: argparse.Namespace) -> None:
    proxy = HaproxyProxy(
        Path(args.state_dir),
        listen=Listen(args.address, args.http_port, args.https_port),
        haproxy=args.haproxy,
        user=args.haproxy_user or None,
    )
    proxy.prepare()
    client = HttpClient.from_kubeconfig(args.kubeconfig, user_agent="berth-ingress")
    controller = IngressController(client, RealClock(), proxy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(controller.run())
    log.info("ingress controller on ports %d and %d", args.http_port, args.https_port)
    try:
        done, _ = await asyncio.wait(
            [task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            task.result()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await proxy.stop()
        await client.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-ingress", description=__doc__)
    parser.add_argument("--kubeconfig", required=True, help="the ingress identity's kubeconfig")
    parser.add_argument("--state-dir", default=STATE_DIR)
    parser.add_argument("--address", default="", help="listen address (default: all)")
    parser.add_argument("--http-port", type=int, default=80)
    parser.add_argument("--https-port", type=int, default=443)
    parser.add_argument("--haproxy", default=HAPROXY)
    parser.add_argument(
        "--haproxy-user", default="haproxy", help="HAProxy's workers run as this user ('': as is)"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(_run(args))


if __name__ == "__main__":
    main()
