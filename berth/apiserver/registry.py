"""Generic object storage semantics on top of the revisioned store.

One :class:`Registry` serves every resource: create (generateName, defaults, validation),
get, list (selectors, limit/continue, resourceVersion semantics), update and patch (optimistic
concurrency, status/spec split, generation), delete (graceful pods, finalizers, namespaces)
and the subresources that change stored objects (status, scale). What differs between kinds
comes from each resource's strategy (:mod:`berth.apiserver.kinds`), asked through
:attr:`Registry.strategies`.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, overload

import orjson

from berth.api.meta import Obj, format_time, get_path, meta, now, parse_time
from berth.api.resources import TABLE, ResourceDef, ResourceTable
from berth.store.interface import (
    Compacted,
    Conflict,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    Store,
    StoreError,
)

from . import shapes
from .admission import admit
from .allocators import IPAllocator, PortAllocator
from .auth import UserInfo
from .bodies import check_depth
from .bodycheck import UNKEYED, BodyChecks, Unkeyed
from .codec import Codec, answer
from .config import DEFAULT_EVENT_TTL
from .disruption import check_budgets
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    forbidden_field,
    gone,
    invalid,
    not_found,
    too_large_resource_version,
)
from .fieldmanager import FieldManager
from .jsoncopy import json_copy
from .kinds import Strategies
from .limitranger import LimitRanger
from .openapi import fieldvalidation
from .openapi.fieldvalidation import IGNORE, Findings
from .options import DeleteOptions, ListOptions, ListPage
from .patch import json_merge_patch, json_patch, strategic_merge_patch
from .podsecurity import PodSecurityAdmission, PodSecurityConfig
from .priority import PriorityAdmission
from .quota_admission import QuotaAdmission
from .rbac_escalation import EscalationCheck
from .services import ServiceAddresses
from .suffixes import random_suffix
from .tolerations import DefaultTolerationSeconds
from .watch import ObjEvent, WatchHub

if TYPE_CHECKING:
    from .serviceaccounts import ServiceAccounts

log = logging.getLogger(__name__)

MAX_PATCH_RETRIES = 5
MAX_GRACE_SECONDS = 100 * 365 * 24 * 3600
"""Longest grace period turned into a deletionTimestamp (a hundred years: forever)."""
MAX_STORE_PAGE = 10_000
"""Most keys one store read returns for a list with ``limit``: a bigger limit (any int64 is
valid) is served in several reads, and never reaches a store as a number it cannot hold."""
REPAIR_INTERVAL = 60.0
"""Seconds between two passes reconciling Service allocation keys with stored Services (a
leaked key is released on the second pass that finds it unheld)."""

SERVER_MANAGER = "berth-apiserver"
"""The field manager of writes the server makes itself (bootstrap objects, defaults)."""

_NO_FIELDS: Any = object()

PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


def _encode_continue(revision: int, start_after: str) -> str:
    raw = orjson.dumps({"v": "berth/1", "rv": revision, "start": start_after})
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion"
        ) from exc


def _rv_param(value: str) -> int:
    try:
        rv = int(value)
    except ValueError as exc:
        raise bad_request(f"invalid resource version {value!r}") from exc
    if rv < 0:
        raise bad_request(f"invalid resource version {value!r}")
    return rv


class Registry:
    """Stores API objects; all HTTP-independent semantics live here."""

    def __init__(
        self,
        store: Store,
        codec: Codec,
        *,
        service_ips: IPAllocator,
        node_ports: PortAllocator,
        resources: ResourceTable = TABLE,
        pod_security: PodSecurityConfig | None = None,
        default_tolerations: DefaultTolerationSeconds | None = None,
        strategies: Strategies | None = None,
    ) -> None:
        self.store = store
        # Seconds an object of an expiring kind (Events) lives after its last write
        # (ServerConfig.event_ttl; the store deletes it).
        self.event_ttl = DEFAULT_EVENT_TTL
        # Each resource's kind strategy (berth.apiserver.kinds): every per-kind rule.
        self.strategies = strategies or Strategies()
        self.codec = codec
        self.services = ServiceAddresses(store, service_ips, node_ports)
        self.resources = resources
        self.namespace_phase: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._finalizing: set[str] = set()  # namespaces this server is emptying
        # RBAC escalation prevention, set by the API server (it needs the authorizer).
        self.escalation: EscalationCheck | None = None
        # ServiceAccount admission of pods and each namespace's default account (set by the
        # server; None in registries built without one).
        self.service_accounts: ServiceAccounts | None = None
        # DefaultTolerationSeconds admission (berth.apiserver.tolerations).
        self.default_tolerations = default_tolerations or DefaultTolerationSeconds()
        # managedFields and server-side apply; CRDs add their schemas to
        # ``field_manager.schemas`` (berth.apiserver.fieldmanager.schema.Schemas.add).
        self.field_manager = FieldManager()
        self.body_checks = BodyChecks()  # types and unknown fields (pod bodies remembered)
        # ResourceQuota admission (the namespaces' quotas, from the watch hub).
        self.quotas = QuotaAdmission()
        # LimitRanger and Priority admission of pods (their objects, from the watch hub).
        self.limit_ranger = LimitRanger()
        self.priority = PriorityAdmission()
        # The server's watch hub: an API create hands it the object it stored (set by the
        # server; None in registries built without one).
        self.hub: WatchHub | None = None
        self.pod_security = (
            PodSecurityAdmission(
                pod_security, read_namespace=self._read_namespace, list_pods=self._pods_in
            )
            if pod_security is not None
            else None
        )

    # -- startup ---------------------------------------------------------------------------

    async def load_allocations(self, *, repair_interval: float = REPAIR_INTERVAL) -> None:
        """Reconcile the Service IP and NodePort allocations with the stored Services, then
        keep doing so every ``repair_interval`` seconds (leaks from a crashed server)."""
        await self.services.repair(self._stored_services)
        self._spawn(self._repair_loop(repair_interval))
        for kv in (await self.store.list(self._rd("", "resourcequotas").key_prefix())).items:
            self.quotas.remember(kv.key, self.codec.decode(kv))
        for kv in (await self.store.list(self._rd("", "limitranges").key_prefix())).items:
            self.limit_ranger.remember(kv.key, self.codec.decode(kv))
        pcs = self.resources.lookup("scheduling.k8s.io", "v1", "priorityclasses")
        for kv in (await self.store.list(pcs.key_prefix())).items if pcs else []:
            self.priority.remember(kv.key, self.codec.decode(kv))
        ns = self._rd("", "namespaces")
        for kv in (await self.store.list(ns.key_prefix())).items:
            obj = self.codec.decode(kv)
            name = str(get_path(obj, "metadata", "name"))
            self.namespace_phase[name] = str(get_path(obj, "status", "phase") or "Active")
            if self.pod_security is not None:  # so no first pod create reads its namespace
                self.pod_security.namespaces.remember(obj)
            if get_path(obj, "metadata", "deletionTimestamp"):
                self.finalize_soon(name)

    async def _stored_services(self) -> list[Obj]:
        result = await self.store.list(self._rd("", "services").key_prefix())
        return [self.codec.decode(kv) for kv in result.items]

    async def _repair_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.services.repair(self._stored_services)
            except StoreError:
                log.warning("service allocation repair failed; retrying", exc_info=True)

    def observe(self, ev: ObjEvent) -> None:
        """Watch-hub listener keeping the namespace and quota caches current."""
        if ev.key.startswith("/registry/core/resourcequotas/"):
            self.quotas.remember(ev.key, None if ev.deleted else ev.obj)
        elif ev.key.startswith("/registry/core/limitranges/"):
            self.limit_ranger.remember(ev.key, None if ev.deleted else ev.obj)
        elif ev.key.startswith("/registry/scheduling.k8s.io/priorityclasses/"):
            self.priority.remember(ev.key, None if ev.deleted else ev.obj)
        if ev.key.startswith("/registry/core/namespaces/"):
            name = ev.key.rsplit("/", 1)[-1]
            if self.pod_security is not None:
                self.pod_security.namespaces.remember(ev.obj, deleted=ev.deleted)
            if ev.deleted:
                self.namespace_phase.pop(name, None)
            else:
                self.namespace_phase[name] = str(get_path(ev.obj, "status", "phase") or "Active")
                if get_path(ev.obj, "metadata", "deletionTimestamp"):
                    self.finalize_soon(name)  # possibly deleted through another server

    async def ensure(self, rd: ResourceDef, obj: Obj) -> None:
        """Create ``obj`` unless an object with its name exists (bootstrap objects)."""
        ns = str(get_path(obj, "metadata", "namespace") or "")
        if await self.store.get(rd.key(ns, str(get_path(obj, "metadata", "name")))) is None:
            try:
                await self.create(rd, ns, copy.deepcopy(obj), user=None)
            except ApiError as exc:
                if exc.reason != "AlreadyExists":
                    raise

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                log.debug("background task ended", exc_info=True)

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _rd(self, group: str, plural: str) -> ResourceDef:
        rd = self.resources.lookup(group, "v1", plural)
        assert rd is not None, plural
        return rd

    # -- reads -------------------------------------------------------------------------------

    async def get_kv(self, rd: ResourceDef, ns: str, name: str) -> tuple[KeyValue, Obj]:
        kv = await self.store.get(rd.key(ns, name))
        if kv is None:
            raise not_found(rd, name)
        return kv, self.decode(rd, kv)

    def decode(self, rd: ResourceDef, kv: KeyValue) -> Obj:
        """The stored object in ``kv`` as ``rd`` serves it (custom resources: in the version
        asked for)."""
        obj = self.codec.decode(kv)
        st = self.strategies.of(rd)
        return st.to_served(rd, obj) if st.converts else obj

    async def get(self, rd: ResourceDef, ns: str, name: str) -> Obj:
        return (await self.get_kv(rd, ns, name))[1]

    async def list_objects(self, rd: ResourceDef, ns: str, opts: ListOptions) -> ListPage:
        prefix = rd.key_prefix(ns)
        revision = 0
        start_after = ""
        if opts.continue_token:
            revision, start_after = _decode_continue(opts.continue_token)
            if not start_after.startswith(prefix):
                raise bad_request("continue key does not belong to this list")
        elif opts.resource_version not in ("", "0") and opts.limit:
            revision = _rv_param(opts.resource_version)
        elif opts.resource_version not in ("", "0"):
            wanted = _rv_param(opts.resource_version)
            current = await self.store.current_revision()
            if wanted > current:
                raise too_large_resource_version(wanted, current)
        exact = opts.field.exact_name()
        items: list[Obj] = []
        st = self.strategies.of(rd)
        served = st.to_served if st.converts else None
        try:
            if (
                exact is not None
                and not opts.limit
                and not opts.continue_token
                and (not rd.namespaced or ns)
            ):
                # metadata.name=X pins one key: read it instead of the whole prefix.
                result_rev = await self.store.current_revision()
                kv = await self.store.get(rd.key(ns, exact))
                if kv is not None:
                    obj = self.codec.decode(kv)
                    if served is not None:
                        obj = served(rd, obj)
                    if opts.label.matches(
                        obj["metadata"].get("labels") or {}
                    ) and opts.field.matches(obj):
                        items.append(obj)
                return ListPage(items, max(result_rev, kv.mod_revision if kv else 0), "")
            page_size = min(opts.limit, MAX_STORE_PAGE) if opts.limit else 0
            cursor = start_after
            while True:
                result = await self.store.list(
                    prefix, revision=revision, limit=page_size, start_after=cursor
                )
                revision = result.revision
                for kv in result.items:
                    obj = self.codec.decode(kv)
                    if served is not None:
                        obj = served(rd, obj)
                    labels = obj["metadata"].get("labels") or {}
                    if (opts.label.empty or opts.label.matches(labels)) and (
                        opts.field.empty or opts.field.matches(obj)
                    ):
                        items.append(obj)
                    cursor = kv.key
                    if opts.limit and len(items) >= opts.limit:
                        more = result.more or kv is not result.items[-1]
                        token = _encode_continue(revision, cursor) if more else ""
                        return ListPage(items, revision, token)
                if not result.more:
                    return ListPage(items, revision, "")
                page_size = (
                    min(max(opts.limit - len(items), 50), MAX_STORE_PAGE) if opts.limit else 0
                )
        except Compacted as exc:
            raise gone(
                "The provided continue parameter is too old to display a consistent list result."
                " You can start a new list without the continue parameter."
                if opts.continue_token
                else f"too old resource version: {exc.requested} ({exc.compacted})"
            ) from exc
        except FutureRevision as exc:
            raise too_large_resource_version(exc.requested, exc.current) from exc

    # -- create ------------------------------------------------------------------------------

    async def _read_namespace(self, name: str) -> Obj | None:
        kv = await self.store.get(self._rd("", "namespaces").key("", name))
        return self.codec.decode(kv) if kv is not None else None

    async def _pods_in(self, ns: str) -> list[Obj]:
        pods = self._rd("", "pods")
        return [self.codec.decode(kv) for kv in (await self.store.list(pods.key_prefix(ns))).items]

    async def check_namespace(self, ns: str, rd: ResourceDef | None = None, name: str = "") -> None:
        phase = self.namespace_phase.get(ns)
        if phase is None:
            kv = await self.store.get(self._rd("", "namespaces").key("", ns))
            if kv is None:
                raise not_found(self._rd("", "namespaces"), ns)
            phase = str(get_path(self.codec.decode(kv), "status", "phase") or "Active")
        if phase == "Terminating":
            why = f"unable to create new content in namespace {ns} because it is being terminated"
            err = forbidden(why, rd, name)
            if err.details is not None:  # upstream's cause, which clients test for
                err.details["causes"] = [
                    {
                        "reason": "NamespaceTerminating",
                        "message": why,
                        "field": "metadata.namespace",
                    }
                ]
            raise err

    def _check_identity(
        self,
        rd: ResourceDef,
        ns: str,
        obj: Any,
        *,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
    ) -> Obj:
        return self._check_identity_keyed(
            rd, ns, obj, field_validation=field_validation, findings=findings
        )[0]

    def _check_identity_keyed(
        self,
        rd: ResourceDef,
        ns: str,
        obj: Any,
        *,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        body_key: bytes | Unkeyed | None = UNKEYED,
    ) -> tuple[Obj, bytes | None]:
        """:meth:`_check_identity`, and the body checks' key of the checked body
        (:meth:`BodyChecks.check_keyed`; ``None`` when there is none). ``body_key``: that
        key of ``obj`` as given, if the caller computed it (``bodycheck.clean_key``)."""
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        api_version = obj.get("apiVersion")
        if api_version not in (None, "") and api_version != rd.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API"
                f" version ({rd.api_version})"
            )
        kind = obj.get("kind")
        if kind not in (None, "") and kind != rd.kind:
            raise bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rd.kind})"
            )
        m = obj.get("metadata")
        if m is None:
            m = obj["metadata"] = {}
            body_key = UNKEYED  # not the body it was computed from any more
        if not isinstance(m, dict):
            raise bad_request("metadata must be an object")
        body_ns = m.get("namespace")
        if rd.namespaced and body_ns not in (None, "") and body_ns != ns:
            raise bad_request(
                "the namespace of the provided object does not match the namespace sent on the"
                " request"
            )
        # Types checked, unknown fields never stored; reported as fieldValidation says, with
        # the duplicate keys the caller found in the body (upstream's strict decoding).
        unknown, key = self.body_checks.check_keyed(rd, obj, key=body_key)
        pruned = self.strategies.of(rd).prune_unknown(rd, obj)
        if pruned:
            key = None  # the body changed after it was keyed
        if findings or unknown or pruned:  # else nothing to report (``enforce`` would agree)
            found = Findings()
            if findings is not None:
                found.extend(findings)
            found.extend(unknown)
            found.extend(fieldvalidation.unknown_findings(pruned))
            fieldvalidation.enforce(field_validation, rd, found)
        return obj, key

    async def _check_escalation(
        self,
        user: UserInfo | None,
        rd: ResourceDef,
        ns: str,
        name: str,
        *,
        old: Obj | None,
        new: Obj,
    ) -> None:
        if user is not None and self.escalation is not None:
            await self.escalation.check(user, rd, ns, name=name, old=old, new=new)

    @overload
    async def create(
        self,
        rd: ResourceDef,
        ns: str,
        body: Any,
        *,
        user: UserInfo | None,
        dry_run: bool = False,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        field_manager: str = SERVER_MANAGER,
        applied_fields: Any = _NO_FIELDS,
        only_serialized: Literal[False] = False,
        body_key: bytes | Unkeyed | None = UNKEYED,
    ) -> Obj: ...

    @overload
    async def create(
        self,
        rd: ResourceDef,
        ns: str,
        body: Any,
        *,
        user: UserInfo | None,
        dry_run: bool = False,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        field_manager: str = SERVER_MANAGER,
        applied_fields: Any = _NO_FIELDS,
        only_serialized: bool,
        body_key: bytes | Unkeyed | None = UNKEYED,
    ) -> Obj | orjson.Fragment: ...

    async def create(
        self,
        rd: ResourceDef,
        ns: str,
        body: Any,
        *,
        user: UserInfo | None,
        dry_run: bool = False,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        field_manager: str = SERVER_MANAGER,
        applied_fields: Any = _NO_FIELDS,
        only_serialized: bool = False,
        body_key: bytes | Unkeyed | None = UNKEYED,
    ) -> Obj | orjson.Fragment:
        """Create ``body``; ``field_manager`` owns what it sets (an Update entry), unless
        ``applied_fields`` holds the managedFields of the server-side apply creating it.
        ``only_serialized``: the caller does nothing with the returned object but serialize
        it with ``orjson.dumps``, so the watch hub may share it instead of decoding the
        stored bytes again, and what is returned may be its JSON already, as an
        :class:`orjson.Fragment` (:meth:`Codec.encode_created`). ``body_key``: the body
        checks' key of ``body`` (``bodycheck.clean_key``), if the caller computed it."""
        obj, body_key = self._check_identity_keyed(
            rd, ns, body, field_validation=field_validation, findings=findings, body_key=body_key
        )
        m = obj["metadata"]
        generate = (
            not m.get("name") and isinstance(m.get("generateName"), str) and m["generateName"]
        )
        if generate:
            m["name"] = m["generateName"] + random_suffix()
        requested = m.get("managedFields", _NO_FIELDS)
        st = self.strategies.of(rd)
        st.prepare_for_create(rd, obj, ns)
        if applied_fields is not _NO_FIELDS:
            if applied_fields:
                m["managedFields"] = applied_fields
        elif requested is _NO_FIELDS:
            # body_key: the body as checked, which the preparation just done turned into
            # ``obj`` by a function of it alone (see ``FieldManager._pod_create_fields``).
            self.field_manager.record_update(
                rd, None, obj, manager=field_manager, body_key=body_key
            )
        else:
            self.field_manager.record_update(
                rd, None, obj, manager=field_manager, requested=requested, body_key=body_key
            )
        template = await st.admit_create(self, rd, ns, obj)  # verdicts are remembered by it
        errs = st.validate(rd, obj, template=template)
        if errs:
            raise invalid(rd, str(m.get("name") or m.get("generateName") or ""), errs)
        name = str(m["name"])
        if user is not None:
            admit(user, "create", rd, namespace=ns, name=name, new=obj)
        await self._check_escalation(user, rd, ns, name, old=None, new=obj)
        if rd.namespaced:
            await self.check_namespace(ns, rd, name)
        if user is not None and self.pod_security is not None:
            await self.pod_security.review(
                user,
                "create",
                rd,
                subresource="",
                namespace=ns,
                name=name,
                new=obj,
                template=template,
            )
        await self.quotas.admit(self, rd, ns, obj, None, dry_run=dry_run)
        reserved = await st.reserve(self, obj, None, dry_run=dry_run)
        if dry_run:
            return obj
        for attempt in range(5):
            key = rd.key(ns, name)
            try:
                as_stored = st.to_storage(rd, obj) if st.converts else obj
                # What the caller serializes is what is stored with its resourceVersion (see
                # ``shares_created``): one encoding serves both.
                encoded = (
                    self.codec.encode_created(key, obj)
                    if only_serialized and st.shares_created(as_stored, obj)
                    else None
                )
                kv = await self.store.create(
                    key,
                    self.codec.encode(key, as_stored) if encoded is None else encoded[0],
                    ttl=self.event_ttl if st.expires else 0,
                )
            except KeyExists:
                if generate and attempt < 4:
                    name = m["generateName"] + random_suffix()
                    m["name"] = name
                    continue
                if reserved is not None:
                    existing = await self.store.get(key)
                    stored = self.codec.decode(existing) if existing is not None else None
                    await st.unreserve(self, reserved, keep=stored)
                raise already_exists(rd, name) from None
            except BaseException:
                await st.unreserve(self, reserved)
                raise
            m["resourceVersion"] = str(kv.mod_revision)
            if only_serialized and self.hub is not None and st.shares_created(as_stored, obj):
                self.hub.written(key, kv.mod_revision, obj)
            await st.after_create(self, rd, obj)
            if encoded is not None:
                return orjson.Fragment(answer(encoded[1], encoded[2], m["resourceVersion"]))
            return obj
        raise AssertionError("unreachable")

    # -- update / patch ----------------------------------------------------------------------

    async def update(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        user: UserInfo | None,
        dry_run: bool = False,
    ) -> Obj:
        """:meth:`put` for the server's own writes (controllers in the server, reconcilers,
        tests): fieldValidation=Ignore, the server's field manager, only the written object."""
        obj, _created = await self.put(
            rd, ns, name, body, subresource=subresource, user=user, dry_run=dry_run
        )
        return obj

    async def put(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        user: UserInfo | None,
        dry_run: bool = False,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        field_manager: str = SERVER_MANAGER,
    ) -> tuple[Obj, bool]:
        """:meth:`update`, and whether the PUT created the object (an upsert kind's)."""
        new = self._check_identity(
            rd, ns, body, field_validation=field_validation, findings=findings
        )
        body_name = new["metadata"].get("name")
        if body_name not in (None, "") and body_name != name:
            raise bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        new["metadata"]["name"] = name
        key = rd.key(ns, name)
        kv = await self.store.get(key)
        if kv is None:
            if not subresource and self.strategies.of(rd).upsert:
                new["metadata"].pop("resourceVersion", None)
                return (
                    await self.create(
                        rd, ns, new, user=user, dry_run=dry_run, field_manager=field_manager
                    ),
                    True,
                )
            raise not_found(rd, name)
        old = self.decode(rd, kv)
        wanted_rv = new["metadata"].get("resourceVersion")
        if wanted_rv not in (None, "") and str(wanted_rv) != str(kv.mod_revision):
            raise conflict(rd, name)
        written = await self._write_update(
            rd,
            ns,
            name,
            kv=kv,
            old=old,
            new=new,
            subresource=subresource,
            user=user,
            verb="update",
            dry_run=dry_run,
            field_manager=field_manager,
        )
        return written, False

    async def _write_update(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        *,
        kv: KeyValue,
        old: Obj,
        new: Obj,
        subresource: str,
        user: UserInfo | None,
        verb: str,
        dry_run: bool,
        field_manager: str = SERVER_MANAGER,
        applied_fields: Any = _NO_FIELDS,
        fields_subresource: str | None = None,
    ) -> Obj:
        requested = (new.get("metadata") or {}).get("managedFields", _NO_FIELDS)
        st = self.strategies.of(rd)
        new = st.prepare_for_update(rd, old, new, subresource)
        if applied_fields is not _NO_FIELDS:
            if applied_fields:
                meta(new)["managedFields"] = applied_fields
        else:
            self.field_manager.record_update(
                rd,
                old,
                new,
                manager=field_manager,
                subresource=subresource if fields_subresource is None else fields_subresource,
                **({} if requested is _NO_FIELDS else {"requested": requested}),
            )
        st.admit_update(self, rd, new, subresource)
        errs = st.validate(rd, new) + st.validate_update(rd, old, new)
        if errs:
            raise invalid(rd, name, errs)
        if user is not None:
            admit(
                user, verb, rd, subresource=subresource, namespace=ns, name=name, old=old, new=new
            )
            if self.pod_security is not None:
                await self.pod_security.review(
                    user,
                    "update",
                    rd,
                    # a write through /scale is a scale request (ignored, as upstream's PSA
                    # ignores every subresource of a pod controller)
                    subresource=subresource or (fields_subresource or ""),
                    namespace=ns,
                    name=name,
                    new=new,
                    old=old,
                )
        await self._check_escalation(user, rd, ns, name, old=old, new=new)
        if get_path(old, "metadata", "deletionTimestamp"):
            added = set(get_path(new, "metadata", "finalizers") or []) - set(
                get_path(old, "metadata", "finalizers") or []
            )
            if added:
                why = (
                    "no new finalizers can be added if the object is being deleted, found new"
                    f" finalizers {sorted(added)!r}"
                )
                raise invalid(rd, name, [forbidden_field("metadata.finalizers", why)])
        if not subresource and not st.finished_deleting(new):
            await self.quotas.admit(self, rd, ns, new, old, dry_run=dry_run)
        reserved = await st.reserve(self, new, old, dry_run=dry_run)
        old_cmp = dict(old)
        old_cmp["metadata"] = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
        new_cmp = dict(new)
        new_cmp["metadata"] = {k: v for k, v in new["metadata"].items() if k != "resourceVersion"}
        if old_cmp == new_cmp:
            return old  # no-op writes do not bump resourceVersion (as kube-apiserver)
        if dry_run:
            return new
        key = rd.key(ns, name)
        try:
            if st.finished_deleting(new):  # the last finalizer is gone: remove the object
                deleted = await self.store.delete(key, expected_revision=kv.mod_revision)
                meta(new)["resourceVersion"] = str(deleted.mod_revision)
                await st.after_delete(self, rd, old)
                return new
            stored = st.to_storage(rd, new) if st.converts else new
            written = await self.store.update(
                key,
                self.codec.encode(key, stored),
                expected_revision=kv.mod_revision,
                ttl=self.event_ttl if st.expires else 0,
            )
        except Conflict:
            await st.unreserve(self, reserved)
            raise conflict(rd, name) from None
        except KeyNotFound:
            await st.unreserve(self, reserved)
            raise not_found(rd, name) from None
        meta(new)["resourceVersion"] = str(written.mod_revision)
        await st.after_update(self, rd, old, new)
        return new

    async def patch(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        patch_type: str,
        patch: Any,
        *,
        subresource: str = "",
        user: UserInfo | None,
        dry_run: bool = False,
        field_validation: str = IGNORE,
        findings: Findings | None = None,
        field_manager: str = SERVER_MANAGER,
        force: bool = False,
    ) -> Obj:
        """``findings``: the duplicate keys of the patch body; unknown fields of the patched
        object are dropped (and reported as ``field_validation`` says)."""
        fm = self.field_manager
        for _attempt in range(MAX_PATCH_RETRIES):
            key = rd.key(ns, name)
            kv = await self.store.get(key)
            applied: Any = _NO_FIELDS
            if kv is None:
                # Server-side apply creates a missing object, but only through the object
                # itself: a write to a subresource (status) never creates one.
                if patch_type == "apply" and not subresource:
                    body, _ = fm.apply(rd, None, patch, manager=field_manager, force=force)
                    body["metadata"].setdefault("name", name)
                    if body["metadata"]["name"] != name:
                        raise bad_request(
                            f"the name of the object ({body['metadata']['name']}) does not"
                            f" match the name on the URL ({name})"
                        )
                    applied = body["metadata"].pop("managedFields", [])
                    return await self.create(
                        rd, ns, body, user=user, dry_run=dry_run, applied_fields=applied
                    )
                raise not_found(rd, name)
            old = self.decode(rd, kv)
            if patch_type == "apply":
                patched, _ = fm.apply(
                    rd,
                    json_copy(old),
                    patch,
                    manager=field_manager,
                    force=force,
                    subresource=subresource,
                )
                applied = patched["metadata"].get("managedFields", [])
            else:
                patched = apply_patch(patch_type, old, patch)
            if patch_type not in _DEPTH_KEEPING:  # JSON patch ops can deepen it
                check_depth(patched, "the patched object")
            if not isinstance(patched, dict):
                raise ApiError(422, "Invalid", "the patch produced something that is not an object")
            if not isinstance(patched.get("metadata"), dict):
                patched["metadata"] = {}
            shapes.check(rd, patched)
            self._drop_unknown_patched(rd, patched, field_validation, findings)
            wanted_rv = patched["metadata"].get("resourceVersion")
            explicit = wanted_rv not in (None, "") and str(wanted_rv) != str(kv.mod_revision)
            if explicit:
                raise conflict(rd, name)
            if patched["metadata"].get("name") not in (None, "", name):
                raise bad_request("metadata.name cannot be changed by a patch")
            patched["metadata"]["name"] = name
            if rd.namespaced:
                patched["metadata"]["namespace"] = ns
            try:
                return await self._write_update(
                    rd,
                    ns,
                    name,
                    kv=kv,
                    old=old,
                    new=patched,
                    subresource=subresource,
                    user=user,
                    verb="patch",
                    dry_run=dry_run,
                    field_manager=field_manager,
                    applied_fields=applied,
                )
            except ApiError as exc:
                if exc.reason == "Conflict" and patch_has_no_precondition(patch):
                    continue  # someone wrote in between; re-read and re-apply
                raise
        raise conflict(rd, name)

    def _drop_unknown_patched(
        self, rd: ResourceDef, patched: Obj, field_validation: str, findings: Findings | None
    ) -> None:
        # Strict shows the patched object as sent, unknown fields included
        shown = copy.deepcopy(patched) if field_validation == fieldvalidation.STRICT else None
        found = Findings()
        if findings is not None:
            found.extend(findings)
        found.extend(fieldvalidation.drop_unknown(rd, patched))
        found.extend(
            fieldvalidation.unknown_findings(self.strategies.of(rd).prune_unknown(rd, patched))
        )
        fieldvalidation.enforce_patch(field_validation, found, shown)

    # -- delete ------------------------------------------------------------------------------

    async def delete(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        opts: DeleteOptions,
        *,
        user: UserInfo | None,
    ) -> tuple[Obj, bool]:
        """Delete (or start deleting) an object; returns it and whether it is gone now."""
        st = self.strategies.of(rd)
        for _attempt in range(MAX_PATCH_RETRIES):
            kv, obj = await self.get_kv(rd, ns, name)
            m = obj["metadata"]
            if opts.uid and opts.uid != m.get("uid"):
                raise conflict(
                    rd,
                    name,
                    f"Precondition failed: UID in precondition: {opts.uid},"
                    f" UID in object meta: {m.get('uid')}",
                )
            if opts.resource_version and opts.resource_version != str(kv.mod_revision):
                raise conflict(
                    rd,
                    name,
                    "Precondition failed: ResourceVersion in precondition:"
                    f" {opts.resource_version}, ResourceVersion in object meta: {kv.mod_revision}",
                )
            if user is not None:
                admit(user, "delete", rd, namespace=ns, name=name, old=obj)
            # A dry run goes the same way and answers what the delete would do (the object
            # marked for deletion, or gone), writing nothing and setting nothing off.
            try:
                started = await st.start_delete(self, rd, kv, obj, opts)
                if started is not None:
                    return started, False
                finalizers = list(m.get("finalizers") or [])
                if opts.propagation == "Foreground" and "foregroundDeletion" not in finalizers:
                    finalizers.append("foregroundDeletion")
                elif opts.propagation == "Orphan" and "orphan" not in finalizers:
                    finalizers.append("orphan")
                if finalizers:
                    if st.converts:  # written back in the storage version
                        marked = await self.mark_deleting(
                            kv, st.to_storage(rd, obj), 0, finalizers, dry_run=opts.dry_run
                        )
                        return st.to_served(rd, marked), False
                    marked = await self.mark_deleting(kv, obj, 0, finalizers, dry_run=opts.dry_run)
                    return marked, False
                if opts.dry_run:
                    return obj, True
                deleted = await self.store.delete(kv.key, expected_revision=kv.mod_revision)
            except Conflict:
                continue
            except KeyNotFound:
                raise not_found(rd, name) from None
            m["resourceVersion"] = str(deleted.mod_revision)
            await st.after_delete(self, rd, obj)
            return obj, True
        raise conflict(rd, name)

    async def mark_deleting(
        self, kv: KeyValue, obj: Obj, grace: int, finalizers: list[str], *, dry_run: bool = False
    ) -> Obj:
        """Set ``obj``'s deletionTimestamp ``grace`` seconds ahead (unless an earlier one is
        set) and its ``finalizers``; the object stays until they are done. With ``dry_run``
        only ``obj`` changes (the answer shows what would be stored)."""
        m = obj["metadata"]
        # Any int64 is a valid grace period, but a datetime ends at year 9999.
        at = now() + timedelta(seconds=min(grace, MAX_GRACE_SECONDS))
        existing = parse_time(m["deletionTimestamp"]) if m.get("deletionTimestamp") else None
        changed = False
        if existing is None or at < existing:
            m["deletionTimestamp"] = format_time(at)
            m["deletionGracePeriodSeconds"] = grace
            changed = True
        if finalizers and finalizers != m.get("finalizers"):
            m["finalizers"] = finalizers
            changed = True
        if not changed or dry_run:
            return obj  # deleting again changes nothing: no write, no new resourceVersion
        written = await self.store.update(
            kv.key, self.codec.encode(kv.key, obj), expected_revision=kv.mod_revision
        )
        m["resourceVersion"] = str(written.mod_revision)
        return obj

    def finalize_soon(self, name: str) -> None:
        """Empty and remove a terminating namespace unless this server already is. Every
        server does so for every terminating namespace it sees (the deletes are CAS and
        idempotent), so one dying mid-way never leaves a namespace stuck Terminating."""
        if name not in self._finalizing:
            self._finalizing.add(name)
            self._spawn(self._finalize_namespace(name))

    async def _finalize_namespace(self, name: str) -> None:
        try:
            await self._empty_namespace(name)
        finally:
            self._finalizing.discard(name)

    async def _empty_namespace(self, name: str) -> None:
        """Remove everything in a terminating namespace, then the namespace itself.

        Pods get their normal graceful deletion first; whatever still exists after the grace
        period (no node agent confirmed it) is removed outright so deletion always finishes.
        """
        namespaced = [(r, self.strategies.of(r)) for r in self.resources.resources if r.namespaced]
        deadline = asyncio.get_running_loop().time() + 60
        while True:
            remaining = 0
            for rd, st in namespaced:
                result = await self.store.list(rd.key_prefix(name))
                for kv in result.items:
                    remaining += 1
                    force = (
                        asyncio.get_running_loop().time() > deadline or not st.teardown_gracefully
                    )
                    try:
                        if force:
                            await self.store.delete(kv.key, expected_revision=kv.mod_revision)
                            await st.after_delete(self, rd, self.codec.decode(kv))
                        else:
                            await self.delete(
                                rd, name, kv.key.rsplit("/", 1)[-1], DeleteOptions(), user=None
                            )
                    except (Conflict, KeyNotFound, ApiError):
                        continue
            if remaining == 0:
                break
            await asyncio.sleep(0.5)
        ns_rd = self._rd("", "namespaces")
        ns_kv = await self.store.get(ns_rd.key("", name))
        if ns_kv is not None:
            try:
                await self.store.delete(ns_kv.key, expected_revision=ns_kv.mod_revision)
            except (Conflict, KeyNotFound):
                log.info("namespace %s changed while finalizing", name)

    # -- pod subresources --------------------------------------------------------------------

    async def check_disruption_budgets(self, ns: str, name: str) -> None:
        """Refuse (429) an eviction that would break a PodDisruptionBudget covering the pod."""
        await check_budgets(self, ns, name)

    # -- scale -------------------------------------------------------------------------------

    def to_scale(self, rd: ResourceDef, obj: Obj) -> Obj:
        m = obj["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in m
            },
            "spec": {"replicas": get_path(obj, "spec", "replicas") or 0},
            "status": {
                "replicas": get_path(obj, "status", "replicas") or 0,
                "selector": self.strategies.of(rd).scale_selector(obj),
            },
        }

    async def update_scale(
        self,
        rd: ResourceDef,
        ns: str,
        name: str,
        *,
        patch_type: str | None,
        body: Any,
        user: UserInfo | None,
        dry_run: bool = False,
        field_manager: str = SERVER_MANAGER,
    ) -> Obj:
        for _attempt in range(MAX_PATCH_RETRIES):
            kv, obj = await self.get_kv(rd, ns, name)
            scale = self.to_scale(rd, obj)
            new_scale = apply_patch(patch_type, scale, body) if patch_type else body
            if not isinstance(new_scale, dict):
                raise bad_request("Scale must be an object")
            replicas = get_path(new_scale, "spec", "replicas")
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                raise ApiError(
                    422,
                    "Invalid",
                    f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value:'
                    f" {replicas!r}: must be greater than or equal to 0",
                    details={
                        "name": name,
                        "group": "autoscaling",
                        "kind": "Scale",
                        "causes": [
                            {
                                "reason": "FieldValueInvalid",
                                "message": f"Invalid value: {replicas!r}: must be greater than"
                                " or equal to 0",
                                "field": "spec.replicas",
                            }
                        ],
                    },
                )
            if replicas > shapes.INT32[1]:  # Scale.spec.replicas is an int32
                raise bad_request(
                    'Scale in version "v1" cannot be handled as a Scale: spec.replicas:'
                    f" expected a 32-bit integer, got {replicas}"
                )
            wanted_rv = get_path(new_scale, "metadata", "resourceVersion")
            if wanted_rv not in (None, "") and str(wanted_rv) != str(kv.mod_revision):
                raise conflict(rd, name)
            new = copy.deepcopy(obj)
            new.setdefault("spec", {})["replicas"] = replicas
            try:
                written = await self._write_update(
                    rd,
                    ns,
                    name,
                    kv=kv,
                    old=obj,
                    new=new,
                    subresource="",
                    user=user,
                    verb="update",
                    dry_run=dry_run,
                    field_manager=field_manager,
                    fields_subresource="scale",
                )
            except ApiError as exc:
                if exc.reason == "Conflict" and wanted_rv in (None, ""):
                    continue
                raise
            return self.to_scale(rd, written)
        raise conflict(rd, name)


_DEPTH_KEEPING = frozenset({"merge", "strategic"})
"""Patch types whose result nests no deeper than the object or the patch body did (each value
stays at the path it had in one of them; both are within MAX_DEPTH: the body was checked as
it was read, the object as it was written): the walk of the whole object is skipped for them
(a pod status patch walked all of the pod's managedFields)."""


def patch_has_no_precondition(patch: Any) -> bool:
    if isinstance(patch, dict):
        return get_path(patch, "metadata", "resourceVersion") in (None, "")
    if isinstance(patch, list):
        return not any(
            isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion" for op in patch
        )
    return True


def apply_patch(patch_type: str | None, original: Obj, patch: Any) -> Any:
    # One copy of the stored object: a JSON patch changes it in place, the merges make new
    # maps only where they merge (and share the rest with this copy, never with the store's).
    base = json_copy(original)
    if patch_type == "json":
        return json_patch(base, patch, owned=True)
    if patch_type == "merge":
        return json_merge_patch(base, patch)
    if patch_type in ("strategic", "apply"):
        return strategic_merge_patch(base, patch)
    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")
