"""The patch flavours shared by the server and the clients; their errors say which answer the
server gives (400 malformed, 413 too many operations, 422 does not apply)."""

from __future__ import annotations

import pytest

from berth.api.patches import (
    MAX_JSON_PATCH_OPERATIONS,
    PatchError,
    PatchFormatError,
    PatchTooLarge,
    json_merge_patch,
    json_patch,
    strategic_merge_patch,
)
from berth.apiserver import patch as server_patch
from berth.apiserver.errors import ApiError


def test_merge_patch_rfc7386() -> None:
    target = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    assert json_merge_patch(target, {"b": {"c": None, "e": 4}, "l": [3], "a": None}) == {
        "b": {"d": 3, "e": 4},
        "l": [3],
    }
    assert target == {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}, "the target is not modified"
    assert json_merge_patch({"a": 1}, [1]) == [1]


def test_error_kinds() -> None:
    with pytest.raises(PatchFormatError):
        json_patch({}, {"op": "add"})
    with pytest.raises(PatchFormatError):
        strategic_merge_patch({}, [1])
    with pytest.raises(PatchError) as exc:
        json_patch({}, [{"op": "remove", "path": "/missing"}])
    assert not isinstance(exc.value, PatchFormatError)
    ops = [{"op": "test", "path": "", "value": {}}] * (MAX_JSON_PATCH_OPERATIONS + 1)
    with pytest.raises(PatchTooLarge):
        json_patch({}, ops)


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda: server_patch.json_patch({}, {"op": "add"}), 400),
        (lambda: server_patch.json_patch({}, [{"op": "remove", "path": "/x"}]), 422),
        (lambda: server_patch.json_patch({}, [{"op": "test", "path": ""}] * 10_001), 413),
        (lambda: server_patch.strategic_merge_patch({}, "x"), 400),
        (lambda: server_patch.strategic_merge_patch({}, {"$patch": "bogus"}), 422),
    ],
)
def test_the_server_answers(call: object, code: int) -> None:
    with pytest.raises(ApiError) as exc:
        call()  # type: ignore[operator]
    assert exc.value.code == code
