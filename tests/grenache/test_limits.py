"""Every bound of ``ServerLimits`` (and the client's reply caps) attacked over real sockets with hand-built
bytes: a server process under 40 partial 8 MiB uploads, connection floods, slowloris, oversize heads,
stalled bodies, a busy body budget, an oversize reply."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from grenache import Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.grapes import free_port
from grenache.limits import KiB, MiB, ServerLimits

from .nodeproc import spawn, stop

pytestmark = pytest.mark.timeout(60)

FAST = ServerLimits(header_timeout=0.5, body_timeout=0.5, idle_timeout=5.0)
MakeServer = Callable[..., Awaitable[PeerRPCServer]]


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    # no Grape is needed: nothing here announces or looks up
    async with Link(f"http://127.0.0.1:{free_port()}") as lk:
        yield lk


@pytest.fixture
async def make_server(link: Link) -> AsyncIterator[MakeServer]:
    servers: list[PeerRPCServer] = []

    async def make(limits: ServerLimits = FAST) -> PeerRPCServer:
        server = PeerRPCServer(link, limits=limits)

        @server.handle("echo")
        async def echo(payload: Any) -> Any:
            return payload

        await server.listen(0)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self, deadline: float = 5.0) -> tuple[int, dict[str, str], bytes]:
        async with asyncio.timeout(deadline):
            status = int((await self.reader.readuntil(b"\r\n")).split()[1])
            headers: dict[str, str] = {}
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def closed(self, deadline: float = 5.0) -> bool:
        """True once the server closed the connection (EOF or reset), reading and discarding bytes."""
        try:
            async with asyncio.timeout(deadline):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()


def request_bytes(body: bytes, extra: str = "") -> bytes:
    return f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def echo_works(port: int) -> bool:
    conn = await Raw.open(port)
    try:
        conn.write(request_bytes(b'["ok", "echo", 1]'))
        status, _, body = await conn.response()
        return status == 200 and json.loads(body) == ["ok", None, 1]
    finally:
        conn.close()


def error_of(body: bytes) -> str:
    err = json.loads(body)[1]
    assert isinstance(err, str)
    return err


# connections -----------------------------------------------------------------------------------------------
async def test_idle_flood_is_closed(make_server: MakeServer) -> None:
    server = await make_server()
    conns = [await Raw.open(server.port) for _ in range(50)]
    started = time.monotonic()
    results = await asyncio.gather(*(c.closed(deadline=5) for c in conns))
    assert all(results)
    assert time.monotonic() - started < 3  # header_timeout 0.5 s, not the 5 s idle timeout
    assert not server._connections
    assert await echo_works(server.port)


async def test_connection_cap_evicts_idle_then_refuses(make_server: MakeServer) -> None:
    server = await make_server(ServerLimits(max_connections=8, header_timeout=5, body_timeout=5))
    idle = [await Raw.open(server.port) for _ in range(8)]
    for conn in idle:  # make them keep-alive connections that finished a request
        conn.write(request_bytes(b'[1, "echo", 1]'))
        assert (await conn.response())[0] == 200
    # a newcomer at the cap: the longest-idle connection makes room
    assert await echo_works(server.port)
    assert await idle[0].closed(deadline=2)
    # busy connections (a request in progress) are never evicted: the newcomer is refused at once
    for conn in idle[1:]:
        conn.write(b"POST / HTTP/1.1\r\nHost: x\r\n")
    extra = [await Raw.open(server.port)]
    extra[0].write(b"POST / HTTP/1.1\r\n")  # busy too (a silent newcomer would count as idle)
    await asyncio.sleep(0.1)
    extra.append(await Raw.open(server.port))
    status, _, body = await extra[-1].response()
    assert status == 503
    assert error_of(body).startswith("ERR_TOO_MANY_CONNECTIONS")
    assert await extra[-1].closed(deadline=2)
    assert len(server._connections) <= 8
    for conn in idle + extra:
        conn.close()
    # the process is unhurt: once they are gone it serves again
    deadline = time.monotonic() + 5
    while not await _serves(server.port):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def _serves(port: int) -> bool:
    try:
        return await echo_works(port)
    except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
        return False


# heads -----------------------------------------------------------------------------------------------------
async def test_slowloris_head_deadline(make_server: MakeServer) -> None:
    server = await make_server()
    conn = await Raw.open(server.port)
    conn.write(b"POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()

    async def trickle() -> None:
        with contextlib.suppress(ConnectionError):
            for _ in range(50):
                conn.write(b"a")  # a byte every 50 ms: an idle timer would never fire
                await asyncio.sleep(0.05)

    task = asyncio.ensure_future(trickle())
    status, _, body = await conn.response()
    assert status == 408 and error_of(body).startswith("ERR_REQUEST_TIMEOUT")
    assert 0.4 < time.monotonic() - started < 2
    assert await conn.closed(2)
    task.cancel()
    assert await echo_works(server.port)


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nX-Big: " + b"v" * 20_000 + b"\r\n\r\n",
            431,
            "ERR_HEADERS_TOO_LARGE",
            id="value",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n",
            431,
            "ERR_HEADERS_TOO_LARGE",
            id="count",
        ),
        pytest.param(b"POST /" + b"u" * 3000 + b" HTTP/1.1\r\n\r\n", 414, "ERR_URL_TOO_LONG", id="url"),
    ],
)  # fmt: skip
async def test_oversize_head_refused(make_server: MakeServer, head: bytes, status: int, code: str) -> None:
    server = await make_server()
    conn = await Raw.open(server.port)
    conn.write(head)
    got, _, body = await conn.response()
    assert got == status and error_of(body).startswith(code)
    assert await conn.closed(2)
    assert await echo_works(server.port)


async def test_unterminated_header_refused_before_it_ends(make_server: MakeServer) -> None:
    """httptools keeps a header value whole until it ends: we must refuse while it grows."""
    server = await make_server()
    conn = await Raw.open(server.port)
    conn.write(b"POST / HTTP/1.1\r\nX-Endless: ")
    sent = 0
    with contextlib.suppress(ConnectionError):
        for _ in range(64):  # up to 4 MiB, never a line end
            conn.write(b"v" * 65536)
            sent += 65536
            await conn.writer.drain()
            if conn.reader.at_eof() or conn.reader._buffer:  # type: ignore[attr-defined]
                break
    status, _, body = await conn.response()
    assert status == 431 and error_of(body).startswith("ERR_HEADERS_TOO_LARGE")
    assert sent < 4 * MiB
    conn.close()


# bodies ----------------------------------------------------------------------------------------------------
async def test_stalled_body_times_out(make_server: MakeServer) -> None:
    server = await make_server()
    conn = await Raw.open(server.port)
    conn.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b'["x", "echo", "')
    started = time.monotonic()
    status, _, body = await conn.response()
    assert status == 408 and error_of(body).startswith("ERR_REQUEST_TIMEOUT")
    assert 0.4 < time.monotonic() - started < 2
    assert await conn.closed(2)


async def test_body_budget_refuses_what_does_not_fit(make_server: MakeServer) -> None:
    limits = ServerLimits(body_budget=1 * MiB, max_body=1 * MiB, header_timeout=5, body_timeout=5)
    server = await make_server(limits)
    budget = server._listener.budget
    big = 800 * KiB
    first = await Raw.open(server.port)
    first.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode() + b'["a", "echo", "')
    await asyncio.sleep(0.1)
    assert budget.used == big  # reserved at the headers, before the bytes come
    second = await Raw.open(server.port)
    second.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {big}\r\n\r\n".encode())
    status, _, body = await second.response()
    assert status == 503 and error_of(body).startswith("ERR_SERVER_BUSY")
    assert await second.closed(2)
    # a chunked upload is charged as it grows, and refused when it no longer fits
    third = await Raw.open(server.port)
    third.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    with contextlib.suppress(ConnectionError):
        for _ in range(8):
            third.write(b"%x\r\n%s\r\n" % (64 * KiB, b"c" * 64 * KiB))
            await asyncio.sleep(0.01)
    status, _, body = await third.response()
    assert status == 503 and error_of(body).startswith("ERR_SERVER_BUSY")
    # small requests draw on the reserve that uploads cannot touch: they go on being served
    assert await echo_works(server.port)
    # the first upload completes, is answered, and gives its share back
    first.write(b"a" * (big - 15 - 2) + b'"]')
    status, _, body = await first.response()
    assert status == 200 and json.loads(body)[:2] == ["a", None]
    assert budget.used == 0
    first.close()
    third.close()


async def test_gzip_bomb_charged_for_its_inflated_size(make_server: MakeServer) -> None:
    limits = ServerLimits(body_budget=1 * MiB, max_body=4 * MiB)
    server = await make_server(limits)
    bomb = gzip.compress(json.dumps(["g", "echo", "x" * (2 * MiB)]).encode())
    assert len(bomb) < 64 * KiB  # not charged on the wire
    conn = await Raw.open(server.port)
    conn.write(request_bytes(bomb, "grc-compress: gzip\r\n"))
    status, _, body = await conn.response()
    assert status == 200
    assert json.loads(gzip.decompress(body))[1].startswith("ERR_SERVER_BUSY")
    assert server._listener.budget.used == 0
    conn.close()


async def test_pipelined_flood_is_backpressured(make_server: MakeServer, link: Link) -> None:
    limits = ServerLimits(max_pipelined=4)
    server = PeerRPCServer(link, limits=limits)
    release = asyncio.Event()
    running = 0
    peak = 0

    @server.handle("slow")
    async def slow(payload: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return payload

    await server.listen(0)
    try:
        conn = await Raw.open(server.port)
        for i in range(200):  # written in many reads: the server stops reading at 4 in flight
            conn.write(request_bytes(json.dumps([i, "slow", i]).encode()))
            if i % 20 == 19:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert peak < 60  # bounded by max_pipelined plus what one read held, not 200
        release.set()
        rids = [json.loads((await conn.response())[2])[0] for _ in range(200)]
        assert rids == list(range(200))  # all answered, in order
        conn.close()
    finally:
        await server.stop()


# a real server process under the 40 × partial 8 MiB attack -------------------------------------------------
def vm_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_server_process_rss_bounded_under_partial_uploads(chunked: bool) -> None:
    proc = spawn(sys.executable, "-m", "grenache.cli", "serve", "echo", "--no-announce")
    conns: list[Raw] = []
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        port = int(line.split(" on ")[1].split()[0].rsplit(":", 1)[1])
        assert await echo_works(port)
        before = vm_kib(proc.pid, "VmRSS")
        part = 7 * MiB
        chunk = b"p" * (256 * KiB)

        async def upload() -> None:
            conn = await Raw.open(port)
            conns.append(conn)
            if chunked:
                conn.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            else:
                conn.write(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {8 * MiB}\r\n\r\n".encode())
            with contextlib.suppress(ConnectionError):
                for _ in range(part // len(chunk)):
                    conn.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
                    await conn.writer.drain()

        await asyncio.gather(*(upload() for _ in range(40)))
        await asyncio.sleep(0.3)
        peak = vm_kib(proc.pid, "VmHWM")
        grown_mib = (peak - before) / 1024
        # 40 × 7 MiB = 280 MiB without the budget (measured: 233-280 MiB); with it about 28 MiB
        assert grown_mib < 80, f"server RSS grew by {grown_mib:.0f} MiB"
        refused = 0
        for conn in conns:
            with contextlib.suppress(Exception):
                status, _, body = await conn.response(deadline=2)
                refused += status == 503 and error_of(body).startswith("ERR_SERVER_BUSY")
        assert refused >= 30  # at most four 8 MiB bodies fit the 32 MiB budget
        assert proc.poll() is None
        assert await echo_works(port)  # and the process goes on serving
    finally:
        for conn in conns:
            conn.close()
        stop(proc)


# the client's side: replies ---------------------------------------------------------------------------------
async def test_client_reply_caps(link: Link) -> None:
    async def huge_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        head = await reader.read(65536)
        del head
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (64 * MiB))
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"[" + b" " * (MiB - 1))
                await writer.drain()
        writer.close()

    async def huge_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nX-Endless: ")
        with contextlib.suppress(ConnectionError):
            for _ in range(64):
                writer.write(b"h" * 65536)
                await writer.drain()
        writer.close()

    for handler, code in ((huge_reply, "ERR_REPLY_TOO_LARGE"), (huge_head, "ERR_REPLY_TOO_LARGE")):
        srv = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        client = PeerRPCClient(link, max_reply=1 * MiB)
        try:
            started = time.monotonic()
            with pytest.raises(RPCError) as info:
                await client.request_dest(f"127.0.0.1:{port}", "k", None, timeout=10)
            assert info.value.code == code
            assert time.monotonic() - started < 5
        finally:
            await client.stop()
            srv.close()
            await srv.wait_closed()
