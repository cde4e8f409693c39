"""Service field limits shared by the API server's validation
(:mod:`berth.apiserver.service_validation`) and the node's proxy, which checks again what it
renders (:mod:`berth.proxy.checks`)."""

from __future__ import annotations

from typing import Any

MAX_AFFINITY_SECONDS = 86400  # upstream's MaxClientIPServiceAffinitySeconds


def is_port_number(value: Any) -> bool:
    """An int (not a bool) in 1..65535."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
