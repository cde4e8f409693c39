"""Per-namespace service-account plumbing (upstream's serviceaccount and root-ca-cert-publisher
controllers).

* :class:`ServiceAccountsController`: every active namespace has a ``default``
  ServiceAccount (the API server creates it with the namespace; this puts it back if it is
  deleted, and covers namespaces from before that).
* :class:`RootCAPublisher`: every active namespace has the ConfigMap ``kube-root-ca.crt`` whose
  ``ca.crt`` is the cluster CA, which pods' ``kube-api-access-*`` volumes project; edits and
  deletions are undone.
"""

from __future__ import annotations

import contextlib
import logging

from berth.api import satoken
from berth.api.resources import CONFIGMAPS, NAMESPACES, SERVICEACCOUNTS
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery.controller import Controller
from berth.machinery.informer import Handlers
from berth.machinery.objects import Frozen, is_deleting, name, namespace
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)

DESCRIPTION = (
    "The cluster CA certificate, for pods to verify the API server at kubernetes.default.svc"
    " (kept here by the controller manager)."
)


def _active(ns: Frozen | None) -> bool:
    if ns is None or is_deleting(ns):
        return False
    return bool((ns.get("status") or {}).get("phase", "Active") == "Active")


class ServiceAccountsController:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.accounts = ctx.informers.informer(SERVICEACCOUNTS)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="serviceaccount")
        self.controller = Controller("serviceaccount", self, self.queue, workers=1)
        self.namespaces.add_handlers(
            Handlers(
                on_add=lambda n: self.queue.add(ObjectKey(name(n))),
                on_update=lambda _o, n: self.queue.add(ObjectKey(name(n))),
            )
        )
        self.accounts.add_handlers(Handlers(on_delete=self._account_gone))

    def _account_gone(self, sa: Frozen) -> None:
        if name(sa) == satoken.DEFAULT_ACCOUNT:
            self.queue.add(ObjectKey(namespace(sa) or ""))

    async def reconcile(self, key: ObjectKey) -> None:
        ns = str(key)
        if not _active(self.namespaces.get(ns)):
            return
        if self.accounts.get(f"{ns}/{satoken.DEFAULT_ACCOUNT}") is not None:
            return
        body = {"metadata": {"name": satoken.DEFAULT_ACCOUNT, "namespace": ns}}
        with contextlib.suppress(errors.AlreadyExists):
            await self.ctx.client.create(SERVICEACCOUNTS, body, namespace=ns)
            log.info("created service account %s/%s", ns, satoken.DEFAULT_ACCOUNT)


class RootCAPublisher:
    def __init__(self, ctx: Context, ca_pem: bytes) -> None:
        self.ctx = ctx
        self.ca = ca_pem.decode()
        self.namespaces = ctx.informers.informer(NAMESPACES)
        self.configmaps = ctx.informers.informer(CONFIGMAPS)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="root-ca-cert-publisher")
        self.controller = Controller("root-ca-cert-publisher", self, self.queue, workers=1)
        self.namespaces.add_handlers(
            Handlers(
                on_add=lambda n: self.queue.add(ObjectKey(name(n))),
                on_update=lambda _o, n: self.queue.add(ObjectKey(name(n))),
            )
        )
        self.configmaps.add_handlers(
            Handlers(
                on_update=lambda _o, cm: self._configmap_changed(cm),
                on_delete=self._configmap_changed,
            )
        )

    def _configmap_changed(self, cm: Frozen) -> None:
        if name(cm) == satoken.ROOT_CA_CONFIGMAP:
            self.queue.add(ObjectKey(namespace(cm) or ""))

    async def reconcile(self, key: ObjectKey) -> None:
        ns = str(key)
        if not _active(self.namespaces.get(ns)):
            return
        current = self.configmaps.get(f"{ns}/{satoken.ROOT_CA_CONFIGMAP}")
        data = {"ca.crt": self.ca}
        annotations = {"kubernetes.io/description": DESCRIPTION}
        if current is None:
            body = {
                "metadata": {
                    "name": satoken.ROOT_CA_CONFIGMAP,
                    "namespace": ns,
                    "annotations": annotations,
                },
                "data": data,
            }
            with contextlib.suppress(errors.AlreadyExists):
                await self.ctx.client.create(CONFIGMAPS, body, namespace=ns)
            return
        if dict(current.get("data") or {}) == data and not current.get("binaryData"):
            return
        meta = dict(current.get("metadata") or {})
        body = {
            "metadata": {
                "name": satoken.ROOT_CA_CONFIGMAP,
                "namespace": ns,
                "resourceVersion": meta.get("resourceVersion"),
                "annotations": {**dict(meta.get("annotations") or {}), **annotations},
            },
            "data": data,
        }
        with contextlib.suppress(errors.NotFound):
            await self.ctx.client.update(CONFIGMAPS, body)
