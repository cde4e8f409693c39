"""NetworkPolicy rendering benchmark: the time to turn ``--pods`` pods and ``--policies``
policies (Kubernetes objects, as the agent's informers hold them) into the node's nftables
table, and the time ``nft -c`` takes to check it. Goal: 1,000 pods x 100 policies under 1 s.

The synthetic cluster: 10 namespaces (labelled with 5 teams), pods with 20 ``app`` and 3
``tier`` labels and a named container port, spread over 4 nodes; every policy selects one app
and has an ingress rule with a namespace selector, a pod selector and an ipBlock with an
except, a named port and a port range, and an egress rule to every pod on UDP 53. Rendered
twice: for every pod (the worst case) and for one node's share (what an agent does).

Usage: ``python bench/netpol.py [--pods 1000] [--policies 100] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from berth.netpol.render import transaction  # noqa: E402
from berth.netpol.sync import render_from_objects  # noqa: E402


def synthetic(
    n_pods: int, n_policies: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    namespaces = [
        {"metadata": {"name": f"ns{i}", "labels": {"team": f"t{i % 5}"}}} for i in range(10)
    ]
    pods = [
        {
            "metadata": {
                "namespace": f"ns{i % 10}",
                "name": f"p{i}",
                "labels": {"app": f"app{i % 20}", "tier": f"t{i % 3}"},
            },
            "spec": {
                "nodeName": f"n{i % 4}",
                "containers": [
                    {"name": "c", "ports": [{"name": "http", "containerPort": 8000 + i % 7}]}
                ],
            },
            "status": {"podIP": f"10.244.{i // 250}.{i % 250 + 2}", "phase": "Running"},
        }
        for i in range(n_pods)
    ]
    policies = [
        {
            "metadata": {"namespace": f"ns{i % 10}", "name": f"pol{i}"},
            "spec": {
                "podSelector": {"matchLabels": {"app": f"app{i % 20}"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {"namespaceSelector": {"matchLabels": {"team": f"t{i % 5}"}}},
                            {"podSelector": {"matchLabels": {"tier": f"t{i % 3}"}}},
                            {
                                "ipBlock": {
                                    "cidr": "192.168.0.0/16",
                                    "except": ["192.168.1.0/24"],
                                }
                            },
                        ],
                        "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100}],
                    }
                ],
                "egress": [
                    {"to": [{"podSelector": {}}], "ports": [{"port": 53, "protocol": "UDP"}]}
                ],
            },
        }
        for i in range(n_policies)
    ]
    return policies, pods, namespaces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--policies", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    policies, pods, namespaces = synthetic(args.pods, args.policies)
    for label, node in (("every pod", None), ("one node's pods", "n0")):
        times = []
        text = ""
        for _ in range(args.rounds):
            start = time.perf_counter()
            text = render_from_objects(policies, pods, namespaces, node=node)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        check = subprocess.run(
            ["nft", "-c", "-f", "-"],
            input=transaction(text).encode(),
            capture_output=True,
            check=False,
        )
        nft_s = time.perf_counter() - start
        verdict = "ok" if check.returncode == 0 else check.stderr.decode()[:200]
        print(
            f"{args.pods} pods x {args.policies} policies, {label}: render median "
            f"{statistics.median(times) * 1000:.0f} ms (max {max(times) * 1000:.0f} ms), "
            f"{len(text) / 1024:.0f} KiB, {text.count(chr(10))} lines; "
            f"nft -c {nft_s * 1000:.0f} ms: {verdict}"
        )


if __name__ == "__main__":
    main()
