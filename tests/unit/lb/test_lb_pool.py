import asyncio

import pytest

from berth.lb.config import Backend, HealthConfig, LBConfig
from berth.lb.pool import BackendPool
from berth.lb.proxy import LoadBalancer

A, B, C = Backend("10.0.0.1", 6443), Backend("10.0.0.2", 6443), Backend("10.0.0.3", 6443)


def test_candidates_rotate_over_healthy_backends() -> None:
    pool = BackendPool([A, B, C])
    firsts = [pool.candidates()[0] for _ in range(6)]
    assert firsts == [A, B, C, A, B, C]


def test_fall_takes_a_backend_down_and_rise_brings_it_back() -> None:
    changes: list[tuple[Backend, bool]] = []
    pool = BackendPool([A, B], rise=2, fall=2)
    pool.subscribe(lambda backend, up: changes.append((backend, up)))
    pool.record(A, False, "refused")
    assert pool.is_up(A), "one failure is below fall=2"
    pool.record(A, True)
    pool.record(A, False, "refused")
    assert pool.is_up(A), "a pass in between resets the count"
    pool.record(A, False, "refused")
    assert not pool.is_up(A)
    assert pool.healthy() == (B,)
    pool.record(A, True)
    assert not pool.is_up(A), "rise=2 needs two passes"
    pool.record(A, True)
    assert pool.is_up(A)
    assert changes == [(A, False), (A, True)]


def test_a_failed_connect_is_a_full_fall() -> None:
    pool = BackendPool([A, B, C], fall=3)
    pool.connect_failed(B, "connection refused")
    assert not pool.is_up(B)
    assert pool.states[B].last_error == "connection refused"
    for _ in range(6):
        order = pool.candidates()
        assert order[-1] == B, "a down backend is tried last, never first"


def test_all_down_still_offers_every_backend_as_last_resort() -> None:
    pool = BackendPool([A, B], fall=1)
    pool.record(A, False)
    pool.record(B, False)
    assert sorted(pool.candidates(), key=str) == [A, B]


def test_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one backend"):
        BackendPool([])


def test_check_once_counts_each_backend_result() -> None:
    down = {B}

    async def check(backend: Backend) -> str | None:
        return "refused" if backend in down else None

    config = LBConfig(backends=(A, B, C), health=HealthConfig(fall=1))
    balancer = LoadBalancer(config, check=check)
    asyncio.run(balancer.check_once())
    assert balancer.pool.healthy() == (A, C)
    down.clear()
    asyncio.run(balancer.check_once())
    assert balancer.pool.healthy() == (A, B, C)
