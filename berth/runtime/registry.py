"""A client for the OCI distribution API (``/v2/``): manifests and blobs, anonymous bearer auth.

Plain ``urllib`` on purpose: the node runtime is stdlib-only. The HTTP layer is a small
:class:`Transport` protocol so tests can serve canned responses without sockets.
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from berth.runtime.errors import RegistryError
from berth.runtime.manifest import ACCEPT
from berth.runtime.reference import ImageReference


@dataclass
class Response:
    """An HTTP response whose body is read lazily (blobs can be large)."""

    status: int
    headers: Mapping[str, str]
    body: BinaryIO

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    def read_all(self, limit: int) -> bytes:
        data = self.body.read(limit + 1)
        self.body.close()
        if len(data) > limit:
            raise RegistryError(f"response larger than {limit} bytes")
        return data


class Transport(Protocol):
    """Performs one HTTP GET; never raises for HTTP error statuses."""

    def get(self, url: str, headers: Mapping[str, str]) -> Response: ...


class UrllibTransport:
    """The real transport: ``urllib`` with a timeout, redirects followed (blobs often redirect).

    ``ca_bundles`` maps a registry (``host:port`` as in image references) to PEM CA
    certificates trusted for it on top of the system CAs, for registries whose certificate a
    private CA signed."""

    def __init__(
        self, timeout: float = 60.0, *, ca_bundles: Mapping[str, str] | None = None
    ) -> None:
        self.timeout = timeout
        self._contexts = {host: _context_trusting(pem) for host, pem in (ca_bundles or {}).items()}

    def context_for(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for ``url``: its registry's CA bundle added, else the default."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "https":
            return None
        return self._contexts.get(parts.netloc.lower())

    def get(self, url: str, headers: Mapping[str, str]) -> Response:
        if not url.startswith(("http://", "https://")):
            raise RegistryError(f"refusing non-HTTP URL {url!r}")
        request = urllib.request.Request(url, headers=dict(headers), method="GET")  # noqa: S310
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.context_for(url)), _CarefulRedirects()
        )
        try:
            resp = opener.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as err:
            return Response(err.code, dict(err.headers.items()), err)  # type: ignore[arg-type]
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryError(f"cannot reach {url}: {exc}") from exc
        return Response(resp.status, dict(resp.headers.items()), resp)


class _CarefulRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects as registries use them (blobs live on a CDN), minus two leaks urllib allows:
    an https URL redirected to plain http is refused, and the registry's ``Authorization``
    header is not carried to another host."""

    def redirect_request(  # noqa: PLR0917 (urllib's signature)
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        old, new = urllib.parse.urlsplit(req.full_url), urllib.parse.urlsplit(newurl)
        if old.scheme == "https" and new.scheme != "https":
            raise RegistryError(f"refusing the redirect from {req.full_url} to {newurl}: not https")
        if new.scheme not in ("http", "https"):
            raise RegistryError(f"refusing the redirect to {newurl}: not an HTTP URL")
        follow = super().redirect_request(req, fp, code, msg, headers, newurl)
        if follow is not None and (old.hostname, old.port) != (new.hostname, new.port):
            follow.remove_header("Authorization")
        return follow


def _context_trusting(pem: str) -> ssl.SSLContext:
    context = ssl.create_default_context()  # system CAs, hostname checking, modern protocols
    try:
        context.load_verify_locations(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise RegistryError(f"a registry CA bundle is not valid PEM: {exc}") from None
    return context


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
MAX_MANIFEST_BYTES = 4 << 20


@dataclass
class RegistryClient:
    """Talks the distribution API to registries.

    ``insecure`` lists registries (``host:port``) spoken to over plain HTTP, like Docker's
    ``insecure-registries``; every other registry is HTTPS.
    """

    transport: Transport = field(default_factory=UrllibTransport)
    insecure: frozenset[str] = frozenset()
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict)

    def _base(self, ref: ImageReference) -> str:
        scheme = "http" if ref.registry in self.insecure else "https"
        return f"{scheme}://{ref.api_host}/v2/{ref.repository}"

    def _get(self, ref: ImageReference, url: str, accept: str | None = None) -> Response:
        headers = {"Accept": accept} if accept else {}
        key = (ref.api_host, ref.repository)
        if key in self._tokens:
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
        resp = self.transport.get(url, headers)
        if resp.status == 401 and key not in self._tokens:
            challenge = resp.header("WWW-Authenticate") or ""
            resp.body.close()
            self._tokens[key] = self._fetch_token(ref, challenge)
            headers["Authorization"] = f"Bearer {self._tokens[key]}"
            resp = self.transport.get(url, headers)
        return resp

    def _fetch_token(self, ref: ImageReference, challenge: str) -> str:
        if not challenge.lower().startswith("bearer "):
            raise RegistryError(
                f"{ref.registry} requires authentication ({challenge or 'no challenge'}); "
                "only anonymous bearer tokens are supported"
            )
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.pop("realm", "")
        if not realm:
            raise RegistryError(f"{ref.registry}: bearer challenge without a realm")
        self._check_realm(ref, realm)
        params.setdefault("scope", f"repository:{ref.repository}:pull")
        resp = self.transport.get(f"{realm}?{urllib.parse.urlencode(params)}", {})
        if resp.status != 200:
            raise RegistryError(f"{ref.registry}: token endpoint answered {resp.status}")
        doc = json.loads(resp.read_all(1 << 20))
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str):
            raise RegistryError(f"{ref.registry}: token endpoint returned no token")
        return token

    def _check_realm(self, ref: ImageReference, realm: str) -> None:
        """The token endpoint a registry names must be HTTPS: a plain-HTTP realm would hand
        the token (and whatever a future credential flow sends) to anyone on the path, and
        lets a registry reached over HTTPS downgrade the node. Plain HTTP is accepted only
        for a registry configured as insecure (spoken to over plain HTTP anyway)."""
        parts = urllib.parse.urlsplit(realm)
        scheme = parts.scheme.lower()
        if scheme == "https" and parts.hostname:
            return
        if scheme == "http" and parts.hostname and ref.registry in self.insecure:
            return
        raise RegistryError(
            f"{ref.registry}: refusing the token realm {realm!r}: it must be an https:// URL "
            "(plain http only for a registry listed as insecure)"
        )

    def get_manifest(
        self, ref: ImageReference, lookup: str
    ) -> tuple[bytes, str | None, str | None]:
        """Fetch a manifest or index by tag or digest.

        Returns the raw body, the Content-Type and the ``Docker-Content-Digest`` header; the
        caller verifies the digest (see :mod:`berth.runtime.images`).
        """
        url = f"{self._base(ref)}/manifests/{lookup}"
        resp = self._get(ref, url, ACCEPT)
        if resp.status != 200:
            detail = resp.read_all(1 << 16).decode(errors="replace")[:300]
            raise RegistryError(f"GET {url}: HTTP {resp.status} {detail}".rstrip())
        body = resp.read_all(MAX_MANIFEST_BYTES)
        return body, resp.header("Content-Type"), resp.header("Docker-Content-Digest")

    def open_blob(self, ref: ImageReference, digest: str) -> BinaryIO:
        """A stream of the blob's bytes (the caller hashes while storing)."""
        url = f"{self._base(ref)}/blobs/{digest}"
        resp = self._get(ref, url)
        if resp.status != 200:
            detail = resp.read_all(1 << 16).decode(errors="replace")[:300]
            raise RegistryError(f"GET {url}: HTTP {resp.status} {detail}".rstrip())
        return resp.body
