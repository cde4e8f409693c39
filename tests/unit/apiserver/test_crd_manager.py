"""The served custom resources follow the stored CRDs: versions added, changed and removed
in the resource table, the crd_schemas interface, names checked against the others."""

from __future__ import annotations

import copy
from typing import Any

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver.crd import strategy
from berth.apiserver.crd.manager import CLEANUP_FINALIZER, CustomResources, needs_cleanup

from .test_crd_definition import make_crd


class FakeTable:
    def __init__(self) -> None:
        self.rds: dict[tuple[str, str, str], ResourceDef] = {}

    def add(self, rd: ResourceDef) -> None:
        self.rds[(rd.group, rd.version, rd.plural)] = rd

    def remove(self, rd: ResourceDef) -> None:
        self.rds.pop((rd.group, rd.version, rd.plural), None)


def established(crd: dict[str, Any], mgr: CustomResources) -> dict[str, Any]:
    strategy.prepare_crd_create(crd)
    crd["status"] = mgr.names_status(crd)
    return crd


def test_served_versions_follow_the_crd() -> None:
    table = FakeTable()
    mgr = CustomResources(table, TABLE.resources)
    crd = established(make_crd(), mgr)
    assert mgr.observe(crd)
    assert set(table.rds) == {("example.com", "v1", "widgets")}
    assert mgr.generation == 1
    [(rd, schema)] = list(mgr.served())
    assert rd.kind == "Widget"
    assert schema["type"] == "object"
    assert not mgr.observe(copy.deepcopy(crd))  # nothing changed: no new generation
    assert mgr.generation == 1

    two = copy.deepcopy(crd)
    v2 = copy.deepcopy(two["spec"]["versions"][0])
    v2.update(name="v2", storage=False)
    two["spec"]["versions"].append(v2)
    assert mgr.observe(two)
    assert set(table.rds) == {("example.com", "v1", "widgets"), ("example.com", "v2", "widgets")}
    v2_rd = table.rds[("example.com", "v2", "widgets")]
    assert mgr.version(v2_rd) is not None
    storage = mgr.storage_rd(v2_rd)
    assert storage is not None
    assert storage.version == "v1"

    two["spec"]["versions"][1]["served"] = False
    mgr.observe(two)
    assert set(table.rds) == {("example.com", "v1", "widgets")}

    mgr.observe(two, deleted=True)
    assert table.rds == {}
    assert list(mgr.served()) == []


def test_names_are_checked_against_known_crds() -> None:
    mgr = CustomResources(FakeTable(), TABLE.resources)
    mgr.observe(established(make_crd(), mgr))
    other = make_crd()
    other["metadata"]["name"] = "gadgets.example.com"
    other["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget", "shortNames": ["wd"]}
    other = established(other, mgr)
    conds = {c["type"]: c["reason"] for c in other["status"]["conditions"]}
    assert conds["NamesAccepted"] == "ShortNamesConflict"


def test_cleanup_finalizer() -> None:
    crd = make_crd()
    crd["metadata"]["finalizers"] = [CLEANUP_FINALIZER]
    assert not needs_cleanup(crd)
    crd["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert needs_cleanup(crd)


def test_older_states_than_one_observed_are_ignored() -> None:
    """A server serves its own CRD write at once; the watch brings the earlier states
    (the create, before its names were accepted) afterwards: they must not undo it."""
    table = FakeTable()
    mgr = CustomResources(table, TABLE.resources)
    crd = make_crd()
    strategy.prepare_crd_create(crd)
    created = copy.deepcopy(crd)
    created["metadata"]["resourceVersion"] = "10"
    accepted = established(copy.deepcopy(crd), mgr)
    accepted["metadata"]["resourceVersion"] = "11"
    assert mgr.observe(accepted)
    assert not mgr.observe(created)  # from the watch, late
    assert set(table.rds) == {("example.com", "v1", "widgets")}
    assert not mgr.observe(accepted, deleted=True, revision=9)  # a stale deletion
    assert set(table.rds) == {("example.com", "v1", "widgets")}
    # a terminating CRD stays served (refusing creates), until it is gone
    terminating = copy.deepcopy(accepted)
    terminating["metadata"].update(resourceVersion="12", deletionTimestamp="2024-01-01T00:00:00Z")
    assert mgr.observe(terminating)
    served = mgr.crd_of(table.rds[("example.com", "v1", "widgets")])
    assert served is not None
    assert served.terminating
    assert mgr.observe(terminating, deleted=True, revision=13)
    assert table.rds == {}
