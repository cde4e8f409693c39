"""Node removal's drain: an eviction a PodDisruptionBudget refuses (429) is retried until the
drain's deadline, then the refusal stops the removal."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from berth.api.resources import NODES, PODS
from berth.client import errors
from provisioner.phases.cluster.nodes import drain
from tests.harness.fake_client import FakeClient


def _refused() -> errors.TooManyRequests:
    return errors.TooManyRequests(
        429, "TooManyRequests", "Cannot evict pod as it would violate the pod's disruption budget."
    )


def _cluster() -> FakeClient:
    api = FakeClient()
    api.seed(NODES, {"metadata": {"name": "n1"}, "spec": {}})
    api.seed(
        PODS,
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
        },
    )
    return api


def test_a_refused_eviction_is_retried_until_it_is_allowed() -> None:
    api = _cluster()
    api.fail_next("eviction", PODS, _refused())
    evicted = asyncio.run(drain(cast(Any, api), "n1", within=2))
    assert evicted == 1
    assert len(api.writes("evict", PODS)) == 1  # the refused attempt raised before recording


def test_an_eviction_still_refused_at_the_deadline_stops_the_removal() -> None:
    api = _cluster()
    for _ in range(5):
        api.fail_next("eviction", PODS, _refused())
    with pytest.raises(errors.TooManyRequests):
        asyncio.run(drain(cast(Any, api), "n1", within=0))
