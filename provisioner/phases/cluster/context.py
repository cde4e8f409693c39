"""What the cluster phases derive from the phase data: the spec, the state, the bundle."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import berth
from provisioner.artifacts.berth_bundle import Bundle, build_bundle, bundle_id, pinned_requirements
from provisioner.errors import PhaseError
from provisioner.phases.workflow import PhaseData
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState


def spec_of(data: PhaseData, phase: str) -> ClusterSpec:
    spec: Any = data.spec
    if not isinstance(spec, ClusterSpec):
        raise PhaseError(phase, "the cluster phases need a cluster spec (berth apply -i SPEC)")
    return spec


def state_of(data: PhaseData) -> ClusterState:
    """The cluster state (``--state-dir`` when the run context carries one)."""
    spec = spec_of(data, "cluster")
    state_dir: Path | None = getattr(data, "state_dir", None)
    return ClusterState.for_spec(spec, state_dir=state_dir)


def release(spec: ClusterSpec) -> str:
    return spec.spec.version or berth.__version__


@functools.cache
def local_bundle_id(version: str) -> str:
    """The id of the bundle of the local sources (computed once per process, so an apply and
    the verify after it agree even while the sources are being edited)."""
    return bundle_id(version=version, pins=pinned_requirements())


@functools.cache
def _bundle(cache_dir: Path, version: str) -> Bundle:
    return build_bundle(cache_dir, version=version, ident=local_bundle_id(version))


def bundle_of(data: PhaseData) -> Bundle:
    """The bundle this run ships (built once per process; cached on disk across runs)."""
    return _bundle(data.cache_dir, release(spec_of(data, "artifacts")))
