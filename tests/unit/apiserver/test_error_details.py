"""The Status bodies of errors.py: ``details`` always present, shaped as upstream's."""

from __future__ import annotations

from berth.api.resources import TABLE, ResourceDef
from berth.apiserver import errors


def _rd(group: str, plural: str) -> ResourceDef:
    rd = TABLE.lookup(group, "v1", plural)
    assert rd is not None
    return rd


def test_every_status_has_details() -> None:
    for err in (
        errors.route_not_found(),
        errors.method_not_allowed("POST"),
        errors.bad_request("x"),
        errors.unauthorized(),
        errors.forbidden("x"),
        errors.gone("x"),
        errors.unsupported_media("text/plain"),
    ):
        body = err.status()
        assert body["details"] == {}, body
        assert list(body) == [
            "kind",
            "apiVersion",
            "metadata",
            "status",
            "message",
            "reason",
            "details",
            "code",
        ]


def test_object_errors_name_the_object() -> None:
    deployments = _rd("apps", "deployments")
    assert errors.not_found(deployments, "web").status()["details"] == {
        "name": "web",
        "group": "apps",
        "kind": "deployments",
    }
    pods = _rd("", "pods")
    assert errors.forbidden("no", pods, "p").status()["details"] == {"name": "p", "kind": "pods"}
    assert errors.forbidden("no", pods).status()["details"] == {"kind": "pods"}
    assert errors.conflict(pods, "p").status()["details"] == {"name": "p", "kind": "pods"}


def test_internal_error_and_too_large_resource_version() -> None:
    assert errors.internal("boom").status()["details"] == {"causes": [{"message": "boom"}]}
    body = errors.too_large_resource_version(9, 5).status()
    assert (body["code"], body["reason"]) == (504, "Timeout")
    assert body["message"] == "Too large resource version: 9, current: 5"
    assert body["details"]["retryAfterSeconds"] == 1
    assert body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
