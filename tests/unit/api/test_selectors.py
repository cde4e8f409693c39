"""Label and field selectors: one parser for the server and the clients, read as upstream's
``labels.Parse`` and ``fields.ParseSelector`` read them; the server's wrappers
(:mod:`berth.apiserver.selectors`) answer the same, errors as 400 Status."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from berth.api.resources import TABLE
from berth.api.selectors import (
    EQUALS,
    IN,
    UNSATISFIABLE,
    FieldGetter,
    LabelSelector,
    SelectorError,
    escape_field_value,
    label_selector_from_object,
    node_selector_requirements,
    parse_field_requirements,
    parse_field_selector,
    parse_label_selector,
    path_getter,
    pinned_field_value,
    selector_from_set,
    selector_to_string,
)
from berth.apiserver import selectors as server_selectors
from berth.apiserver.errors import ApiError
from berth.apiserver.kinds import strategy_for


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
        # an empty exact value, and "()" as the set holding "" (as upstream)
        ("app=", {"app": ""}, True),
        ("app in ()", {"app": ""}, True),
        ("app in ()", {"app": "x"}, False),
        ("app in (,x)", {"app": ""}, True),
        # the keywords are plain values inside a value list
        ("app in (in,notin)", {"app": "notin"}, True),
        # numeric comparisons: the label must be an integer
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas>2", {"replicas": "2"}, False),
        ("replicas<2", {"replicas": "-1"}, True),
        ("replicas>2", {"replicas": "three"}, False),
        ("  app  =  web  ", {"app": "web"}, True),
    ],
)
@pytest.mark.parametrize(
    "parse", [parse_label_selector, server_selectors.parse_label_selector], ids=["api", "server"]
)
def test_label_selector_matching(
    parse: Callable[[str], LabelSelector], selector: str, labels: dict[str, str], expected: bool
) -> None:
    assert parse(selector).matches(labels) is expected


@pytest.mark.parametrize(
    "bad",
    [
        "app in (web",
        "a b",
        "=x",
        "app=we b",
        ",",
        "k=v,,",
        "k=v,",
        "app in web",
        "-bad=x",
        "app=-bad",
        "a" * 64,
        "x>y",
        "!a=b",
        "app notin ()x",
    ],
)
def test_bad_label_selectors_are_refused(bad: str) -> None:
    with pytest.raises(SelectorError):
        parse_label_selector(bad)
    with pytest.raises(ApiError) as exc:
        server_selectors.parse_label_selector(bad)
    assert exc.value.code == 400


def test_the_server_answers_a_bad_selector_with_400() -> None:
    with pytest.raises(ApiError) as exc:
        server_selectors.parse_label_selector("app in (web")
    assert exc.value.code == 400
    assert exc.value.message.startswith("unable to parse requirement")
    with pytest.raises(ApiError) as exc:
        server_selectors.parse_field_selector("spec.nodeName", {})
    assert exc.value.code == 400
    assert "can't understand 'spec.nodeName'" in exc.value.message


def test_requirements_sort_by_key_and_print_as_upstream() -> None:
    sel = parse_label_selector("tier in (b,a,a),app=web,!legacy,zone,n>3")
    assert str(sel) == "app=web,!legacy,n>3,tier in (a,b),zone"
    assert parse_label_selector(str(sel)) == sel


def test_field_selectors() -> None:
    supported = {
        "metadata.name": path_getter("metadata", "name"),
        "spec.nodeName": path_getter("spec", "nodeName"),
        "status.phase": path_getter("status", "phase"),
        "spec.unschedulable": path_getter("spec", "unschedulable"),
    }
    pod = {"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}}
    sel = parse_field_selector(
        "spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded", supported
    )
    assert sel.matches(pod)
    assert not parse_field_selector("spec.nodeName==n2", supported).matches(pod)
    assert parse_field_selector("metadata.name=p", supported).exact_name() == "p"
    assert parse_field_selector("spec.unschedulable=false", supported).matches({"spec": {}}) is (
        False  # a missing field reads as "", not "false"
    )
    assert parse_field_selector("spec.unschedulable=true", supported).matches(
        {"spec": {"unschedulable": True}}
    )
    with pytest.raises(SelectorError, match=r'"spec\.schedulerName" is not a known field selector'):
        parse_field_selector("spec.schedulerName=x", supported)


def _fields(kind: str) -> Mapping[str, FieldGetter]:
    rd = TABLE.by_kind("", kind)
    assert rd is not None
    return strategy_for(rd).field_selectors


def test_the_server_reads_field_selectors_over_the_kinds_fields() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"nodeName": "n1"},
        "status": {"phase": "Running"},
    }
    parse = server_selectors.parse_field_selector
    sel = parse("spec.nodeName=n1,status.phase!=Failed,status.phase!=Succeeded", _fields("Pod"))
    assert sel.matches(pod)
    assert not parse("metadata.namespace==other", _fields("Pod")).matches(pod)
    assert parse("metadata.name=p", _fields("Pod")).exact_name() == "p"
    event = {"involvedObject": {"kind": "Node", "name": "n1", "uid": "n1", "namespace": ""}}
    assert parse("involvedObject.kind=Node,involvedObject.namespace=", _fields("Event")).matches(
        event
    )
    with pytest.raises(ApiError) as exc:
        parse("spec.nodeName=n1", _fields("ConfigMap"))
    assert exc.value.code == 400
    assert '"spec.nodeName" is not a known field selector' in exc.value.message


def test_field_selector_values_unescape_and_terms_split_on_unescaped_commas() -> None:
    reqs = parse_field_requirements(r"a=x\,y,b!=p\=q,c==\\")
    assert [(r.field, r.negate, r.value) for r in reqs] == [
        ("a", False, "x,y"),
        ("b", True, "p=q"),
        ("c", False, "\\"),
    ]
    assert parse_field_requirements(f"a={escape_field_value('x,y=z')}")[0].value == "x,y=z"
    for bad in (r"a=x\y", "a=x=y", "a=x\\"):
        with pytest.raises(SelectorError):
            parse_field_requirements(bad)
    with pytest.raises(SelectorError, match="can't understand 'nothing'"):
        parse_field_requirements("a=b,nothing")
    # no whitespace trimming: "a " is the field name
    assert parse_field_requirements("a =b")[0].field == "a "


def test_pinned_field_value_reads_as_the_parser_does() -> None:
    assert pinned_field_value("spec.nodeName=n1,status.phase!=x", "spec.nodeName") == "n1"
    assert pinned_field_value("spec.nodeName==n1", "spec.nodeName") == "n1"
    assert pinned_field_value("spec.nodeName!=n1", "spec.nodeName") is None
    assert pinned_field_value(r"spec.nodeName=n1\,n2", "spec.nodeName") == "n1,n2"
    assert pinned_field_value(r"spec.nodeName=n1\x", "spec.nodeName") is None


def test_label_selector_objects() -> None:
    obj = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "legacy", "operator": "DoesNotExist"},
        ],
    }
    assert selector_to_string(obj) == "app=web,!legacy,tier in (a,b)"  # sorted by key, as upstream
    sel = label_selector_from_object(obj)
    assert sel.matches({"app": "web", "tier": "a"})
    assert not sel.matches({"app": "web", "tier": "c"})
    assert parse_label_selector(selector_to_string(obj)) == sel
    assert server_selectors.selector_from_label_selector_object(obj) == sel
    assert label_selector_from_object(None).empty
    assert label_selector_from_object({}).matches({"x": "y"})
    with pytest.raises(SelectorError, match="not a valid label selector operator"):
        label_selector_from_object({"matchExpressions": [{"key": "a", "operator": "Gt"}]})
    with pytest.raises(SelectorError):
        label_selector_from_object({"matchLabels": {"a": "not valid"}})
    assert selector_to_string({"matchLabels": {"a": "not valid"}}) == ""


def test_node_selector_requirements_allow_gt_and_lt() -> None:
    reqs = node_selector_requirements(
        [
            {"key": "cores", "operator": "Gt", "values": ["4"]},
            {"key": "zone", "operator": "In", "values": ["a"]},
        ]
    )
    assert all(r.matches({"cores": "8", "zone": "a"}) for r in reqs)
    assert not reqs[0].matches({"cores": "4"})
    with pytest.raises(SelectorError, match="must be an integer"):
        node_selector_requirements([{"key": "cores", "operator": "Lt", "values": ["x"]}])
    assert not UNSATISFIABLE.matches({"": ""})


def test_selector_from_set() -> None:
    sel = selector_from_set({"b": "2", "a": "1"})
    assert [(r.key, r.op) for r in sel.requirements] == [("a", EQUALS), ("b", EQUALS)]
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})
    assert IN == "in"


def test_an_oversized_selector_is_refused_before_scanning() -> None:
    with pytest.raises(SelectorError, match="longer than"):
        parse_label_selector("a=b," * 10_000)
