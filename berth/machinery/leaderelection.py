"""Leader election on a ``coordination.k8s.io/v1`` Lease, so several replicas of a component
can run with exactly one active.

Concurrency contract: one :class:`LeaderElector` per process and lease, running on one loop.
Safety rests on the API server's compare-and-swap: every acquire or renew is a PUT carrying the
Lease's resourceVersion, so two candidates can never both succeed on the same version. A
candidate treats a lease as expired only after it has *observed* the same record unchanged for
``lease_duration`` on its own clock (as client-go does), so clock skew between hosts does not
matter. A leader that fails to renew for ``renew_deadline`` stops leading (its work task is
cancelled) before any other candidate can take over (``renew_deadline < lease_duration``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from berth.api.meta import format_micro_time
from berth.api.resources import LEASES
from berth.client import errors
from berth.client.interface import ApiClient, Obj
from berth.machinery.clock import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaderElectionConfig:
    name: str
    identity: str
    namespace: str = "kube-system"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    release_on_cancel: bool = True


class LeaderElector:
    def __init__(self, client: ApiClient, clock: Clock, config: LeaderElectionConfig) -> None:
        if not config.retry_period < config.renew_deadline < config.lease_duration:
            raise ValueError("need retry_period < renew_deadline < lease_duration")
        self.client = client
        self.clock = clock
        self.config = config
        self._observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
        self._observed_at = 0.0
        self._last_renew = 0.0
        self.is_leader = False
        self.transitions_seen = 0

    def _spec(self, old: dict[str, Any] | None) -> dict[str, Any]:
        now = format_micro_time(self.clock.now())
        spec = dict(old or {})
        if spec.get("holderIdentity") != self.config.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = int(spec.get("leaseTransitions", 0)) + (1 if old else 0)
        spec["holderIdentity"] = self.config.identity
        spec["leaseDurationSeconds"] = int(self.config.lease_duration)
        spec["renewTime"] = now
        return spec

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this candidate holds the lease afterwards."""
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.name, namespace=cfg.namespace)
        except errors.NotFound:
            lease = None
        except errors.ApiError as exc:
            log.warning("leader election: cannot read lease %s: %s", cfg.name, exc)
            return False
        if lease is None:
            body: Obj = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": self._spec(None),
            }
            try:
                await self.client.create(LEASES, body, namespace=cfg.namespace)
            except errors.ApiError:
                return False
            self._observe(cfg.identity, body["spec"]["renewTime"])
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        renew = str(spec.get("renewTime") or "")
        if (holder, renew) != self._observed:
            self._observe(holder, renew)
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_duration)
        expired = self.clock.monotonic() >= self._observed_at + duration
        if holder and holder != cfg.identity and not expired:
            return False
        lease["spec"] = self._spec(spec)
        try:
            await self.client.update(LEASES, lease)
        except errors.ApiError:
            return False
        self._observe(cfg.identity, lease["spec"]["renewTime"])
        return True

    def _observe(self, holder: str, renew: str) -> None:
        self._observed = (holder, renew)
        self._observed_at = self.clock.monotonic()

    async def release(self) -> None:
        """Give the lease up so another candidate takes over without waiting."""
        cfg = self.config
        try:
            lease = await self.client.get(LEASES, cfg.name, namespace=cfg.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") != cfg.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["leaseDurationSeconds"] = 1
            await self.client.update(LEASES, lease)
        except errors.ApiError as exc:
            log.warning("leader election: could not release lease %s: %s", cfg.name, exc)

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Campaign forever: acquire, run ``lead()`` while renewing, and cancel it when
        leadership is lost (then campaign again)."""
        cfg = self.config
        while True:
            while not await self.try_acquire_or_renew():
                await self.clock.sleep(cfg.retry_period)
            self.is_leader = True
            self.transitions_seen += 1
            self._last_renew = self.clock.monotonic()
            log.info("leader election: %s became leader of %s", cfg.identity, cfg.name)
            work = asyncio.create_task(lead())
            try:
                await self._renew_until_lost(work)
            finally:
                self.is_leader = False
                if not work.done():
                    work.cancel()
                await asyncio.gather(work, return_exceptions=True)
            failure = work.exception() if work.done() and not work.cancelled() else None
            if work.done() and not work.cancelled() and failure is None:
                return  # the work finished on its own
            if failure is not None:
                # The work crashed while leading: say why, and pause before leading again so a
                # persistent failure does not spin.
                log.error(
                    "leader election: %s: work failed: %s", cfg.name, failure, exc_info=failure
                )
                await self.clock.sleep(cfg.retry_period)
            else:
                log.warning("leader election: %s lost leadership of %s", cfg.identity, cfg.name)

    async def _renew_until_lost(self, work: asyncio.Task[None]) -> None:
        cfg = self.config
        try:
            while not work.done():
                # Wake for the next renewal, or as soon as the work ends on its own.
                tick = asyncio.ensure_future(self.clock.sleep(cfg.retry_period))
                try:
                    await asyncio.wait({tick, work}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    tick.cancel()
                if work.done():
                    return
                if await self.try_acquire_or_renew():
                    self._last_renew = self.clock.monotonic()
                elif self.clock.monotonic() - self._last_renew >= cfg.renew_deadline:
                    return
        except asyncio.CancelledError:
            if cfg.release_on_cancel:
                await asyncio.shield(self.release())
            raise
