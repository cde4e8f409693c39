"""From the metrics' proposal to the replica count an HPA sets: stabilization windows, scale
rate policies and min/max (upstream's normalization, re-stated).

With ``spec.behavior`` (autoscaling/v2): the recommendation is held between the lowest
proposal of the scale-up window and the highest of the scale-down window; then the change is
limited by the policies (each policy's limit counts from the replicas at the start of its
period, i.e. minus the scale events within it; ``selectPolicy: Max`` takes the policy
allowing the biggest change, ``Min`` the smallest, ``Disabled`` none) and by min/max.
Without it: the highest proposal of the last 300 s, then at most ``max(2 * current, 4)``.

Pure and clock-free: callers pass ``now`` (seconds); :class:`History` is the per-HPA memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_DOWN_WINDOW = 300
DEFAULT_UP_POLICIES = (
    {"type": "Pods", "value": 4, "periodSeconds": 15},
    {"type": "Percent", "value": 100, "periodSeconds": 15},
)
DEFAULT_DOWN_POLICIES = ({"type": "Percent", "value": 100, "periodSeconds": 15},)

ABOVE_MAX = "the desired replica count is more than the maximum replica count"
BELOW_MIN = "the desired replica count is less than the minimum replica count"
UP_RATE = "the desired replica count is increasing faster than the maximum scale rate"
DOWN_RATE = "the desired replica count is decreasing faster than the maximum scale rate"
IN_RANGE = "the desired count is within the acceptable range"
HELD_HIGH = (
    "recent recommendations were higher than current one, applying the highest recent"
    " recommendation"
)
HELD_LOW = (
    "recent recommendations were lower than current one, applying the lowest recent recommendation"
)


@dataclass(slots=True)
class History:
    """What one HPA's normalization remembers: its recent proposals and scale events."""

    recommendations: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas)
    ups: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas added)
    downs: list[tuple[float, int]] = field(default_factory=list)  # (time, replicas removed)

    def record_scale(self, now: float, before: int, after: int, keep: float) -> None:
        """A rescale happened; events older than ``keep`` seconds are dropped."""
        if after > before:
            self.ups.append((now, after - before))
        elif after < before:
            self.downs.append((now, before - after))
        self.ups = [e for e in self.ups if e[0] > now - keep]
        self.downs = [e for e in self.downs if e[0] > now - keep]


@dataclass(frozen=True, slots=True)
class Outcome:
    replicas: int
    stabilized: int
    able_reason: str  # AbleToScale reason: ReadyForNewScale, ScaleUpStabilized, ...
    able_message: str
    limited: bool  # ScalingLimited
    limit_reason: str
    limit_message: str


def with_defaults(behavior: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``spec.behavior`` with upstream's defaults filled (None stays None)."""
    if behavior is None:
        return None
    out: dict[str, Any] = {}
    for direction, window, policies in (
        ("scaleUp", 0, DEFAULT_UP_POLICIES),
        ("scaleDown", DEFAULT_DOWN_WINDOW, DEFAULT_DOWN_POLICIES),
    ):
        rules = dict(behavior.get(direction) or {})
        rules.setdefault("stabilizationWindowSeconds", window)
        if rules["stabilizationWindowSeconds"] is None:
            rules["stabilizationWindowSeconds"] = window
        rules.setdefault("selectPolicy", "Max")
        if not rules.get("policies"):
            rules["policies"] = [dict(p) for p in policies]
        out[direction] = rules
    return out


def _changed_within(events: list[tuple[float, int]], now: float, period: float) -> int:
    return sum(n for t, n in events if t > now - period)


def scale_up_limit(current: int, rules: Mapping[str, Any], h: History, now: float) -> int:
    policy = rules.get("selectPolicy") or "Max"
    if policy == "Disabled":
        return current
    limits = []
    for p in rules.get("policies") or ():
        period = float(p.get("periodSeconds") or 0)
        start = (
            current - _changed_within(h.ups, now, period) + _changed_within(h.downs, now, period)
        )
        value = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            limits.append(start + value)
        else:
            limits.append(math.ceil(start * (1 + value / 100)))
    if not limits:
        return current
    return max(limits) if policy == "Max" else min(limits)


def scale_down_limit(current: int, rules: Mapping[str, Any], h: History, now: float) -> int:
    policy = rules.get("selectPolicy") or "Max"
    if policy == "Disabled":
        return current
    limits = []
    for p in rules.get("policies") or ():
        period = float(p.get("periodSeconds") or 0)
        start = (
            current + _changed_within(h.downs, now, period) - _changed_within(h.ups, now, period)
        )
        value = int(p.get("value") or 0)
        if p.get("type") == "Pods":
            limits.append(start - value)
        else:
            limits.append(int(start * (1 - value / 100)))
    if not limits:
        return current
    return min(limits) if policy == "Max" else max(limits)


def normalize(
    h: History,
    now: float,
    *,
    current: int,
    proposed: int,
    min_replicas: int,
    max_replicas: int,
    behavior: Mapping[str, Any] | None,
) -> Outcome:
    """The replicas to set (see the module doc); records ``proposed`` in ``h``."""
    rules = with_defaults(behavior)
    up_window = float(rules["scaleUp"]["stabilizationWindowSeconds"]) if rules else 0.0
    down_window = (
        float(rules["scaleDown"]["stabilizationWindowSeconds"]) if rules else DEFAULT_DOWN_WINDOW
    )
    up = down = proposed
    for t, r in h.recommendations:
        if t > now - up_window:
            up = min(up, r)
        if t > now - down_window:
            down = max(down, r)
    horizon = max(up_window, down_window)
    h.recommendations = [(t, r) for t, r in h.recommendations if t > now - horizon]
    h.recommendations.append((now, proposed))
    # without behavior only the scale-down window holds (upstream's older rule)
    stabilized = down if rules is None else min(max(current, up), down)
    if stabilized == proposed:
        able = ("ReadyForNewScale", "recommended size matches current size")
    elif stabilized < proposed:
        able = ("ScaleUpStabilized", HELD_LOW)
    else:
        able = ("ScaleDownStabilized", HELD_HIGH)
    replicas, reason, message = _limit(
        h,
        now,
        current=current,
        desired=stabilized,
        low=min_replicas,
        high=max_replicas,
        rules=rules,
    )
    return Outcome(replicas, stabilized, *able, replicas != stabilized, reason, message)


def _limit(
    h: History,
    now: float,
    *,
    current: int,
    desired: int,
    low: int,
    high: int,
    rules: Mapping[str, Any] | None,
) -> tuple[int, str, str]:
    if rules is None:
        up_limit = max(2 * current, 4)
        ceiling, reason, message = (
            (up_limit, "ScaleUpLimit", UP_RATE)
            if high > up_limit
            else (high, "TooManyReplicas", ABOVE_MAX)
        )
        if desired < low:
            return low, "TooFewReplicas", BELOW_MIN
        if desired > ceiling:
            return ceiling, reason, message
        return desired, "DesiredWithinRange", IN_RANGE
    if desired > current:
        limit = max(scale_up_limit(current, rules["scaleUp"], h, now), current)
        if high > limit:
            ceiling, reason, message = limit, "ScaleUpLimit", UP_RATE
        else:
            ceiling, reason, message = high, "TooManyReplicas", ABOVE_MAX
        if desired > ceiling:
            return ceiling, reason, message
    elif desired < current:
        limit = min(scale_down_limit(current, rules["scaleDown"], h, now), current)
        if low < limit:
            floor, reason, message = limit, "ScaleDownLimit", DOWN_RATE
        else:
            floor, reason, message = low, "TooFewReplicas", BELOW_MIN
        if desired < floor:
            return floor, reason, message
    return desired, "DesiredWithinRange", IN_RANGE


def longest_period(behavior: Mapping[str, Any] | None) -> float:
    """How long scale events matter: the longest policy period."""
    rules = with_defaults(behavior)
    if rules is None:
        return 0.0
    periods = [
        float(p.get("periodSeconds") or 0)
        for d in ("scaleUp", "scaleDown")
        for p in rules[d]["policies"]
    ]
    return max(periods, default=0.0)
