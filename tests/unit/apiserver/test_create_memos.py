"""Remembered work on the create path gives what the full computation gives, for every input.

Each memo here is checked against the code it stands in for: the same answer on a hit, on a
miss, and for inputs built to look alike but differ (a memo must never let a different input
through)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import uuid
import warnings
from typing import Any

import orjson
import pytest

from berth.api.meta import format_now, format_time, new_uid, now, parse_time, random_bytes
from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import client_warnings, shapes
from berth.apiserver.audit import AuditLog
from berth.apiserver.auth import UserInfo
from berth.apiserver.bodycheck import BodyChecks, clean_key, key_ends
from berth.apiserver.errors import ApiError
from berth.apiserver.fieldmanager import FieldManager
from berth.apiserver.fieldmanager.managers import encode as encode_managed
from berth.apiserver.fieldmanager.managers import update as update_managers
from berth.apiserver.kinds import Strategies
from berth.apiserver.openapi import fieldvalidation
from berth.apiserver.podsecurity import PodSecurityAdmission, PodSecurityConfig
from berth.apiserver.podtemplate import PodTemplate, spec_bytes
from berth.apiserver.suffixes import ALPHABET, LENGTH, random_suffix


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


PODS = _rd("", "pods")


def _full_create_fields(fm: FieldManager, rd: ResourceDef, obj: dict[str, Any]) -> Any:
    """What record_update computed for a create before any memo: update() over nothing."""
    body = copy.deepcopy(obj)
    body["metadata"].pop("managedFields", None)
    managed = update_managers(
        {},
        None,
        body,
        fm.schemas.node_for(rd),
        manager="m",
        api_version=rd.api_version,
        subresource="",
        time="t",
        ignored=fm._ignored(rd, ""),
    )
    return [e.fields for e in managed.values()]


def _recorded(fm: FieldManager, rd: ResourceDef, obj: dict[str, Any]) -> Any:
    created = copy.deepcopy(obj)
    fm.record_update(rd, None, created, manager="m")
    return [e["fieldsV1"] for e in created["metadata"].get("managedFields", [])]


def _pod(name: Any = "p-1", **extra_meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "web"},
            **extra_meta,
        },
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}],
            "restartPolicy": "Always",
        },
        "status": {"phase": "Pending"},
    }


LOOKALIKES: list[dict[str, Any]] = [
    _pod(),
    _pod("p-2"),  # same template, other identity: a hit
    _pod("p-3", generation=1),
    _pod("p-4", resourceVersion="12"),
    _pod(None),  # a null name: not a scalar field, must not share with a named pod
    _pod("p-5", generateName="p-"),
    _pod("p-6", labels={"app": "web", "tier": "a"}),
    _pod("p-7", labels={"app": 1}),
    _pod("p-8", annotations={}),
    _pod("p-9", managedFields=[{"manager": "x", "operation": "Update"}]),
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "only-identity"}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "n"}, "spec": {}},
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "n"},
        "spec": {"containers": [{"name": "other", "image": "busybox"}]},
    },
    {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "n"},
        "spec": {"containers": [{"name": "c", "image": None}]},
    },
]


@pytest.mark.parametrize("order", [1, -1])
def test_a_created_pods_field_set_is_the_full_computations_hit_or_miss(order: int) -> None:
    fm = FieldManager()
    cases = LOOKALIKES[::order]
    for _ in range(2):  # the first pass fills the memo, the second answers from it
        for obj in cases:
            assert _recorded(fm, PODS, obj) == _full_create_fields(fm, PODS, obj), obj


def _fields_of(obj: dict[str, Any]) -> Any:
    return obj["metadata"]["managedFields"][0]["fieldsV1"]


def _untimed(obj: dict[str, Any]) -> Any:
    """The managedFields entries without their times (two writes may straddle a second)."""
    return [{k: v for k, v in e.items() if k != "time"} for e in obj["metadata"]["managedFields"]]


def test_the_remembered_field_set_is_shared_and_refuses_changes_in_place() -> None:
    fm = FieldManager()
    a, b = copy.deepcopy(_pod("a")), copy.deepcopy(_pod("b"))
    fm.record_update(PODS, None, a, manager="m")
    fm.record_update(PODS, None, b, manager="m")
    shared = _fields_of(a)
    assert shared is _fields_of(b)  # one set for the pods of one template
    spec, labels = shared["f:spec"], shared["f:metadata"]["f:labels"]
    changes: list[tuple[Any, str, tuple[Any, ...]]] = [
        (spec, "clear", ()),
        (shared, "__setitem__", ("f:x", {})),
        (spec, "pop", ("f:containers",)),
        (labels, "update", ({"f:y": {}},)),
        (shared, "setdefault", ("f:z", {})),
        (spec, "popitem", ()),
    ]
    for target, method, args in changes:
        with pytest.raises(TypeError):
            getattr(target, method)(*args)
    with pytest.raises(TypeError):
        del shared["f:spec"]
    c = copy.deepcopy(_pod("c"))
    fm.record_update(PODS, None, c, manager="m")
    assert _fields_of(c) == _full_create_fields(fm, PODS, c)[0]
    thawed = copy.deepcopy(a)  # a copy of a pod is a plain, mutable object
    _fields_of(thawed)["f:spec"].clear()
    assert _fields_of(thawed) != shared
    assert _fields_of(c)["f:spec"]


def test_writes_over_a_pod_holding_the_shared_field_set_are_the_full_computations() -> None:
    """A created pod handed back as it is (the live object of an update, or its own
    managedFields in the body) works as with a decoded copy, and leaves the set intact."""
    fm, plain = FieldManager(), FieldManager()
    live = copy.deepcopy(_pod("a"))
    fm.record_update(PODS, None, live, manager="m")
    before = copy.deepcopy(_fields_of(live))
    decoded = copy.deepcopy(live)  # what a read from the store gives
    new = copy.deepcopy(decoded)
    new["spec"]["containers"][0]["image"] = "other"
    new["metadata"]["labels"] = {"tier": "b"}
    for requested in ({}, {"requested": live["metadata"]["managedFields"]}):
        got, want = copy.deepcopy(new), copy.deepcopy(new)
        fm.record_update(PODS, live, got, manager="n", **requested)
        plain.record_update(PODS, decoded, want, manager="n", **requested)
        assert _untimed(got) == _untimed(want)
    config = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"}}
    config["spec"] = {"containers": [{"name": "c", "image": "applied"}]}
    applied, _ = fm.apply(PODS, live, copy.deepcopy(config), manager="k", force=True)
    want_applied, _ = plain.apply(PODS, decoded, copy.deepcopy(config), manager="k", force=True)
    assert _untimed(applied) == _untimed(want_applied)
    assert _fields_of(live) == before


def test_a_created_pod_entry_names_its_writer_version_and_time() -> None:
    fm = FieldManager()
    pod = copy.deepcopy(_pod())
    fm.record_update(PODS, None, pod, manager="")
    (entry,) = pod["metadata"]["managedFields"]
    assert (entry["manager"], entry["operation"]) == ("unknown", "Update")
    assert (entry["apiVersion"], entry["fieldsType"]) == ("v1", "FieldsV1")
    assert parse_time(entry["time"]) is not None
    assert "subresource" not in entry


def test_the_remembered_stamp_is_the_formatted_time() -> None:
    for _ in range(3):
        before = format_time(now())
        stamp = format_now()
        after = format_time(now())
        assert before <= stamp <= after
        assert parse_time(stamp) is not None
        assert stamp.endswith("Z")
        assert len(stamp) == len("2026-01-01T00:00:00Z")


def test_uids_are_version_4_uuids_spelled_as_uuid_spells_them() -> None:
    seen = set()
    for _ in range(3000):  # crosses several refills of the random pool
        uid = new_uid()
        parsed = uuid.UUID(uid)
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == uid
        seen.add(uid)
    assert len(seen) == 3000


def test_random_suffixes_use_the_alphabet_and_spread_over_it() -> None:
    drawn = [random_suffix() for _ in range(3000)]
    assert all(len(s) == LENGTH and set(s) <= set(ALPHABET) for s in drawn)
    assert len(set(drawn)) > 2990  # 27**5 names: a repeat among 3000 is rare
    for position in range(LENGTH):  # every letter appears at every position
        assert {s[position] for s in drawn} == set(ALPHABET)


def test_a_forked_child_does_not_repeat_its_parents_random_bytes() -> None:
    random_bytes(1)  # the pool holds unread bytes now
    read, write = os.pipe()
    with warnings.catch_warnings():  # newer Pythons warn of forking with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: send what it draws, then leave at once
        os.write(write, random_bytes(32))
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64)
    os.close(read)
    assert len(child) == 32
    assert child != random_bytes(32)


def _body(name: Any = "p", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec},
    }


def _full_check(obj: dict[str, Any]) -> tuple[Any, list[str]]:
    """shapes.check then drop_unknown, as every body was checked before the memo."""
    try:
        shapes.check(PODS, obj)
    except ApiError as exc:
        return ("error", exc.code, exc.message), []
    return obj, fieldvalidation.drop_unknown(PODS, obj).errors


def _memo_check(checks: BodyChecks, obj: dict[str, Any]) -> tuple[Any, list[str]]:
    try:
        found = checks.check(PODS, obj)
    except ApiError as exc:
        return ("error", exc.code, exc.message), []
    return obj, found.errors


BODIES: list[dict[str, Any]] = [
    _body(),
    _body("q"),  # same template, other name: remembered
    _body(""),
    _body(5),  # a name of the wrong type: 400, never taken for a remembered "p"
    _body(None),
    _body(0),
    _body(["p"]),
    _body(nodeName="n1"),
    _body(nodeName=1),  # wrong type in the spec
    _body(hostNetwork=True),
    _body(volumes=None),  # a null list: the type check drops it (changed: not remembered)
    _body(unknownField=1),  # an unknown field: dropped and reported, every time
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "generateName": 7}},
    {**_body(), "status": {"phase": 1}},
]


def test_remembered_body_checks_answer_as_the_full_checks() -> None:
    checks = BodyChecks()
    for _ in range(3):
        for body in BODIES:
            expected = _full_check(copy.deepcopy(body))
            assert _memo_check(checks, copy.deepcopy(body)) == expected, body


def test_only_clean_unchanged_pod_bodies_are_remembered() -> None:
    checks = BodyChecks()
    for body in BODIES:
        with contextlib.suppress(ApiError):
            checks.check(PODS, copy.deepcopy(body))
    # _body() with any string name, with a null name, with nodeName "n1", with hostNetwork
    assert len(checks._clean) == 4
    assert clean_key(PODS, _body("a")) == clean_key(PODS, _body("b"))
    assert clean_key(PODS, _body("0")) != clean_key(PODS, _body(0))
    assert clean_key(_rd("", "configmaps"), {"metadata": {"name": "c"}}) is None


def test_a_namespace_policy_follows_its_labels_as_they_change() -> None:
    async def read_namespace(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": "1"}}

    async def list_pods(ns: str) -> list[dict[str, Any]]:
        return []

    psa = PodSecurityAdmission(
        PodSecurityConfig(), read_namespace=read_namespace, list_pods=list_pods
    )
    privileged_pod = {
        "metadata": {"name": "p"},
        "spec": {
            "containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]
        },
    }

    async def create(revision: int, labels: dict[str, str] | None) -> int:
        if labels is not None:
            psa.namespaces.remember(
                {"metadata": {"name": "ns", "resourceVersion": str(revision), "labels": labels}}
            )
        try:
            with client_warnings.collecting():
                await psa.review(
                    UserInfo("u", ()),
                    "create",
                    PODS,
                    subresource="",
                    namespace="ns",
                    name="p",
                    new=copy.deepcopy(privileged_pod),
                )
        except ApiError as exc:
            return exc.code
        return 201

    async def scenario() -> list[int]:
        enforce = "pod-security.kubernetes.io/enforce"
        return [
            await create(2, {enforce: "privileged"}),
            await create(0, None),  # the same labels: the kept policy
            await create(3, {enforce: "baseline"}),
            await create(0, None),
            await create(4, {enforce: "privileged"}),
            await create(5, {enforce: "nonsense"}),  # a label error: the strictest level
            await create(6, {}),  # no labels: the configured default, baseline
        ]

    assert asyncio.run(scenario()) == [201, 201, 403, 403, 201, 403, 403]


class _RecordingAudit(AuditLog):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def write(self, event: dict[str, Any]) -> None:
        self.lines.append(orjson.loads(orjson.dumps(event)))  # the line's JSON, as written


def _psa(config: PodSecurityConfig) -> tuple[PodSecurityAdmission, _RecordingAudit]:
    async def read_namespace(name: str) -> dict[str, Any]:
        return {"metadata": {"name": name, "resourceVersion": "1"}}

    async def list_pods(ns: str) -> list[dict[str, Any]]:
        return []

    audit = _RecordingAudit()
    psa = PodSecurityAdmission(
        config, read_namespace=read_namespace, list_pods=list_pods, audit_log=audit
    )
    return psa, audit


_PSA_SPECS: list[dict[str, Any]] = [
    {"containers": [{"name": "c", "image": "i"}]},
    {"containers": [{"name": "c", "image": "i", "securityContext": {"privileged": True}}]},
    {"containers": [{"name": "c", "image": "i"}], "hostNetwork": True},
    {
        "containers": [{"name": "c", "image": "i"}],
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
    },
    {
        "containers": [
            {
                "name": "c",
                "image": "i",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "capabilities": {"drop": ["ALL"]},
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
            }
        ]
    },
    {"containers": [{"name": "c", "image": "i"}], "runtimeClassName": "sandboxed"},
]
_PSA_ANNOTATIONS: list[dict[str, str] | None] = [
    None,
    {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"},
    {"other": "x"},
]
_PSA_LABELS: list[dict[str, str]] = [
    {},
    {"pod-security.kubernetes.io/enforce": "privileged"},
    {"pod-security.kubernetes.io/enforce": "restricted"},
    {
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "v1.22",
        "pod-security.kubernetes.io/audit": "restricted",
    },
    {"pod-security.kubernetes.io/warn": "nonsense"},  # a label error
]


def _judged(
    psa: PodSecurityAdmission,
    audit: _RecordingAudit,
    *,
    user: str,
    name: str,
    labels: dict[str, str],
    revision: int,
    spec: dict[str, Any],
    annotations: dict[str, str] | None,
    remembered: bool,
) -> tuple[Any, ...]:
    """(refusal code and message, warnings, audit lines) of one pod create reviewed with its
    template key (``remembered``) or without one (judged in full)."""
    psa.namespaces.remember(
        {"metadata": {"name": "ns", "resourceVersion": str(revision), "labels": labels}}
    )
    metadata: dict[str, Any] = {"name": name, "namespace": "ns"}
    if annotations is not None:
        metadata["annotations"] = dict(annotations)
    pod = {"metadata": metadata, "spec": copy.deepcopy(spec)}
    template = None
    if remembered:
        key = spec_bytes(pod["spec"])
        assert key is not None
        template = PodTemplate(key, True)
    before = len(audit.lines)
    refused: tuple[int, str] | None = None
    with client_warnings.collecting() as warned:
        try:
            asyncio.run(
                psa.review(
                    UserInfo(user, ()),
                    "create",
                    PODS,
                    subresource="",
                    namespace="ns",
                    name=name,
                    new=pod,
                    template=template,
                )
            )
        except ApiError as exc:
            refused = (exc.code, exc.message)
    return refused, list(warned), audit.lines[before:]


def test_remembered_pod_security_judgements_are_the_full_ones() -> None:
    """Every pod, annotation set and namespace policy: a create judged through the
    template memo (warm, after other pods and policies were remembered) refuses, warns and
    audits exactly as one judged in full, naming its own pod and user."""
    config = PodSecurityConfig(exempt_runtime_classes=("sandboxed",))
    full, full_audit = _psa(config)
    memo, memo_audit = _psa(config)
    revision = 1
    for round_no in range(2):  # the second round runs on a warm memo
        for i, (spec, extra, labels) in enumerate(
            (s, a, lb) for s in _PSA_SPECS for a in _PSA_ANNOTATIONS for lb in _PSA_LABELS
        ):
            revision += 1
            args: dict[str, Any] = {
                "user": f"u{round_no}",
                "name": f"p-{round_no}-{i}",
                "labels": labels,
                "revision": revision,
                "spec": spec,
                "annotations": extra,
            }
            expected = _judged(full, full_audit, remembered=False, **args)
            got = _judged(memo, memo_audit, remembered=True, **args)
            assert got == expected, (spec, extra, labels)
    assert len(memo._judged) > 0


def test_a_remembered_judgement_never_outlives_the_namespace_policy() -> None:
    """One template, created again and again while the namespace's labels change: each
    create is judged by the labels of that moment, and names its own pod."""
    psa, audit = _psa(PodSecurityConfig())
    spec = _PSA_SPECS[1]  # privileged
    outcomes = []
    for revision, labels in enumerate(
        [
            {"pod-security.kubernetes.io/enforce": "privileged"},
            {"pod-security.kubernetes.io/enforce": "baseline"},
            {"pod-security.kubernetes.io/enforce": "privileged"},
            {"pod-security.kubernetes.io/enforce": "baseline", "other": "label"},
            {"pod-security.kubernetes.io/enforce": "baseline"},
        ],
        start=2,
    ):
        refused, _, _ = _judged(
            psa,
            audit,
            user="u",
            name=f"p{revision}",
            labels=labels,
            revision=revision,
            spec=spec,
            annotations=None,
            remembered=True,
        )
        outcomes.append(refused and (refused[0], refused[1].split(" is forbidden")[0]))
    assert outcomes == [
        None,
        (403, 'pods "p3"'),
        None,
        (403, 'pods "p5"'),
        (403, 'pods "p6"'),
    ]


def test_a_created_pods_managed_fields_entry_is_the_general_one() -> None:
    """The pod-create shortcut writes the entry :func:`encode` would: same keys in the same
    order, manager (``unknown`` when none), operation, version, and a time."""
    fm = FieldManager()
    for manager in ("kubectl-client-side-apply", ""):
        for _ in range(2):  # a miss, then a remembered field set
            created = _pod()
            fm.record_update(PODS, None, created, manager=manager)
            body = _pod()
            general = encode_managed(
                update_managers(
                    {},
                    None,
                    body,
                    fm.schemas.node_for(PODS),
                    manager=manager or "unknown",
                    api_version="v1",
                    subresource="",
                    time="t",
                    ignored=fm._ignored(PODS, ""),
                )
            )
            got = created["metadata"]["managedFields"]
            assert [list(e) for e in got] == [list(e) for e in general]
            assert [{**e, "time": "t"} for e in got] == general
            assert isinstance(got[0]["time"], str)
            assert got[0]["time"].endswith("Z")


# Request bodies as clients send them, keyed by the body checks and then prepared as the
# registry prepares a create: the field set remembered by the body's key must be the one
# computed in full from the prepared pod, for bodies built to look alike.
_REQUEST_BODIES: list[dict[str, Any]] = [
    _body("a"),
    _body("b"),  # same key as "a": answered from the memo
    {**_body(""), "metadata": {"name": "", "generateName": "g-", "labels": {"app": "web"}}},
    {**_body(), "metadata": {"generateName": "g-", "labels": {"app": "web"}}},
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "uid": "chosen"}},
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "namespace": "default"}},
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "generation": 9}},
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "annotations": {}}},
    {**_body(), "metadata": {"name": "p", "labels": {"app": "web"}, "managedFields": []}},
    {**_body(), "status": {"phase": "Running", "podIP": "10.0.0.1"}},
    {**_body(), "kind": "Pod", "apiVersion": "v1"},
    {k: v for k, v in _body().items() if k not in ("kind", "apiVersion")},
    _body(nodeName="n1"),
    _body(restartPolicy="Never"),
    _body(containers=[{"name": "c", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}]),
    _body(containers=[{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]),
    _body(terminationGracePeriodSeconds=2**62),
    _body(containers=[{"name": "c", "image": "busybox", "env": [{"name": "é", "value": "ü"}]}]),
    _body(containers=[{"name": "c", "image": "busybox", "args": ["9" * 30]}]),
    _body(volumes=None),  # changed by the checks: no key
    _body(unknownField=1),  # changed by the checks: no key
]


def _prepared(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The registry's preparation of a create: a generated name, then the pod strategy's."""
    m = body["metadata"]
    if not m.get("name") and isinstance(m.get("generateName"), str):
        m["name"] = m["generateName"] + name
    Strategies().of(PODS).prepare_for_create(PODS, body, "ns")
    return body


@pytest.mark.parametrize("order", [1, -1])
def test_a_field_set_remembered_by_the_body_key_is_the_full_computations(order: int) -> None:
    checks, fm = BodyChecks(), FieldManager()
    keyed = 0
    for round_ in range(3):  # the first round fills both memos, the others answer from them
        for i, request in enumerate(_REQUEST_BODIES[::order]):
            body = copy.deepcopy(request)
            _, key = checks.check_keyed(PODS, body)
            keyed += key is not None
            pod = _prepared(body, f"{round_}x{i}")
            full = _full_create_fields(fm, PODS, pod)
            fm.record_update(PODS, None, pod, manager="m", body_key=key)
            got = [e["fieldsV1"] for e in pod["metadata"].get("managedFields", [])]
            assert got == full, request
    assert keyed == 3 * (len(_REQUEST_BODIES) - 2)


def test_the_body_key_is_given_only_for_the_body_as_the_checks_leave_it() -> None:
    checks = BodyChecks()
    for _ in range(2):
        for changed in (_body(volumes=None), _body(unknownField=1), _body(5)):
            with contextlib.suppress(ApiError):
                assert checks.check_keyed(PODS, copy.deepcopy(changed))[1] is None
        body = _body("x")
        assert checks.check_keyed(PODS, body)[1] == clean_key(PODS, body)
    assert checks.check_keyed(_rd("", "configmaps"), {"metadata": {"name": "c"}})[1] is None


DUPLICATE_BODIES: list[bytes] = [
    b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p-1","labels":{"app":"x"}}}',
    b'{"kind":"Pod","metadata":{"name":"p-1","name":"p-2"}}',
    b'{"metadata":{"name":"a\\":","labels":{"a":"1","a":"2"}}}',  # a name hiding a key end
    b'{"metadata":{"name":"a\\":"},"spec":{}}',
    b'{"metadata":{"name":"\\"\\":\\":"},"metadata":{"name":"\\":"}}',
    b'{"metadata":{"name":"\\u0022:"},"spec":{"a":1,"a":2}}',
    b'{"metadata":{"name":"\\u00e9t\\u00e9\\":x"},"spec":{"containers":[{"n":1,"n":1}]}}',
    b'{"metadata":{"name":null,"labels":{"k\\":":"v"}},"status":{}}',
    b'{"metadata":{"name":7},"spec":{"x":{"y":1,"y":1}}}',
    b'{"metadata":{},"spec":{"a":"\\":\\":"}}',
    b'{"metadata":{"generateName":"g\\":","name":"n\\":"},"x":1,"x":1}',
    b'{ "metadata" : {"name":"spaced"} }',
]


@pytest.mark.parametrize("raw", DUPLICATE_BODIES)
def test_the_body_keys_count_of_key_ends_is_the_bodys(raw: bytes) -> None:
    """The duplicate-key check counts the key ends of the body from its body key (no second
    encoding): the same count, so the same findings, whatever the name holds."""
    value = orjson.loads(raw)
    key = clean_key(PODS, value)
    assert key is not None
    assert key_ends(key, value) == orjson.dumps(value).count(b'":')
    for content_type in ("application/json", "application/yaml"):
        given = fieldvalidation.body_duplicates(raw, content_type, value, key_ends=None)
        shared = fieldvalidation.body_duplicates(
            raw, content_type, value, key_ends=key_ends(key, value)
        )
        assert (shared.errors, shared.warnings) == (given.errors, given.warnings)
