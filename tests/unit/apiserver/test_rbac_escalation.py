"""Rule coverage for RBAC escalation prevention (kube's policy comparator semantics)."""

from __future__ import annotations

import pytest

from berth.api.meta import Obj
from berth.api.resources import TABLE
from berth.apiserver.kinds import strategy_for
from berth.apiserver.rbac_escalation import describe, only_gc_fields_changed, uncovered


def _r(groups: list[str], resources: list[str], verbs: list[str], **extra: list[str]) -> Obj:
    return {"apiGroups": groups, "resources": resources, "verbs": verbs, **extra}


def _url(urls: list[str], verbs: list[str]) -> Obj:
    return {"nonResourceURLs": urls, "verbs": verbs}


@pytest.mark.parametrize(
    ("held", "granted"),
    [
        ([_r(["*"], ["*"], ["*"])], [_r(["apps"], ["deployments"], ["get"])]),
        ([_r(["*"], ["*"], ["*"])], [_r(["*"], ["*"], ["*"])]),
        ([_r([""], ["pods"], ["get", "list"])], [_r([""], ["pods"], ["list"])]),
        # several held rules together cover one granted rule
        (
            [_r([""], ["pods"], ["get"]), _r([""], ["pods"], ["list"])],
            [_r([""], ["pods"], ["get", "list"])],
        ),
        # a held rule without names covers any name
        ([_r([""], ["pods"], ["get"])], [_r([""], ["pods"], ["get"], resourceNames=["a"])]),
        (
            [_r([""], ["pods"], ["get"], resourceNames=["a", "b"])],
            [_r([""], ["pods"], ["get"], resourceNames=["b"])],
        ),
        # */status covers every resource's status
        ([_r([""], ["*/status"], ["patch"])], [_r([""], ["pods/status"], ["patch"])]),
        ([_url(["/healthz"], ["get"])], [_url(["/healthz"], ["get"])]),
        ([_url(["/apis/*"], ["get"])], [_url(["/apis/apps/v1"], ["get"])]),
        ([_url(["*"], ["*"])], [_url(["/anything"], ["post"])]),
        ([], [{"verbs": ["get"]}]),  # a rule naming nothing grants nothing
    ],
)
def test_covered(held: list[Obj], granted: list[Obj]) -> None:
    assert uncovered(held, granted) == []


@pytest.mark.parametrize(
    ("held", "granted"),
    [
        ([], [_r([""], ["pods"], ["get"])]),
        # a wildcard is covered only by a wildcard
        ([_r([""], ["pods"], ["get", "list", "watch"])], [_r([""], ["pods"], ["*"])]),
        ([_r([""], ["pods"], ["get"])], [_r(["*"], ["pods"], ["get"])]),
        ([_r([""], ["pods", "secrets"], ["get"])], [_r([""], ["*"], ["get"])]),
        # a resource does not cover its subresources, nor the other way round
        ([_r([""], ["pods"], ["get"])], [_r([""], ["pods/log"], ["get"])]),
        ([_r([""], ["pods/log"], ["get"])], [_r([""], ["pods"], ["get"])]),
        ([_r([""], ["*/status"], ["get"])], [_r([""], ["pods"], ["get"])]),
        # names limit what is held
        (
            [_r([""], ["secrets"], ["get"], resourceNames=["mine"])],
            [_r([""], ["secrets"], ["get"])],
        ),
        (
            [_r([""], ["secrets"], ["get"], resourceNames=["mine"])],
            [_r([""], ["secrets"], ["get"], resourceNames=["theirs"])],
        ),
        # groups matter
        ([_r(["apps"], ["pods"], ["get"])], [_r([""], ["pods"], ["get"])]),
        # non-resource URLs: exact, prefix with *, and not covered by resource rules
        ([_url(["/healthz"], ["get"])], [_url(["/metrics"], ["get"])]),
        ([_url(["/apis/*"], ["get"])], [_url(["/api/v1"], ["get"])]),
        ([_url(["/apis/*"], ["get"])], [_url(["*"], ["get"])]),
        ([_r(["*"], ["*"], ["*"])], [_url(["/metrics"], ["get"])]),
    ],
)
def test_not_covered(held: list[Obj], granted: list[Obj]) -> None:
    assert uncovered(held, granted) != []


def test_missing_rules_are_described_like_upstream() -> None:
    held = [_r([""], ["pods"], ["get"])]
    granted = [
        _r([""], ["pods", "secrets"], ["get", "list"]),
        _r(["apps"], ["deployments"], ["delete"], resourceNames=["web"]),
        _url(["/metrics"], ["get"]),
    ]
    assert describe(uncovered(held, granted)) == [
        '{APIGroups:[""], Resources:["pods"], Verbs:["list"]}',
        '{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}',
        '{APIGroups:["apps"], Resources:["deployments"], ResourceNames:["web"], Verbs:["delete"]}',
        '{NonResourceURLs:["/metrics"], Verbs:["get"]}',
    ]


def test_only_gc_fields_changed() -> None:
    old: Obj = {"metadata": {"name": "r", "resourceVersion": "5"}, "rules": []}
    gc: Obj = {
        "metadata": {"name": "r", "resourceVersion": "5", "finalizers": ["x"]},
        "rules": [],
    }
    assert only_gc_fields_changed(old, gc)
    assert only_gc_fields_changed(old, old)
    assert not only_gc_fields_changed(None, gc)
    assert not only_gc_fields_changed(old, {**gc, "rules": [_r(["*"], ["*"], ["*"])]})
    assert not only_gc_fields_changed(old, {**old, "metadata": {"name": "r", "labels": {"a": "b"}}})


def test_role_ref_is_immutable_but_its_defaulted_api_group_is_no_change() -> None:
    rd = TABLE.by_kind("rbac.authorization.k8s.io", "RoleBinding")
    assert rd is not None
    stored_by_older_berth: Obj = {"roleRef": {"kind": "ClusterRole", "name": "view"}}
    defaulted: Obj = {
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}
    }
    assert strategy_for(rd).validate_update(rd, stored_by_older_berth, defaulted) == []
    changed: Obj = {"roleRef": {**defaulted["roleRef"], "name": "cluster-admin"}}
    [err] = strategy_for(rd).validate_update(rd, defaulted, changed)
    assert err.field == "roleRef"
    assert "cannot change roleRef" in err.message
