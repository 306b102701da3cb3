"""Streaming on the HTTP transport (grenache-nodejs-http's ``peer.stream`` and ``_gr`` header): a Node
streaming client against our streaming and buffered handlers, our streaming client against our server
(full duplex) and against the Node server, backpressure, and a bad ``_gr`` header."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from grenache import Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.grapes import GrapeNetwork
from grenache.limits import KiB, MiB, ServerLimits
from grenache.server import Request, RequestStream, StreamReply

from .nodeproc import need_node, node_run, node_server
from .test_limits import Raw
from .test_rpc import wait_dests

pytestmark = pytest.mark.timeout(60)
need_node("grenache-nodejs-http")


def unique(name: str) -> str:
    return f"stream:{name}:{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def link(grapes: GrapeNetwork) -> AsyncIterator[Link]:
    async with Link(grapes.urls[0]) as lk:
        yield lk


async def streaming_server(link: Link, key: str, **kwargs: Any) -> tuple[PeerRPCServer, list[float]]:
    """A server whose ``key`` handler reads the body as it arrives; returns the arrival times too."""
    server = PeerRPCServer(link, **kwargs)
    arrivals: list[float] = []

    @server.handle_stream(key)
    async def upload(stream: RequestStream) -> Any:
        parts = []
        async for chunk in stream:
            arrivals.append(time.monotonic())
            parts.append(chunk)
        body = b"".join(parts)
        request = stream.request
        return {"text": body.decode(), "chunks": len(parts), "action": request.action, "args": request.args}

    @server.handle(key + ":buffered")
    async def buffered(payload: Any, request: Request) -> Any:
        return {"got": payload, "rid": request.rid, "stream": request.is_stream, "action": request.action}

    await server.listen(0)
    await server.announce(key)
    await server.announce(key + ":buffered")
    return server, arrivals


async def test_node_stream_client_python_server(grapes: GrapeNetwork, link: Link) -> None:
    key = unique("node")
    server, arrivals = await streaming_server(link, key)
    try:
        async with Link(grapes.urls[1]) as other:
            await wait_dests(other, key, 1)
            await wait_dests(other, key + ":buffered", 1)
        chunks = ["alpha-", "beta-", "gamma-", "delta"]
        out = await node_run("stream_client.js", grapes.urls[1], key, *chunks)
        rid, err, result = json.loads(out)
        assert isinstance(rid, str) and err is None  # the rid Node put in _gr
        assert result["text"] == "".join(chunks)
        assert (result["action"], result["args"]) == ("upload", {"n": 1})
        # handed over chunk by chunk (that each is handed over before the body ends is shown, without
        # timing, by test_python_stream_full_duplex)
        assert result["chunks"] >= 2 and len(arrivals) == result["chunks"]
        # a buffered handler: rid and key from _gr, payload = body[2], as grenache-nodejs-http does
        out = await node_run(
            "stream_client.js", grapes.urls[1], key + ":buffered", '["x", "y", ', '{"a": 1}]'
        )
        rid, err, result = json.loads(out)
        assert err is None
        assert result == {"got": {"a": 1}, "rid": rid, "stream": True, "action": "upload"}
    finally:
        await server.stop()


async def test_python_stream_full_duplex(link: Link) -> None:
    key = unique("duplex")
    server = PeerRPCServer(link)

    @server.handle_stream(key)
    async def shout(stream: RequestStream) -> StreamReply:
        async def upper() -> AsyncIterator[bytes]:
            async for chunk in stream:
                yield chunk.upper()

        return StreamReply(upper())

    await server.listen(0)
    await server.announce(key)
    client = PeerRPCClient(link)
    try:
        await wait_dests(link, key, 1)
        async with client.stream(key, headers={"_a": "shout"}, timeout=10) as s:
            assert await s.status() == 200  # the reply started before the request's body
            replies = aiter(s)
            for word in (b"one", b"two", b"three"):
                await s.write(word)
                # the echo of each chunk arrives before the next one is written: both ways at once
                assert await asyncio.wait_for(anext(replies), 5) == word.upper()
            await s.end()
            assert [c async for c in replies] == []
    finally:
        await client.stop()
        await server.stop()


async def test_python_stream_client_node_server(grapes: GrapeNetwork, link: Link) -> None:
    key = unique("tonode")
    with node_server("server.js", grapes.urls[0], key):
        await wait_dests(link, key, 1)
        client = PeerRPCClient(link)
        try:
            async with client.stream(key, timeout=10) as s:
                for part in (b'["ignored", "ignored", ', b'{"x": ', b"1}]"):
                    await s.write(part)
                assert await s.reply() == {"from": "node", "got": {"x": 1}}
        finally:
            await client.stop()


async def test_python_stream_client_python_buffered_handler(link: Link) -> None:
    key = unique("buf")
    server, _ = await streaming_server(link, key)
    client = PeerRPCClient(link)
    try:
        dest = f"127.0.0.1:{server.port}"
        async with client.stream(key + ":buffered", dest=dest, headers={"_a": "put"}) as s:
            await s.write(b'[null, null, {"big": "')
            await s.write(b"z" * 100_000)
            await s.write(b'"}]')
            result = await s.reply()
        assert result["got"] == {"big": "z" * 100_000} and result["action"] == "put" and result["stream"]
        async with client.stream(key + ":nobody", dest=dest) as s:
            await s.write(b"[1, 2, 3]")
            with pytest.raises(RPCError) as info:
                await s.reply()
            assert info.value.code == "ERR_UNKNOWN_SERVICE"
    finally:
        await client.stop()
        await server.stop()


async def test_stream_backpressure_bounds_what_the_server_holds(link: Link) -> None:
    key = unique("slow")
    limits = ServerLimits(stream_buffer=128 * KiB)
    server = PeerRPCServer(link, limits=limits)
    release = asyncio.Event()
    seen: list[RequestStream] = []

    @server.handle_stream(key)
    async def slow(stream: RequestStream) -> Any:
        seen.append(stream)
        await release.wait()
        return len(await stream.read(64 * MiB))

    await server.listen(0)
    client = PeerRPCClient(link)
    try:
        async with client.stream(key, dest=f"127.0.0.1:{server.port}", timeout=30) as s:
            sent = 0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(1.0):
                    while sent < 32 * MiB:
                        sent += 64 * KiB  # written at once; the wait is for the socket to drain
                        await s.write(b"b" * (64 * KiB))
            held = seen[0].received
            # the writer was held back long before 32 MiB; the server queued about its stream_buffer
            assert sent < 32 * MiB
            assert held <= limits.stream_buffer + 512 * KiB, held
            release.set()
            assert await s.reply() == sent
    finally:
        await client.stop()
        await server.stop()


async def test_bad_gr_header(link: Link) -> None:
    server, _ = await streaming_server(link, unique("gr"))
    conn = await Raw.open(server.port)
    try:
        conn.write(b"POST / HTTP/1.1\r\nHost: x\r\n_gr: not json\r\nContent-Length: 2\r\n\r\n[]")
        status, _, body = await conn.response()
        assert status == 500
        assert json.loads(body) == [None, "ERR_HEADER_PARSE_GR", None]  # grenache-nodejs-http's answer
    finally:
        conn.close()
