"""The kinds CRDs bring: the CRD kind's write rules and the custom objects' strategy (write
rules, pruning for fieldValidation, versions, Table columns), without a server."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Coroutine
from typing import Any

from berth.api.resources import CRD_RESOURCE, TABLE, ResourceDef
from berth.apiserver.crd import names, strategy
from berth.apiserver.crd.manager import CLEANUP_FINALIZER, CustomResources
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds.customresourcedefinitions import (
    CustomResourceDefinitionStrategy,
    storage_resource,
)
from berth.apiserver.kinds.customresources import CustomObjectStrategy

from .test_crd_definition import make_crd
from .test_crd_manager import FakeTable


def _served(*, beta: bool = False) -> tuple[CustomResources, FakeTable]:
    table = FakeTable()
    resources = CustomResources(table, TABLE.resources)
    crd = make_crd()
    props = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    props["spec"]["properties"]["size"] = {"type": "string", "default": "small"}
    if beta:
        v2 = copy.deepcopy(crd["spec"]["versions"][0])
        v2.update(name="v1beta1", storage=False)
        crd["spec"]["versions"].append(v2)
    strategy.prepare_crd_create(crd)
    crd["status"] = names.reconcile_status(crd, [], TABLE.resources)
    assert resources.observe(crd)
    return resources, table


def _widget(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "ns"},
        "spec": spec,
    }


def test_crd_create_holds_the_cleanup_finalizer_and_a_fresh_status() -> None:
    st = CustomResourceDefinitionStrategy()
    crd = make_crd()
    crd["metadata"]["finalizers"] = ["example.com/mine"]
    crd["status"] = {"storedVersions": ["v0"], "conditions": [{"type": "Established"}]}
    st.prepare_for_create(CRD_RESOURCE, crd, "")
    assert crd["metadata"]["finalizers"] == ["example.com/mine", CLEANUP_FINALIZER]
    assert crd["metadata"]["generation"] == 1
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["status"]["conditions"] == []
    assert st.validate(CRD_RESOURCE, crd) == []
    # group, scope and plural cannot change
    new = copy.deepcopy(crd)
    new["spec"]["scope"] = "Cluster"
    st.prepare_for_update(CRD_RESOURCE, crd, new, "")
    assert [e.field for e in st.validate_update(CRD_RESOURCE, crd, new)] == ["spec.scope"]
    assert storage_resource(crd) is None  # never established: it has no objects
    crd["status"] = names.reconcile_status(crd, [], TABLE.resources)
    rd = storage_resource(crd)
    assert rd is not None
    assert (rd.group, rd.version, rd.plural, rd.namespaced) == (
        "example.com",
        "v1",
        "widgets",
        True,
    )


class _FailingRegistry:
    """Enough of a Registry for a CRD whose status write fails."""

    def __init__(self) -> None:
        self.spawned: list[Coroutine[Any, Any, None]] = []

    async def update(self, *args: Any, **kwargs: Any) -> Any:
        raise ApiError(422, "Invalid", "refused")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.spawned.append(coro)
        coro.close()


def test_deleting_a_crd_asking_for_a_builtins_names_deletes_nothing_of_it() -> None:
    crd = make_crd(group="rbac.authorization.k8s.io")
    crd["metadata"]["name"] = "clusterroles.rbac.authorization.k8s.io"
    crd["spec"]["names"] = {"plural": "clusterroles", "kind": "Sneaky"}
    strategy.prepare_crd_create(crd)
    crd["status"] = names.reconcile_status(crd, [], TABLE.resources)
    assert not names.is_true(crd, "NamesAccepted")
    assert storage_resource(crd) is None


def test_a_failed_status_write_does_not_fail_the_crd_write() -> None:
    resources = CustomResources(FakeTable(), TABLE.resources)
    st = CustomResourceDefinitionStrategy(resources)
    crd = make_crd()
    st.prepare_for_create(CRD_RESOURCE, crd, "")
    reg: Any = _FailingRegistry()
    asyncio.run(st.settle(reg, CRD_RESOURCE, crd))  # no exception: the CRD is stored
    assert len(reg.spawned) == 1  # tried again a second later
    asyncio.run(st.settle(reg, CRD_RESOURCE, crd, retry=False))
    assert len(reg.spawned) == 1


def test_custom_object_writes() -> None:
    resources, table = _served()
    rd = table.rds[("example.com", "v1", "widgets")]
    st = CustomObjectStrategy(resources)
    obj = _widget(replicas=1, junk=1)
    obj["status"] = {"replicas": 5}
    obj["zzz"] = 1
    assert st.prune_unknown(rd, obj) == ["spec.junk", "zzz"]  # sorted, for fieldValidation
    st.prepare_for_create(rd, obj, "ns")
    assert "status" not in obj  # the status subresource: creates never write it
    assert obj["spec"] == {"replicas": 1, "size": "small"}
    assert obj["metadata"]["generation"] == 1
    assert st.validate(rd, obj) == []
    obj["status"] = {"replicas": 1}
    # a main-resource write keeps status; only a spec change bumps generation
    new = copy.deepcopy(obj)
    new["status"] = {"replicas": 9}
    st.prepare_for_update(rd, obj, new, "")
    assert new["status"] == {"replicas": 1}
    assert new["metadata"]["generation"] == 1
    new["spec"]["replicas"] = 2
    st.prepare_for_update(rd, obj, new, "")
    assert new["metadata"]["generation"] == 2
    # a status write keeps everything else
    sw = copy.deepcopy(obj)
    sw["spec"]["replicas"] = 7
    sw["metadata"]["labels"] = {"a": "b"}
    sw["status"] = {"replicas": 3}
    out = st.prepare_for_update(rd, obj, sw, "status")
    assert out["spec"]["replicas"] == 1
    assert "labels" not in out["metadata"]
    assert out["status"] == {"replicas": 3}
    bad = copy.deepcopy(obj)
    bad["spec"]["replicas"] = -1
    assert [e.field for e in st.validate(rd, bad)] == [".spec.replicas"]


def test_custom_objects_are_stored_in_one_version_and_served_in_each() -> None:
    resources, table = _served(beta=True)
    beta = table.rds[("example.com", "v1beta1", "widgets")]
    st = CustomObjectStrategy(resources)
    sent = _widget(replicas=2)
    sent["apiVersion"] = "example.com/v1beta1"
    assert st.to_storage(beta, sent)["apiVersion"] == "example.com/v1"
    assert sent["apiVersion"] == "example.com/v1beta1"  # never changed in place
    stored = _widget(replicas=2)  # stored before "size" had a default
    served = st.to_served(beta, stored)
    assert served["apiVersion"] == "example.com/v1beta1"
    assert served["spec"] == {"replicas": 2, "size": "small"}
    assert stored["spec"] == {"replicas": 2}  # a watch event is shared: not changed
    gone = ResourceDef("example.com", "v9", "widgets", "widget", "Widget", True)
    assert st.to_served(gone, stored) is stored


def test_printer_is_the_versions_columns() -> None:
    resources, table = _served()
    rd = table.rds[("example.com", "v1", "widgets")]
    st = CustomObjectStrategy(resources)
    printer = st.printer(rd)
    assert [c.name for c in printer.columns] == ["Name", "Replicas", "Age"]
    assert printer.row(_widget(replicas=3))[:2] == ["w", 3]
    assert st.printer(rd) is printer  # built once per served version
