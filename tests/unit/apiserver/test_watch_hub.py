"""The watch hub: shared decoding, resumable ring, bounded per-watcher queues."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import aiohttp
import orjson
import pytest

from berth.apiserver.codec import Codec
from berth.apiserver.watch import ObjEvent, WatchHub
from berth.store.interface import Event
from berth.store.memory import MemoryStore
from tests.harness.apiserver import running_server


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_subscribers_get_events_after_their_revision_and_overflow_is_bounded() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=5, subscriber_capacity=3)
        await hub.start()
        first = await store.create("/registry/core/configmaps/a/x", b'{"metadata":{"name":"x"}}')
        await store.create("/registry/core/configmaps/b/y", b'{"metadata":{"name":"y"}}')
        await _settle()
        sub = hub.subscribe("/registry/core/configmaps/a/", first.mod_revision - 1)
        assert sub is not None
        loop = asyncio.get_running_loop()
        batch = await sub.next_batch(loop.time() + 1)
        assert [(e.key, e.obj["metadata"]["resourceVersion"]) for e in batch] == [
            ("/registry/core/configmaps/a/x", str(first.mod_revision))
        ]
        for i in range(5):  # more than the subscriber's capacity, nobody reading
            await store.update(
                "/registry/core/configmaps/a/x",
                f'{{"v":{i}}}'.encode(),
                expected_revision=(await store.get("/registry/core/configmaps/a/x")).mod_revision,  # type: ignore[union-attr]
            )
        await _settle()
        assert sub.overflowed
        assert len(sub.queue) == 3
        # The ring keeps 5 events: resuming from before them is refused (caller reads the log).
        assert hub.subscribe("/registry/", first.mod_revision) is None
        assert hub.subscribe("/registry/", hub.latest - 2) is not None
        hub.unsubscribe(sub)
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


def test_next_batch_times_out_empty() -> None:
    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec())
        await hub.start()
        sub = hub.subscribe("/registry/", hub.latest)
        assert sub is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await sub.next_batch(started + 0.05) == []
        assert loop.time() - started >= 0.04
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


def test_ring_keeps_store_events_undecoded_and_replays_a_backlog_decoded() -> None:
    """The ring holds what the store sent (bytes, a fraction of a decoded object's memory);
    a resuming subscriber gets its prefix's events decoded, oldest first, and overflows as a
    live one would when the backlog is past its capacity."""

    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=20, subscriber_capacity=3)
        await hub.start()
        start = hub.latest
        for i in range(4):
            await store.create(f"/registry/core/configmaps/a/c{i}", b'{"metadata":{}}')
            await store.create(f"/registry/core/secrets/a/s{i}", b'{"metadata":{}}')
        await _settle()
        assert len(hub.ring) == 8
        assert all(isinstance(raw, Event) for raw in hub.ring)
        full = hub.subscribe("/registry/core/configmaps/", start)
        assert full is not None
        assert full.overflowed  # 4 configmaps, room for 3
        assert [e.key.rsplit("/", 1)[1] for e in full.queue] == ["c0", "c1", "c2"]
        recent = hub.subscribe("/registry/core/configmaps/", hub.latest - 3)
        assert recent is not None
        assert not recent.overflowed
        assert [
            (e.key.rsplit("/", 1)[1], e.obj["metadata"]["resourceVersion"]) for e in recent.queue
        ] == [("c3", str(hub.latest - 1))]


def test_a_create_handed_over_is_shared_only_for_its_own_revision() -> None:
    """``written``: the event of that very create carries the object handed over; any other
    event of the key (another revision, an update) is decoded from the store's bytes."""

    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec())
        await hub.start()
        seen: list[ObjEvent] = []
        hub.listeners.append(seen.append)

        mine = {"metadata": {"name": "x", "resourceVersion": str(hub.latest + 1)}}
        hub.written("/registry/core/configmaps/a/x", hub.latest + 1, mine)
        await store.create("/registry/core/configmaps/a/x", b'{"metadata":{"name":"x"}}')
        # a stale hand-over: another writer took the revision it expected
        stale = {"metadata": {"name": "y", "stale": True}}
        hub.written("/registry/core/configmaps/a/y", hub.latest + 3, stale)
        await _settle()
        await store.create("/registry/core/configmaps/a/y", b'{"metadata":{"name":"y"}}')
        await _settle()
        x = await store.get("/registry/core/configmaps/a/x")
        assert x is not None
        # an update of the key at the revision handed over is not a create: decoded
        hub.written("/registry/core/configmaps/a/x", hub.latest + 1, {"not": "this"})
        await store.update(
            "/registry/core/configmaps/a/x", b'{"v":1}', expected_revision=x.mod_revision
        )
        await _settle()
        assert [e.obj for e in seen] == [
            mine,
            {"metadata": {"name": "y", "resourceVersion": str(seen[1].revision)}},
            {"v": 1, "metadata": {"resourceVersion": str(seen[2].revision)}},
        ]
        assert seen[0].obj is mine
        # nothing is held for events already dispatched (or once every entry was used)
        hub.written("/registry/core/configmaps/a/z", hub.latest, {"old": True})
        assert not hub._written
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


def test_ring_is_bounded_by_the_bytes_it_holds() -> None:
    """Big objects push the oldest events out before the count does; resuming from before
    them is refused (the caller reads the store's log), from after them is served."""

    async def scenario() -> None:
        store = MemoryStore()
        hub = WatchHub(store, Codec(), ring_size=100, ring_bytes=3000)
        await hub.start()
        body = b'{"metadata":{},"data":"' + b"x" * 900 + b'"}'
        revisions = []
        for i in range(6):
            kv = await store.create(f"/registry/core/configmaps/a/c{i}", body)
            revisions.append(kv.mod_revision)
        await _settle()
        assert len(hub.ring) == 3  # 3 x ~930 bytes fit in 3000, 4 do not
        assert hub.floor == revisions[2]
        assert hub.subscribe("/registry/", revisions[1]) is None
        served = hub.subscribe("/registry/", revisions[2])
        assert served is not None
        assert [e.revision for e in served.queue] == revisions[3:]
        await hub.stop()
        await store.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("datastore", ["memory", "sqlite"])
def test_a_pod_created_through_the_api_reaches_the_watch_as_stored(
    tmp_path: Path, datastore: str
) -> None:
    """The object an API create shares with the watch hub is the one a decode of the stored
    bytes gives: same values, same types, same key order (watchers get the same JSON). With
    either store the event carries that very object: SQLite's writer answers the create
    before its watchers run, so the hand-over is not too late."""
    sqlite_path = tmp_path / "state.db" if datastore == "sqlite" else None
    with running_server(tmp_path, datastore=datastore, sqlite_path=sqlite_path) as srv:
        cert, key = srv.client_cert("admin", ["system:masters"])
        ctx = ssl.create_default_context(cafile=str(srv.pki.ca_cert))
        ctx.load_cert_chain(str(cert), str(key))
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "web-",
                "labels": {"app": "web"},
                "annotations": {"a": ',"resourceVersion":@} ü', "resourceVersion": "1"},
            },
            "spec": {
                "containers": [
                    {"name": "c", "image": "busybox", "resources": {"limits": {"cpu": 0.5}}}
                ],
                "tolerations": [{"key": "k", "operator": "Exists"}],
            },
        }

        answered: list[bytes] = []

        async def create() -> str:
            async with (
                aiohttp.ClientSession(
                    base_url=srv.url, connector=aiohttp.TCPConnector(ssl=ctx)
                ) as s,
                s.post("/api/v1/namespaces/default/pods", json=pod) as r,
            ):
                assert r.status == 201, await r.text()
                answered.append(await r.read())
                return str((await r.json())["metadata"]["name"])

        server = srv.server
        handed: list[str] = []
        objects: list[dict[str, object]] = []
        hand_over = server.hub.written

        def written(key: str, revision: int, obj: dict[str, object]) -> None:
            handed.append(key)
            objects.append(obj)
            hand_over(key, revision, obj)

        server.hub.written = written  # type: ignore[method-assign]
        # the ring keeps raw store events; the decoded (or shared) ones reach the listeners
        dispatched: list[ObjEvent] = []
        server.hub.listeners.append(dispatched.append)
        name = asyncio.run(create())
        pod_key = f"/registry/core/pods/default/{name}"

        async def compare() -> None:
            for _ in range(200):
                events = [e for e in dispatched if e.key == pod_key]
                if events:
                    break
                await asyncio.sleep(0.05)
            assert len(events) == 1
            assert handed == [pod_key]
            assert events[0].obj is objects[0]  # shared, not decoded
            kv = await server.store.get(pod_key)
            assert kv is not None
            decoded = server.codec.decode(kv)
            assert events[0].obj == decoded
            assert orjson.dumps(events[0].obj) == orjson.dumps(decoded)
            # the answer to the create is the stored object with its resourceVersion, byte
            # for byte (one encoding serves both: Codec.encode_created)
            assert answered == [orjson.dumps(decoded)]

        srv.call(compare())
