"""HTTP(S) backends on this machine's own (non-loopback) address for the proxy tests: a
stand-in for a pod or an endpoint that echoes what reached it, redirects, and, over TLS,
records whether the caller presented a client certificate."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def host_address() -> str:
    """A non-loopback address of this machine (the proxies refuse loopback targets)."""
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "scope", "global"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in out.stdout.splitlines():
        address = line.split()[3].split("/")[0]
        if address:
            return address
    raise AssertionError("this machine has no global IPv4 address to serve the backend on")


PRIVATE_HEADERS = {
    "Cookie": "session=secret",
    "Proxy-Authorization": "Basic c2VjcmV0",
    "X-Remote-User": "system:admin",
    "X-Remote-Group": "system:masters",
    "Connection": "X-Private",
    "X-Private": "hop",
    "X-Custom": "kept",
}
"""Headers a client sends through a proxy: its credentials, impersonation headers, a hop-by-hop
header (named in Connection) and one of its own (``X-Custom``, the only one to arrive)."""


def assert_only_the_clients_own_header_arrived(headers: dict[str, str]) -> None:
    """What a backend got for :data:`PRIVATE_HEADERS`: none of the client's credentials (nor the
    API server's own), no hop-by-hop header, its own header unchanged."""
    got = {k.lower(): v for k, v in headers.items()}
    private = ("cookie", "proxy-authorization", "authorization", "x-remote-user", "x-remote-group")
    for name in (*private, "x-private"):
        assert name not in got, name
    assert got["x-custom"] == "kept"


@dataclass
class Seen:
    requests: list[dict[str, Any]] = field(default_factory=list)


class EchoHandler(BaseHTTPRequestHandler):
    """``/redirect-here`` redirects to ``/landing`` on the same server, ``/redirect-away``
    to another host, ``/huge`` answers more than the proxy passes on; anything else echoes
    the method, path, body, headers and whether a client certificate came along."""

    seen: Seen
    label: str

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = None
        if isinstance(self.connection, ssl.SSLSocket):
            peer = self.connection.getpeercert()
        self.seen.requests.append(
            {"path": self.path, "headers": dict(self.headers.items()), "peer_cert": peer}
        )
        if self.path.startswith("/redirect-here"):
            self._redirect("/landing?from=here")
        elif self.path.startswith("/redirect-away"):
            self._redirect("http://192.0.2.1:81/elsewhere")
        elif self.path.startswith("/huge"):
            self._huge()
        elif self.path.startswith("/page"):
            self._page()
        else:
            self._echo(body)

    def _echo(self, body: bytes) -> None:
        reply = json.dumps(
            {
                "backend": self.label,
                "path": self.path,
                "method": self.command,
                "body": body.decode(errors="replace"),
                "tls": isinstance(self.connection, ssl.SSLSocket),
            }
        ).encode()
        self._ok("application/json", reply)

    def _ok(self, content_type: str, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _page(self) -> None:
        """HTML linking to this server by absolute path and by full URL, and elsewhere."""
        address: Any = self.server.server_address
        host, port = address[0], address[1]
        page = (
            f'<html><body><a id="path" href="/linked?x=1">by path</a>'
            f'<img id="url" src="http://{host}:{port}/image">'
            f'<a id="away" href="http://192.0.2.1/away">elsewhere</a></body></html>'
        ).encode()
        self._ok("text/html; charset=utf-8", page)

    def _huge(self) -> None:
        chunk = b"y" * (1 << 20)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        try:
            for _ in range(300):  # 300 MiB, more than the proxy's 256 MiB bound
                self.wfile.write(chunk)
        except OSError:
            return  # the proxy hung up: what the test wants

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        return


class Backend:
    def __init__(
        self, address: str, label: str, tls: tuple[Path, Path, Path] | None = None
    ) -> None:
        self.seen = Seen()
        handler = type("Handler", (EchoHandler,), {"seen": self.seen, "label": label})
        self.httpd = ThreadingHTTPServer((address, 0), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            cert, key, ca = tls
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(cert), str(key))
            # A client certificate is asked for, not required: the test checks none comes.
            ctx.load_verify_locations(str(ca))
            ctx.verify_mode = ssl.CERT_OPTIONAL
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
