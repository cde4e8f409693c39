"""LoadBalancer Services' node ports as upstream allocates them: a healthCheckNodePort for
externalTrafficPolicy Local (kept across updates, released when no longer needed), none of
the port node ports when allocateLoadBalancerNodePorts is false."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from berth.apiserver.errors import ApiError
from berth.apiserver.options import DeleteOptions
from tests.unit.apiserver.test_service_allocation import SVC, _keys, _servers


def _lb(name: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}
    body.update(spec)
    return {"metadata": {"name": name}, "spec": body}


def test_local_policy_gets_a_health_check_port_kept_then_released() -> None:
    async def main() -> None:
        store, (a,) = await _servers(1)
        made = await a.create(SVC, "default", _lb("web", externalTrafficPolicy="Local"), user=None)
        hc = made["spec"]["healthCheckNodePort"]
        np = made["spec"]["ports"][0]["nodePort"]
        assert hc != np
        assert sorted(await _keys(store, "nodeports")) == sorted([str(hc), str(np)])
        made["spec"]["ports"][0]["port"] = 81  # an unrelated change keeps the port
        again = await a.update(SVC, "default", "web", made, user=None)
        assert again["spec"]["healthCheckNodePort"] == hc
        again["spec"]["externalTrafficPolicy"] = "Cluster"
        cluster = await a.update(SVC, "default", "web", again, user=None)
        assert "healthCheckNodePort" not in cluster["spec"]
        assert await _keys(store, "nodeports") == [str(np)]

    asyncio.run(main())


def test_cluster_policy_gets_no_health_check_port_and_may_not_name_one() -> None:
    async def main() -> None:
        _, (a,) = await _servers(1)
        made = await a.create(SVC, "default", _lb("web"), user=None)
        assert made["spec"]["externalTrafficPolicy"] == "Cluster"
        assert "healthCheckNodePort" not in made["spec"]
        with pytest.raises(ApiError) as caught:
            await a.create(SVC, "default", _lb("bad", healthCheckNodePort=30005), user=None)
        assert caught.value.code == 422
        assert "spec.healthCheckNodePort" in str(caught.value.details)

    asyncio.run(main())


def test_a_named_health_check_port_is_reserved() -> None:
    async def main() -> None:
        store, (a,) = await _servers(1)
        made = await a.create(
            SVC,
            "default",
            _lb("web", externalTrafficPolicy="Local", healthCheckNodePort=30006),
            user=None,
        )
        assert made["spec"]["healthCheckNodePort"] == 30006
        assert "30006" in await _keys(store, "nodeports")
        await a.delete(SVC, "default", "web", DeleteOptions(), user=None)
        assert await _keys(store, "nodeports") == []

    asyncio.run(main())


def test_no_node_ports_when_allocation_is_off() -> None:
    async def main() -> None:
        store, (a,) = await _servers(1)
        made = await a.create(
            SVC, "default", _lb("web", allocateLoadBalancerNodePorts=False), user=None
        )
        assert "nodePort" not in made["spec"]["ports"][0]
        assert await _keys(store, "nodeports") == []
        named = _lb("named", allocateLoadBalancerNodePorts=False)
        named["spec"]["ports"][0]["nodePort"] = 30003
        kept = await a.create(SVC, "default", named, user=None)
        assert kept["spec"]["ports"][0]["nodePort"] == 30003
        # the default (true) allocates, as upstream
        assert (await a.create(SVC, "default", _lb("dflt"), user=None))["spec"]["ports"][0][
            "nodePort"
        ]

    asyncio.run(main())


def test_type_change_drops_the_type_dependent_fields() -> None:
    async def main() -> None:
        store, (a,) = await _servers(1)
        made = await a.create(SVC, "default", _lb("web", externalTrafficPolicy="Local"), user=None)
        made["spec"]["type"] = "ClusterIP"
        made["spec"].pop("externalTrafficPolicy")
        plain = await a.update(SVC, "default", "web", made, user=None)
        assert "healthCheckNodePort" not in plain["spec"]
        assert "allocateLoadBalancerNodePorts" not in plain["spec"]
        assert await _keys(store, "nodeports") == []

    asyncio.run(main())


def test_load_balancer_class_rules() -> None:
    async def main() -> None:
        (a,) = (await _servers(1))[1]
        with pytest.raises(ApiError) as caught:
            await a.create(
                SVC,
                "default",
                {
                    "metadata": {"name": "plain"},
                    "spec": {"ports": [{"port": 80}], "loadBalancerClass": "example.com/lb"},
                },
                user=None,
            )
        assert "spec.loadBalancerClass" in str(caught.value.details)
        with pytest.raises(ApiError):
            await a.create(SVC, "default", _lb("bad", loadBalancerClass="not a name!"), user=None)
        made = await a.create(
            SVC, "default", _lb("web", loadBalancerClass="example.com/lb"), user=None
        )
        # immutable while a LoadBalancer: the address's owner would change under it
        made["spec"]["loadBalancerClass"] = "example.com/other"
        with pytest.raises(ApiError) as caught:
            await a.update(SVC, "default", "web", made, user=None)
        assert "field is immutable" in str(caught.value.details)
        made["spec"]["loadBalancerClass"] = "example.com/lb"
        made["spec"]["type"] = "ClusterIP"
        plain = await a.update(SVC, "default", "web", made, user=None)
        assert "loadBalancerClass" not in plain["spec"]

    asyncio.run(main())
