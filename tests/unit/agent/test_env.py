"""Container environment (envFrom, $(VAR) expansion, downward API, resources, ConfigMap/Secret
keys, optional sources) and ConfigMap/Secret volume files; the agent's
CreateContainerConfigError and FailedMount until a missing source appears."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import Any

import pytest

from berth.agent.env import (
    SharedFor,
    SharedSources,
    SourceError,
    expand,
    resolve_env,
    resolve_volume_files,
)
from berth.api.resources import CONFIGMAPS, PODS, SECRETS
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.machinery.clock import FakeClock
from berth.machinery.controller import Retry
from berth.machinery.objects import freeze
from tests.harness.fake_client import FakeClient, count_gets
from tests.unit.agent.rig import KEY, Rig

POD = freeze(
    {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa"},
    }
)


def test_expand_references_and_escapes() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("$(A)-$(B)-$(C)-$$(A)", env) == "1-two-$(C)-$(A)"


def test_resolves_every_source_in_order() -> None:
    async def body() -> None:
        api = FakeClient()
        api.seed(
            CONFIGMAPS,
            {
                "metadata": {"name": "cfg", "namespace": "ns"},
                "data": {"MODE": "fast", "LEVEL": "3"},
            },
        )
        api.seed(
            SECRETS,
            {
                "metadata": {"name": "db", "namespace": "ns"},
                "data": {"password": base64.b64encode(b"s3cret").decode()},
            },
        )
        container: dict[str, Any] = {
            "name": "c",
            "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
                {"secretRef": {"name": "absent", "optional": True}},
            ],
            "env": [
                {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "MODE"}}},
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}},
                },
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {
                    "name": "MEM_MI",
                    "valueFrom": {
                        "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}
                    },
                },
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "URL", "value": "http://$(IP):80/$(POD)"},
                {
                    "name": "GONE",
                    "valueFrom": {
                        "configMapKeyRef": {"name": "cfg", "key": "nope", "optional": True}
                    },
                },
            ],
        }
        env = await resolve_env(api, POD, container, pod_ip="10.0.0.9", host_ip="192.0.2.1")
        assert env == {
            "CFG_MODE": "fast",
            "CFG_LEVEL": "3",
            "MODE": "fast",
            "PASSWORD": "s3cret",
            "POD": "p",
            "APP": "web",
            "IP": "10.0.0.9",
            "MEM_MI": "128",
            "CPU": "1",
            "URL": "http://10.0.0.9:80/p",
        }

    asyncio.run(body())


def test_missing_required_sources_are_errors() -> None:
    async def body() -> None:
        api = FakeClient()
        api.seed(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {}})
        missing_map = {"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]}
        with pytest.raises(SourceError, match='configmap "nope" not found'):
            await resolve_env(api, POD, missing_map, pod_ip="", host_ip="")
        missing_key = {
            "name": "c",
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}],
        }
        with pytest.raises(SourceError, match='couldn\'t find key k in configmap "cfg"'):
            await resolve_env(api, POD, missing_key, pod_ip="", host_ip="")

    asyncio.run(body())


def test_agent_waits_with_create_container_config_error() -> None:
    async def body() -> None:
        r = Rig()
        r.add(
            containers=[
                {
                    "name": "app",
                    "image": "web:1",
                    "env": [
                        {
                            "name": "MODE",
                            "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}},
                        }
                    ],
                }
            ]
        )
        await r.sync()
        waiting = r.container()["state"]["waiting"]
        assert waiting["reason"] == "CreateContainerConfigError"
        assert 'configmap "cfg" not found' in waiting["message"]
        assert r.status()["phase"] == "Pending"
        await r.api.create(
            CONFIGMAPS,
            {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"mode": "fast"}},
        )
        r.clock.advance(10)
        await r.sync()
        assert r.status()["phase"] == "Running"
        config = r.runtime.config_of("default", "p", "app")
        assert config is not None
        assert config.env == {"MODE": "fast"}
        assert r.api.stored(PODS, "default/p") is not None

    asyncio.run(body())


def test_volume_files_keys_items_binary_and_optional() -> None:
    async def body() -> None:
        api = FakeClient()
        api.seed(
            CONFIGMAPS,
            {
                "metadata": {"name": "cfg", "namespace": "ns"},
                "data": {"a.conf": "x=1", "b.conf": "y=2"},
            },
        )
        api.seed(
            SECRETS,
            {
                "metadata": {"name": "tls", "namespace": "ns"},
                "data": {"key": base64.b64encode(b"\x00\xffbin").decode()},
            },
        )
        pod = freeze(
            {
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {
                    "volumes": [
                        {"name": "all", "configMap": {"name": "cfg"}},
                        {
                            "name": "some",
                            "configMap": {
                                "name": "cfg",
                                "items": [{"key": "b.conf", "path": "sub/b"}],
                            },
                        },
                        {"name": "secret", "secret": {"secretName": "tls"}},
                        {"name": "maybe", "secret": {"secretName": "absent", "optional": True}},
                        {"name": "scratch", "emptyDir": {}},
                    ]
                },
            }
        )
        files = await resolve_volume_files(api, pod)
        assert files == {
            "all": {"a.conf": b"x=1", "b.conf": b"y=2"},
            "some": {"sub/b": b"y=2"},
            "secret": {"key": b"\x00\xffbin"},
            "maybe": {},
        }

    asyncio.run(body())


def test_agent_reports_failed_mount_until_the_configmap_exists() -> None:
    async def body() -> None:
        r = Rig()
        r.add(volumes=[{"name": "cfg", "configMap": {"name": "settings"}}])
        await r.pods.relist()
        with pytest.raises(Retry):
            await r.manager.reconcile(KEY)
        assert "FailedMount" in r.events()
        assert r.container()["state"]["waiting"]["reason"] == "ContainerCreating"
        await r.api.create(
            CONFIGMAPS,
            {"metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "fast"}},
        )
        await r.sync()
        assert r.status()["phase"] == "Running"
        sandbox = r.runtime.sandbox_of("default", "p")
        assert sandbox is not None
        assert sandbox.volume_files == {"cfg": {"mode": b"fast"}}

    asyncio.run(body())


class _RefusingClient(FakeClient):
    """What a node sees when the API server's node graph does not link it to the object."""

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.Forbidden(403, "Forbidden", "no relationship found between node 'n1'")


def test_a_source_the_node_may_not_read_yet_is_retried_not_skipped() -> None:
    async def body() -> None:
        optional = {"envFrom": [{"secretRef": {"name": "db", "optional": True}}]}
        with pytest.raises(SourceError, match='secret "db" is not readable by this node yet'):
            await resolve_env(_RefusingClient(), POD, optional, pod_ip="", host_ip="")
        pod = freeze(
            {
                **POD,
                "spec": {"nodeName": "n1", "volumes": [{"name": "v", "configMap": {"name": "c"}}]},
            }
        )
        with pytest.raises(SourceError, match='configmap "c" is not readable'):
            await resolve_volume_files(_RefusingClient(), pod)

    asyncio.run(body())


class _SlowClient(FakeClient):
    """Each get waits until every get expected is in flight (or a second has passed)."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.gets: list[str] = []
        self.in_flight = 0
        self.most = 0
        self.all_in = asyncio.Event()

    async def get(self, *args: Any, **kwargs: Any) -> Any:
        self.gets.append(str(args[1]))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.expected:
            self.all_in.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), 1.0)
        self.in_flight -= 1
        return await super().get(*args, **kwargs)


def test_volume_sources_are_fetched_at_once_and_each_once() -> None:
    async def body() -> None:
        api = _SlowClient(expected=3)
        for name in ("a", "b", "c"):
            api.seed(
                CONFIGMAPS, {"metadata": {"name": name, "namespace": "ns"}, "data": {name: name}}
            )
        pod = freeze(
            {
                "metadata": {"name": "p", "namespace": "ns"},
                "spec": {
                    "volumes": [
                        {"name": "va", "configMap": {"name": "a"}},
                        {"name": "va2", "configMap": {"name": "a"}},
                        {"name": "vb", "configMap": {"name": "b"}},
                        {
                            "name": "both",
                            "projected": {
                                "sources": [
                                    {"configMap": {"name": "c"}},
                                    {"configMap": {"name": "a"}},
                                ]
                            },
                        },
                    ]
                },
            }
        )
        files = await resolve_volume_files(api, pod)
        assert files == {
            "va": {"a": b"a"},
            "va2": {"a": b"a"},
            "vb": {"b": b"b"},
            "both": {"c": b"c", "a": b"a"},
        }
        assert sorted(api.gets) == ["a", "b", "c"]  # a shared source is read once
        assert api.most == 3  # all three round trips at once, not one after another

    asyncio.run(body())


class _CountingClient(FakeClient):
    """Counts ConfigMap/Secret GETs; refuses the first ``refuse`` of them (a node graph that
    has not seen the pod's binding yet)."""

    def __init__(self, refuse: int = 0) -> None:
        super().__init__()
        self.gets = 0
        self.refuse = refuse

    async def get(self, resource: Any, name: str, **kwargs: Any) -> Any:
        self.gets += 1
        if self.refuse:
            self.refuse -= 1
            raise errors.Forbidden(403, "Forbidden", "no relationship found between node 'n1'")
        return await super().get(resource, name, **kwargs)


def _mounting(uid: str) -> Any:
    return freeze(
        {
            "metadata": {"name": uid, "namespace": "ns", "uid": uid},
            "spec": {"nodeName": "n1", "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]},
        }
    )


def test_pods_seen_before_a_read_share_it_and_pods_seen_after_read_again() -> None:
    async def body() -> None:
        api = _CountingClient()
        api.seed(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "1"}})
        clock = FakeClock()
        shared = SharedSources(clock)
        seen_first = SharedFor(shared, "n1", clock.monotonic())
        clock.advance(0.01)
        for uid in ("a", "b", "c"):  # a burst: all three seen before the first read
            files = await resolve_volume_files(api, _mounting(uid), shared=seen_first)
            assert files == {"v": {"k": b"1"}}
        assert api.gets == 1
        await api.update(
            CONFIGMAPS,
            {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "2"}},
        )
        clock.advance(1)
        later = SharedFor(shared, "n1", clock.monotonic())  # created after the read: reads anew
        clock.advance(0.01)
        assert await resolve_volume_files(api, _mounting("d"), shared=later) == {"v": {"k": b"2"}}
        assert api.gets == 2
        # ... and that read serves pods seen before it, not the older one
        assert await resolve_volume_files(api, _mounting("e"), shared=seen_first) == {
            "v": {"k": b"2"}
        }
        other_node = SharedFor(shared, "n2", 0.0)  # another node's identity reads for itself
        await resolve_volume_files(api, _mounting("f"), shared=other_node)
        assert api.gets == 3

    asyncio.run(body())


def test_a_shared_read_refused_for_one_pod_is_made_again_for_the_next() -> None:
    async def body() -> None:
        api = _CountingClient(refuse=1)
        api.seed(CONFIGMAPS, {"metadata": {"name": "cfg", "namespace": "ns"}, "data": {"k": "1"}})
        clock = FakeClock()
        seen = SharedFor(SharedSources(clock), "n1", clock.monotonic())
        clock.advance(0.01)
        with pytest.raises(SourceError, match="not readable by this node yet"):
            await resolve_volume_files(api, _mounting("a"), shared=seen)
        assert await resolve_volume_files(api, _mounting("b"), shared=seen) == {"v": {"k": b"1"}}
        assert api.gets == 2

    asyncio.run(body())


def test_a_burst_of_pods_reads_a_shared_configmap_once_and_a_retry_reads_anew() -> None:
    async def body() -> None:
        r = Rig()
        gets = count_gets(r.api, CONFIGMAPS)
        volumes = [{"name": "cfg", "configMap": {"name": "settings"}}]
        for pod in ("p", "q"):
            r.api.seed(
                PODS,
                {
                    "metadata": {"name": pod, "namespace": "default"},
                    "spec": {
                        "nodeName": "n1",
                        "containers": [{"name": "app", "image": "web:1"}],
                        "volumes": volumes,
                    },
                },
            )
        await r.pods.relist()
        for seen in r.pods.list():
            r.manager.observe(seen)  # as the fleet does when the informer delivers them
        r.clock.advance(0.01)
        for key in (KEY, ObjectKey("default/q")):
            with pytest.raises(Retry):
                await r.manager.reconcile(key)  # no ConfigMap yet: FailedMount
        assert gets == ["settings"]  # q used p's read, sent after both were seen
        await r.api.create(
            CONFIGMAPS,
            {"metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "fast"}},
        )
        r.clock.advance(0.01)
        await r.sync()  # the retry reads again, and sees it
        assert r.status()["phase"] == "Running"
        assert gets == ["settings", "settings"]

    asyncio.run(body())


def test_first_sightings_are_not_kept_for_pods_reconciled_or_deleting() -> None:
    async def body() -> None:
        r = Rig()
        await r.started()
        (pod,) = r.pods.list()
        r.manager.observe(pod)  # an update of a pod already reconciled
        await r.delete(grace=30)
        await r.pods.relist()
        (deleting,) = r.pods.list()
        r.manager.observe(deleting)
        assert r.manager._first_seen == {}

    asyncio.run(body())
