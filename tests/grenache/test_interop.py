"""Wire compatibility with the Node originals (grenache-nodejs-http / -link 1.0.2), both directions.

Node processes run ``tests/node/*.js``; every one is killed through its Popen object at teardown.
"""

from __future__ import annotations

import asyncio
import json
import selectors
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grenache import GrapeError, Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.grapes import GrapeNetwork

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "node"
NODE = shutil.which("node")

if NODE is None or not (ROOT / "node_modules" / "grenache-nodejs-http").is_dir():
    pytest.skip("node and grenache-nodejs-http are needed (npm ci)", allow_module_level=True)

READY_DEADLINE = 15.0
CLIENT_DEADLINE = 20.0  # the Node client itself gives up after 10 s


def unique(name: str) -> str:
    return f"interop:{name}:{uuid.uuid4().hex[:8]}"


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture
def node_server(grapes: GrapeNetwork) -> Iterator[Callable[[str], int]]:
    """Factory: start ``server.js`` announcing ``key`` on Grape 0; returns its port once READY."""
    procs: list[subprocess.Popen[str]] = []

    def start(key: str) -> int:
        proc = subprocess.Popen(
            [str(NODE), str(NODE_DIR / "server.js"), grapes.urls[0], key],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        deadline = time.monotonic() + READY_DEADLINE
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while (left := deadline - time.monotonic()) > 0:
                if sel.select(left):
                    line = proc.stdout.readline()
                    if not line:
                        break  # exited
                    if line.startswith("READY "):
                        return int(line.split()[1])
        pytest.fail(f"node server.js did not print READY within {READY_DEADLINE} s (rc={proc.poll()})")

    yield start
    for proc in procs:
        _stop(proc)


async def node_client(
    grape: str, key: str, payload: Any, mode: str = "request", compress: bool = False
) -> Any:
    """Run ``client.js`` without blocking the event loop (a Python server in this test must keep serving).

    Returns the decoded JSON result, or the string ``"ERROR <message>"``.
    """
    args = [str(NODE_DIR / "client.js"), grape, key, json.dumps(payload), mode]
    if compress:
        args.append("compress")
    proc = await asyncio.create_subprocess_exec(
        str(NODE), *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(CLIENT_DEADLINE):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()
    text = out.decode().strip()
    return text if text.startswith("ERROR ") else json.loads(text)


async def wait_dests(link: Link, key: str, n: int, deadline: float = 15.0) -> list[str]:
    end = time.monotonic() + deadline
    dests: list[str] = []
    while time.monotonic() < end:
        try:
            dests = await link.lookup(key, cache=False)
            if len(dests) >= n:
                return dests
        except GrapeError:
            pass
        await asyncio.sleep(0.1)
    pytest.fail(f"{key}: expected {n} destinations within {deadline} s, saw {dests}")


@pytest.fixture
async def py_server(grapes: GrapeNetwork) -> AsyncIterator[Callable[..., Any]]:
    """Factory: a Python server on Grape 0 answering ``{"from": "python", "got": payload}`` for ``key``;
    ``{"fail": true}`` is answered with the error ``ERR_PY_FAIL``."""
    link = Link(grapes.urls[0])
    await link.start()
    servers: list[PeerRPCServer] = []

    async def start(key: str, **kwargs: Any) -> PeerRPCServer:
        server = PeerRPCServer(link, **kwargs)
        servers.append(server)

        @server.handle(key)
        async def handle(payload: Any) -> Any:
            if isinstance(payload, dict) and payload.get("fail") is True:
                raise RPCError("ERR_PY_FAIL", payload.get("why"))
            return {"from": "python", "got": payload}

        await server.listen(0)
        await server.announce(key)
        return server

    yield start
    for server in servers:
        await server.stop()
    await link.stop()


@pytest.fixture
async def py_client(grapes: GrapeNetwork) -> AsyncIterator[PeerRPCClient]:
    async with Link(grapes.urls[1]) as link:
        client = PeerRPCClient(link)
        yield client
        await client.stop()


# Node client -> Python server ----------------------------------------------------------------------------
async def test_node_client_python_server(grapes: GrapeNetwork, py_server: Callable[..., Any]) -> None:
    key = unique("py")
    await py_server(key)
    async with Link(grapes.urls[1]) as link:
        await wait_dests(link, key, 1)
    grape = grapes.urls[1]
    payload = {"msg": "hello", "n": [1, 2.5, None, "ü"]}
    assert await node_client(grape, key, payload) == {"from": "python", "got": payload}
    assert await node_client(grape, key, payload, "map") == [{"from": "python", "got": payload}]
    big = {"blob": "x" * 100_000}  # argv strings are capped at 128 KiB
    assert await node_client(grape, key, big, compress=True) == {"from": "python", "got": big}
    assert await node_client(grape, key, "just a string") == {"from": "python", "got": "just a string"}


async def test_node_client_gets_python_errors(grapes: GrapeNetwork, py_server: Callable[..., Any]) -> None:
    key = unique("pyfail")
    await py_server(key)
    grape = grapes.urls[1]
    async with Link(grape) as link:
        await wait_dests(link, key, 1)
    assert await node_client(grape, key, {"fail": True}) == "ERROR ERR_PY_FAIL"
    assert await node_client(grape, key, {"fail": True, "why": "no funds"}) == "ERROR ERR_PY_FAIL: no funds"
    assert await node_client(grape, key, {"fail": True}, "map") == "ERROR ERR_PY_FAIL"
    assert await node_client(grape, key, {"fail": True}, compress=True) == "ERROR ERR_PY_FAIL"


async def test_node_client_oversize_request_answered_not_hung(
    grapes: GrapeNetwork, py_server: Callable[..., Any]
) -> None:
    """Node matches replies by rid: the error for a too-large body must echo it, or Node waits 10 s."""
    key = unique("pysmall")
    await py_server(key, max_body=1024)
    grape = grapes.urls[1]
    async with Link(grape) as link:
        await wait_dests(link, key, 1)
    started = time.monotonic()
    result = await node_client(grape, key, {"blob": "x" * 4096})
    assert isinstance(result, str) and result.startswith("ERROR ERR_REQUEST_TOO_LARGE")
    assert time.monotonic() - started < 5


# Python client -> Node server ----------------------------------------------------------------------------
async def test_python_client_node_server(node_server: Callable[[str], int], py_client: PeerRPCClient) -> None:
    key = unique("node")
    port = node_server(key)
    assert await wait_dests(py_client.link, key, 1) == [f"127.0.0.1:{port}"]
    payload = {"msg": "hello", "nested": {"list": [1, 2, 3]}}
    assert await py_client.request(key, payload, timeout=10) == {"from": "node", "got": payload}
    big = {"blob": "y" * 300_000}
    assert await py_client.request(key, big, timeout=10, compress=True) == {"from": "node", "got": big}
    assert await py_client.map(key, 42, timeout=10) == [{"from": "node", "got": 42}]
    # keep-alive connections to the Node server get reused
    for i in range(20):
        assert (await py_client.request(key, i, timeout=10))["got"] == i


async def test_python_client_gets_node_errors(
    node_server: Callable[[str], int], py_client: PeerRPCClient
) -> None:
    key = unique("nodefail")
    node_server(key)
    await wait_dests(py_client.link, key, 1)
    for compress in (False, True):
        with pytest.raises(RPCError) as info:
            await py_client.request(key, {"fail": True}, timeout=10, compress=compress)
        assert info.value.code == "ERR_NODE_FAIL"
    [outcome] = await py_client.map(key, {"fail": True}, timeout=10)
    assert isinstance(outcome, RPCError) and outcome.code == "ERR_NODE_FAIL"


# mixed -------------------------------------------------------------------------------------------------
async def test_map_across_node_and_python(
    grapes: GrapeNetwork,
    node_server: Callable[[str], int],
    py_server: Callable[..., Any],
    py_client: PeerRPCClient,
) -> None:
    key = unique("mixed")
    node_port = node_server(key)
    py = await py_server(key)
    dests = await wait_dests(py_client.link, key, 2)
    assert sorted(dests) == sorted([f"127.0.0.1:{node_port}", f"127.0.0.1:{py.port}"])

    results = await py_client.map(key, {"q": 1}, timeout=10)
    assert sorted(r["from"] for r in results) == ["node", "python"]
    assert all(r["got"] == {"q": 1} for r in results)

    # the Node client sees both as well
    results = await node_client(grapes.urls[1], key, {"q": 2}, "map")
    assert sorted(r["from"] for r in results) == ["node", "python"]
    assert all(r["got"] == {"q": 2} for r in results)
