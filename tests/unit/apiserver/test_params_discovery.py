from __future__ import annotations

import pytest

from berth.api.resources import TABLE
from berth.apiserver.discovery import api_group_list, resource_list
from berth.apiserver.errors import ApiError
from berth.apiserver.params import parse_bool, parse_int, table_version, wants_metadata_only


@pytest.mark.parametrize("spelling", ["1", "t", "T", "true", "True", "TRUE"])
def test_go_parsebool_true(spelling: str) -> None:
    assert parse_bool(spelling, "watch") is True


@pytest.mark.parametrize("spelling", ["0", "f", "F", "false", "False", "FALSE", "", None])
def test_go_parsebool_false(spelling: str | None) -> None:
    assert parse_bool(spelling, "watch") is False


@pytest.mark.parametrize("bad", ["yes", "on", "tRuE", "2"])
def test_other_booleans_are_400(bad: str) -> None:
    with pytest.raises(ApiError) as exc:
        parse_bool(bad, "watch")
    assert exc.value.code == 400


def test_ints_and_accept_headers() -> None:
    assert parse_int("500", "limit", minimum=0) == 500
    with pytest.raises(ApiError):
        parse_int("-1", "limit", minimum=0)
    with pytest.raises(ApiError):
        parse_int("ten", "limit")
    kubectl = (
        "application/json;as=Table;v=v1;g=meta.k8s.io,"
        "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    )
    assert table_version(kubectl) == "meta.k8s.io/v1"
    assert (
        table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io") == "meta.k8s.io/v1beta1"
    )
    assert table_version("application/json, */*") is None
    assert wants_metadata_only("application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io")
    assert not wants_metadata_only(kubectl)


def test_discovery_documents_have_what_kubectl_needs() -> None:
    groups = {g["name"]: g for g in api_group_list(TABLE)["groups"]}
    assert groups["policy"]["preferredVersion"]["groupVersion"] == "policy/v1"
    assert set(groups) >= {"apps", "policy", "coordination.k8s.io", "rbac.authorization.k8s.io"}
    core = resource_list(TABLE, "", "v1")
    assert core is not None
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["pods"]["shortNames"] == ["po"]
    assert by_name["pods"]["categories"] == ["all"]
    assert by_name["pods/eviction"]["group"] == "policy"
    assert by_name["pods/eviction"]["kind"] == "Eviction"
    assert by_name["nodes"]["namespaced"] is False
    apps = resource_list(TABLE, "apps", "v1")
    assert apps is not None
    scale = {r["name"]: r for r in apps["resources"]}["deployments/scale"]
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")
    assert resource_list(TABLE, "apps", "v2") is None
