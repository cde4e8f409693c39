"""The TLS Secrets the controller serves, each read on its own.

The ingress identity may read only the Secrets that Ingresses served by berth name (see
:mod:`berth.apiserver.ingressauthz`), so there is no informer over all Secrets: each named
Secret gets its own informer, a list/watch in its namespace pinned by
``metadata.name=<name>`` (as a kubelet watches one Secret of its pods). The set is
level-triggered: every controller pass hands :meth:`TlsSecrets.want` the Secrets its Ingresses
name now; new ones are watched, those no longer named are dropped (watch closed, cache gone).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable

from berth.api.resources import SECRETS
from berth.client.interface import ApiClient
from berth.machinery.clock import Clock
from berth.machinery.informer import Handlers, Informer
from berth.machinery.objects import Frozen

from .routes import TLS_TYPE

SecretKey = tuple[str, str]
"""(namespace, name) of a Secret."""


class TlsSecrets:
    def __init__(self, client: ApiClient, clock: Clock, on_change: Callable[[], None]) -> None:
        self.client = client
        self.clock = clock
        self._handlers = Handlers(
            on_add=lambda _o: on_change(),
            on_update=lambda _old, _new: on_change(),
            on_delete=lambda _o: on_change(),
        )
        self._watching: dict[SecretKey, tuple[Informer, asyncio.Task[None]]] = {}

    def want(self, keys: Iterable[SecretKey]) -> list[Informer]:
        """Watch exactly ``keys`` from now on; returns the informers started for new ones."""
        wanted = set(keys)
        for key in set(self._watching) - wanted:
            _informer, task = self._watching.pop(key)
            task.cancel()
        started = []
        for key in sorted(wanted - set(self._watching)):
            ns, name = key
            informer = Informer(
                self.client,
                SECRETS,
                clock=self.clock,
                namespace=ns,
                # only a TLS Secret is usable: another type is not even sent
                field_selector=f"metadata.name={name},type={TLS_TYPE}",
            )
            informer.add_handlers(self._handlers)
            task = asyncio.create_task(informer.run(), name=f"ingress-secret-{ns}/{name}")
            self._watching[key] = (informer, task)
            started.append(informer)
        return started

    def watched(self) -> set[SecretKey]:
        return set(self._watching)

    def list(self) -> list[Frozen]:
        """The cached Secrets (those that exist and are readable)."""
        return [obj for informer, _task in self._watching.values() for obj in informer.list()]

    async def stop(self) -> None:
        tasks = [task for _informer, task in self._watching.values()]
        self._watching.clear()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
