"""A deleted pod is signalled only once Services stopped routing to it: the Endpoints view
(EndpointWithdrawal) and PodManager's hold before it stops containers."""

from __future__ import annotations

from berth.agent.withdrawal import LIMIT_SECONDS, POLL_SECONDS, EndpointWithdrawal, hold_limit
from berth.client.interface import Obj
from berth.machinery.clock import FakeClock
from tests.unit.agent.rig import Rig as PodRig
from tests.unit.agent.rig import run

POD_IP = "10.244.3.2"  # the first address the rig's pod gets


def endpoints(name: str, *ready: str, unready: tuple[str, ...] = ()) -> Obj:
    subset: Obj = {"ports": [{"port": 80, "protocol": "TCP"}]}
    if ready:
        subset["addresses"] = [{"ip": ip} for ip in ready]
    if unready:
        subset["notReadyAddresses"] = [{"ip": ip} for ip in unready]
    return {"metadata": {"name": name, "namespace": "default"}, "subsets": [subset]}


def test_an_address_is_held_while_listed_then_for_the_margin() -> None:
    clock = FakeClock()
    view = EndpointWithdrawal(clock, margin=1.0)
    assert view.hold("10.0.0.5") == 0.0, "never listed: nothing to wait for"
    view.observe(endpoints("web", "10.0.0.5", "10.0.0.6"))
    view.observe(endpoints("api", "10.0.0.5"))
    assert view.hold("10.0.0.5") == POLL_SECONDS
    clock.advance(3)
    view.observe(endpoints("web", "10.0.0.6"))
    assert view.listed("10.0.0.5"), "the api Service still lists it"
    clock.advance(2)
    view.observe(endpoints("api", unready=("10.0.0.5",)))  # not-ready addresses get no traffic
    assert not view.listed("10.0.0.5")
    assert view.hold("10.0.0.5") == 1.0
    clock.advance(0.4)
    assert abs(view.hold("10.0.0.5") - 0.6) < 1e-9
    clock.advance(0.6)
    assert view.hold("10.0.0.5") == 0.0
    assert view.hold("10.0.0.6") == POLL_SECONDS


def test_a_deleted_endpoints_object_withdraws_its_addresses_and_relisting_resets() -> None:
    clock = FakeClock()
    view = EndpointWithdrawal(clock, margin=1.0)
    handlers = view.handlers()
    assert handlers.on_add is not None
    assert handlers.on_update is not None
    assert handlers.on_delete is not None
    handlers.on_add(endpoints("web", "10.0.0.5"))
    handlers.on_delete(endpoints("web", "10.0.0.5"))
    assert view.hold("10.0.0.5") == 1.0
    handlers.on_update(endpoints("web"), endpoints("web", "10.0.0.5"))
    assert view.hold("10.0.0.5") == POLL_SECONDS


def test_the_hold_is_half_the_grace_period_and_bounded() -> None:
    assert hold_limit(0) == 0
    assert hold_limit(4) == 2
    assert hold_limit(3600) == LIMIT_SECONDS


class Rig(PodRig):
    """The pod rig with an Endpoints view of a 1 s margin."""

    view: EndpointWithdrawal

    def __init__(self) -> None:
        super().__init__(withdrawal=lambda clock: EndpointWithdrawal(clock, margin=1.0))


def test_a_listed_pod_keeps_running_until_withdrawn_plus_the_margin() -> None:
    async def body() -> None:
        r = Rig()
        r.add()
        await r.sync()
        assert r.runtime.running() == 1
        r.view.observe(endpoints("web", POD_IP))
        await r.delete(grace=30)
        await r.sync()
        assert r.runtime.running() == 1, "signalled while a Service still routes to it"
        assert not r.gone()
        r.clock.advance(2)
        await r.sync()
        assert r.runtime.running() == 1
        r.view.observe(endpoints("web"))  # the endpoints controller withdrew it
        r.clock.advance(0.5)
        await r.sync()
        assert r.runtime.running() == 1, "inside the margin for other nodes' proxies"
        r.clock.advance(0.5)
        await r.sync()
        assert r.runtime.running() == 0
        assert r.gone()

    run(body())


def test_the_hold_never_exceeds_half_the_grace_period() -> None:
    async def body() -> None:
        r = Rig()
        r.add()
        await r.sync()
        r.view.observe(endpoints("web", POD_IP))  # and it is never withdrawn
        await r.delete(grace=4)
        await r.sync()
        r.clock.advance(1.9)
        await r.sync()
        assert r.runtime.running() == 1
        r.clock.advance(0.1)
        await r.sync()
        assert r.runtime.running() == 0
        assert r.gone()

    run(body())


def test_unlisted_host_network_and_forced_deletions_are_not_held() -> None:
    async def body() -> None:
        for spec, listed, grace in (({}, False, 30), ({"hostNetwork": True}, True, 30),
                                    ({}, True, 0)):  # fmt: skip
            r = Rig()
            r.add(**spec)
            await r.sync()
            if listed:
                r.view.observe(endpoints("web", POD_IP, "192.0.2.10"))
            await r.delete(grace=grace)
            await r.sync()
            assert r.gone(), (spec, listed, grace)
            assert r.runtime.running() == 0

    run(body())
