"""The server-built kube-api-access volume skips the per-create walk; look-alikes do not."""

from __future__ import annotations

from typing import Any

from berth.apiserver.podsafety import validate_pod_spec_safety
from berth.apiserver.serviceaccounts import access_volume


def _spec(volume: dict[str, Any]) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "x"}], "volumes": [volume]}


def test_the_server_built_volume_is_valid() -> None:
    assert validate_pod_spec_safety(_spec(access_volume("kube-api-access-abcde")), "spec") == []


def test_a_look_alike_with_a_bad_item_path_is_refused() -> None:
    volume = access_volume("kube-api-access-abcde")
    volume["projected"]["sources"][1]["configMap"]["items"][0]["path"] = "../etc/shadow"
    errs = validate_pod_spec_safety(_spec(volume), "spec")
    assert [e.field for e in errs] == [
        "spec.volumes[0].projected.sources[1].configMap.items[0].path"
    ]


def test_a_look_alike_with_a_float_mode_is_refused() -> None:
    volume = access_volume("kube-api-access-abcde")
    volume["projected"]["defaultMode"] = 420.0  # == 420 in Python, not the same JSON
    errs = validate_pod_spec_safety(_spec(volume), "spec")
    assert [e.field for e in errs] == ["spec.volumes[0].projected.defaultMode"]


def test_a_trusted_source_next_to_another_source_is_checked() -> None:
    volume = access_volume("kube-api-access-abcde")
    volume["hostPath"] = {"path": "/"}
    errs = validate_pod_spec_safety(_spec(volume), "spec")
    assert [e.message for e in errs][:1] == ["Forbidden: may not specify more than 1 volume type"]


def test_the_name_of_a_trusted_volume_is_still_checked() -> None:
    errs = validate_pod_spec_safety(_spec(access_volume("Bad_Name")), "spec")
    assert [e.field for e in errs] == ["spec.volumes[0].name"]
