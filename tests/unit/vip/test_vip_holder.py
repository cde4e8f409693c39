"""The VIP holder: one host holds the address, a power-cut holder is replaced within the
5 s budget, a holder that cannot renew drops the address before anyone else may take it, and a
stopping holder hands over at once. Fake clock, fake ``ip`` and ARP, the fake API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from berth.api.resources import LEASES
from berth.client import errors
from berth.client.interface import ApiClient
from berth.machinery.clock import FakeClock
from berth.machinery.leaderelection import LeaderElectionConfig, LeaderElector
from berth.vip.addresses import AddressError
from berth.vip.config import VipConfig
from berth.vip.holder import VipHolder
from tests.harness.fake_client import FakeClient

VIP = "10.0.0.200"


class HostApi:
    """One host's view of the API: its own API server, which can go down."""

    def __init__(self, api: FakeClient) -> None:
        self.api = api
        self.down = False
        self.hang = False

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.api, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.hang:
                await asyncio.Event().wait()
            if self.down:
                raise errors.Unreachable("connection refused")
            return await target(*args, **kwargs)

        return call


@dataclass
class FakeAddresses:
    on_interface: bool = False
    calls: list[str] = field(default_factory=list)
    fail_add: bool = False

    def present(self) -> bool:
        return self.on_interface

    def add(self) -> None:
        self.calls.append("add")
        if self.fail_add:
            raise AddressError("ip addr add: Operation not permitted")
        self.on_interface = True

    def remove(self) -> None:
        self.calls.append("remove")
        self.on_interface = False


@dataclass
class FakeAnnouncer:
    sent: int = 0

    def announce(self) -> None:
        self.sent += 1


@dataclass
class Host:
    name: str
    api: HostApi
    holder: VipHolder
    addresses: FakeAddresses
    announcer: FakeAnnouncer


def config(identity: str) -> VipConfig:
    # the timings these tests were written for (the defaults are slower: see berth.vip.config)
    return VipConfig(
        address=VIP,
        kubeconfig=Path("/k"),
        identity=identity,
        lease_duration=2.0,
        renew_deadline=1.5,
        retry_period=0.25,
    )


def make_host(name: str, api: FakeClient, clock: FakeClock) -> Host:
    cfg = config(name)
    view = HostApi(api)
    elector = LeaderElector(
        cast(ApiClient, view),
        clock,
        LeaderElectionConfig(
            name=cfg.lease_name,
            identity=name,
            lease_duration=cfg.lease_duration,
            renew_deadline=cfg.renew_deadline,
            retry_period=cfg.retry_period,
        ),
    )
    addresses, announcer = FakeAddresses(), FakeAnnouncer()
    return Host(
        name, view, VipHolder(elector, addresses, announcer, clock, cfg), addresses, announcer
    )


def cluster() -> tuple[FakeClock, FakeClient, list[Host]]:
    clock = FakeClock()
    api = FakeClient(now=clock.now)
    return clock, api, [make_host(n, api, clock) for n in ("n1", "n2", "n3")]


async def rounds(clock: FakeClock, hosts: list[Host], seconds: float) -> None:
    """Every host steps once per retry period for ``seconds``."""
    period = hosts[0].holder.config.retry_period
    for _ in range(round(seconds / period)):
        for host in hosts:
            await host.holder.step()
        clock.advance(period)


def holders(hosts: list[Host]) -> list[str]:
    return [h.name for h in hosts if h.addresses.on_interface]


def lease_holder(api: FakeClient) -> str:
    lease = api.stored(LEASES, "kube-system/berth-vip")
    assert lease is not None
    return str(lease["spec"]["holderIdentity"])


def test_exactly_one_host_holds_and_announces_the_vip() -> None:
    async def body() -> None:
        clock, api, hosts = cluster()
        await rounds(clock, hosts, 10)
        assert holders(hosts) == ["n1"]
        assert lease_holder(api) == "n1"
        n1 = hosts[0]
        assert n1.addresses.calls == ["add"]
        # announced on taking it, then every announce interval (2 s) while held
        assert 5 <= n1.announcer.sent <= 6
        assert all(h.announcer.sent == 0 for h in hosts[1:])

    asyncio.run(body())


def test_a_power_cut_holder_is_replaced_within_the_budget() -> None:
    async def body() -> None:
        clock, api, hosts = cluster()
        await rounds(clock, hosts, 3)
        cut = clock.monotonic()
        survivors = hosts[1:]  # n1 loses power: it never steps again
        period = hosts[0].holder.config.retry_period
        while not any(h.addresses.on_interface for h in survivors):
            await rounds(clock, survivors, period)
            assert clock.monotonic() - cut < 5.0, "no survivor took the VIP within 5 s"
        moved = clock.monotonic() - cut
        taken = [h for h in survivors if h.addresses.on_interface]
        assert len(taken) == 1
        assert taken[0].announcer.sent == 1, "the new holder announces at once"
        assert lease_holder(api) == taken[0].name
        # lease duration 2 s, checked every 0.25 s: at most duration + two periods
        assert 2.0 <= moved <= 2.5, moved

    asyncio.run(body())


def test_a_holder_whose_api_server_fails_drops_the_vip_before_another_takes_it() -> None:
    async def body() -> None:
        clock, _, hosts = cluster()
        await rounds(clock, hosts, 3)
        n1 = hosts[0]
        n1.api.down = True  # its API server (or its datastore quorum) is gone
        dropped_at = taken_at = None
        start = clock.monotonic()
        for _ in range(20):
            await rounds(clock, hosts, 0.5)
            now = clock.monotonic() - start
            if dropped_at is None and not n1.addresses.on_interface:
                dropped_at = now
            if taken_at is None and any(h.addresses.on_interface for h in hosts[1:]):
                taken_at = now
            assert len(holders(hosts)) <= 1, "two hosts hold the VIP at once"
        assert dropped_at is not None
        assert taken_at is not None
        assert dropped_at < taken_at
        assert n1.addresses.calls == ["add", "remove"]

    asyncio.run(body())


def test_a_hung_api_server_counts_as_a_failed_renewal() -> None:
    async def body() -> None:
        clock, _, hosts = cluster()
        n1 = hosts[0]
        await n1.holder.step()
        assert n1.addresses.on_interface
        n1.api.hang = True
        clock.advance(0.5)
        # the try is bounded in real time (renew deadline - retry period = 1 s), so a hung
        # server cannot keep the holder from dropping the address
        await n1.holder.step()
        assert n1.addresses.on_interface, "one failed try is within the renew deadline"
        clock.advance(1.5)
        await n1.holder.step()
        assert not n1.addresses.on_interface

    asyncio.run(body())


def test_an_address_removed_behind_the_holders_back_is_added_again() -> None:
    async def body() -> None:
        clock, _, hosts = cluster()
        n1 = hosts[0]
        await rounds(clock, [n1], 1)
        n1.addresses.on_interface = False
        await rounds(clock, [n1], 2.5)
        assert n1.addresses.on_interface
        assert n1.addresses.calls == ["add", "add"]

    asyncio.run(body())


def test_a_host_that_cannot_add_the_address_hands_the_lease_over() -> None:
    async def body() -> None:
        clock, api, hosts = cluster()
        n1, n2 = hosts[0], hosts[1]
        n1.addresses.fail_add = True
        step = asyncio.ensure_future(n1.holder.step())  # adds, fails, releases, backs off
        await asyncio.sleep(0.01)
        assert lease_holder(api) == ""
        await n2.holder.step()
        assert n2.addresses.on_interface
        clock.advance(2)
        await step
        assert not n1.holder.holding

    asyncio.run(body())


def test_stopping_drops_the_vip_and_releases_the_lease() -> None:
    async def body() -> None:
        clock, api, hosts = cluster()
        n1, n2 = hosts[0], hosts[1]
        n1.addresses.on_interface = True  # left by a crashed previous run
        task = asyncio.create_task(n1.holder.run())
        await asyncio.sleep(0.01)
        assert n1.addresses.calls == ["remove", "add"], "stale address cleared, then taken"
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert not n1.addresses.on_interface
        assert lease_holder(api) == ""
        clock.advance(0.5)
        await n2.holder.step()
        assert n2.addresses.on_interface, "taken over at the next try, not after expiry"

    asyncio.run(body())
