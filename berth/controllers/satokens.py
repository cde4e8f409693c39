"""Token controller: fills and cleans up legacy service-account token Secrets (upstream's
serviceaccount-token controller).

A Secret of type ``kubernetes.io/service-account-token`` naming an account in the annotation
``kubernetes.io/service-account.name`` gets ``data.token`` (a legacy JWT signed with the
service-account key, naming the account, its UID and the Secret), ``data.ca.crt`` and
``data.namespace``, and the annotation ``kubernetes.io/service-account.uid``. Only this
controller writes tokens (the API server drops one written by a Secret's creator). When the
account is deleted, or was recreated with another UID, its token Secrets are deleted; the
API server stops accepting their tokens as soon as the account is gone anyway.
"""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import Iterable

from berth.api import satoken
from berth.api.resources import SECRETS, SERVICEACCOUNTS
from berth.client import errors
from berth.client.keys import ObjectKey
from berth.controllers.context import Context
from berth.machinery import ownership
from berth.machinery.controller import Controller
from berth.machinery.informer import Handlers
from berth.machinery.objects import (
    Frozen,
    annotations_of,
    is_deleting,
    key_of,
    name,
    namespace,
    thaw,
)
from berth.machinery.queue import WorkQueue

log = logging.getLogger(__name__)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def by_account(secret: Frozen) -> Iterable[str]:
    account = annotations_of(secret).get(satoken.NAME_ANNOTATION)
    return [f"{namespace(secret)}/{account}"] if account else []


class TokensController:
    def __init__(self, ctx: Context, signer: satoken.Signer, ca_pem: bytes) -> None:
        self.ctx = ctx
        self.signer = signer
        self.ca = ca_pem.decode()
        self.secrets = ctx.informers.informer(
            SECRETS, field_selector=f"type={satoken.TOKEN_SECRET_TYPE}"
        )
        self.secrets.add_index("account", by_account)
        self.accounts = ctx.informers.informer(SERVICEACCOUNTS)
        self.queue: WorkQueue[ObjectKey] = WorkQueue(ctx.clock, name="serviceaccount-token")
        self.controller = Controller("serviceaccount-token", self, self.queue, workers=2)
        self.secrets.add_handlers(
            Handlers(
                on_add=lambda s: self.queue.add(key_of(s)),
                on_update=lambda _o, s: self.queue.add(key_of(s)),
            )
        )
        self.accounts.add_handlers(ownership.requeue_handlers(self._account_changed))

    def _account_changed(self, sa: Frozen) -> None:
        for secret in self.secrets.by_index("account", f"{namespace(sa)}/{name(sa)}"):
            self.queue.add(key_of(secret))

    async def reconcile(self, key: ObjectKey) -> None:
        secret = self.secrets.get(key)
        if secret is None or is_deleting(secret) or secret.get("type") != satoken.TOKEN_SECRET_TYPE:
            return
        ns = str(namespace(secret) or "")
        notes = annotations_of(secret)
        account_name = notes.get(satoken.NAME_ANNOTATION)
        if not account_name:
            return  # nothing to bind it to; it authenticates nobody
        account = self.accounts.get(f"{ns}/{account_name}")
        if account is None:
            try:  # the cache may lag behind a just-created account
                live = await self.ctx.client.get(SERVICEACCOUNTS, account_name, namespace=ns)
            except errors.NotFound:
                await self._delete(secret, "its service account does not exist")
                return
            account_uid = str((live.get("metadata") or {}).get("uid") or "")
        else:
            account_uid = str((account.get("metadata") or {}).get("uid") or "")
        wanted_uid = notes.get(satoken.UID_ANNOTATION)
        if wanted_uid and wanted_uid != account_uid:
            await self._delete(secret, "its service account was recreated with another UID")
            return
        data = dict(secret.get("data") or {})
        if data.get("token") and data.get("ca.crt") == _b64(self.ca) and wanted_uid:
            return
        claims = satoken.legacy_claims(
            namespace=ns,
            account=satoken.Ref(account_name, account_uid),
            secret_name=name(secret),
        )
        data.update(
            {
                "token": _b64(self.signer.sign(claims)),
                "ca.crt": _b64(self.ca),
                "namespace": _b64(ns),
            }
        )
        # a mutable copy all the way down: cached metadata holds read-only views (labels,
        # managedFields) that cannot be encoded as a request body
        meta = thaw(secret.get("metadata") or {})
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                **meta,
                "annotations": {**dict(notes), satoken.UID_ANNOTATION: account_uid},
            },
            "type": satoken.TOKEN_SECRET_TYPE,
            "data": data,
        }
        with contextlib.suppress(errors.NotFound):
            await self.ctx.client.update(SECRETS, body)
            log.info("filled the token of secret %s for service account %s", key, account_name)

    async def _delete(self, secret: Frozen, why: str) -> None:
        log.info("deleting token secret %s: %s", key_of(secret), why)
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            await self.ctx.client.delete(
                SECRETS,
                name(secret),
                namespace=namespace(secret),
                precondition_uid=str((secret.get("metadata") or {}).get("uid") or ""),
            )
