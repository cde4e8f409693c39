"""Withdraw a terminating pod from Services before stopping it.

Kubernetes signals a deleted pod's containers at the same moment the endpoints controller starts
removing the pod from its Services, so every service proxy keeps sending new connections to it
until its own watch catches up: a replica that exits promptly on SIGTERM turns that window into
refused connections or, once its network namespace is gone, connections that time out. Users
paper over it with ``preStop: sleep``. The agent closes the window itself: it holds the signal
until the pod's address is gone from every Endpoints object its watch sees, plus a margin for the
other nodes' proxies to apply the same change, never longer than a bound taken out of the pod's
grace period (so a deletion still finishes within ``deletionGracePeriodSeconds``).

:class:`EndpointWithdrawal` is the agent's view: fed by an Endpoints informer's events, it knows
which addresses are listed as ready now and when each stopped being listed.
"""

from __future__ import annotations

from collections.abc import Iterable

from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, key_of

# After the last listing ends: time for other nodes' proxies to follow. 1.5 s, not 1: once a
# deleted pod's SIGTERM no longer waited for an Event's round trip and a `runc state` (which
# had added their time to the margin), test_deleting_replicas_under_load_fails_no_request saw
# the client node's proxy (frozen 0.5 s, then catching up at load 55-65) route ~0.5 s more to
# the exited replica (72 refused requests).
MARGIN_SECONDS = 1.5
LIMIT_SECONDS = 10.0  # the longest a deletion is held, whatever the grace period
POLL_SECONDS = 0.05  # re-check this often while the address is still listed
_FORGET_AFTER = 300.0  # withdrawals older than this no longer hold anything


def hold_limit(grace_seconds: float) -> float:
    """How long a deletion with this grace period may wait for withdrawal: half the grace
    (the other half is the containers' own shutdown), at most :data:`LIMIT_SECONDS`."""
    return max(0.0, min(grace_seconds / 2, LIMIT_SECONDS))


def _ready_addresses(endpoints: Frozen) -> set[str]:
    return {
        str(address.get("ip"))
        for subset in endpoints.get("subsets") or ()
        for address in subset.get("addresses") or ()
        if address.get("ip")
    }


class EndpointWithdrawal:
    """Which pod addresses Services still route to, and since when the others stopped."""

    def __init__(self, clock: Clock, *, margin: float = MARGIN_SECONDS) -> None:
        self.clock = clock
        self.margin = margin
        self._by_key: dict[str, set[str]] = {}  # Endpoints key -> ready addresses in it
        self._listed: dict[str, set[str]] = {}  # address -> Endpoints keys listing it
        self._withdrawn_at: dict[str, float] = {}  # address -> when its last listing ended

    def handlers(self) -> Handlers:
        return Handlers(
            on_add=self.observe,
            on_update=lambda _old, new: self.observe(new),
            on_delete=lambda obj: self._replace(str(key_of(obj)), ()),
        )

    def observe(self, endpoints: Frozen) -> None:
        self._replace(str(key_of(endpoints)), _ready_addresses(endpoints))

    def _replace(self, key: str, addresses: Iterable[str]) -> None:
        now = self.clock.monotonic()
        new = set(addresses)
        old = self._by_key.pop(key, set())
        if new:
            self._by_key[key] = new
        for ip in new - old:
            self._listed.setdefault(ip, set()).add(key)
            self._withdrawn_at.pop(ip, None)
        for ip in old - new:
            keys = self._listed.get(ip, set())
            keys.discard(key)
            if not keys:
                self._listed.pop(ip, None)
                self._withdrawn_at[ip] = now
        for ip, at in list(self._withdrawn_at.items()):
            if now - at > _FORGET_AFTER:
                del self._withdrawn_at[ip]

    def listed(self, ip: str) -> bool:
        return ip in self._listed

    def hold(self, ip: str) -> float:
        """Seconds to keep ``ip``'s pod running before signalling it: a short poll while a
        Service still lists it, what is left of the margin after it was withdrawn, 0 when it
        was never listed (or long enough ago)."""
        if ip in self._listed:
            return POLL_SECONDS
        at = self._withdrawn_at.get(ip)
        if at is None:
            return 0.0
        return max(0.0, at + self.margin - self.clock.monotonic())
