"""The strategy of a kind: every rule the server applies to objects of that kind.

The registry and the request dispatcher are the same for every resource; they ask the
resource's :class:`KindStrategy` for what differs: defaults, what a create resets, what an
update may change, validation, the fields a field selector may name, the columns of
``kubectl get``, extra subresource handlers, and what a write or a delete sets off
(allocating a Service's addresses, terminating a namespace, a pod's graceful deletion).

The base class is itself a complete strategy (an object with a ``spec``, and a ``status``
written only through ``/status`` when the resource has that subresource): a kind overrides
only what it does differently.
"""

from __future__ import annotations

import copy
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any

from berth.api.meta import Obj, get_path
from berth.api.resources import ResourceDef
from berth.api.selectors import selector_to_string
from berth.apiserver import strategy
from berth.apiserver.errors import FieldError
from berth.apiserver.selectors import FieldGetter
from berth.apiserver.tables import DEFAULT, Printer
from berth.apiserver.validation import SUBDOMAIN, validate_metadata

if TYPE_CHECKING:
    from berth.apiserver.handlers import Endpoint
    from berth.apiserver.options import DeleteOptions
    from berth.apiserver.registry import Registry
    from berth.store.interface import KeyValue


class KindStrategy:
    """Rules for the objects of one kind. Instances are shared by every request: keep them
    free of per-request state. Hooks get the :class:`ResourceDef` served, so one strategy may
    serve several resources (the versions of a custom resource)."""

    group: str = ""
    """API group and kind of the built-in this strategy serves (``""`` for a strategy that
    is registered for a resource explicitly, see :meth:`Strategies.register`)."""
    kind: str = ""

    specless: bool = False
    """The kind has no ``spec``: everything but metadata and status is its content, and it
    has no ``metadata.generation`` (ConfigMap, Secret, RBAC objects...)."""
    name_rule: str = SUBDOMAIN
    """How ``metadata.name`` is checked (:data:`berth.apiserver.validation.SUBDOMAIN`,
    ``LABEL`` or ``PATH_SEGMENT``)."""
    upsert: bool = False
    """A PUT of a missing object creates it (Endpoints, Lease, Event, as kube-apiserver)."""
    expires: bool = False
    """Every create and update gives the object the server's ``event_ttl``: the store deletes
    it that long after its last write (Events, as kube-apiserver's ``--event-ttl``)."""
    delete_returns_object: bool = False
    """DELETE answers with the deleted object rather than a ``Status`` (Pod, Service)."""
    teardown_gracefully: bool = False
    """When its namespace terminates, objects go through their normal delete (pods: the
    graceful path) until the teardown deadline, instead of being removed at once."""
    field_selectors: Mapping[str, FieldGetter] = {}
    """Selectable fields besides ``metadata.name`` and ``metadata.namespace``."""
    columns: Printer = DEFAULT
    """The Table columns ``kubectl get`` prints (see :meth:`printer`)."""
    converts: bool = False
    """Objects are stored in one version and served in several (custom resources): the
    registry passes what it writes through :meth:`to_storage` and what it reads through
    :meth:`to_served`. False for built-ins, which pay nothing for it."""
    endpoints: Mapping[tuple[str, str], Endpoint] = {}
    """Handlers of this kind's own (verb, subresource) pairs, looked up before the shared
    ones of :data:`berth.apiserver.handlers.ENDPOINTS`."""
    empty_status: Mapping[str, Any] | None = None
    """The ``status`` kube-apiserver shows for this kind when nothing set one: its Go type's
    fields without ``omitempty``, at their zero values (``{}`` for a Deployment,
    ``{"replicas": 0}`` for a ReplicaSet). Every write fills what is missing from it, so an
    object always carries these fields; ``None``: the kind has no status (ConfigMap)."""

    # -- shaping writes ---------------------------------------------------------------------

    def defaults(self, rd: ResourceDef, obj: Obj) -> None:
        """Fill the defaults kube-apiserver would (only for fields the client left out)."""

    def reset_status(self, rd: ResourceDef, obj: Obj) -> None:
        """Set the status a new object starts with (clients do not write it on create)."""
        if rd.has_status:
            obj.pop("status", None)

    def prepare_for_create(self, rd: ResourceDef, obj: Obj, namespace: str) -> Obj:
        """Set server-owned metadata, reset the status, fill defaults."""
        strategy.stamp_for_create(rd, obj, namespace, generation=not self.specless)
        self.reset_status(rd, obj)
        self.defaults(rd, obj)
        self.fill_status(obj)
        return obj

    def fill_status(self, obj: Obj) -> None:
        """Give ``obj`` the fields of :attr:`empty_status` it lacks (as decoding into the Go
        type and encoding again would)."""
        if self.empty_status is not None:
            status = obj.get("status")
            if status is None:
                obj["status"] = copy.deepcopy(dict(self.empty_status))
            elif isinstance(status, dict):
                _fill(status, self.empty_status)

    def keep_on_update(self, rd: ResourceDef, old: Obj, new: Obj) -> None:
        """Put back in ``new`` what an update of the object itself may not change: the
        status, when the resource has a ``status`` subresource."""
        if rd.has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)

    def spec_part(self, rd: ResourceDef, obj: Obj) -> Any:
        """The part of the object whose change bumps ``metadata.generation``."""
        if self.specless:
            return {
                k: v
                for k, v in obj.items()
                if k not in ("metadata", "status", "apiVersion", "kind")
            }
        return obj.get("spec")

    def prepare_for_update(self, rd: ResourceDef, old: Obj, new: Obj, subresource: str) -> Obj:
        """Merge ``new`` over ``old`` according to who may write what; bump generation."""
        if subresource == "status":
            # ``old`` is the registry's own decode of the stored object; of the result only
            # status and metadata's own keys change from here on (fill_status, the write).
            merged = strategy.status_update_sharing(old, new)
            self.fill_status(merged)
            return merged
        if subresource:
            raise ValueError(f"no update strategy for subresource {subresource!r}")
        strategy.stamp_for_update(rd, old, new)
        self.keep_on_update(rd, old, new)
        self.defaults(rd, new)
        self.fill_status(new)
        m = new["metadata"]
        if self.specless:
            m.pop("generation", None)
        else:
            generation = int(get_path(old, "metadata", "generation") or 1)
            changed = self.spec_part(rd, new) != self.spec_part(rd, old)
            m["generation"] = generation + 1 if changed else generation
        return new

    def prune_unknown(self, rd: ResourceDef, obj: Obj) -> list[str]:
        """Drop the fields of a client's ``obj`` that this kind's own schema does not know,
        returning their paths (``spec.foo``) for ``fieldValidation``. Built-in kinds have
        none here: their unknown fields are dropped by :mod:`berth.apiserver.openapi`."""
        return []

    # -- validation -------------------------------------------------------------------------

    def validate(
        self, rd: ResourceDef, obj: Obj, *, template: Hashable | None = None
    ) -> list[FieldError]:
        """All field errors of ``obj`` (metadata, then the kind's own fields); ``template``:
        what :meth:`admit_create` returned for it."""
        return validate_metadata(obj, self.name_rule) + self.validate_fields(rd, obj)

    def validate_fields(self, rd: ResourceDef, obj: Obj) -> list[FieldError]:
        """Errors in the kind's own fields."""
        return []

    def validate_update(self, rd: ResourceDef, old: Obj, new: Obj) -> list[FieldError]:
        """Rules about what an update may change (immutable fields)."""
        return []

    # -- admission and side effects ---------------------------------------------------------

    async def admit_create(
        self, reg: Registry, rd: ResourceDef, ns: str, obj: Obj
    ) -> Hashable | None:
        """Mutating admission of a new object, after defaults and before validation. May
        return a key of what the object's checks read (pods: :mod:`podtemplate`), under
        which validation and Pod Security remember their verdicts."""
        return None

    def admit_update(self, reg: Registry, rd: ResourceDef, new: Obj, subresource: str) -> None:
        """Mutating admission of an update, after :meth:`prepare_for_update`."""

    async def reserve(self, reg: Registry, new: Obj, old: Obj | None, *, dry_run: bool) -> Any:
        """Take what the object needs outside its own key before it is written (a
        Service's ClusterIP and NodePorts); returns a token for :meth:`unreserve`."""
        return None

    async def unreserve(self, reg: Registry, reserved: Any, *, keep: Obj | None = None) -> None:
        """Give back what :meth:`reserve` took when the write fails (but what the stored
        object ``keep`` holds)."""

    async def after_create(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        """Runs once ``obj`` is stored (not on dry runs)."""

    def shares_created(self, stored: Obj, obj: Obj) -> bool:
        """Whether the watch event of a create may carry ``obj`` itself instead of a decoded
        copy of what was stored (:meth:`berth.apiserver.watch.WatchHub.written`): only when
        ``obj`` was stored as it is and :meth:`after_create` is the default one (an override
        may still change the object, or keep it)."""
        return stored is obj and type(self).after_create is KindStrategy.after_create

    async def after_update(self, reg: Registry, rd: ResourceDef, old: Obj, new: Obj) -> None:
        """Runs once ``new`` replaced ``old`` in the store (not on dry runs)."""

    async def after_delete(self, reg: Registry, rd: ResourceDef, obj: Obj) -> None:
        """Runs once ``obj`` is gone from the store."""

    def scale_selector(self, obj: Obj) -> str:
        """The ``status.selector`` of this kind's ``scale`` subresource: its
        ``spec.selector`` (a ``metav1.LabelSelector``) as a string."""
        return selector_to_string(get_path(obj, "spec", "selector"))

    def finished_deleting(self, obj: Obj) -> bool:
        """Whether an update leaves ``obj`` ready to be removed: it is being deleted and no
        finalizer remains."""
        m = obj["metadata"]
        return bool(m.get("deletionTimestamp")) and not m.get("finalizers")

    async def start_delete(
        self, reg: Registry, rd: ResourceDef, kv: KeyValue, obj: Obj, opts: DeleteOptions
    ) -> Obj | None:
        """Begin a deletion the kind handles itself (namespace termination, graceful pod
        deletion) and return the object as it now is; ``None`` for the usual path
        (finalizers, then removal)."""
        return None

    # -- versions (only asked when :attr:`converts`) -----------------------------------------

    def to_storage(self, rd: ResourceDef, obj: Obj) -> Obj:
        """``obj`` (in ``rd``'s version) as it is stored; must not change ``obj``."""
        return obj

    def to_served(self, rd: ResourceDef, obj: Obj) -> Obj:
        """A stored ``obj`` as ``rd`` serves it; must not change ``obj``."""
        return obj

    # -- reads ------------------------------------------------------------------------------

    def printer(self, rd: ResourceDef) -> Printer:
        """The Table columns for ``rd`` (custom resources: their additionalPrinterColumns)."""
        return self.columns


def _fill(into: dict[str, Any], zero: Mapping[str, Any]) -> None:
    """Add to ``into`` the fields of ``zero`` it lacks (or holds as null), into nested
    objects too."""
    for key, value in zero.items():
        have = into.get(key)
        if have is None:
            into[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(have, dict):
            _fill(have, value)
