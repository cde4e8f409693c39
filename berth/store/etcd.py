"""The etcd store (for HA control planes), spoken over etcd v3's JSON gateway with aiohttp.

Why the JSON gateway (``POST /v3/kv/range``, ``/v3/kv/txn``, ``/v3/watch``, ...) rather than
gRPC: it is served by every etcd v3.4+ on the client port, speaks plain HTTP/1.1 with the same
mTLS as gRPC, and needs no dependency beyond aiohttp, which the API server already uses.

Mapping onto the store contract:

* revisions are etcd's own (``header.revision``, ``create_revision``, ``mod_revision``);
* create / update / delete are transactions comparing ``create_revision == 0`` (absent) or
  ``version > 0`` (present) and ``mod_revision == expected``; the failure branch reads the key
  so a conflict carries the current value;
* ``watch(prefix, revision=R)`` opens one ``/v3/watch`` stream with ``start_revision=R+1`` and
  ``prev_kv``; a cancel carrying ``compact_revision`` becomes :class:`Compacted`. etcd never
  drops a slow watcher (it slows it down and catches it up from disk) and this client reads
  the stream only as fast as the consumer iterates, so backpressure is TCP's and
  :class:`~berth.store.interface.WatchOverflow` is never raised. A broken connection is
  resumed from the last delivered revision, trying each endpoint in turn.
* etcd compacts the whole keyspace; compacting at or below its compaction point is a no-op.
* a write with a ``ttl`` attaches the key to an etcd lease, which etcd itself revokes (deleting
  its keys, DELETE watch events) when it runs out. As kube-apiserver does, one lease serves
  every write with the same ttl for a short window (:func:`lease_window`, up to
  :data:`LEASE_MAX_KEYS` keys): it is granted for ttl + window, so a key lives between its ttl
  and ttl + window, and a burst of Events costs one grant, not one lease each. A write whose
  lease etcd no longer has gets a new one and is sent again (the failed one wrote nothing).

Writes are not retried on another endpoint once sent (a retried create or CAS could report a
failure for a write that in fact succeeded); only failures to connect fail over.

A member cut off from its quorum must not hold requests for etcd's 7 s request timeout: every
request asks it to refuse at once when it has no leader (:data:`REQUIRE_LEADER`), and a request
already waiting when the member loses its leader is given up as soon as a probe sees that
(:data:`QUORUM_PROBE_INTERVAL`). Both, like every other "cannot serve now" answer, raise
:class:`EtcdUnavailable` (the contract's :class:`~berth.store.interface.Unavailable`).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from berth.store.interface import (
    Compacted,
    Conflict,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    KeyValue,
    ListResult,
    StoreError,
    Unavailable,
    Watch,
)

Json = dict[str, Any]

DEFAULT_TIMEOUT = 10.0
CONNECT_TIMEOUT = 3.0  # a member that does not answer SYN within this is skipped
# Failures that prove the request never reached etcd, so trying the next member is safe.
_NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
WATCH_RECONNECTS = 5
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}
"""gRPC metadata (the JSON gateway forwards ``Grpc-Metadata-*`` headers) asking the member to
refuse a request with "etcdserver: no leader" (gRPC UNAVAILABLE, HTTP 503) when it has no
leader, instead of waiting out its request timeout. Such a refusal happens before anything is
proposed, so nothing was written."""
QUORUM_PROBE_INTERVAL = 0.5
"""A request waiting longer than this makes the client ask the member, every interval, whether
it still has a leader; the request is given up once it has none. A member notices a lost quorum
one to two election timeouts (1-2 s by default) after it happens."""
_UNAVAILABLE_CODES = (4, 14)  # gRPC DEADLINE_EXCEEDED, UNAVAILABLE
_NO_LEADER = "no leader"
_COMPACTED = "required revision has been compacted"
_LEASE_GONE = "requested lease not found"
LEASE_MAX_KEYS = 1000
"""Keys attached to one lease at most (its revocation deletes them in one transaction)."""


def lease_window(ttl: int) -> int:
    """Seconds after a lease's grant during which later writes with the same ``ttl`` reuse it
    (5 % of the ttl, at least 1 s, at most 60 s): their keys then live up to this much longer
    than their ttl."""
    return max(1, min(60, ttl // 20))


@dataclass(slots=True)
class _Lease:
    id: str
    reusable_until: float  # event-loop time
    keys: int = 0


_FUTURE = "required revision is a future revision"


@dataclass(frozen=True, slots=True)
class EtcdTLS:
    """Client TLS for etcd: the CA that signed the servers, and (for mTLS) our cert and key."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return ctx


class EtcdError(StoreError):
    """etcd answered with an error the contract has no name for."""


class EtcdUnavailable(Unavailable, EtcdError):
    """etcd cannot serve now: no member reachable, the member has no leader (no quorum), or
    no answer in time."""


class EtcdNoQuorum(EtcdUnavailable):
    """The member has no leader: it cannot reach a majority of the members."""

    def __init__(self, endpoint: str, *, outcome_unknown: bool = False) -> None:
        super().__init__(
            no_quorum_message(endpoint), outcome_unknown=outcome_unknown, summary=NO_QUORUM
        )


NO_QUORUM = "the datastore has no quorum"


def no_quorum_message(endpoint: str) -> str:
    return (
        f"{NO_QUORUM}: etcd member {endpoint} has no leader (it cannot reach "
        "a majority of the etcd members)"
    )


# -- wire encoding (pure functions; unit tested) ---------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's ``range_end`` for "every key starting with ``prefix``" (``\\0`` = to the end)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def decode_kv(data: Json) -> KeyValue:
    return KeyValue(
        key=unb64(data.get("key")).decode(),
        value=unb64(data.get("value")),
        create_revision=int(data.get("create_revision", 0)),
        mod_revision=int(data.get("mod_revision", 0)),
    )


def decode_event(data: Json) -> Event:
    kv = decode_kv(data["kv"])
    prev = decode_kv(data["prev_kv"]) if data.get("prev_kv") else None
    if data.get("type") == "DELETE":
        # etcd's delete event carries only the key and the delete's revision; the contract
        # wants the last value, which is the previous version.
        last = prev or kv
        return Event(
            EventType.DELETE,
            KeyValue(kv.key, last.value, last.create_revision, kv.mod_revision),
            prev,
        )
    return Event(EventType.PUT, kv, prev)


def header_revision(data: Json) -> int:
    return int(data["header"]["revision"])


def list_request(prefix: str, *, revision: int, limit: int, start_after: str) -> Json:
    start = prefix.encode()
    if start_after and start_after >= prefix:
        start = start_after.encode() + b"\0"
    body: Json = {"key": b64(start or b"\0"), "range_end": b64(prefix_range_end(prefix.encode()))}
    if revision:
        body["revision"] = str(revision)
    if limit:
        body["limit"] = str(limit)
    return body


# -- the store -------------------------------------------------------------------------------


class EtcdStore:
    """etcd-backed store: ``EtcdStore(["https://10.0.0.1:2379", ...], tls=EtcdTLS(...))``.

    The HTTP session is created on first use (inside the event loop, which it is then bound
    to); ``await EtcdStore.open(...)`` also checks that a member answers. Call :meth:`close`
    when done.
    """

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        if not endpoints:
            raise ValueError("EtcdStore needs at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self._tls = tls
        self._timeout = request_timeout
        self._preferred = 0  # index of the endpoint that last answered
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._closed = False
        self._probes: dict[int, asyncio.Future[bool]] = {}
        self._leases: dict[int, _Lease] = {}  # by ttl: the lease new writes attach to
        self._granting: dict[int, asyncio.Future[_Lease]] = {}

    @classmethod
    async def open(
        cls,
        endpoints: Sequence[str],
        *,
        tls: EtcdTLS | None = None,
        request_timeout: float = DEFAULT_TIMEOUT,
    ) -> EtcdStore:
        store = cls(endpoints, tls=tls, request_timeout=request_timeout)
        # A member without a leader refuses at once; at startup (a whole cluster booting
        # after a power cut) wait for a leader as long as one request may take, so a
        # supervisor restarting the caller does not spin.
        deadline = asyncio.get_running_loop().time() + request_timeout
        try:
            while True:
                try:
                    await store.current_revision()
                    return store
                except EtcdNoQuorum:
                    if asyncio.get_running_loop().time() >= deadline:
                        raise
                await asyncio.sleep(QUORUM_PROBE_INTERVAL)
        except BaseException:
            await store.close()
            raise

    def _sessions(self) -> tuple[aiohttp.ClientSession, aiohttp.ClientSession]:
        if self._closed:
            raise StoreError("store is closed")
        if self._session is None or self._watch_session is None:
            ssl_ctx: ssl.SSLContext | bool = self._tls.context() if self._tls else True
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=64),
                timeout=aiohttp.ClientTimeout(
                    total=self._timeout, sock_connect=min(CONNECT_TIMEOUT, self._timeout)
                ),
            )
            # Watches hold a connection each for as long as they live: their own pool, no cap
            # and no total timeout (only a connect timeout).
            self._watch_session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=0),
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=min(CONNECT_TIMEOUT, self._timeout)
                ),
            )
        return self._session, self._watch_session

    def _endpoint_order(self) -> builtins.list[int]:
        n = len(self.endpoints)
        return [(self._preferred + i) % n for i in range(n)]

    async def _call(self, path: str, body: Json) -> Json:
        """POST ``body`` to ``path``; fail over to the next endpoint only if connecting fails."""
        session, _ = self._sessions()
        data = orjson.dumps(body)
        write = path != "/v3/kv/range"  # may have been applied if it fails once sent
        last: Exception | None = None
        for i in self._endpoint_order():
            endpoint = self.endpoints[i]
            try:
                status, payload = await self._post_while_led(session, i, path, data)
            except _NOT_SENT as exc:
                last = exc
                continue
            except _LeaderLost:
                raise EtcdNoQuorum(endpoint, outcome_unknown=write) from None
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise EtcdUnavailable(
                    f"the datastore did not answer: etcd request {path} to {endpoint} "
                    f"failed: {exc!r}",
                    outcome_unknown=write,
                    summary="the datastore did not answer",
                ) from exc
            self._preferred = i
            try:
                answer: Json = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise EtcdError(f"etcd {path}: HTTP {status}, not JSON: {payload[:200]!r}") from exc
            if status != 200 or "error" in answer:
                message = str(answer.get("message") or answer.get("error") or payload[:200])
                if status == 503 or answer.get("code") in _UNAVAILABLE_CODES:
                    raise _unavailable(endpoint, message, write=write)
                raise _EtcdCallError(path, status, message)
            return answer
        raise EtcdUnavailable(
            f"the datastore is unreachable: no etcd endpoint reachable "
            f"({', '.join(self.endpoints)}): {last}; check that etcd is running and the "
            "endpoints/TLS settings are right",
            summary="the datastore is unreachable",
        )

    async def _post_while_led(
        self, session: aiohttp.ClientSession, i: int, path: str, data: bytes
    ) -> tuple[int, bytes]:
        """POST to endpoint ``i``; raise :class:`_LeaderLost` if the member loses its leader
        while the request waits (etcd would hold it until its own request timeout)."""

        async def post() -> tuple[int, bytes]:
            url = self.endpoints[i] + path
            async with session.post(url, data=data, headers=REQUIRE_LEADER) as resp:
                return resp.status, await resp.read()

        request = asyncio.ensure_future(post())
        try:
            while True:
                done, _ = await asyncio.wait((request,), timeout=QUORUM_PROBE_INTERVAL)
                if done:
                    return request.result()
                if not await self._has_leader(i):
                    raise _LeaderLost
        finally:
            if not request.done():
                request.cancel()
                await asyncio.wait((request,))

    async def _has_leader(self, i: int) -> bool:
        """False only when member ``i`` says it has no leader. One probe per member at a
        time, shared by every waiting request, on the watch session (whose connections are
        not capped, so stuck requests cannot starve the probe)."""
        probe = self._probes.get(i)
        if probe is None or probe.done():
            probe = asyncio.ensure_future(self._probe_leader(i))
            self._probes[i] = probe
        return await asyncio.shield(probe)

    async def _probe_leader(self, i: int) -> bool:
        _, session = self._sessions()
        try:
            async with session.post(
                self.endpoints[i] + "/v3/maintenance/status",
                data=b"{}",
                headers=REQUIRE_LEADER,
                timeout=aiohttp.ClientTimeout(total=2 * QUORUM_PROBE_INTERVAL),
            ) as resp:
                payload = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            return True  # no proof of a lost leader: the request's own timeout decides
        return not (status == 503 and _NO_LEADER.encode() in payload)

    @contextlib.asynccontextmanager
    async def raw_stream(self, path: str, body: Json) -> AsyncIterator[AsyncIterator[Json]]:
        """POST ``body`` to a streaming gateway ``path`` (e.g. ``/v3/maintenance/snapshot``)
        and yield its messages; the first reachable endpoint answers."""
        _, session = self._sessions()
        data = orjson.dumps(body)
        last: Exception | None = None
        for i in self._endpoint_order():
            try:
                resp = await session.post(self.endpoints[i] + path, data=data)
            except _NOT_SENT as exc:
                last = exc
                continue
            try:
                if resp.status != 200:
                    text = await resp.text()
                    raise EtcdError(f"etcd {path}: HTTP {resp.status}: {text[:200]}")
                async with contextlib.aclosing(_messages(resp)) as messages:
                    yield messages
                return
            finally:
                resp.close()
        raise EtcdError(f"no etcd endpoint reachable ({', '.join(self.endpoints)}): {last}")

    async def _compact_revision(self) -> int:
        """etcd reports the compaction point only to watches that start below it."""
        _, session = self._sessions()
        body = orjson.dumps({"create_request": {"key": b64(b"\0"), "start_revision": "1"}})
        for i in self._endpoint_order():
            try:
                async with (
                    session.post(self.endpoints[i] + "/v3/watch", data=body) as resp,
                    contextlib.aclosing(_messages(resp)) as messages,
                    asyncio.timeout(self._timeout),
                ):
                    async for message in messages:
                        result = message.get("result", {})
                        if result.get("canceled"):
                            return int(result.get("compact_revision", 0))
                        if not result.get("created"):
                            return 0
            except _NOT_SENT:
                continue
        return 0

    async def _translate(self, err: _EtcdCallError, requested: int) -> StoreError:
        if _COMPACTED in err.message:
            return Compacted(requested, await self._compact_revision())
        if _FUTURE in err.message:
            return FutureRevision(requested, await self.current_revision())
        return EtcdError(str(err))

    # -- reads ---------------------------------------------------------------------------

    async def current_revision(self) -> int:
        answer = await self._call(
            "/v3/kv/range", {"key": b64(b"\0"), "keys_only": True, "limit": "1"}
        )
        return header_revision(answer)

    async def get(self, key: str) -> KeyValue | None:
        answer = await self._call("/v3/kv/range", {"key": b64(key.encode())})
        kvs = answer.get("kvs") or []
        return decode_kv(kvs[0]) if kvs else None

    async def list(
        self, prefix: str, *, revision: int = 0, limit: int = 0, start_after: str = ""
    ) -> ListResult:
        body = list_request(prefix, revision=revision, limit=limit, start_after=start_after)
        try:
            answer = await self._call("/v3/kv/range", body)
        except _EtcdCallError as err:
            raise await self._translate(err, revision) from None
        items = [decode_kv(kv) for kv in answer.get("kvs") or []]
        return ListResult(
            items=items,
            revision=revision or header_revision(answer),
            more=bool(answer.get("more")),
        )

    # -- writes --------------------------------------------------------------------------

    async def _txn(self, key: str, compare: builtins.list[Json], success: Json) -> Json:
        k = b64(key.encode())
        body = {
            "compare": [{"key": k, **c} for c in compare],
            "success": [success],
            "failure": [{"request_range": {"key": k}}],
        }
        try:
            return await self._call("/v3/kv/txn", body)
        except _EtcdCallError as err:
            raise EtcdError(str(err)) from None

    @staticmethod
    def _current(answer: Json) -> KeyValue | None:
        kvs = answer["responses"][0]["response_range"].get("kvs") or []
        return decode_kv(kvs[0]) if kvs else None

    async def create(self, key: str, value: bytes, *, ttl: int = 0) -> KeyValue:
        put: Json = {"key": b64(key.encode()), "value": b64(value)}
        absent = [{"target": "CREATE", "result": "EQUAL", "create_revision": "0"}]
        answer = await self._put(key, absent, put, ttl)
        if not answer.get("succeeded"):
            raise KeyExists(key)
        rev = header_revision(answer)
        return KeyValue(key, value, rev, rev)

    async def update(
        self, key: str, value: bytes, *, expected_revision: int, ttl: int = 0
    ) -> KeyValue:
        put: Json = {"key": b64(key.encode()), "value": b64(value), "prev_kv": True}
        answer = await self._put(key, self._cas(expected_revision, always=True), put, ttl)
        if not answer.get("succeeded"):
            raise self._failure(key, answer)
        prev = decode_kv(answer["responses"][0]["response_put"]["prev_kv"])
        return KeyValue(key, value, prev.create_revision, header_revision(answer))

    async def _put(self, key: str, compare: builtins.list[Json], put: Json, ttl: int) -> Json:
        """The put transaction, attached to a lease when ``ttl`` > 0 (without one, a put
        detaches the key from any lease it had: it no longer expires)."""
        if ttl <= 0:
            return await self._txn(key, compare, {"request_put": put})
        for attempt in range(2):
            lease = await self._lease(ttl)
            try:
                return await self._txn(key, compare, {"request_put": {**put, "lease": lease.id}})
            except EtcdError as exc:
                if _LEASE_GONE not in str(exc) or attempt:
                    raise
                # Revoked or expired under us (etcd restored, clock jump): nothing was
                # written; take a new lease.
                if self._leases.get(ttl) is lease:
                    del self._leases[ttl]
        raise AssertionError("unreachable")

    async def _lease(self, ttl: int) -> _Lease:
        loop = asyncio.get_running_loop()
        lease = self._leases.get(ttl)
        if lease is not None and lease.reusable_until > loop.time() and lease.keys < LEASE_MAX_KEYS:
            lease.keys += 1
            return lease
        granting = self._granting.get(ttl)
        if granting is None:  # one grant at a time per ttl, shared by the writes waiting
            granting = loop.create_future()
            self._granting[ttl] = granting
            try:
                window = lease_window(ttl)
                answer = await self._call("/v3/lease/grant", {"TTL": str(ttl + window)})
                fresh = _Lease(str(answer["ID"]), loop.time() + window)
                self._leases[ttl] = fresh
                granting.set_result(fresh)
            except BaseException as exc:
                # Waiters (if any) fail too, but are not cancelled by the granting caller's
                # cancellation; nothing was written for any of them.
                if isinstance(exc, asyncio.CancelledError):
                    exc = EtcdUnavailable("the etcd lease grant was cancelled")
                granting.set_exception(exc)
                granting.exception()  # retrieved: no warning when nobody waits
                raise
            finally:
                del self._granting[ttl]
        lease = await asyncio.shield(granting)
        lease.keys += 1
        return lease

    async def delete(self, key: str, *, expected_revision: int = 0) -> KeyValue:
        delete = {"request_delete_range": {"key": b64(key.encode()), "prev_kv": True}}
        answer = await self._txn(key, self._cas(expected_revision, always=False), delete)
        if not answer.get("succeeded"):
            raise self._failure(key, answer)
        prev = decode_kv(answer["responses"][0]["response_delete_range"]["prev_kvs"][0])
        return KeyValue(key, prev.value, prev.create_revision, header_revision(answer))

    @staticmethod
    def _cas(expected: int, *, always: bool) -> builtins.list[Json]:
        compare: builtins.list[Json] = [{"target": "VERSION", "result": "GREATER", "version": "0"}]
        if expected or always:
            compare.append({"target": "MOD", "result": "EQUAL", "mod_revision": str(expected)})
        return compare

    def _failure(self, key: str, answer: Json) -> StoreError:
        current = self._current(answer)
        return KeyNotFound(key) if current is None else Conflict(key, current)

    # -- watch and compaction ------------------------------------------------------------

    def watch(self, prefix: str, *, revision: int) -> Watch:
        return _EtcdWatch(self, prefix, revision)

    async def compact(self, revision: int) -> None:
        try:
            await self._call("/v3/kv/compaction", {"revision": str(revision), "physical": True})
        except _EtcdCallError as err:
            if _COMPACTED in err.message:
                return  # already compacted at or beyond this revision
            raise await self._translate(err, revision) from None

    async def close(self) -> None:
        self._closed = True
        for probe in self._probes.values():
            probe.cancel()
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()
        self._session = self._watch_session = None


class _LeaderLost(Exception):
    """The member lost its leader while a request waited."""


def _unavailable(endpoint: str, message: str, *, write: bool) -> EtcdUnavailable:
    """etcd's UNAVAILABLE / DEADLINE_EXCEEDED answers: "no leader" (refused before anything
    was proposed), "request timed out", "leader changed", "too many requests" ..."""
    if _NO_LEADER in message:
        return EtcdNoQuorum(endpoint)
    return EtcdUnavailable(
        f"the datastore cannot serve now: etcd member {endpoint}: {message} (it may have "
        "lost its quorum)",
        outcome_unknown=write,
        summary="the datastore cannot serve now",
    )


class _EtcdCallError(EtcdError):
    def __init__(self, path: str, status: int, message: str) -> None:
        super().__init__(f"etcd {path}: HTTP {status}: {message}")
        self.message = message


async def _messages(resp: aiohttp.ClientResponse) -> AsyncGenerator[Json, None]:
    """The newline-delimited JSON messages of a gateway stream (any size: aiohttp's readline
    refuses lines over 128 KiB, and a watch message can hold several MiB of objects)."""
    buffer = b""
    async for chunk in resp.content.iter_any():
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0:
            line, buffer = buffer[:end], buffer[end + 1 :]
            if line.strip():
                yield orjson.loads(line)
    if buffer.strip():
        yield orjson.loads(buffer)


class _EtcdWatch:
    """One ``/v3/watch`` stream, reopened from the last delivered revision if it breaks."""

    def __init__(self, store: EtcdStore, prefix: str, revision: int) -> None:
        self._store = store
        self._prefix = prefix
        self._delivered = revision
        self._pending: builtins.list[Event] = []
        self._resp: aiohttp.ClientResponse | None = None
        self._stream: AsyncGenerator[Json, None] | None = None
        self._closed = False

    def __aiter__(self) -> _EtcdWatch:
        return self

    async def __anext__(self) -> Event:
        reconnects = 0
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                event = self._pending.pop(0)
                self._delivered = event.kv.mod_revision
                return event
            try:
                if self._stream is None:
                    self._stream = await self._connect()
                message = await self._stream.__anext__()
            except (aiohttp.ClientError, StopAsyncIteration, TimeoutError) as exc:
                await self._disconnect()
                reconnects += 1
                if self._closed or reconnects > WATCH_RECONNECTS:
                    if self._closed:
                        raise StopAsyncIteration from None
                    raise EtcdError(f"watch on {self._prefix!r} lost: {exc!r}") from exc
                await asyncio.sleep(0.1 * reconnects)
                continue
            try:
                self._handle(message)
            except StoreError:
                await self.aclose()
                raise

    def _handle(self, message: Json) -> None:
        if "error" in message:
            raise EtcdError(f"watch on {self._prefix!r}: {message['error']}")
        result: Json = message.get("result", {})
        if result.get("canceled"):
            compacted = int(result.get("compact_revision", 0))
            if compacted:
                raise Compacted(self._delivered, compacted)
            reason = result.get("cancel_reason", "canceled by etcd")
            raise EtcdError(f"watch on {self._prefix!r}: {reason}")
        for raw in result.get("events") or []:
            event = decode_event(raw)
            if event.kv.mod_revision > self._delivered:
                self._pending.append(event)

    async def _connect(self) -> AsyncGenerator[Json, None]:
        store = self._store
        _, session = store._sessions()
        key = self._prefix.encode()
        body = orjson.dumps(
            {
                "create_request": {
                    "key": b64(key or b"\0"),
                    "range_end": b64(prefix_range_end(key)),
                    "start_revision": str(self._delivered + 1),
                    "prev_kv": True,
                }
            }
        )
        last: Exception | None = None
        for i in store._endpoint_order():
            try:
                resp = await session.post(store.endpoints[i] + "/v3/watch", data=body)
            except _NOT_SENT as exc:
                last = exc
                continue
            if resp.status != 200:
                text = await resp.text()
                resp.release()
                raise EtcdError(f"watch on {self._prefix!r}: HTTP {resp.status}: {text[:200]}")
            self._resp = resp
            return _messages(resp)
        raise aiohttp.ClientConnectionError(f"no etcd endpoint reachable: {last}")

    async def _disconnect(self) -> None:
        stream, resp = self._stream, self._resp
        self._stream = self._resp = None
        closed: asyncio.Future[None] | None = None
        if resp is not None:
            # Abort the connection first: a task blocked reading the stream then fails
            # promptly (and, seeing the watch closed, stops).
            protocol = resp.connection.protocol if resp.connection is not None else None
            closed = protocol.closed if protocol is not None else None
            if protocol is not None:
                protocol.abort()
            resp.close()
        if stream is not None:
            # Raises RuntimeError if another task is inside the generator right now; that
            # task finishes it instead.
            with contextlib.suppress(RuntimeError):
                await stream.aclose()
        if closed is not None:
            # Wait until the transport is really gone: a TLS transport otherwise finishes
            # closing only in a later loop iteration, which may never come if the caller is
            # shutting its event loop down.
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                await asyncio.wait_for(asyncio.shield(closed), 1.0)

    async def aclose(self) -> None:
        self._closed = True
        self._pending.clear()
        await self._disconnect()
