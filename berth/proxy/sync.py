"""One call for the agent: Kubernetes Services + EndpointSlices in, berth's nft table out.

Level-triggered: call :meth:`ServiceProxy.sync` with the *complete* current lists after any
change (or on a timer); it renders everything and applies only when the ruleset changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from berth.network.command import Runner, SubprocessRunner
from berth.proxy.apply import NftApplier
from berth.proxy.model import (
    endpoints_from_k8s_endpoints,
    endpoints_from_slices,
    service_from_k8s,
)
from berth.proxy.render import render_ruleset


class ServiceProxy:
    """Renders and applies; remembers the last ruleset so unchanged syncs cost nothing."""

    def __init__(self, *, cluster_cidr: str | None, runner: Runner | None = None) -> None:
        self.cluster_cidr = cluster_cidr
        self.applier = NftApplier(runner or SubprocessRunner())

    def render(
        self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
    ) -> str:
        parsed = [s for s in (service_from_k8s(o) for o in services) if s is not None]
        return render_ruleset(parsed, endpoints_from_slices(slices), cluster_cidr=self.cluster_cidr)

    async def sync(
        self, services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]]
    ) -> bool:
        """Apply the table for these objects; returns whether ``nft`` had to run."""
        return await self.applier.apply(self.render(services, slices))

    def render_from_endpoints(
        self, services: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]
    ) -> str:
        """Like :meth:`render`, from ``v1/Endpoints`` objects instead of EndpointSlices."""
        parsed = [s for s in (service_from_k8s(o) for o in services) if s is not None]
        by_service = dict(endpoints_from_k8s_endpoints(o) for o in endpoints)
        return render_ruleset(parsed, by_service, cluster_cidr=self.cluster_cidr)

    async def sync_from_endpoints(
        self, services: Iterable[Mapping[str, Any]], endpoints: Iterable[Mapping[str, Any]]
    ) -> bool:
        """Apply the table for Services + ``v1/Endpoints``; returns whether ``nft`` ran."""
        return await self.applier.apply(self.render_from_endpoints(services, endpoints))

    async def remove(self) -> None:
        """Delete berth's table (node teardown)."""
        await self.applier.remove()
