"""Hold the VIP while this host holds the lease; drop it as soon as it might not.

One :class:`VipHolder` per host. Each ``retry_period`` it tries to acquire or renew the Lease
through its own API server (each try bounded, so a hung server counts as a failed renewal):

* lease won: add the address and announce it by gratuitous ARP; while holding, announce again
  every ``announce_interval`` and put the address back if something removed it;
* no renewal for ``renew_deadline``: drop the address. That is shorter than the lease duration,
  so the address is gone before any other host may take the lease;
* stopped (SIGTERM): drop the address and release the lease, so another host takes over at its
  next try instead of waiting for the lease to expire;
* the address cannot be added: release the lease and wait one lease duration, so a host
  that can hold it takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from berth.client import errors
from berth.machinery.clock import Clock
from berth.machinery.leaderelection import LeaderElector
from berth.vip.addresses import AddressError
from berth.vip.config import VipConfig

log = logging.getLogger(__name__)


class Addresses(Protocol):
    def present(self) -> bool: ...

    def add(self) -> None: ...

    def remove(self) -> None: ...


class Announcer(Protocol):
    def announce(self) -> None: ...


class VipHolder:
    def __init__(
        self,
        elector: LeaderElector,
        addresses: Addresses,
        announcer: Announcer,
        clock: Clock,
        config: VipConfig,
    ) -> None:
        self.elector = elector
        self.addresses = addresses
        self.announcer = announcer
        self.clock = clock
        self.config = config
        self.holding = False
        self._last_renew = 0.0
        self._next_announce = 0.0

    async def _attempt(self) -> bool:
        """One acquire-or-renew, bounded so that a hung API server is a failure in time."""
        budget = self.config.renew_deadline - self.config.retry_period
        try:
            return await asyncio.wait_for(self.elector.try_acquire_or_renew(), timeout=budget)
        except (TimeoutError, errors.ApiError, OSError) as exc:
            log.warning("vip: lease %s: %s", self.config.lease_name, exc or type(exc).__name__)
            return False

    async def step(self) -> None:
        """One round: try the lease, then take, keep or drop the address accordingly."""
        won = await self._attempt()
        now = self.clock.monotonic()
        if won:
            self._last_renew = now
            if not self.holding:
                await self._take(now)
            elif now >= self._next_announce:
                self._keep(now)
        elif self.holding and now - self._last_renew >= self.config.renew_deadline:
            self._drop(f"lease not renewed for {now - self._last_renew:.1f} s")

    async def _take(self, now: float) -> None:
        try:
            self.addresses.add()
        except (AddressError, OSError) as exc:
            log.error("vip: cannot add %s: %s; handing the lease over", self.config.address, exc)
            await self.elector.release()
            await self.clock.sleep(self.config.lease_duration)
            return
        self.holding = True
        log.info("vip: %s holds %s", self.config.identity, self.config.address)
        self._announce(now)

    def _keep(self, now: float) -> None:
        try:
            if not self.addresses.present():
                log.warning(
                    "vip: %s was removed from the interface; adding it back", self.config.address
                )
                self.addresses.add()
        except (AddressError, OSError) as exc:
            log.error("vip: %s", exc)
        self._announce(now)

    def _announce(self, now: float) -> None:
        self._next_announce = now + self.config.announce_interval
        try:
            self.announcer.announce()
        except OSError as exc:  # the address is up; neighbours learn it when they ask
            log.error("vip: gratuitous ARP for %s failed: %s", self.config.address, exc)

    def _drop(self, why: str) -> None:
        self.holding = False
        log.warning("vip: %s drops %s: %s", self.config.identity, self.config.address, why)
        try:
            self.addresses.remove()
        except (AddressError, OSError) as exc:
            log.error("vip: %s", exc)

    def clear_stale(self) -> None:
        """At start nothing is held yet: an address left by a previous run goes."""
        try:
            if self.addresses.present():
                self._drop("left over from a previous run")
        except (AddressError, OSError) as exc:
            log.error("vip: %s", exc)

    async def run(self) -> None:
        self.clear_stale()
        try:
            while True:
                await self.step()
                await self.clock.sleep(self.config.retry_period)
        finally:
            if self.holding:
                self._drop("stopping")
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.elector.release())
