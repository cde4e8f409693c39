"""``python -m berth.controllers --kubeconfig FILE``: run the controller manager
(leader-elected)."""

from __future__ import annotations

import argparse
from pathlib import Path

from berth import eventloop
from berth.api import satoken
from berth.client.http import HttpClient
from berth.client.kubeconfig import load_kubeconfig
from berth.controllers.manager import ALL_CONTROLLERS, ControllerManager, ManagerConfig
from berth.controllers.nodelifecycle import NodeLifecycleConfig
from berth.machinery.clock import Clock
from berth.machinery.component import add_common_flags, run_component, setup_logging


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="berth-controller-manager", description=__doc__)
    add_common_flags(parser, lease_name="kube-controller-manager")
    parser.add_argument(
        "--controllers",
        default=",".join(ALL_CONTROLLERS),
        help="comma-separated controllers to run (default: all)",
    )
    parser.add_argument("--cluster-cidr", default="10.244.0.0/16")
    parser.add_argument("--node-cidr-mask-size", type=int, default=24)
    parser.add_argument("--node-monitor-grace-period", type=float, default=40.0)
    parser.add_argument("--node-startup-grace-period", type=float, default=60.0)
    parser.add_argument("--node-monitor-period", type=float, default=5.0)
    parser.add_argument(
        "--default-toleration-seconds",
        type=int,
        default=300,
        help="how long pods without not-ready/unreachable tolerations stay on a failed node",
    )
    parser.add_argument("--concurrent-syncs", type=int, default=4)
    parser.add_argument(
        "--root-ca-file",
        type=Path,
        help="the cluster CA published as kube-root-ca.crt (default: the kubeconfig's CA)",
    )
    parser.add_argument(
        "--service-account-private-key-file",
        type=Path,
        help="ES256 key signing legacy service-account token Secrets (the API server's"
        " serviceAccountSigningKeyFile); without it those Secrets are not filled",
    )
    parser.add_argument(
        "--load-balancer-pool",
        default="",
        help="comma-separated CIDRs or ranges (a-b) LoadBalancer Services get addresses from"
        " (default: none, they get the Ready nodes' addresses)",
    )
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    config = ManagerConfig(
        controllers=[c.strip() for c in args.controllers.split(",") if c.strip()],
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        node_lifecycle=NodeLifecycleConfig(
            grace_period=args.node_monitor_grace_period,
            startup_grace_period=args.node_startup_grace_period,
            monitor_period=args.node_monitor_period,
            default_toleration_seconds=args.default_toleration_seconds,
        ),
        workers=args.concurrent_syncs,
        load_balancer_pool=tuple(
            p.strip() for p in args.load_balancer_pool.split(",") if p.strip()
        ),
        root_ca_pem=(
            args.root_ca_file.read_bytes()
            if args.root_ca_file
            else load_kubeconfig(args.kubeconfig).ca_pem
        ),
        service_account_signer=(
            satoken.Signer.from_file(args.service_account_private_key_file)
            if args.service_account_private_key_file
            else None
        ),
    )

    async def lead(client: HttpClient, clock: Clock) -> None:
        manager = await ControllerManager.create(client, clock, config)
        await manager.run()

    eventloop.run(run_component(args, lead, user_agent="berth-controller-manager"))


if __name__ == "__main__":
    main()
