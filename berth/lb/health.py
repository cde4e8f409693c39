"""Active health checks: a TCP connect, or ``GET /readyz`` over TLS with a client certificate.

A check returns ``None`` when the backend passed, else a short reason. Checks never raise.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Protocol

from berth.lb.config import Backend, HealthConfig


class HealthCheck(Protocol):
    async def __call__(self, backend: Backend) -> str | None:
        """``None`` if ``backend`` is healthy, else why not."""
        ...


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), 0.5)


class TcpCheck:
    """Healthy when a TCP connection is accepted within ``timeout``."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def __call__(self, backend: Backend) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(backend.host, backend.port)
        except TimeoutError:
            return f"connect timed out after {self.timeout:g}s"
        except OSError as error:
            return f"connect failed: {error.strerror or error}"
        await _close(writer)
        return None


def https_context(config: HealthConfig) -> ssl.SSLContext:
    """TLS for the readiness probe: the cluster CA, and the node's client certificate."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if config.cert_file and config.key_file:
        context.load_cert_chain(config.cert_file, config.key_file)
    # backends are dialled by address; the API server certificate carries them as IP SANs
    return context


class HttpsCheck:
    """Healthy when ``GET <path>`` over TLS answers ``200`` within ``timeout``."""

    def __init__(self, config: HealthConfig, context: ssl.SSLContext | None = None) -> None:
        self.timeout = config.timeout
        self.path = config.path
        self.context = context or https_context(config)

    async def __call__(self, backend: Backend) -> str | None:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    backend.host, backend.port, ssl=self.context
                )
                try:
                    request = (
                        f"GET {self.path} HTTP/1.1\r\nHost: {backend}\r\n"
                        "User-Agent: berth-lb\r\nConnection: close\r\n\r\n"
                    )
                    writer.write(request.encode())
                    await writer.drain()
                    status = await reader.readline()
                finally:
                    await _close(writer)
        except TimeoutError:
            return f"{self.path} timed out after {self.timeout:g}s"
        except (OSError, ssl.SSLError) as error:
            return f"{self.path}: {error}"
        parts = status.decode("latin-1").split()
        if len(parts) >= 2 and parts[1] == "200":
            return None
        return f"{self.path} answered {status.decode('latin-1').strip() or 'nothing'}"


def check_for(config: HealthConfig) -> HealthCheck:
    return HttpsCheck(config) if config.mode == "https" else TcpCheck(config.timeout)
