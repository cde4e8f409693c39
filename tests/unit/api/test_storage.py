"""Static binding decisions (berth.api.storage): which volume serves which claim."""

from __future__ import annotations

from typing import Any

from berth.api import storage as st


def pv(
    name: str,
    size: str,
    *,
    cls: str = "manual",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    labels: dict[str, str] | None = None,
    phase: str = "Available",
    claim_ref: dict[str, Any] | None = None,
    node: str | None = None,
    mode: str = "Filesystem",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "capacity": {"storage": size},
        "accessModes": list(modes),
        "storageClassName": cls,
        "volumeMode": mode,
        "hostPath": {"path": f"/srv/{name}"},
    }
    if claim_ref is not None:
        spec["claimRef"] = claim_ref
    if node is not None:
        spec["nodeAffinity"] = st.pinned_to(node)
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": spec,
        "status": {"phase": phase},
    }


def claim(
    size: str = "1Gi",
    *,
    cls: str | None = "manual",
    modes: tuple[str, ...] = ("ReadWriteOnce",),
    selector: dict[str, Any] | None = None,
    mode: str = "Filesystem",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": list(modes),
        "resources": {"requests": {"storage": size}},
        "volumeMode": mode,
    }
    if cls is not None:
        spec["storageClassName"] = cls
    if selector is not None:
        spec["selector"] = selector
    return {"metadata": {"name": "c", "namespace": "ns", "uid": "u1"}, "spec": spec}


def chosen(volumes: list[dict[str, Any]], c: dict[str, Any], **kw: Any) -> str | None:
    got = st.best_volume(volumes, c, **kw)
    return None if got is None else str(got["metadata"]["name"])


def test_smallest_volume_that_fits_wins() -> None:
    vols = [pv("big", "10Gi"), pv("small", "2Gi"), pv("tiny", "500Mi"), pv("exact", "1Gi")]
    assert chosen(vols, claim("1Gi")) == "exact"
    assert chosen(vols, claim("1.5Gi")) == "small"
    assert chosen(vols, claim("20Gi")) is None


def test_class_access_modes_and_volume_mode_must_match() -> None:
    assert chosen([pv("a", "1Gi", cls="fast")], claim(cls="manual")) is None
    assert chosen([pv("a", "1Gi", cls="")], claim(cls=None)) == "a"  # no class on either
    rox = pv("ro", "5Gi", modes=("ReadOnlyMany",))
    both = pv("both", "8Gi", modes=("ReadWriteOnce", "ReadOnlyMany"))
    assert chosen([rox, both], claim(modes=("ReadWriteOnce",))) == "both"
    assert chosen([pv("blk", "1Gi", mode="Block")], claim()) is None


def test_selector_filters_by_labels() -> None:
    vols = [pv("a", "1Gi", labels={"tier": "gold"}), pv("b", "1Gi", labels={"tier": "bronze"})]
    assert chosen(vols, claim(selector={"matchLabels": {"tier": "bronze"}})) == "b"
    expr = {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["silver"]}]}
    assert chosen(vols, claim(selector=expr)) is None


def test_bound_released_and_deleting_volumes_are_not_candidates() -> None:
    other = {"name": "other", "namespace": "ns", "uid": "u2"}
    assert chosen([pv("a", "1Gi", claim_ref=other, phase="Bound")], claim()) is None
    assert chosen([pv("r", "1Gi", phase="Released")], claim()) is None
    deleting = pv("d", "1Gi")
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert chosen([deleting], claim()) is None


def test_a_volume_prebound_to_the_claim_wins_over_a_smaller_one() -> None:
    mine = pv("mine", "10Gi", claim_ref={"name": "c", "namespace": "ns"})
    assert chosen([pv("small", "1Gi"), mine], claim()) == "mine"
    stale = pv("stale", "1Gi", claim_ref={"name": "c", "namespace": "ns", "uid": "old"})
    assert chosen([stale], claim()) is None  # reserved for an earlier claim of that name


def test_node_restricts_candidates_to_reachable_volumes() -> None:
    vols = [pv("on-a", "1Gi", node="a"), pv("on-b", "1Gi", node="b")]
    assert chosen(vols, claim(), node=({"kubernetes.io/hostname": "b"}, "b")) == "on-b"
    assert chosen(vols, claim(), node=({"kubernetes.io/hostname": "c"}, "c")) is None
    assert st.pinned_node(vols[0]) == "a"
    assert st.pinned_node(pv("free", "1Gi")) is None


def test_access_mode_text_and_default_class() -> None:
    assert st.access_modes_text(["ReadWriteOncePod", "ReadWriteOnce", "ReadOnlyMany"]) == (
        "RWO,ROX,RWOP"
    )
    older = {
        "metadata": {
            "name": "old",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {st.DEFAULT_CLASS_ANNOTATION: "true"},
        }
    }
    newer = {
        "metadata": {
            "name": "new",
            "creationTimestamp": "2026-02-01T00:00:00Z",
            "annotations": {st.BETA_DEFAULT_CLASS_ANNOTATION: "true"},
        }
    }
    plain = {"metadata": {"name": "plain", "creationTimestamp": "2026-03-01T00:00:00Z"}}
    assert st.default_class([older, newer, plain]) == "new"
    assert st.default_class([plain]) is None
