"""Image references (``registry/repository[:tag][@digest]``) as Docker and containerd read them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from berth.runtime.digest import Digest, parse_digest
from berth.runtime.errors import ImageError

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference. ``digest`` wins over ``tag`` when both are given."""

    registry: str
    repository: str
    tag: str | None
    digest: Digest | None

    @property
    def api_host(self) -> str:
        """The host:port to talk the distribution API to."""
        return _DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def lookup(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if pinned, else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag or "latest"

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` the way ``docker pull`` does (``busybox`` → ``docker.io/library/busybox``).

    The first path component is a registry when it contains ``.`` or ``:`` or is ``localhost``.
    """
    rest, digest = text, None
    if "@" in rest:
        rest, raw_digest = rest.split("@", 1)
        digest = parse_digest(raw_digest)
    tag = None
    last_slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > last_slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise ImageError(f"invalid image reference {text!r}: bad tag {tag!r}")
    parts = rest.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        registry, path = parts[0], parts[1:]
    else:
        registry, path = DOCKER_HUB, parts
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library", *path]
    if not path or not all(_COMPONENT.match(p) for p in path):
        raise ImageError(
            f"invalid image reference {text!r}: repository must be lowercase "
            "alphanumerics separated by '/', '.', '_' or '-'"
        )
    if tag is None and digest is None:
        tag = "latest"
    return ImageReference(registry=registry, repository="/".join(path), tag=tag, digest=digest)
