"""What the cluster phases derive from the phase data: the spec, the state, the bundle."""

from __future__ import annotations

import functools
import threading
from pathlib import Path

import berth
from provisioner import platforms
from provisioner.artifacts.berth_bundle import (
    DEFAULT_PLATFORM,
    Bundle,
    build_bundle,
    bundle_id,
    pinned_requirements,
)
from provisioner.connectors.base import HostTarget
from provisioner.errors import PhaseError
from provisioner.phases.host_platform import host_platform
from provisioner.spec import ClusterSpec
from provisioner.state import ClusterState
from provisioner.workflow import PhaseData


def spec_of(data: PhaseData, phase: str) -> ClusterSpec:
    spec = data.spec
    if spec is None:
        raise PhaseError(phase, "the cluster phases need a cluster spec (berth apply -i SPEC)")
    return spec


def state_of(data: PhaseData) -> ClusterState:
    """The cluster state (``--state-dir`` when the run context carries one)."""
    spec = spec_of(data, "cluster")
    return ClusterState.for_spec(spec, state_dir=data.state_dir)


def release(spec: ClusterSpec) -> str:
    return spec.spec.version or berth.__version__


@functools.cache
def local_bundle_id(version: str) -> str:
    """The id of the bundle of the local sources (computed once per process, so an apply and
    the verify after it agree even while the sources are being edited)."""
    return bundle_id(version=version, pins=pinned_requirements())


_building = threading.Lock()  # hosts plan at once: one build per ABI, not one per host


@functools.cache
def _bundle(cache_dir: Path, version: str, platform: platforms.Platform) -> Bundle:
    return build_bundle(
        cache_dir, version=version, ident=local_bundle_id(version), platform=platform
    )


def bundle_of(data: PhaseData, host: HostTarget | None = None) -> Bundle:
    """The bundle this run ships to ``host`` (for its Python ABI; without a host, for the
    default platform: the id is the same for every ABI). Built once per process and ABI;
    cached on disk across runs."""
    platform = DEFAULT_PLATFORM if host is None else host_platform(data, host.name)
    with _building:
        return _bundle(data.cache_dir, release(spec_of(data, "artifacts")), platform)
