"""Leader election: one of two candidates leads; the other takes over only after the lease
has been observed unrenewed for its duration, or at once after a release."""

from __future__ import annotations

import asyncio

from berth.api.resources import LEASES
from berth.machinery.clock import FakeClock
from berth.machinery.leaderelection import LeaderElectionConfig, LeaderElector
from tests.harness.fake_client import FakeClient


def electors(clock: FakeClock, api: FakeClient) -> tuple[LeaderElector, LeaderElector]:
    def make(ident: str) -> LeaderElector:
        return LeaderElector(api, clock, LeaderElectionConfig(name="sched", identity=ident))

    return make("a"), make("b")


def test_only_one_candidate_acquires_and_takeover_waits_for_expiry() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        a, b = electors(clock, api)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        clock.advance(10)
        assert await a.try_acquire_or_renew()  # renewal
        clock.advance(14)
        assert not await b.try_acquire_or_renew(), "renewed 14s ago: still valid"
        clock.advance(16)
        assert await b.try_acquire_or_renew(), "a stopped renewing 30s ago"
        lease = api.stored(LEASES, "kube-system/sched")
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "b"
        assert lease["spec"]["leaseTransitions"] == 1
        assert not await a.try_acquire_or_renew()

    asyncio.run(body())


def test_release_hands_over_quickly() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        a, b = electors(clock, api)
        assert await a.try_acquire_or_renew()
        assert not await b.try_acquire_or_renew()
        await a.release()
        clock.advance(1)
        assert await b.try_acquire_or_renew()

    asyncio.run(body())


def test_run_cancels_work_when_renewal_fails_past_deadline() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        a, _ = electors(clock, api)
        started = asyncio.Event()
        cancelled = asyncio.Event()

        async def lead() -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        runner = asyncio.create_task(a.run(lead))
        await clock.step(0)
        assert started.is_set()
        # Someone else steals the lease (e.g. an operator edits it): renewals now conflict.
        lease = api.stored(LEASES, "kube-system/sched")
        assert lease is not None
        lease["spec"]["holderIdentity"] = "intruder"
        await api.update(LEASES, lease)
        for _ in range(6):
            await clock.step(2)
        assert cancelled.is_set()
        assert not a.is_leader
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(body())


def test_crashing_work_is_restarted_after_a_pause_while_still_leading() -> None:
    async def body() -> None:
        clock = FakeClock()
        api = FakeClient(now=clock.now)
        a, _ = electors(clock, api)
        runs = 0

        async def lead() -> None:
            nonlocal runs
            runs += 1
            raise RuntimeError("controller exploded")

        runner = asyncio.create_task(a.run(lead))
        await clock.step(0)
        assert runs == 1
        await clock.step(1.9)
        assert runs == 1, "no immediate respin"
        await clock.step(0.2)
        assert runs == 2
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)

    asyncio.run(body())
