"""Grapevine for Python against Node scripts that behave as Grapevine's server and client (grenache-nodejs-ws,
the name as service key, ``{"message": m}`` → ``"Echo: m"``, 10 s timeout), and the Fibonacci example
against scripts that behave as Bitfinex's grenache-nodejs-example-fib-server/-client; both directions."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import pytest

from grenache import GrenacheError, Link, PeerRPCClient, RPCError
from grenache.grapes import GrapeNetwork, free_port
from grenache.grapevine import Grapevine, send
from grenache.server import Request

from .nodeproc import NODE, NODE_DIR, need_node, node_run, node_server, spawn, stop, wait_line
from .test_rpc import wait_dests

pytestmark = pytest.mark.timeout(60)
need_node("grenache-nodejs-ws-1", "grenache-nodejs-http")


def peer_name() -> str:
    return f"client-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def link(grapes: GrapeNetwork) -> AsyncIterator[Link]:
    async with Link(grapes.urls[1]) as lk:
        yield lk


async def python(*args: str, grape: str, stdin: bytes | None = None) -> str:
    """Run a console script's module (``grenache.grapevine``, ``grenache.fib``) to completion."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", *args, env={**os.environ, "GRENACHE_GRAPE": grape},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, err.decode()
    return out.decode()


# Grapevine ------------------------------------------------------------------------------------------------
async def test_python_client_node_grapevine_server(grapes: GrapeNetwork, link: Link) -> None:
    name = peer_name()
    port = free_port()
    env = {"GRENACHE_GRAPE": grapes.urls[0]}
    proc = spawn(str(NODE), str(NODE_DIR / "grapevine_server.js"), name, str(port), env=env)
    try:
        assert wait_line(proc, "Grapevine server") == f"Grapevine server {name} listening on port {port}"
        assert await wait_dests(link, name, 1) == [f"127.0.0.1:{port}"]
        assert await send(link, name, "hello from python") == "Echo: hello from python"
        out = await python("grenache.grapevine", "send", name, "one line", grape=grapes.urls[1])
        assert out == "Echo: one line\n"
        # the interactive client, driven through its standard input
        chat = await python("grenache.grapevine", grape=grapes.urls[1], stdin=f"{name}\nhi there\n".encode())
        assert f"Response from {name}: Echo: hi there" in chat
        assert "Enter peer name: " in chat and "Enter message: " in chat
        assert wait_line(proc, f"{name} received") == f"{name} received: hello from python"
    finally:
        stop(proc)


async def test_node_grapevine_client_python_server(grapes: GrapeNetwork, link: Link) -> None:
    name = peer_name()
    port = free_port()
    serve = spawn(
        sys.executable, "-m", "grenache.grapevine", "serve", name, str(port), "--grape", grapes.urls[0]
    )
    try:
        assert wait_line(serve, "Grapevine server") == f"Grapevine server {name} listening on port {port}"
        await wait_dests(link, name, 1)
        env = {"GRENACHE_GRAPE": grapes.urls[1]}
        out = await node_run("grapevine_client.js", env=env, stdin=f"{name}\nhello from node\n".encode())
        assert f"Response from {name}: Echo: hello from node" in out
        # a name nobody announced: the Node client reports the lookup error and goes on
        out = await node_run("grapevine_client.js", env=env, stdin=b"nobody-here\nx\n")
        assert "Error: ERR_GRAPE_LOOKUP_EMPTY" in out
        assert wait_line(serve, f"{name} received") == f"{name} received: hello from node"
    finally:
        stop(serve)


async def test_application_answers_grapevine_under_its_name(grapes: GrapeNetwork) -> None:
    """What a trading peer would do: answer Grapevine clients under its name with its own handler."""
    name = peer_name()
    seen: list[tuple[str, str | None]] = []

    async def desk(message: str, request: Request) -> str:
        seen.append((message, request.peer))
        if message == "quote?":
            return "BTC/USD 8000 bid, 8010 ask"
        raise RPCError("ERR_UNKNOWN_COMMAND", "ask 'quote?'")

    async with Link(grapes.urls[0]) as link:
        peer = Grapevine(link, name, desk)
        await peer.start()
        try:
            env = {"GRENACHE_GRAPE": grapes.urls[1]}
            async with Link(grapes.urls[1]) as other:
                await wait_dests(other, name, 1)
            out = await node_run(
                "grapevine_client.js", env=env, stdin=f"{name}\nquote?\n{name}\nhello\n".encode()
            )
            assert f"Response from {name}: BTC/USD 8000 bid, 8010 ask" in out
            assert "Error: ERR_UNKNOWN_COMMAND: ask 'quote?'" in out
            assert [m for m, _ in seen] == ["quote?", "hello"]
            assert all(p is not None and p.startswith("127.0.0.1:") for _, p in seen)
            # a payload that is not {"message": str} gets a specific error (the Node server would crash
            # on it or echo "undefined")
            client = PeerRPCClient(link, transport="ws")
            try:
                with pytest.raises(RPCError) as info:
                    await client.request(name, {"text": "wrong field"}, timeout=5)
                assert info.value.code == "ERR_INVALID_PAYLOAD"
            finally:
                await client.stop()
        finally:
            await peer.stop()


async def test_grapevine_send_to_nobody(link: Link) -> None:
    with pytest.raises(GrenacheError) as info:
        await send(link, peer_name(), "anyone?")
    assert info.value.code == "ERR_GRAPE_LOOKUP_EMPTY"


# Bitfinex's Fibonacci example -----------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["http", "ws"])
async def test_fib_both_ways(transport: str, grapes: GrapeNetwork) -> None:
    """Both sides use the service name ``fibonacci_worker``: each direction gets its own Grapes."""
    with GrapeNetwork(2) as net, node_server("fib_server.js", net.urls[0], transport):
        async with Link(net.urls[1]) as link:
            await wait_dests(link, "fibonacci_worker", 1)
        out = await python("grenache.fib", "ask", "10", "--transport", transport, grape=net.urls[1])
        assert out == "Fibonacci number at place 10 in the sequence: 89\n"
    with GrapeNetwork(2) as net:
        serve = spawn(
            sys.executable, "-m", "grenache.fib", "serve", "--transport", transport, "--grape", net.urls[0]
        )
        try:
            wait_line(serve, "READY ")
            async with Link(net.urls[1]) as link:
                await wait_dests(link, "fibonacci_worker", 1)
                client = PeerRPCClient(link, transport=transport)  # type: ignore[arg-type]
                try:
                    with pytest.raises(RPCError) as info:
                        await client.request("fibonacci_worker", {"number": -1}, timeout=5)
                    assert info.value.code == "ERR_INVALID_PAYLOAD"
                    assert (
                        await client.request("fibonacci_worker", {"number": 90}, timeout=5)
                        == 4660046610375530309
                    )
                finally:
                    await client.stop()
            out = await node_run("fib_client.js", net.urls[1], "10", transport)
            assert out == "Fibonacci number at place 10 in the sequence: 89"
        finally:
            stop(serve)
