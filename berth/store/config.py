"""Which datastore to open, and opening it: the one place that knows every backend.

The API server reads a ``datastore`` section from its config file (written by the provisioner
from ``spec.datastore``) and calls ``await open_store(DatastoreConfig.from_mapping(section))``::

    datastore: {type: sqlite, path: /var/lib/berth/datastore/state.db}
    datastore:
      type: etcd
      endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]
      caFile: /etc/berth/pki/etcd-ca.crt
      certFile: /etc/berth/pki/apiserver-etcd-client.crt
      keyFile: /etc/berth/pki/apiserver-etcd-client.key
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from berth.store.etcd import EtcdStore, EtcdTLS
from berth.store.fanout import DEFAULT_WATCH_BUFFER
from berth.store.interface import Store, StoreError
from berth.store.memory import MemoryStore
from berth.store.sqlite import SqliteStore

StoreType = Literal["memory", "sqlite", "etcd"]
_TYPES: tuple[StoreType, ...] = ("memory", "sqlite", "etcd")
_KEYS = {"type", "path", "endpoints", "caFile", "certFile", "keyFile", "watchBuffer"}


class DatastoreConfigError(StoreError):
    """The datastore section is wrong; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class DatastoreConfig:
    type: StoreType = "sqlite"
    path: Path | None = None  # sqlite: the database file
    endpoints: tuple[str, ...] = ()  # etcd: client URLs
    tls: EtcdTLS | None = None  # etcd: CA and client certificate
    watch_buffer: int = DEFAULT_WATCH_BUFFER  # memory/sqlite: live events per watcher

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, object], *, where: str = "datastore"
    ) -> DatastoreConfig:
        """Parse and check a config section; ``where`` prefixes every error message."""
        problems: list[str] = [f"{where}.{k}: unknown field" for k in sorted(set(data) - _KEYS)]
        kind = data.get("type", "sqlite")
        if kind not in _TYPES:
            problems.append(f"{where}.type: must be one of {', '.join(_TYPES)}, not {kind!r}")

        def text(key: str) -> str | None:
            value = data.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                problems.append(f"{where}.{key}: must be a non-empty string")
                return None
            return value

        path, ca, cert, key = text("path"), text("caFile"), text("certFile"), text("keyFile")
        raw_endpoints = data.get("endpoints", [])
        endpoints: tuple[str, ...] = ()
        if not isinstance(raw_endpoints, list) or not all(
            isinstance(e, str) and e.startswith(("http://", "https://")) for e in raw_endpoints
        ):
            problems.append(f"{where}.endpoints: must be a list of http(s):// URLs")
        else:
            endpoints = tuple(raw_endpoints)
        watch_buffer = data.get("watchBuffer", DEFAULT_WATCH_BUFFER)
        if not isinstance(watch_buffer, int) or isinstance(watch_buffer, bool) or watch_buffer < 1:
            problems.append(f"{where}.watchBuffer: must be a positive integer")
            watch_buffer = DEFAULT_WATCH_BUFFER

        if kind == "sqlite" and path is None:
            problems.append(f"{where}.path: required for type sqlite")
        if kind == "etcd":
            if not endpoints:
                problems.append(f"{where}.endpoints: required for type etcd")
            if (cert is None) != (key is None):
                problems.append(f"{where}: certFile and keyFile go together")
            if cert is not None and ca is None:
                problems.append(f"{where}.caFile: required with a client certificate")
            if any(e.startswith("https://") for e in endpoints) and ca is None:
                problems.append(f"{where}.caFile: required for https endpoints")
        if problems:
            raise DatastoreConfigError("\n".join(problems))
        tls = None
        if ca is not None:
            tls = EtcdTLS(Path(ca), Path(cert) if cert else None, Path(key) if key else None)
        return cls(
            type=kind,  # type: ignore[arg-type]  # checked against _TYPES above
            path=Path(path) if path else None,
            endpoints=endpoints,
            tls=tls,
            watch_buffer=watch_buffer,
        )


async def open_store(config: DatastoreConfig) -> Store:
    """Open the configured store (for etcd: after checking that a member answers)."""
    if config.type == "memory":
        return MemoryStore(watch_buffer=config.watch_buffer)
    if config.type == "sqlite":
        if config.path is None:
            raise DatastoreConfigError("datastore.path: required for type sqlite")
        return await SqliteStore.open(config.path, watch_buffer=config.watch_buffer)
    return await EtcdStore.open(config.endpoints, tls=config.tls)
