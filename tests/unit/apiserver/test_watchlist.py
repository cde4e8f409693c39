"""watchlist.list_options: the sendInitialEvents / resourceVersionMatch checks."""

from __future__ import annotations

import pytest

from berth.apiserver.errors import ApiError
from berth.apiserver.watchlist import list_options


def test_valid_combinations() -> None:
    q = {"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}
    assert list_options(q, watch=True).send_initial_events is True
    assert (
        list_options({**q, "sendInitialEvents": "false"}, watch=True).send_initial_events is False
    )
    assert list_options({}, watch=True).send_initial_events is None
    assert list_options({"resourceVersion": "5", "resourceVersionMatch": "Exact"}, watch=False)
    assert list_options({"resourceVersion": "0"}, watch=False).resource_version_match == ""


@pytest.mark.parametrize(
    ("query", "watch", "fields"),
    [
        ({"sendInitialEvents": "true"}, True, ["resourceVersionMatch"]),
        ({"resourceVersionMatch": "NotOlderThan"}, True, ["resourceVersionMatch"]),
        (
            {"sendInitialEvents": "1", "resourceVersionMatch": "NotOlderThan", "continue": "x"},
            True,
            ["resourceVersionMatch"],
        ),
        ({"sendInitialEvents": "false"}, False, ["sendInitialEvents"]),
        (
            {"resourceVersionMatch": "Sometime", "continue": "c"},
            False,
            ["resourceVersionMatch"] * 3,
        ),
    ],
)
def test_refusals_name_every_field(query: dict[str, str], watch: bool, fields: list[str]) -> None:
    with pytest.raises(ApiError) as exc:
        list_options(query, watch=watch)
    assert exc.value.code == 422
    details = exc.value.details or {}
    assert [c["field"] for c in details["causes"]] == fields
    assert exc.value.message.startswith('ListOptions.meta.k8s.io "" is invalid: ')


def test_send_initial_events_is_a_bool() -> None:
    with pytest.raises(ApiError) as exc:
        list_options({"sendInitialEvents": "yes please"}, watch=True)
    assert exc.value.code == 400
