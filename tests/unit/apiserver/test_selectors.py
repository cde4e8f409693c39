from __future__ import annotations

from collections.abc import Mapping

import pytest

from berth.api.resources import TABLE
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds import strategy_for
from berth.apiserver.selectors import (
    FieldGetter,
    parse_field_selector,
    parse_label_selector,
    selector_from_label_selector_object,
    selector_to_string,
)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {}, True),
        ("app in (web,db)", {"app": "db"}, True),
        ("app in (web, db)", {"app": "cache"}, False),
        ("app notin (web)", {}, True),
        ("app notin (web)", {"app": "web"}, False),
        ("app", {"app": ""}, True),
        ("!app", {"app": "x"}, False),
        ("!app", {"other": "x"}, True),
        ("app=web,tier in (front,back),!legacy", {"app": "web", "tier": "back"}, True),
        (
            "app=web,tier in (front,back),!legacy",
            {"app": "web", "tier": "back", "legacy": "1"},
            False,
        ),
        ("example.com/role=x", {"example.com/role": "x"}, True),
        ("", {"anything": "goes"}, True),
    ],
)
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["app in (web", "a b", "=x", "app=we b", "app in ()", ",", "k=v,,"])
def test_bad_label_selectors_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_label_selector(bad)
    assert exc.value.code == 400


def _fields(kind: str) -> Mapping[str, FieldGetter]:
    rd = TABLE.by_kind("", kind)
    assert rd is not None
    return strategy_for(rd).field_selectors


def test_field_selectors() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    sel = parse_field_selector(
        "spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded", _fields("Pod")
    )
    assert sel.matches(pod)
    assert not parse_field_selector("metadata.namespace==other", _fields("Pod")).matches(pod)
    assert parse_field_selector("metadata.name=p", _fields("Pod")).exact_name() == "p"
    event = {"involvedObject": {"kind": "Node", "name": "n1", "uid": "n1", "namespace": ""}}
    assert parse_field_selector(
        "involvedObject.kind=Node,involvedObject.namespace=", _fields("Event")
    ).matches(event)
    with pytest.raises(ApiError) as exc:
        parse_field_selector("spec.nodeName=n1", _fields("ConfigMap"))
    assert exc.value.code == 400
    assert '"spec.nodeName" is not a known field selector' in exc.value.message


def test_label_selector_objects_round_trip() -> None:
    obj = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selector_to_string(obj) == "app=web,tier in (a,b),!legacy"
    sel = selector_from_label_selector_object(obj)
    assert sel.matches({"app": "web", "tier": "a"})
    assert not sel.matches({"app": "web", "tier": "c"})
    assert parse_label_selector(selector_to_string(obj)) == sel
