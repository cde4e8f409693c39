"""The ``berth`` IngressClass: berth's ingress controller, marked the default class on runc
clusters (as k3s ships its bundled controller's class), so an Ingress without
``ingressClassName`` is served. An operator may unmark it; berth never changes an existing
class (its ``controller`` is immutable anyway)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from berth.api.ingress import CONTROLLER, DEFAULT_CLASS_ANNOTATION
from berth.api.resources import INGRESSCLASSES
from berth.client import errors as api_errors
from berth.client.http import HttpClient
from provisioner.spec import ClusterSpec

NAME = "berth"


def ingress_class() -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": NAME, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": CONTROLLER},
    }


async def ensure_ingress_class(
    client: HttpClient, spec: ClusterSpec, *, dry_run: bool, report: Callable[[str], None]
) -> int:
    """Create the class if it is missing (runc clusters only: simulated ones run no
    controller). Returns the changes made."""
    if spec.spec.runtime != "runc":
        return 0
    try:
        await client.get(INGRESSCLASSES, NAME)
        return 0
    except api_errors.NotFound:
        pass
    except (TimeoutError, OSError, api_errors.ApiError):
        if not dry_run:
            raise
    report(f"ingressclass {NAME}: create (default class, controller {CONTROLLER})")
    if not dry_run:
        try:
            await client.create(INGRESSCLASSES, ingress_class())
        except api_errors.AlreadyExists:
            return 0
    return 1
