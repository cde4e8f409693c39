"""The version-skew policy: what an upgrade refuses before touching any host."""

from __future__ import annotations

import pytest

from provisioner.upgrade.version import Release, check_skew, release_of, split_bundle_id

H = "0123456789ab"
CP = frozenset({"cp1"})


def b(version: str) -> str:
    return f"{version}-{H}"


def test_releases_order_like_semver() -> None:
    assert Release.parse("0.2.0") > Release.parse("0.1.9")
    assert Release.parse("1.0.0-rc.1") < Release.parse("1.0.0")
    assert Release.parse("v0.10.0") > Release.parse("0.9.3")
    assert str(Release.parse("0.3.0-rc.1")) == "0.3.0-rc.1"


def test_bundle_ids_split_into_release_and_hash() -> None:
    assert split_bundle_id(b("0.3.0-rc.1")) == (Release(0, 3, 0, (0, "rc.1")), H)
    with pytest.raises(ValueError, match="not a berth bundle id"):
        release_of("0.3.0")


def test_next_minor_and_patches_are_allowed() -> None:
    running = {"cp1": b("0.1.0"), "w1": b("0.1.0")}
    assert check_skew(running, control_plane=CP, target=b("0.2.0")) == []
    assert check_skew(running, control_plane=CP, target=b("0.1.7")) == []
    assert check_skew({"cp1": b("0.9.2")}, control_plane=CP, target=b("1.0.0")) == []


def test_a_skipped_minor_is_refused_per_host_with_the_way_forward() -> None:
    running = {"cp1": b("0.1.0"), "w1": b("0.1.0")}
    problems = check_skew(running, control_plane=CP, target=b("0.4.0"))
    assert problems == [
        "cp1: 0.1.0 -> 0.4.0 skips minor release(s) 0.2, 0.3; upgrade one minor release at a "
        "time (to 0.2.x first)",
        "w1: 0.1.0 -> 0.4.0 skips minor release(s) 0.2, 0.3; upgrade one minor release at a "
        "time (to 0.2.x first)",
    ]


def test_a_major_jump_beyond_the_next_major_zero_is_refused() -> None:
    problems = check_skew({"cp1": b("1.4.0")}, control_plane=CP, target=b("2.1.0"))
    assert problems == [
        "cp1: 1.4.0 -> 2.1.0 changes the major version by more than one step; "
        "upgrade to 2.0.x first"
    ]


def test_a_downgrade_is_refused_unless_allowed() -> None:
    running = {"cp1": b("0.2.0")}
    problems = check_skew(running, control_plane=CP, target=b("0.1.0"))
    assert len(problems) == 1
    assert problems[0].startswith("cp1: runs 0.2.0; 0.1.0 would be a downgrade")
    assert "--allow-downgrade" in problems[0]
    assert check_skew(running, control_plane=CP, target=b("0.1.0"), allow_downgrade=True) == []


def test_an_agent_newer_than_the_api_server_is_refused() -> None:
    running = {"cp1": b("0.1.0"), "w1": b("0.2.0")}
    problems = check_skew(running, control_plane=CP, target=b("0.2.0"))
    assert problems == [
        "w1: its agent runs 0.2.0, newer than the API server's 0.1.0; agents must never be "
        "newer than the control plane"
    ]


def test_a_half_upgraded_cluster_may_continue_to_the_same_target() -> None:
    running = {"cp1": b("0.2.0"), "w1": b("0.1.0"), "w2": b("0.1.0")}
    assert check_skew(running, control_plane=CP, target=b("0.2.0")) == []


def test_hosts_without_berth_or_with_a_foreign_tree_are_named() -> None:
    running = {"cp1": None, "w1": "custom"}
    problems = check_skew(running, control_plane=CP, target=b("0.2.0"))
    assert problems[0] == (
        "cp1: berth is not installed (no /opt/berth/current); run `berth apply` first"
    )
    assert problems[1].startswith("w1: cannot tell which release runs there")
