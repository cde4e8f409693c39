"""The template key of a pod being created, by which validation and Pod Security remember
their verdicts.

The pods of one ReplicaSet, Job or DaemonSet reach the API server with equal specs: only
their metadata differs (names, uids). Validating each one's spec and running Pod Security's
checks on it again would cost the same work for the same answer on every replica, so those
verdicts are remembered per template (a small LRU, :class:`Remembered`), keyed by a
:class:`PodTemplate`, which ServiceAccount admission takes as the last mutation of a create
begins:

* ``spec``: the pod spec as it then is (defaults and tolerations applied, the account
  named), just before the ``kube-api-access-<random>`` token volume is added, as compact
  JSON. Equal bytes mean an equal JSON value, types included (``1`` and ``1.0``, ``true``
  and ``1`` differ): a JSON text spells out every key and value it holds. Different key
  orders only make different keys (a miss, never a wrong hit).
* ``token_volume``: whether that volume was then added (it depends on the account's
  ``automountServiceAccountToken``, read outside the spec).

The token volume's random name is left out on purpose: it would make every replica's key
unique. The volume is built by the server and valid whatever its name; no check reads the
name but to find the volume a mount names. So that no name in the pod can be that random
one by chance (a mount naming ``kube-api-access-xxxxx`` that happens to match), a spec
holding the text ``kube-api-access-`` anywhere gets no key and is checked in full (a rare
spec: a pod re-created from another's dump).

Nothing may change the spec between the key and the checks but the token volume (the
registry validates right after admission); whoever remembers a verdict by a key adds to it
what else its check reads (Pod Security: the namespace's level and version, and the
seccomp/AppArmor annotations). What a create reads outside the request (the account's
existence, the node's identity, the namespace's phase, RBAC) is never remembered.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, NamedTuple, TypeVar

import orjson

TOKEN_VOLUME_PREFIX = b"kube-api-access-"
REMEMBERED = 256
"""Entries per memo: a cluster's distinct live pod templates, with room to spare."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PodTemplate(NamedTuple):
    # A tuple rather than a dataclass: hashed and compared in C, on every pod create (the
    # bytes' own hash is computed once and kept by the bytes object).
    spec: bytes
    token_volume: bool


def spec_bytes(spec: Any) -> bytes | None:
    """The ``spec`` of a :class:`PodTemplate` for a pod spec about to get its token volume;
    ``None`` when the pod must not be remembered (see the module docstring)."""
    try:
        data = orjson.dumps(spec)
    except TypeError:  # orjson.JSONEncodeError: not JSON (an integer past 64 bits, ...)
        return None
    return None if TOKEN_VOLUME_PREFIX in data else data


class Remembered(Generic[K, V]):
    """A map holding the ``size`` entries last used."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
        return found

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        if len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
