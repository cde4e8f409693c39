"""Links in HTML pages that ``pods/proxy`` and ``services/proxy`` pass on, rewritten so that a
browser going through ``kubectl proxy`` stays on the proxy (upstream's proxy does the same).

A page served at ``/`` by a pod links to ``/static/app.js``; seen through
``/api/v1/namespaces/NS/pods/NAME/proxy/`` that link must become
``/api/v1/namespaces/NS/pods/NAME/proxy/static/app.js``. Only the URL attributes of tags are
touched, and only values that point at the backend itself: an absolute path, or an absolute
URL naming the backend's own scheme, host and port. Relative links already work; links to
other hosts stay as they are. Pages are rewritten only when whole and small enough
(:data:`MAX_HTML`) and not compressed; anything else passes through unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from yarl import URL

MAX_HTML = 8 << 20
"""Largest page held in memory to be rewritten (bigger ones pass through as they are)."""

_URL_ATTRIBUTES = (
    "href", "src", "action", "formaction", "poster", "cite", "background", "longdesc",
    "usemap", "codebase", "data", "icon", "manifest", "profile", "classid",
)  # fmt: skip
_TAG = re.compile(rb"<[a-zA-Z][^<>]*>")
_ATTRIBUTE = re.compile(
    rb"(\s(?:" + b"|".join(a.encode() for a in _URL_ATTRIBUTES) + rb")\s*=\s*)"
    rb"(\"[^\"]*\"|'[^']*'|[^\s\"'>]+)",
    re.IGNORECASE,
)


def is_rewritable(headers: Mapping[str, str]) -> bool:
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    encoding = headers.get("Content-Encoding", "identity").strip().lower()
    return content_type == "text/html" and encoding in ("", "identity")


def _rewrite_value(value: bytes, backend: URL, prefix: bytes) -> bytes:
    if value.startswith(b"//"):
        return value  # another host, the page's scheme
    if value.startswith(b"/"):
        path = value
    else:
        try:
            target = URL(value.decode("ascii"), encoded=True)
        except (UnicodeDecodeError, ValueError):
            return value
        same = (
            target.is_absolute()
            and target.scheme == backend.scheme
            and (target.host, target.port) == (backend.host, backend.port)
        )
        if not same:
            return value
        parts = value.split(b"/", 3)  # scheme:, "", authority, path
        path = b"/" + parts[3] if len(parts) > 3 else b"/"
    if path == prefix or path.startswith(prefix + b"/"):
        return path
    return prefix + path


def rewrite(page: bytes, backend: URL, prefix: str) -> bytes:
    """``page`` with its links to ``backend`` going through ``prefix`` (the proxy path up to
    and including its ``proxy`` segment)."""
    raw_prefix = prefix.encode()

    def attribute(match: re.Match[bytes]) -> bytes:
        quoted = match.group(2)
        quote = quoted[:1] if quoted[:1] in (b'"', b"'") else b""
        value = quoted[1:-1] if quote else quoted
        return match.group(1) + quote + _rewrite_value(value, backend, raw_prefix) + quote

    def tag(match: re.Match[bytes]) -> bytes:
        return _ATTRIBUTE.sub(attribute, match.group(0))

    return _TAG.sub(tag, page)
