"""Parsing the API server's datastore section and opening in-process stores from it."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from berth.store.config import DatastoreConfig, DatastoreConfigError, open_store
from berth.store.etcd import EtcdTLS
from berth.store.memory import MemoryStore
from berth.store.sqlite import SqliteStore


def test_etcd_with_mtls() -> None:
    config = DatastoreConfig.from_mapping(
        {
            "type": "etcd",
            "endpoints": ["https://10.0.0.1:2379", "https://10.0.0.2:2379"],
            "caFile": "/pki/ca.crt",
            "certFile": "/pki/c.crt",
            "keyFile": "/pki/c.key",
        }
    )
    assert config.endpoints == ("https://10.0.0.1:2379", "https://10.0.0.2:2379")
    assert config.tls == EtcdTLS(Path("/pki/ca.crt"), Path("/pki/c.crt"), Path("/pki/c.key"))


def test_every_problem_is_reported_with_its_location() -> None:
    with pytest.raises(DatastoreConfigError) as info:
        DatastoreConfig.from_mapping(
            {"type": "etcd", "endpoints": ["https://a:2379"], "certFile": "/c", "colour": 1},
            where="apiserver.yaml: datastore",
        )
    assert str(info.value).splitlines() == [
        "apiserver.yaml: datastore.colour: unknown field",
        "apiserver.yaml: datastore: certFile and keyFile go together",
        "apiserver.yaml: datastore.caFile: required with a client certificate",
        "apiserver.yaml: datastore.caFile: required for https endpoints",
    ]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"type": "postgres"}, "datastore.type: must be one of memory, sqlite, etcd"),
        ({"type": "sqlite"}, "datastore.path: required for type sqlite"),
        ({"type": "etcd"}, "datastore.endpoints: required for type etcd"),
        ({"type": "etcd", "endpoints": ["10.0.0.1:2379"]}, "must be a list of http(s)://"),
        ({"type": "memory", "watchBuffer": 0}, "watchBuffer: must be a positive integer"),
    ],
)
def test_invalid_sections(section: dict[str, object], message: str) -> None:
    with pytest.raises(DatastoreConfigError, match=re.escape(message)):
        DatastoreConfig.from_mapping(section)


def test_open_store_builds_the_in_process_backends(tmp_path: Path) -> None:
    async def main() -> None:
        memory = await open_store(DatastoreConfig.from_mapping({"type": "memory"}))
        assert isinstance(memory, MemoryStore)
        await memory.close()
        section = {"type": "sqlite", "path": str(tmp_path / "s.db"), "watchBuffer": 5}
        sqlite = await open_store(DatastoreConfig.from_mapping(section))
        assert isinstance(sqlite, SqliteStore)
        assert (await sqlite.create("/a", b"")).mod_revision == 2
        await sqlite.close()

    asyncio.run(main())
