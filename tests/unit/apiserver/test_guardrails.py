"""Quota arithmetic (berth.api.quota), LimitRanger defaulting and bounds, and the
LimitRange/PriorityClass strategies' upstream defaults."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from berth.api import quota as q
from berth.api.quantity import parse_quantity
from berth.api.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    LIMITRANGES,
    PODS,
    PRIORITYCLASSES,
    SERVICES,
)
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds.limitranges import LimitRangeStrategy
from berth.apiserver.limitranger import LimitRanger
from berth.apiserver.priority import PriorityAdmission


def _pod(*containers: dict[str, Any], init: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = list(init)
    return {"metadata": {"name": "p"}, "spec": spec}


def _c(name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    res: dict[str, Any] = {}
    if requests:
        res["requests"] = requests
    if limits:
        res["limits"] = limits
    return {"name": name, "image": "x", "resources": res}


def test_pod_usage_sums_containers_and_takes_the_largest_init_container() -> None:
    pod = _pod(
        _c("a", {"cpu": "250m", "memory": "64Mi"}, {"memory": "128Mi"}),
        _c("b", {"cpu": "0.5"}),
        init=(_c("i", {"cpu": "2"}),),
    )
    usage = q.render(q.pod_usage(pod))
    assert usage["requests.cpu"] == "2"  # the init container needs more than the sum (750m)
    assert usage["cpu"] == "2"
    assert usage["requests.memory"] == "64Mi"
    assert usage["limits.memory"] == "128Mi"
    assert usage["pods"] == "1"


def test_a_limit_without_a_request_counts_as_the_request() -> None:
    usage = q.render(q.pod_usage(_pod(_c("a", limits={"cpu": "1"}))))
    assert usage["requests.cpu"] == "1"
    assert usage["limits.cpu"] == "1"


def test_finished_pods_cost_nothing() -> None:
    pod = _pod(_c("a", {"cpu": "1"}))
    pod["status"] = {"phase": "Succeeded"}
    assert q.pod_usage(pod) == {}


def test_counts_by_resource_name() -> None:
    assert q.count_names(CONFIGMAPS) == ("configmaps", "count/configmaps")
    assert q.count_names(DEPLOYMENTS) == ("count/deployments.apps",)
    assert q.tracks(PODS, "requests.cpu")
    assert q.tracks(PODS, "memory")
    assert not q.tracks(CONFIGMAPS, "pods")
    svc = {"spec": {"type": "NodePort", "ports": [{"port": 1}, {"port": 2}]}}
    assert q.render(q.usage_of(SERVICES, svc))["services.nodeports"] == "2"


def test_exceeded_and_pretty_print() -> None:
    hard = q.parse_list({"pods": "2", "requests.cpu": "1"})
    used = q.add(q.parse_list({"pods": "2", "requests.cpu": "500m"}), {"pods": q.ONE})
    assert q.exceeded(used, hard) == ["pods"]
    assert q.pretty(q.parse_list({"b": "1", "a": "1500m"})) == "a=1500m,b=1"
    assert q.subtract(hard, hard)["pods"].is_zero()


def test_must_specify_lists_each_missing_resource_with_its_containers() -> None:
    pod = _pod(_c("a", {"cpu": "1"}), _c("b"))
    why = q.missing_declarations(["requests.cpu", "limits.memory", "pods"], pod)
    assert why == "must specify limits.memory for: a,b; requests.cpu for: b"
    assert q.missing_declarations(["pods"], pod) is None


def test_scopes_select_pods() -> None:
    best_effort = _pod(_c("a"))
    sized = _pod(_c("a", {"cpu": "1"}))
    scoped = {"spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}
    assert q.selects(scoped, PODS, best_effort)
    assert not q.selects(scoped, PODS, sized)
    assert not q.selects(scoped, CONFIGMAPS, {})  # scoped quotas track pods only
    by_class = {
        "spec": {
            "hard": {"pods": "1"},
            "scopeSelector": {
                "matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
                ]
            },
        }
    }
    sized["spec"]["priorityClassName"] = "high"
    assert q.selects(by_class, PODS, sized)
    assert not q.selects(by_class, PODS, best_effort)
    terminating = {"spec": {"hard": {"pods": "1"}, "scopes": ["Terminating"]}}
    best_effort["spec"]["activeDeadlineSeconds"] = 30
    assert q.selects(terminating, PODS, best_effort)
    assert not q.selects(terminating, PODS, sized)


def test_total_counts_every_hard_name_zero_included() -> None:
    quota = {"spec": {"hard": {"pods": "3", "requests.memory": "1Gi"}}}
    pods = [(PODS, _pod(_c("a", {"memory": "256Mi"}))), (PODS, _pod(_c("b")))]
    assert q.status_for(quota, q.total(quota, pods)) == {
        "hard": {"pods": "3", "requests.memory": "1Gi"},
        "used": {"pods": "2", "requests.memory": "256Mi"},
    }
    assert q.status_for(quota, q.total(quota, []))["used"] == {"pods": "0", "requests.memory": "0"}


def _ranger(*items: dict[str, Any]) -> LimitRanger:
    lr = {"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": list(items)}}
    LimitRangeStrategy().defaults(LIMITRANGES, lr)
    ranger = LimitRanger()
    ranger.remember(LIMITRANGES.key("ns", "lr"), lr)
    return ranger


def test_limit_range_item_defaults_as_upstream() -> None:
    item: dict[str, Any] = {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}
    lr: dict[str, Any] = {"spec": {"limits": [item]}}
    LimitRangeStrategy().defaults(LIMITRANGES, lr)
    assert item["default"] == {"cpu": "2"}
    assert item["defaultRequest"] == {"cpu": "2", "memory": "1Mi"}


def test_limit_ranger_fills_defaults_only_where_missing() -> None:
    ranger = _ranger(
        {"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}
    )
    pod = _pod(_c("a"), _c("b", {"cpu": "200m"}, {"cpu": "300m"}))
    ranger.admit_pod(PODS, "ns", pod)
    a, b = (c["resources"] for c in pod["spec"]["containers"])
    assert a == {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}}
    assert b == {"limits": {"cpu": "300m"}, "requests": {"cpu": "200m"}}
    other = _pod(_c("a"))
    ranger.admit_pod(PODS, "elsewhere", other)
    assert other["spec"]["containers"][0]["resources"] == {}


@pytest.mark.parametrize(
    ("item", "container", "message"),
    [
        (
            {"type": "Container", "max": {"cpu": "1"}},
            _c("a", {"cpu": "1"}, {"cpu": "2"}),
            "maximum cpu usage per Container is 1, but limit is 2",
        ),
        (
            {"type": "Container", "min": {"memory": "64Mi"}},
            _c("a", {"memory": "32Mi"}, {"memory": "128Mi"}),
            "minimum memory usage per Container is 64Mi, but request is 32Mi",
        ),
        (
            {"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}},
            _c("a", {"cpu": "100m"}, {"cpu": "300m"}),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000",
        ),
        (
            {"type": "Pod", "max": {"cpu": "1"}},
            _c("a", {"cpu": "600m"}, {"cpu": "1500m"}),
            "maximum cpu usage per Pod is 1, but limit is 1500m",
        ),
    ],
)
def test_limit_ranger_bounds_with_upstream_messages(
    item: dict[str, Any], container: dict[str, Any], message: str
) -> None:
    ranger = _ranger(item)
    with pytest.raises(ApiError) as exc:
        ranger.admit_pod(PODS, "ns", _pod(container))
    assert exc.value.code == 403
    assert exc.value.message == f'pods "p" is forbidden: {message}'


def test_quantities_stay_exact() -> None:
    total = q.add({"cpu": parse_quantity("0.1")}, {"cpu": parse_quantity("0.2")})
    assert total["cpu"].canonical() == "300m"


class _NoStore:
    """What priority admission reads from a registry when its cache misses: nothing here."""

    class resources:
        @staticmethod
        def lookup(group: str, version: str, plural: str) -> None:
            return None


def _admit(adm: PriorityAdmission, pod: dict[str, Any]) -> dict[str, Any]:
    asyncio.run(adm.admit_pod(cast(Any, _NoStore()), PODS, pod))
    return cast(dict[str, Any], pod["spec"])


def _classes(*classes: dict[str, Any]) -> PriorityAdmission:
    adm = PriorityAdmission()
    for c in classes:
        adm.remember(PRIORITYCLASSES.key("", c["metadata"]["name"]), c)
    return adm


def test_priority_comes_from_the_class_or_the_global_default() -> None:
    high = {"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "Never"}
    adm = _classes(high)
    pod = _pod(_c("a"))
    pod["spec"]["priorityClassName"] = "high"
    assert _admit(adm, pod)["priority"] == 1000
    assert pod["spec"]["preemptionPolicy"] == "Never"
    plain = _admit(adm, _pod(_c("a")))
    assert (plain["priority"], plain["preemptionPolicy"]) == (0, "PreemptLowerPriority")
    assert "priorityClassName" not in plain
    default = {"metadata": {"name": "std"}, "value": 7, "globalDefault": True}
    spec = _admit(_classes(high, default), _pod(_c("a")))
    assert (spec["priorityClassName"], spec["priority"]) == ("std", 7)


def test_the_global_default_follows_the_classes_as_they_change() -> None:
    """The default is kept between creates, and forgotten when any class is written."""
    adm = _classes({"metadata": {"name": "high"}, "value": 1000})
    assert "priorityClassName" not in _admit(adm, _pod(_c("a")))
    std = {"metadata": {"name": "std"}, "value": 7, "globalDefault": True}
    adm.remember(PRIORITYCLASSES.key("", "std"), std)
    assert _admit(adm, _pod(_c("a")))["priority"] == 7
    adm.remember(PRIORITYCLASSES.key("", "std"), {**std, "globalDefault": False})
    assert _admit(adm, _pod(_c("a")))["priority"] == 0
    adm.remember(PRIORITYCLASSES.key("", "high"), {**std, "metadata": {"name": "high"}})
    assert _admit(adm, _pod(_c("a")))["priorityClassName"] == "high"
    adm.remember(PRIORITYCLASSES.key("", "high"), None)
    assert "priorityClassName" not in _admit(adm, _pod(_c("a")))


def test_unknown_classes_and_contradicting_values_are_refused() -> None:
    adm = _classes({"metadata": {"name": "high"}, "value": 1000})
    unknown = _pod(_c("a"))
    unknown["spec"]["priorityClassName"] = "nope"
    with pytest.raises(ApiError) as exc:
        _admit(adm, unknown)
    assert exc.value.message == 'pods "p" is forbidden: no PriorityClass with name nope was found'
    lying = _pod(_c("a"))
    lying["spec"].update(priorityClassName="high", priority=5)
    with pytest.raises(ApiError) as exc:
        _admit(adm, lying)
    assert "the integer value of priority (5) must not be provided in pod spec" in (
        exc.value.message
    )
    assert "computed 1000 from the given PriorityClass name" in exc.value.message
