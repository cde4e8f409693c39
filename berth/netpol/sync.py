"""One call for the agent: the complete lists of NetworkPolicies, Pods and Namespaces in, the
node's ``inet berth-netpol`` table out (one atomic ``nft -f``, skipped when nothing changed).

Level-triggered like the service proxy: call :meth:`PolicyEnforcer.sync` with everything after
any change (or on a timer). The table survives agent restarts (nothing removes it on exit):
the policies stay enforced while the agent is down, as the service rules do.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from berth.netpol.model import namespace_from_k8s, pod_from_k8s, policy_from_k8s
from berth.netpol.render import FAMILY, TABLE, render_ruleset, transaction
from berth.network.command import CommandFailed, Runner, SubprocessRunner

log = logging.getLogger(__name__)

BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
"""Bridged IPv4 (pod to pod on one node) reaches the IP hooks only when this is 1."""


def render_from_objects(
    policies: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    namespaces: Iterable[Mapping[str, Any]],
    *,
    node: str | None,
) -> str:
    """Kubernetes objects -> the table's text (the model validates every value)."""
    return render_ruleset(
        [policy_from_k8s(p) for p in policies],
        [p for p in map(pod_from_k8s, pods) if p is not None],
        [namespace_from_k8s(n) for n in namespaces],
        node=node,
    )


class PolicyEnforcer:
    """Renders and applies; remembers the last ruleset so unchanged syncs cost nothing."""

    def __init__(
        self,
        *,
        node: str,
        runner: Runner | None = None,
        nft: str = "nft",
        bridge_nf: Path = BRIDGE_NF,
    ) -> None:
        self.node = node
        self.runner = runner or SubprocessRunner()
        self.nft = nft
        self.bridge_nf = bridge_nf
        self._applied: str | None = None

    async def ensure_bridge_netfilter(self) -> bool:
        """Make bridged pod traffic visible to the forward hook (``br_netfilter``); returns
        whether it is. Without it, same-node pod traffic bypasses the policies (logged)."""
        if not self.bridge_nf.exists():
            # no modprobe (a container): the write below says what is missing
            with contextlib.suppress(OSError):
                await self.runner.run(["modprobe", "br_netfilter"])
        try:
            if self.bridge_nf.read_text().strip() != "1":
                self.bridge_nf.write_text("1\n")
            return True
        except OSError as exc:
            log.warning(
                "node %s: bridged pod traffic is not filtered (%s): NetworkPolicies hold only "
                "between nodes",
                self.node,
                exc,
            )
            return False

    async def sync(
        self,
        policies: Iterable[Mapping[str, Any]],
        pods: Iterable[Mapping[str, Any]],
        namespaces: Iterable[Mapping[str, Any]],
    ) -> bool:
        """Apply the table for these objects; returns whether ``nft`` had to run. A failure
        leaves the previous table in place (the transaction is all-or-nothing) and raises
        :class:`CommandFailed`."""
        ruleset = render_from_objects(policies, pods, namespaces, node=self.node)
        digest = hashlib.sha256(ruleset.encode()).hexdigest()
        if digest == self._applied:
            return False
        result = await self.runner.run(
            [self.nft, "-f", "-"], stdin=transaction(ruleset).encode(), time_limit=30.0
        )
        if not result.ok:
            self._applied = None
            raise CommandFailed(result, f"apply nftables table {FAMILY} {TABLE}")
        self._applied = digest
        return True

    async def remove(self) -> None:
        """Delete the table (node teardown; no error when it is already gone)."""
        script = f"add table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n"
        result = await self.runner.run([self.nft, "-f", "-"], stdin=script.encode())
        if not result.ok:
            raise CommandFailed(result, f"remove nftables table {FAMILY} {TABLE}")
        self._applied = None
