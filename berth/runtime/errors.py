"""Errors raised by the node runtime. Each message says what failed and where to look."""

from __future__ import annotations


class NodeRuntimeError(Exception):
    """Base of every node-runtime error."""


class ImageError(NodeRuntimeError):
    """An image could not be resolved, fetched, verified or unpacked."""


class ImageNotPresent(ImageError):
    """The image is not on the node and ``imagePullPolicy: Never`` forbids pulling it."""


class DigestMismatch(ImageError):
    """Downloaded content does not hash to the digest that addressed it."""

    def __init__(self, *, what: str, expected: str, actual: str) -> None:
        super().__init__(
            f"{what}: content hashes to {actual}, expected {expected}; "
            "refusing to use it (corrupt download or a registry serving wrong data)"
        )
        self.expected = expected
        self.actual = actual


class UnsafeLayer(ImageError):
    """A layer tar tried to write outside the root file system or contains a forbidden entry."""


class RegistryError(ImageError):
    """The registry answered with an error or an unexpected document."""


class ContainerError(NodeRuntimeError):
    """runc (or the bundle preparation) failed for a container."""


class ContainerNotFound(ContainerError):
    """No container with that id is known to the runtime."""


class SandboxError(NodeRuntimeError):
    """The pod sandbox (network namespace + CNI) could not be set up or torn down."""
