"""The custom resources one API server serves, kept in step with the stored CRDs.

Every server keeps one :class:`CustomResources`: it learns each CRD from the start-up listing
and from the watch of ``customresourcedefinitions`` (so a CRD created through another server
on the same datastore is served here too), and adds or removes the resources of the served
versions in the server's resource table. It is also the ``crd_schemas`` the OpenAPI documents
read (:meth:`served`, :attr:`generation`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from berth.api.meta import Obj
from berth.api.resources import CRD_RESOURCE, ResourceDef

from . import names
from .served import ServedCRD, ServedVersion, served_from

CRD_GROUP = CRD_RESOURCE.group
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
"""Held by every CRD until all its custom objects are deleted (upstream's name)."""

Path = tuple[str, str, str]


class MutableTable(Protocol):
    """What this needs of the server's resource table."""

    def add(self, rd: ResourceDef) -> None: ...

    def remove(self, rd: ResourceDef) -> None: ...


class CustomResources:
    def __init__(self, table: MutableTable, builtins: Iterable[ResourceDef]) -> None:
        self.table = table
        self.builtins = tuple(builtins)
        self._crds: dict[str, Obj] = {}
        self._served: dict[str, ServedCRD] = {}
        self._by_path: dict[Path, ServedVersion] = {}
        self._crd_by_path: dict[Path, ServedCRD] = {}
        self._revisions: dict[str, int] = {}
        self.generation = 0
        """Bumped on every change of what is served (the OpenAPI documents rebuild on it)."""

    # -- learning CRDs ----------------------------------------------------------------------

    def observe(self, crd: Obj, *, deleted: bool = False, revision: int = 0) -> bool:
        """Take a stored CRD (or its deletion) into account; True when what is served
        changed. ``revision``: the store revision of this state (its resourceVersion, or the
        deletion's); a state older than one already taken is ignored, since the server
        observes its own writes at once and the watch brings them again later."""
        name = str((crd.get("metadata") or {}).get("name") or "")
        if not revision:
            try:
                revision = int((crd.get("metadata") or {}).get("resourceVersion") or 0)
            except (TypeError, ValueError):
                revision = 0
        if revision and revision < self._revisions.get(name, 0):
            return False
        if revision:
            self._revisions[name] = revision
        if deleted:
            self._crds.pop(name, None)
            new = None
        else:
            self._crds[name] = crd
            new = served_from(crd)
        old = self._served.pop(name, None)
        if new is not None:
            self._served[name] = new
        if _same_service(old, new):
            return False
        old_paths = {_path(v.rd): v for v in old.versions} if old else {}
        new_paths = {_path(v.rd): v for v in new.versions} if new else {}
        for path, v in old_paths.items():
            if path not in new_paths:
                self.table.remove(v.rd)
                self._by_path.pop(path, None)
                self._crd_by_path.pop(path, None)
        for path, v in new_paths.items():
            assert new is not None
            self._by_path[path] = v
            self._crd_by_path[path] = new
            self.table.add(v.rd)
        self.generation += 1
        return True

    def load(self, crds: Iterable[Obj]) -> None:
        for crd in crds:
            self.observe(crd)

    # -- lookups ----------------------------------------------------------------------------

    def version(self, rd: ResourceDef) -> ServedVersion | None:
        """The served custom resource version behind ``rd`` (None for built-ins)."""
        return self._by_path.get(_path(rd))

    def crd_of(self, rd: ResourceDef) -> ServedCRD | None:
        """The served CRD behind ``rd`` (one dict lookup: asked on every request)."""
        return self._crd_by_path.get(_path(rd))

    def storage_rd(self, rd: ResourceDef) -> ResourceDef | None:
        """The resource of the storage version of ``rd``'s CRD (objects are stored as it)."""
        crd = self.crd_of(rd)
        if crd is None:
            return None
        v = crd.version(crd.storage_version)
        return v.rd if v is not None else crd.versions[0].rd

    def crds(self) -> list[Obj]:
        return list(self._crds.values())

    def served(self) -> Iterator[tuple[ResourceDef, dict[str, Any]]]:
        """Each served custom resource version with its openAPIV3Schema (``crd_schemas``)."""
        for s in self._served.values():
            for v in s.versions:
                yield v.rd, v.raw_schema

    # -- status -----------------------------------------------------------------------------

    def names_status(self, crd: Obj) -> Obj:
        """``crd``'s status with its names accepted or refused against every other CRD this
        server knows and the built-in resources."""
        name = (crd.get("metadata") or {}).get("name")
        others = [c for n, c in self._crds.items() if n != name]
        return names.reconcile_status(crd, others, self.builtins)


def needs_cleanup(crd: Obj) -> bool:
    """Whether ``crd`` is being deleted and still holds the cleanup finalizer."""
    m = crd.get("metadata") or {}
    return bool(m.get("deletionTimestamp")) and CLEANUP_FINALIZER in (m.get("finalizers") or [])


def _path(rd: ResourceDef) -> Path:
    return (rd.group, rd.version, rd.plural)


def _same_service(a: ServedCRD | None, b: ServedCRD | None) -> bool:
    if a is None or b is None:
        return a is b
    return (
        [v.rd for v in a.versions] == [v.rd for v in b.versions]
        and [v.raw_schema for v in a.versions] == [v.raw_schema for v in b.versions]
        and [v.columns for v in a.versions] == [v.columns for v in b.versions]
        and a.terminating == b.terminating
        and a.storage_version == b.storage_version
    )
