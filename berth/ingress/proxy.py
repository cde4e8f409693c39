"""The HAProxy data plane: one master-worker process per node, its configuration in
generation directories, and hitless reloads.

A new configuration is written to a fresh directory ``gen-N`` (every file created 0600 in a
0700 directory, written to a temporary name and renamed: a reader never sees half a file or a
key another user could read), checked with ``haproxy -c``, and only then made current: the
``current`` symlink is swapped atomically and the master is sent ``SIGUSR2``. The master
re-executes with the new configuration, takes the listening sockets over from the old worker
(no connection refused in between) and lets the old worker finish its requests. A config the
check refuses is left aside and reported; the running one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .haproxy import Files, Listen, render
from .routes import Routes

log = logging.getLogger(__name__)

KEEP_GENERATIONS = 3
HAPROXY = "/usr/sbin/haproxy"


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` atomically with mode 0600 (created so, never widened then narrowed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def default_certificate(path: Path) -> None:
    """A self-signed certificate for TLS clients whose SNI no Ingress serves (HAProxy needs
    one to listen on 443 at all), made once per node."""
    if path.exists():
        return
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "berth ingress default")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)


@dataclass
class Applied:
    generation: int
    ok: bool
    error: str = ""


class HaproxyProxy:
    """Owns ``state_dir`` (created 0700): generations, the admin socket, the pid file."""

    def __init__(
        self,
        state_dir: Path,
        *,
        listen: Listen,
        haproxy: str = HAPROXY,
        user: str | None = None,
    ) -> None:
        self.user = user
        self.dir = state_dir
        self.listen = listen
        self.haproxy = haproxy
        self.process: asyncio.subprocess.Process | None = None
        self.generation = 0
        self.current_routes: object = None
        self.reloads = 0

    @property
    def current(self) -> Path:
        return self.dir / "current"

    @property
    def admin_socket(self) -> Path:
        return self.dir / "admin.sock"

    def prepare(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        default_certificate(self.dir / "default.pem")
        existing = [int(p.name[4:]) for p in self.dir.glob("gen-*") if p.name[4:].isdigit()]
        self.generation = max(existing, default=0)

    def _write(self, files: Files, gen_dir: Path) -> None:
        gen_dir.mkdir(mode=0o700)
        for name, data in files.certificates.items():
            write_private(gen_dir / name, data)
        write_private(gen_dir / "hosts.map", files.hosts_map.encode())
        write_private(gen_dir / "wildcards.map", files.wildcards_map.encode())
        write_private(gen_dir / "exact.map", files.exact_map.encode())
        write_private(gen_dir / "prefix.map", files.prefix_map.encode())
        write_private(gen_dir / "certificates.list", files.crt_list.encode())
        write_private(gen_dir / "haproxy.cfg", files.config.encode())

    async def check(self, config: Path) -> tuple[bool, str]:
        proc = await asyncio.create_subprocess_exec(
            self.haproxy, "-c", "-q", "-f", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode == 0, out.decode(errors="replace")[-2000:]

    async def apply(self, routes: Routes) -> Applied:
        """Render, write, check and switch to ``routes``; start HAProxy the first time."""
        wanted = (routes.routes, routes.backends, routes.default_backend, routes.certificates)
        if wanted == self.current_routes and self.running:
            return Applied(self.generation, True)
        gen = self.generation + 1
        gen_dir = self.dir / f"gen-{gen}"
        shutil.rmtree(gen_dir, ignore_errors=True)
        files = render(
            routes,
            str(gen_dir),
            listen=self.listen,
            admin_socket=str(self.admin_socket),
            default_certificate=str(self.dir / "default.pem"),
            user=self.user,
        )
        self._write(files, gen_dir)
        ok, output = await self.check(gen_dir / "haproxy.cfg")
        if not ok:
            log.error("haproxy refused generation %d, keeping the current one: %s", gen, output)
            shutil.rmtree(gen_dir, ignore_errors=True)
            return Applied(self.generation, False, output)
        self.generation = gen
        link = self.dir / ".current.tmp"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(gen_dir.name)
        os.replace(link, self.current)
        self.current_routes = wanted
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGUSR2)
            self.reloads += 1
        else:
            await self._start()
        self._prune()
        return Applied(gen, True)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def _start(self) -> None:
        # -W: master-worker (the master stays in the foreground, our child); reloads are
        # SIGUSR2 to it. The config path is the symlink, so a reload reads the new generation.
        self.process = await asyncio.create_subprocess_exec(
            self.haproxy, "-W", "-f", str(self.current / "haproxy.cfg"),
            "-p", str(self.dir / "haproxy.pid"),
            stdin=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        log.info("haproxy started (pid %d), generation %d", self.process.pid, self.generation)

    def _prune(self) -> None:
        old = sorted(
            (int(p.name[4:]) for p in self.dir.glob("gen-*") if p.name[4:].isdigit()),
            reverse=True,
        )[KEEP_GENERATIONS:]
        for n in old:
            shutil.rmtree(self.dir / f"gen-{n}", ignore_errors=True)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None
