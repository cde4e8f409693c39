"""The HPA's arithmetic with a fake clock: the replica calculator (tolerance, missing and
unready pods) and normalization (stabilization windows, rate policies, min/max)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from berth.controllers.autoscaling.behavior import History, normalize
from berth.controllers.autoscaling.replicas import MetricsError, PodSample, propose
from berth.machinery.objects import freeze

T = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=15)


def _pod(
    name: str,
    cpu: str = "100m",
    *,
    phase: str = "Running",
    ready: bool = True,
    started: timedelta = timedelta(minutes=10),
    ready_changed: timedelta = timedelta(minutes=9),
) -> dict[str, Any]:
    stamp = (T - started).strftime("%Y-%m-%dT%H:%M:%SZ")
    changed = (T - ready_changed).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "resources": {"requests": {"cpu": cpu}}}]},
        "status": {
            "phase": phase,
            "startTime": stamp,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": changed,
                }
            ],
        },
    }


def _samples(**cores: float) -> dict[str, PodSample]:
    return {n: PodSample(v, T, WINDOW) for n, v in cores.items()}


def test_utilization_scales_by_the_usage_ratio() -> None:
    pods = [_pod("a"), _pod("b")]
    # 100% of a 100m request each, target 50% -> ratio 2 -> 4 replicas
    p = propose(2, pods, _samples(a=0.1, b=0.1), "cpu", target_utilization=50)
    assert (p.replicas, p.utilization) == (4, 100)
    # 25% against 50%: halves
    assert (
        propose(
            4,
            [_pod(n) for n in "abcd"],
            _samples(a=0.025, b=0.025, c=0.025, d=0.025),
            "cpu",
            target_utilization=50,
        ).replicas
        == 2
    )


def test_informer_pods_are_read_as_well_as_plain_ones() -> None:
    # the controller hands over the pod informer's frozen objects (tuples for lists)
    pods = [freeze(_pod("a")), freeze(_pod("b"))]
    p = propose(2, pods, _samples(a=0.1, b=0.1), "cpu", target_utilization=50)
    assert (p.replicas, p.utilization) == (4, 100)


def test_tolerance_keeps_the_count_within_ten_percent() -> None:
    pods = [_pod("a"), _pod("b")]
    assert propose(2, pods, _samples(a=0.054, b=0.054), "cpu", target_utilization=50).replicas == 2
    assert propose(2, pods, _samples(a=0.046, b=0.046), "cpu", target_utilization=50).replicas == 2
    # just past the tolerance: 56% / 50% = 1.12 -> ceil(2.24) = 3
    assert propose(2, pods, _samples(a=0.056, b=0.056), "cpu", target_utilization=50).replicas == 3


def test_average_value_target() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c")]
    p = propose(3, pods, _samples(a=0.3, b=0.3, c=0.3), "cpu", target_average=0.1)
    assert p.replicas == 9
    assert p.utilization is None


def test_missing_metrics_count_against_the_direction_of_change() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c"), _pod("d")]
    # scale up measured on a, b (200%); c, d missing count as 0 -> ratio (0.4/0.4=1.0)...
    up = propose(4, pods, _samples(a=0.2, b=0.2), "cpu", target_utilization=100)
    # 0.4 cores over 0.4 requested: ratio 1.0 after rebalancing: no change
    assert up.replicas == 4
    # scale down measured on a (10%); b, c, d missing count as 100% -> ratio 0.775 -> 4
    down = propose(4, pods, _samples(a=0.01), "cpu", target_utilization=100)
    assert down.replicas == 4  # ceil(0.775 * 4) = 4: never more than now when going down
    six = [_pod(n) for n in "abcdef"]
    down = propose(6, six, _samples(a=0.0, b=0.0, c=0.0, d=0.0), "cpu", target_utilization=100)
    assert down.replicas == 2  # 4 at 0% + 2 missing at 100%: ratio 1/3 -> ceil(2) = 2


def test_unready_pods_count_as_zero_only_when_scaling_up() -> None:
    young_unready = _pod(
        "c", ready=False, started=timedelta(minutes=1), ready_changed=timedelta(minutes=1)
    )
    pods = [_pod("a"), _pod("b"), young_unready]
    # a, b at 300%; c unready (its sample left out) and counted at 0: 6/3 = 2 -> 6 replicas
    p = propose(3, pods, _samples(a=0.3, b=0.3, c=1.0), "cpu", target_utilization=100)
    assert p.replicas == 6
    # pending pods are unready for any resource: memory scale-down ignores them
    pending = _pod("c", phase="Pending")
    p = propose(
        3, [_pod("a"), _pod("b"), pending], _samples(a=0.01, b=0.01), "cpu", target_utilization=100
    )
    assert p.replicas == 1


def test_deleted_and_failed_pods_are_ignored_and_requests_are_needed() -> None:
    gone = _pod("c")
    gone["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    failed = _pod("d", phase="Failed")
    p = propose(
        2,
        [_pod("a"), _pod("b"), gone, failed],
        _samples(a=0.1, b=0.1),
        "cpu",
        target_utilization=100,
    )
    assert p.replicas == 2
    bare = _pod("a")
    bare["spec"]["containers"][0]["resources"] = {}
    with pytest.raises(MetricsError, match="missing request for cpu"):
        propose(1, [bare], _samples(a=0.1), "cpu", target_utilization=50)
    with pytest.raises(MetricsError, match="did not receive metrics"):
        propose(1, [_pod("a")], {}, "cpu", target_utilization=50)


def _norm(
    h: History,
    now: float,
    current: int,
    proposed: int,
    behavior: Any = None,
    low: int = 1,
    high: int = 10,
) -> int:
    return normalize(
        h,
        now,
        current=current,
        proposed=proposed,
        min_replicas=low,
        max_replicas=high,
        behavior=behavior,
    ).replicas


def test_default_scale_down_waits_five_minutes_and_scale_up_is_immediate() -> None:
    h = History(recommendations=[(0.0, 5)])
    assert _norm(h, 15.0, 5, 2) == 5  # the recommendation of 5 is still in the window
    out = normalize(h, 30.0, current=5, proposed=2, min_replicas=1, max_replicas=10, behavior=None)
    assert (out.replicas, out.able_reason) == (5, "ScaleDownStabilized")
    assert _norm(h, 301.0, 5, 2) == 2  # 5 fell out of the window; 2s since
    assert _norm(h, 302.0, 2, 8) == 4  # up at once, at most max(2 * 2, 4) per step


def test_no_behavior_limits_scale_up_to_double_or_four() -> None:
    h = History()
    out = normalize(h, 0.0, current=2, proposed=9, min_replicas=1, max_replicas=20, behavior=None)
    assert (out.replicas, out.limit_reason, out.limited) == (4, "ScaleUpLimit", True)
    out = normalize(
        History(), 0.0, current=5, proposed=30, min_replicas=1, max_replicas=8, behavior=None
    )
    assert (out.replicas, out.limit_reason) == (8, "TooManyReplicas")
    out = normalize(
        History(), 0.0, current=3, proposed=1, min_replicas=2, max_replicas=8, behavior=None
    )
    assert (out.replicas, out.limit_reason) == (2, "TooFewReplicas")


def test_behavior_windows() -> None:
    behavior = {
        "scaleUp": {"stabilizationWindowSeconds": 60},
        "scaleDown": {"stabilizationWindowSeconds": 30},
    }
    h = History(recommendations=[(0.0, 2)])
    # up held at the lowest proposal of the last 60 s (2) until it leaves the window
    out = normalize(
        h, 10.0, current=2, proposed=6, min_replicas=1, max_replicas=10, behavior=behavior
    )
    assert (out.replicas, out.able_reason) == (2, "ScaleUpStabilized")
    assert _norm(h, 61.0, 2, 6, behavior) == 6
    # down held at the highest of the last 30 s
    assert _norm(h, 70.0, 6, 1, behavior) == 6
    assert _norm(h, 100.0, 6, 1, behavior) == 1


def test_behavior_policies_limit_the_rate() -> None:
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Pods", "value": 2, "periodSeconds": 60},
                {"type": "Percent", "value": 50, "periodSeconds": 60},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        },
    }
    h = History()
    # from 10: Pods allows 12, Percent 15; Max takes 15
    out = normalize(
        h, 0.0, current=10, proposed=40, min_replicas=1, max_replicas=100, behavior=behavior
    )
    assert (out.replicas, out.limit_reason) == (15, "ScaleUpLimit")
    h.record_scale(0.0, 10, 15, 60.0)
    # within the same period the start is still 10: no more room
    assert _norm(h, 30.0, 15, 40, behavior, high=100) == 15
    assert _norm(h, 61.0, 15, 40, behavior, high=100) == 23  # new period: ceil(15 * 1.5)
    behavior["scaleUp"]["selectPolicy"] = "Min"
    assert _norm(History(), 0.0, 10, 40, behavior, high=100) == 12
    behavior["scaleUp"]["selectPolicy"] = "Disabled"
    assert _norm(History(), 0.0, 10, 40, behavior, high=100) == 10
    # down: one pod a minute
    h = History()
    out = normalize(
        h, 0.0, current=10, proposed=2, min_replicas=1, max_replicas=100, behavior=behavior
    )
    assert (out.replicas, out.limit_reason) == (9, "ScaleDownLimit")
    h.record_scale(0.0, 10, 9, 60.0)
    assert _norm(h, 30.0, 9, 2, behavior, high=100) == 9
    assert _norm(h, 61.0, 9, 2, behavior, high=100) == 8


def test_min_and_max_bound_the_result() -> None:
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    out = normalize(
        History(), 0.0, current=5, proposed=1, min_replicas=3, max_replicas=10, behavior=behavior
    )
    assert (out.replicas, out.limit_reason) == (3, "TooFewReplicas")
    out = normalize(
        History(), 0.0, current=5, proposed=7, min_replicas=3, max_replicas=6, behavior=behavior
    )
    assert (out.replicas, out.limit_reason) == (6, "TooManyReplicas")
    out = normalize(
        History(), 0.0, current=5, proposed=6, min_replicas=3, max_replicas=10, behavior=behavior
    )
    assert (out.replicas, out.limited, out.limit_reason) == (6, False, "DesiredWithinRange")
