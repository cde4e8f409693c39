"""DefaultTolerationSeconds admission (issue 19.9): pods without not-ready/unreachable
tolerations get them for the configured seconds (300 unless the config, from the cluster
spec's podEvictionTimeout, says otherwise); tolerations the pod has are kept."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from berth.api.resources import TABLE
from berth.apiserver.config import ConfigError, load_config
from berth.apiserver.tolerations import (
    NOT_READY,
    UNREACHABLE,
    DefaultTolerationSeconds,
    add_default_tolerations,
)
from tests.harness.registry import memory_registry

PODS = TABLE.lookup("", "v1", "pods")
NSS = TABLE.lookup("", "v1", "namespaces")


def _pod(tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "i"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"metadata": {"name": "p"}, "spec": spec}


def _seconds(pod: dict[str, Any]) -> dict[str, int | None]:
    return {
        t["key"]: t.get("tolerationSeconds")
        for t in pod["spec"]["tolerations"]
        if t.get("key") in (NOT_READY, UNREACHABLE)
    }


def test_a_pod_without_tolerations_gets_both_for_the_configured_seconds() -> None:
    async def body() -> dict[str, Any]:
        assert PODS is not None
        assert NSS is not None
        reg = await memory_registry(
            default_tolerations=DefaultTolerationSeconds(not_ready=20, unreachable=25)
        )
        return await reg.create(PODS, "default", _pod(), user=None)

    created = asyncio.run(body())
    assert _seconds(created) == {NOT_READY: 20, UNREACHABLE: 25}
    added = [t for t in created["spec"]["tolerations"] if t["key"] == NOT_READY]
    assert added == [
        {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 20}
    ]


def test_the_default_is_upstreams_300_seconds() -> None:
    pod = _pod()
    add_default_tolerations(pod, DefaultTolerationSeconds())
    assert _seconds(pod) == {NOT_READY: 300, UNREACHABLE: 300}


def test_tolerations_the_pod_has_are_kept() -> None:
    own = {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    pod = _pod([own])
    add_default_tolerations(pod, DefaultTolerationSeconds(not_ready=60, unreachable=60))
    assert _seconds(pod) == {NOT_READY: 60, UNREACHABLE: 5}
    everything = _pod([{"operator": "Exists"}])  # tolerates every taint: nothing added
    add_default_tolerations(everything, DefaultTolerationSeconds())
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]
    no_schedule = _pod([{"operator": "Exists", "effect": "NoSchedule"}])  # not NoExecute
    add_default_tolerations(no_schedule, DefaultTolerationSeconds())
    assert _seconds(no_schedule) == {NOT_READY: 300, UNREACHABLE: 300}


def test_the_config_file_sets_the_seconds_and_refuses_nonsense(tmp_path: Path) -> None:
    base = "tls: {certFile: a, keyFile: b, clientCAFile: c}\n"
    f = tmp_path / "apiserver.yaml"
    f.write_text(base)
    assert load_config(f).default_tolerations == DefaultTolerationSeconds(300, 300)
    f.write_text(base + "defaultTolerationSeconds: {notReady: 30, unreachable: 45}\n")
    assert load_config(f).default_tolerations == DefaultTolerationSeconds(30, 45)
    f.write_text(base + "defaultTolerationSeconds: {notReady: -1}\n")
    with pytest.raises(ConfigError, match=r"notReady must be a whole number of seconds >= 0"):
        load_config(f)
    f.write_text(base + "defaultTolerationSeconds: {unready: 1}\n")
    with pytest.raises(ConfigError, match="unknown key 'unready'"):
        load_config(f)
