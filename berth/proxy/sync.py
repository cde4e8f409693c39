"""One call for the agent: Kubernetes Services + endpoints in, berth's nft table out.

Level-triggered: call :meth:`ServiceProxy.sync` with the *complete* current lists after any
change (or on a timer); it renders everything and applies only when the ruleset changed.

One Service never blocks the others: each object is converted and checked on its own
(:mod:`berth.proxy.checks`) and one that cannot be rendered is left out; should ``nft`` still
refuse the table, each Service's rules are checked alone (``nft -c``) and the ones refused are
left out too. :attr:`ServiceProxy.rejected` lists what the last sync left out, and why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from berth.network.command import CommandFailed, Runner, SubprocessRunner
from berth.proxy.apply import NftApplier
from berth.proxy.checks import Checked, Rejected, check_with_endpoints, check_with_slices
from berth.proxy.model import ServiceKey
from berth.proxy.render import render_ruleset

log = logging.getLogger(__name__)


class ServiceProxy:
    """Renders and applies; remembers the last ruleset so unchanged syncs cost nothing."""

    def __init__(
        self,
        *,
        cluster_cidr: str | None,
        runner: Runner | None = None,
        service_cidr: str | None = None,
        nft: str = "nft",
        node_name: str = "",
        lb_address_allowed: Callable[[str], bool] = lambda _ip: False,
    ) -> None:
        self.cluster_cidr = cluster_cidr
        self.service_cidr = service_cidr
        self.node_name = node_name
        # Which status.loadBalancer.ingress addresses this node forwards: the pool's, or the
        # nodes' own without a pool. Whatever else a status names is ignored, so a status
        # written by someone else cannot pull a node's or the API server's traffic aside.
        self.lb_address_allowed = lb_address_allowed
        self.applier = NftApplier(runner or SubprocessRunner(), nft=nft)
        self.rejected: list[Rejected] = []

    def _render(self, checked: Checked) -> str:
        return render_ruleset(
            checked.services,
            checked.endpoints,
            cluster_cidr=self.cluster_cidr,
            node_name=self.node_name,
        )

    def render(
        self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
    ) -> str:
        checked = check_with_slices(
            services, slices, service_cidr=self.service_cidr, lb_allowed=self.lb_address_allowed
        )
        self.rejected = checked.rejected
        return self._render(checked)

    def render_from_endpoints(
        self, services: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]
    ) -> str:
        """Like :meth:`render`, from ``v1/Endpoints`` objects instead of EndpointSlices."""
        checked = check_with_endpoints(
            services, endpoints, service_cidr=self.service_cidr, lb_allowed=self.lb_address_allowed
        )
        self.rejected = checked.rejected
        return self._render(checked)

    async def sync(
        self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
    ) -> bool:
        """Apply the table for these objects; returns whether ``nft`` had to run."""
        return await self._apply(
            check_with_slices(
                services, slices, service_cidr=self.service_cidr, lb_allowed=self.lb_address_allowed
            )
        )

    async def sync_from_endpoints(
        self, services: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]
    ) -> bool:
        """Apply the table for Services + ``v1/Endpoints``; returns whether ``nft`` ran."""
        checked = check_with_endpoints(
            services, endpoints, service_cidr=self.service_cidr, lb_allowed=self.lb_address_allowed
        )
        return await self._apply(checked)

    async def _apply(self, checked: Checked) -> bool:
        self.rejected = checked.rejected
        for r in checked.rejected:
            log.warning("service %s left out of the node's rules: %s", r.key, r.reason)
        try:
            return await self.applier.apply(self._render(checked))
        except (CommandFailed, ValueError, KeyError, TypeError) as exc:
            refused = await self._refused_alone(checked)
            if not refused:
                raise  # not one Service's doing (nft missing, kernel refusing the table...)
            log.warning("nft refused the table (%s); retrying without %s", exc, sorted(refused))
        for key, reason in sorted(refused.items()):
            checked = checked.without([key], reason)
        self.rejected = checked.rejected
        return await self.applier.apply(self._render(checked))

    async def _refused_alone(self, checked: Checked) -> dict[ServiceKey, str]:
        """Each Service rendered and checked on its own: those that fail, with the error."""
        refused: dict[ServiceKey, str] = {}
        for svc in checked.services:
            alone = Checked([svc], {svc.key: checked.endpoints.get(svc.key, [])}, [])
            try:
                ruleset = self._render(alone)
            except (ValueError, KeyError, TypeError) as exc:
                refused[svc.key] = f"its rules cannot be rendered: {exc!r}"
                continue
            error = await self.applier.check(ruleset)
            if error is not None:
                refused[svc.key] = f"nft refuses its rules: {error}"
        return refused

    async def remove(self) -> None:
        """Delete berth's table (node teardown)."""
        await self.applier.remove()
