"""Python ↔ Python Grenache RPC and Link against real Grape processes (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from grenache import GrapeError, Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.grapes import GrapeNetwork, free_port

pytestmark = pytest.mark.timeout(60)

MakeServer = Callable[..., Awaitable[PeerRPCServer]]

PROMPT = 5.0  # seconds within which a server must answer anything, even garbage


def unique(name: str) -> str:
    """A service name no other test (or earlier run against the same Grapes) uses."""
    return f"test:{name}:{uuid.uuid4().hex[:8]}"


async def wait_for(
    probe: Callable[[], Awaitable[Any]], *, deadline: float = 15.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll ``probe`` until it returns something truthy; fail the test after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        try:
            last = await probe()
        except GrapeError as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline} s waiting for {what or probe}: last={last!r}")
        await asyncio.sleep(interval)


async def wait_dests(link: Link, key: str, n: int, deadline: float = 15.0) -> list[str]:
    async def probe() -> list[str] | None:
        dests = await link.lookup(key, cache=False)
        return dests if len(dests) >= n else None

    return list(await wait_for(probe, deadline=deadline, what=f"{n} destinations of {key}"))


@pytest.fixture
async def link(grapes: GrapeNetwork) -> AsyncIterator[Link]:
    async with Link(grapes.urls[0]) as lk:
        yield lk


@pytest.fixture
async def client_link(grapes: GrapeNetwork) -> AsyncIterator[Link]:
    """A Link to the *other* Grape, so lookups really cross the DHT."""
    async with Link(grapes.urls[1]) as lk:
        yield lk


@pytest.fixture
async def client(client_link: Link) -> AsyncIterator[PeerRPCClient]:
    c = PeerRPCClient(client_link)
    yield c
    await c.stop()


@pytest.fixture
async def make_server(link: Link) -> AsyncIterator[MakeServer]:
    """Factory: a listening echo server (key ``echo`` unless told otherwise); stopped at teardown."""
    servers: list[PeerRPCServer] = []

    async def make(*keys: str, **kwargs: Any) -> PeerRPCServer:
        server = PeerRPCServer(link, **kwargs)
        servers.append(server)

        async def echo(payload: Any) -> Any:
            return {"from": "python", "port": server.port, "got": payload}

        for key in keys or ("echo",):
            server.add_handler(key, echo)
        await server.listen(0)
        return server

    yield make
    for server in servers:
        await server.stop()


# raw HTTP --------------------------------------------------------------------------------------------
class RawHTTP:
    """A bare HTTP/1.1 connection, to send what a well-behaved client never would."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> RawHTTP:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, body: bytes, headers: dict[str, str] | None = None) -> None:
        head = f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(PROMPT):
            status_line = await self.reader.readuntil(b"\r\n")
            status = int(status_line.split()[1])
            headers: dict[str, str] = {}
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers["content-length"]))
        return status, headers, body

    async def exchange(self, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        self.send(body, headers)
        status, _, reply = await self.response()
        return status, reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def raw_request(port: int, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = await RawHTTP.open(port)
    try:
        return await conn.exchange(body, headers)
    finally:
        await conn.close()


# RPC -------------------------------------------------------------------------------------------------
async def test_request_and_map(link: Link, client: PeerRPCClient) -> None:
    key = unique("echo")
    servers = []
    for name in ("a", "b"):
        server = PeerRPCServer(link)
        servers.append(server)

        @server.handle(key)
        async def echo(payload: Any, name: str = name) -> Any:
            return {"server": name, "got": payload}

        await server.listen(0)
        await server.announce(key)
    try:
        await wait_dests(client.link, key, 2)
        result = await client.request(key, {"msg": "hello"}, timeout=10)
        assert result["got"] == {"msg": "hello"}
        assert result["server"] in ("a", "b")

        results = await client.map(key, {"msg": "all"}, timeout=10)
        assert sorted(r["server"] for r in results) == ["a", "b"]
        assert all(r["got"] == {"msg": "all"} for r in results)
    finally:
        for server in servers:
            await server.stop()


async def test_payload_types_roundtrip(make_server: MakeServer) -> None:
    server = await make_server()
    c = PeerRPCClient(server.link)
    try:
        for payload in [None, "hello", 0, 1.5, [1, "two", None], {"nested": {"ü": "✓"}}]:
            got = await c.request_dest(f"127.0.0.1:{server.port}", "echo", payload, timeout=5)
            assert got["got"] == payload
    finally:
        await c.stop()


async def test_rpc_error_code_delivered(link: Link, client: PeerRPCClient) -> None:
    key = unique("fail")
    server = PeerRPCServer(link)

    @server.handle(key)
    async def fail(payload: Any) -> Any:
        if payload == "bare":
            raise RPCError("ERR_SOMETHING_BAD")
        raise RPCError("ERR_SOMETHING_BAD", "because of reasons")

    await server.listen(0)
    await server.announce(key)
    try:
        await wait_dests(client.link, key, 1)
        with pytest.raises(RPCError) as info:
            await client.request(key, "bare", timeout=10)
        assert info.value.code == "ERR_SOMETHING_BAD"
        assert info.value.message == "ERR_SOMETHING_BAD"
        assert info.value.dest == f"127.0.0.1:{server.port}"

        with pytest.raises(RPCError) as info:
            await client.request(key, "explained", timeout=10)
        assert info.value.code == "ERR_SOMETHING_BAD"
        assert info.value.message == "because of reasons"

        # map reports the error per destination instead of failing as a whole
        [outcome] = await client.map(key, "bare", timeout=10)
        assert isinstance(outcome, RPCError)
        assert outcome.code == "ERR_SOMETHING_BAD"
    finally:
        await server.stop()


async def test_handler_exception_becomes_internal_error(link: Link) -> None:
    server = PeerRPCServer(link)

    @server.handle("boom")
    async def boom(payload: Any) -> Any:
        raise ValueError("secret detail")

    await server.listen(0)
    c = PeerRPCClient(link)
    try:
        with pytest.raises(RPCError) as info:
            await c.request_dest(f"127.0.0.1:{server.port}", "boom", {}, timeout=5)
        assert info.value.code == "ERR_INTERNAL"
        assert "secret" not in str(info.value)
    finally:
        await c.stop()
        await server.stop()


async def test_unknown_key(link: Link, client: PeerRPCClient) -> None:
    key = unique("unhandled")
    server = PeerRPCServer(link)

    @server.handle("something-else")
    async def other(payload: Any) -> Any:
        return None

    await server.listen(0)
    await server.announce(key)  # announced, but no handler for it
    try:
        await wait_dests(client.link, key, 1)
        with pytest.raises(RPCError) as info:
            await client.request(key, {}, timeout=10)
        assert info.value.code == "ERR_UNKNOWN_SERVICE"
    finally:
        await server.stop()


async def test_gzip_both_ways(make_server: MakeServer, client: PeerRPCClient) -> None:
    key = unique("gzip")
    server = await make_server("echo", key)
    await server.announce(key)
    await wait_dests(client.link, key, 1)
    big = {"blob": "grenache " * 50_000, "n": list(range(1000))}  # ~450 KB of JSON
    result = await client.request(key, big, timeout=10, compress=True)
    assert result["got"] == big
    [mapped] = await client.map(key, big, timeout=10, compress=True)
    assert mapped["got"] == big

    # on the wire: a gzipped request gets a gzipped reply (no Content-Encoding), as Node does
    request = json.dumps(["rid-gz", "echo", big]).encode()
    conn = await RawHTTP.open(server.port)
    try:
        conn.send(gzip.compress(request), {"grc-compress": "gzip"})
        status, headers, reply = await conn.response()
    finally:
        await conn.close()
    assert status == 200
    assert "content-encoding" not in headers
    assert reply[:2] == b"\x1f\x8b"
    assert len(reply) < len(request) // 10
    rid, err, res = json.loads(gzip.decompress(reply))
    assert (rid, err, res["got"]) == ("rid-gz", None, big)


async def test_client_timeout(link: Link, client: PeerRPCClient) -> None:
    key = unique("slow")
    server = PeerRPCServer(link)
    release = asyncio.Event()

    @server.handle(key)
    async def slow(payload: Any) -> Any:
        async with asyncio.timeout(30):
            await release.wait()
        return "late"

    await server.listen(0)
    await server.announce(key)
    try:
        await wait_dests(client.link, key, 1)
        started = time.monotonic()
        with pytest.raises(RPCError) as info:
            await client.request(key, {}, timeout=0.5)
        elapsed = time.monotonic() - started
        assert info.value.code == "ERR_TIMEOUT"
        assert 0.4 < elapsed < 2.0

        started = time.monotonic()
        [outcome] = await client.map(key, {}, timeout=0.5)
        assert isinstance(outcome, RPCError)
        assert outcome.code == "ERR_TIMEOUT"
        assert time.monotonic() - started < 2.0
    finally:
        release.set()
        await server.stop()


# malformed input never hangs ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "headers", "rid"),
    [
        pytest.param(b"this is not json", {}, None, id="not-json"),
        pytest.param(b"", {}, None, id="empty"),
        pytest.param(b'{"rid": 1, "key": "echo"}', {}, None, id="object-not-array"),
        pytest.param(b'"just a string"', {}, None, id="string-not-array"),
        pytest.param(b'["rid-1"]', {}, "rid-1", id="array-too-short"),
        pytest.param(b'["rid-2", 42, {}]', {}, "rid-2", id="key-not-string"),
        pytest.param(b'["rid-3", "echo", {}', {}, None, id="truncated-json"),
    ],
)
async def test_malformed_body_gets_prompt_error(
    make_server: MakeServer, body: bytes, headers: dict[str, str], rid: Any
) -> None:
    server = await make_server()
    status, reply = await raw_request(server.port, body, headers)
    assert status == 200
    got_rid, err, result = json.loads(reply)
    assert got_rid == rid
    assert err.startswith("ERR_BAD_REQUEST")
    assert result is None


async def test_bad_gzip_gets_prompt_error(make_server: MakeServer) -> None:
    server = await make_server()
    valid = gzip.compress(b'["rid-gz", "echo", {"a": 1}]')
    for body in (b"\x1f\x8b\x08\x00garbage-not-gzip", valid[: len(valid) // 2]):
        status, reply = await raw_request(server.port, body, {"grc-compress": "gzip"})
        assert status == 200
        got_rid, err, result = json.loads(gzip.decompress(reply))  # the reply to a gzip request is gzip
        assert got_rid is None
        assert err.startswith("ERR_BAD_REQUEST")
        assert result is None
    # a "gzip" request that is really plain JSON is parsed raw, as grenache-nodejs-http does
    status, reply = await raw_request(server.port, b'["rid-plain", "echo", 7]', {"grc-compress": "gzip"})
    assert json.loads(gzip.decompress(reply))[:2] == ["rid-plain", None]


async def test_oversize_body(make_server: MakeServer) -> None:
    server = await make_server(max_body=1024)
    dest = f"127.0.0.1:{server.port}"
    c = PeerRPCClient(server.link)
    try:
        assert (await c.request_dest(dest, "echo", "x" * 500, timeout=5))["got"] == "x" * 500
        with pytest.raises(RPCError) as info:
            await c.request_dest(dest, "echo", "x" * 4096, timeout=5)
        assert info.value.code == "ERR_REQUEST_TOO_LARGE"
        # a small gzip body that inflates past the limit is refused too
        with pytest.raises(RPCError) as info:
            await c.request_dest(dest, "echo", "x" * 100_000, timeout=5, compress=True)
        assert info.value.code == "ERR_REQUEST_TOO_LARGE"
        # and the server is still fine afterwards
        assert (await c.request_dest(dest, "echo", "ok", timeout=5))["got"] == "ok"
    finally:
        await c.stop()

    # raw: the oversize body is drained, answered, and the connection stays usable
    conn = await RawHTTP.open(server.port)
    try:
        status, reply = await conn.exchange(json.dumps(["big", "echo", "y" * 5000]).encode())
        assert status == 200
        rid, err, result = json.loads(reply)
        assert rid == "big"  # recovered from the start of the body, so Node clients can match it
        assert err.startswith("ERR_REQUEST_TOO_LARGE")
        assert result is None
        status, reply = await conn.exchange(b'["small", "echo", 1]')
        assert json.loads(reply)[:2] == ["small", None]
    finally:
        await conn.close()


@pytest.mark.parametrize("rid", [12345, "a-string-rid", "", 0, -7])
async def test_rid_echoed_exactly(make_server: MakeServer, rid: Any) -> None:
    server = await make_server()
    status, reply = await raw_request(server.port, json.dumps([rid, "echo", {"x": 1}]).encode())
    assert status == 200
    assert reply.startswith(b"[" + json.dumps(rid).encode() + b",null,")
    assert json.loads(reply)[2]["got"] == {"x": 1}
    # error replies echo it too
    status, reply = await raw_request(server.port, json.dumps([rid, "no-such-key", None]).encode())
    got_rid, err, _ = json.loads(reply)
    assert got_rid == rid and type(got_rid) is type(rid)
    assert err.startswith("ERR_UNKNOWN_SERVICE")


async def test_keep_alive_sequential_and_pipelined(make_server: MakeServer) -> None:
    server = await make_server()
    conn = await RawHTTP.open(server.port)
    try:
        for i in range(5):
            conn.send(json.dumps([i, "echo", i]).encode())
            status, headers, reply = await conn.response()
            assert status == 200
            assert headers["connection"] == "keep-alive"
            assert json.loads(reply)[0] == i
        # pipelined: three requests in one write, answered in order
        for i in range(10, 13):
            conn.send(json.dumps([i, "echo", i]).encode())
        assert [json.loads((await conn.response())[2])[0] for _ in range(3)] == [10, 11, 12]
        assert len(server._connections) == 1
    finally:
        await conn.close()


async def test_connection_refused_retried_elsewhere(link: Link, client: PeerRPCClient) -> None:
    key = unique("refused")
    server = PeerRPCServer(link)

    @server.handle(key)
    async def live(payload: Any) -> Any:
        return payload

    await server.listen(0)
    await server.announce(key)
    dead = free_port()  # nothing listens there
    assert await link.announce(key, dead) == 1
    dests = await wait_dests(client.link, key, 2)
    assert f"127.0.0.1:{dead}" in dests
    try:
        for i in range(20):
            client.link.forget(key)  # a fresh lookup with both destinations each time (a refusal prunes it)
            assert await client.request(key, i, timeout=5) == i
        client.link.forget(key)
        outcomes = await client.map(key, "m", timeout=5)
        assert len(outcomes) == 2
        refused = [o for o in outcomes if isinstance(o, RPCError)]
        assert [o.dest for o in refused] == [f"127.0.0.1:{dead}"]
        assert "m" in outcomes
    finally:
        await server.stop()


# Link ------------------------------------------------------------------------------------------------
async def test_lookup_empty_is_not_cached(link: Link, make_server: MakeServer) -> None:
    key = unique("late")
    with pytest.raises(GrapeError) as info:
        await link.lookup(key)
    assert info.value.code == "ERR_GRAPE_LOOKUP_EMPTY"
    server = await make_server()
    await link.announce(key, server.port)
    assert await link.lookup(key) == [f"127.0.0.1:{server.port}"]  # right away, no stale empty answer


@pytest.mark.parametrize("port", [0, -1, 70000, "1337", 1337.5, True, None])
async def test_announce_bad_port(link: Link, port: Any) -> None:
    with pytest.raises(GrapeError) as info:
        await link.announce(unique("badport"), port)
    assert info.value.code == "ERR_GRAPE_SERVICE_PORT"


async def test_announce_bad_name(link: Link) -> None:
    with pytest.raises(GrapeError):
        await link.announce("", 1234)
    with pytest.raises(GrapeError):
        await link.lookup("")


async def test_put_get_roundtrip(link: Link, client_link: Link) -> None:
    value = f"hello grenache {uuid.uuid4()}"
    key = await link.put(value)
    raw = value.encode()
    assert key == hashlib.sha1(b"%d:%s" % (len(raw), raw)).hexdigest()
    item = await link.get(key)
    assert item is not None and item["v"] == value
    item = await client_link.get(key)  # from the other Grape, through the DHT
    assert item is not None and item["v"] == value
    assert await link.get(hashlib.sha1(uuid.uuid4().bytes).hexdigest()) is None


async def test_unreachable_grape() -> None:
    async with Link(f"http://127.0.0.1:{free_port()}", request_timeout=2) as lk:
        with pytest.raises(GrapeError) as info:
            await lk.lookup("anything")
        assert info.value.code == "ERR_GRAPE_UNREACHABLE"


async def test_service_vanishes_after_it_stops_announcing(fast_expiry_grapes: GrapeNetwork) -> None:
    key = unique("vanish")
    async with (
        Link(fast_expiry_grapes.urls[0], announce_interval=0.5) as link,
        Link(fast_expiry_grapes.urls[1]) as other,
    ):
        server = PeerRPCServer(link)

        @server.handle(key)
        async def ping(payload: Any) -> Any:
            return "pong"

        await server.listen(0)
        await server.announce(key)
        try:
            await wait_dests(other, key, 1)
            client = PeerRPCClient(other)
            assert await client.request(key, None, timeout=5) == "pong"
            await client.stop()
            # re-announcing every ~0.5 s keeps the record alive well past the 3 s expiry
            stay_until = time.monotonic() + 4.5
            while time.monotonic() < stay_until:
                assert await other.lookup(key, cache=False) == [f"127.0.0.1:{server.port}"]
                await asyncio.sleep(0.5)
        finally:
            await server.stop()

        async def gone() -> bool:
            try:
                await other.lookup(key, cache=False)
            except GrapeError as exc:
                assert exc.code == "ERR_GRAPE_LOOKUP_EMPTY"
                return True
            return False

        started = time.monotonic()
        await wait_for(gone, deadline=30, interval=0.25, what="the record to expire")
        assert time.monotonic() - started < 30


async def test_restarted_grapes_get_our_announcement_back_at_the_next_lookup() -> None:
    """Restarted Grapes have forgotten every record. The periodic re-announce (here every 5–15 min)
    would bring ours back much later; a lookup that does not list us brings every one of ours forward
    (the Grape lost them all), also those we never look up ourselves."""
    key, other = unique("comeback"), unique("comeback-too")
    with GrapeNetwork(2) as net:
        async with Link(net.urls[0], announce_interval=600, reannounce_gap=0.2) as link:
            server = PeerRPCServer(link)

            @server.handle(key)
            async def ping(payload: Any) -> Any:
                return "pong"

            await server.listen(0)
            assert isinstance(await server.announce(key), int)  # not "No nodes": no quick retries
            assert isinstance(await server.announce(other), int)
            me = f"127.0.0.1:{server.port}"
            try:
                assert await wait_dests(link, key, 1) == [me]
                for i in (0, 1):
                    await asyncio.to_thread(net.restart, i)
                with pytest.raises(GrapeError) as info:  # forgotten; and this lookup notices it
                    await link.lookup(key, cache=False)
                assert info.value.code == "ERR_GRAPE_LOOKUP_EMPTY"
                async with Link(net.urls[1]) as observer:  # looks up the other name, from elsewhere
                    assert await wait_dests(observer, other, 1, deadline=20) == [me]
                assert await wait_dests(link, key, 1, deadline=20) == [me]
            finally:
                await server.stop()


def test_under_uvloop(grapes: GrapeNetwork) -> None:
    """uvloop's transports are not asyncio.Transport subclasses; server and client must not care."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> tuple[Any, Any]:
        async with Link(grapes.urls[0]) as link:
            key = unique("uvloop")
            server = PeerRPCServer(link)

            @server.handle(key)
            async def echo(payload: Any) -> Any:
                return payload

            await server.listen(0)
            await server.announce(key)
            client = PeerRPCClient(link)
            try:
                await wait_dests(link, key, 1)
                plain = await client.request(key, {"n": 1}, timeout=5)
                zipped = await client.request(key, {"n": 2}, timeout=5, compress=True)
                return plain, zipped
            finally:
                await client.stop()
                await server.stop()

    assert uvloop.run(main()) == ({"n": 1}, {"n": 2})


async def test_a_caller_giving_up_does_not_cancel_a_shared_lookup(grapes: GrapeNetwork) -> None:
    """Concurrent lookups of one name share a Grape request; one caller's timeout must not cancel it
    for the others."""
    async with Link(grapes.urls[0]) as link:
        name = f"shared-{uuid.uuid4().hex[:8]}"
        await link.announce(name, 4321)
        impatient = asyncio.ensure_future(asyncio.wait_for(link.lookup(name, cache=False), 0.0001))
        patient = asyncio.ensure_future(link.lookup(name, cache=False))
        with pytest.raises(TimeoutError):
            await impatient
        assert await patient == ["127.0.0.1:4321"]


async def test_a_timed_out_request_keeps_its_connection_for_the_late_reply(
    make_server: MakeServer, link: Link
) -> None:
    """A request that times out does not close its connection: the late reply is read and the
    connection is reused, so a slow moment over TLS does not cost a new handshake per request."""
    server = await make_server("never-mind")
    slow = asyncio.Event()

    async def sluggish(payload: Any) -> Any:
        if payload == "slow":
            await asyncio.sleep(0.4)
            slow.set()
        return payload

    server.add_handler("sluggish", sluggish)
    dest = f"127.0.0.1:{server.port}"
    c = PeerRPCClient(link)
    try:
        assert await c.request_dest(dest, "sluggish", "warm", timeout=5) == "warm"
        pool = c._pools[dest]
        (first,) = pool.idle
        with pytest.raises(RPCError) as err:
            await c.request_dest(dest, "sluggish", "slow", timeout=0.1)
        assert err.value.code == "ERR_TIMEOUT"
        assert not first.lost and pool.busy == 1  # waiting on for the reply, not closed
        await asyncio.wait_for(slow.wait(), 5)
        await wait_for(lambda: _async(pool.busy == 0 and len(pool.idle) == 1), what="the late reply")
        assert await c.request_dest(dest, "sluggish", "again", timeout=5) == "again"
        assert list(pool.idle) == [first]  # the same connection throughout
    finally:
        await c.stop()


async def _async(value: Any) -> Any:
    return value
