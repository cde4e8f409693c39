"""What every controller is built from: the API client, the shared informers, the clock and
the event recorder — plus the shared pod indexes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from berth.api.resources import PODS
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.events import EventRecorder
from berth.machinery.informer import Informer, InformerFactory
from berth.machinery.objects import Frozen, controller_ref


@dataclass(frozen=True, slots=True)
class Context:
    client: ApiClient
    informers: InformerFactory
    clock: Clock
    recorder: EventRecorder

    def pods(self) -> Informer:
        """The shared pod informer with the ``controller`` (owner uid) and ``node`` indexes."""
        inf = self.informers.informer(PODS)
        inf.add_index("controller", by_controller_uid)
        inf.add_index("node", by_node_name)
        return inf


def by_controller_uid(obj: Frozen) -> Iterable[str]:
    ref = controller_ref(obj)
    return [str(ref.get("uid"))] if ref is not None else []


def by_node_name(obj: Frozen) -> Iterable[str]:
    node = (obj.get("spec") or {}).get("nodeName")
    return [str(node)] if node else []


def by_owner_uids(obj: Frozen) -> Iterable[str]:
    return [str(r.get("uid")) for r in (obj.get("metadata") or {}).get("ownerReferences") or ()]
