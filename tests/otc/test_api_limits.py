"""The control API's bounds (issue 8 item 5, API half; core/limits.py, "control API"), each attacked on a
real peer process with raw sockets: a flood of idle connections, slowloris heads, stalled bodies,
oversized heads, URLs and bodies, too many event streams, and a flood of the RPC port. The owner must
keep the use of the API throughout, and the peer's memory must stay bounded.

The peers here start with 1,024 open files at most (Debian's default soft limit), as on the machine where
1,100 idle sockets once locked the trader out.
"""

from __future__ import annotations

import os
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from otc.core.limits import (
    API_BODY_TIMEOUT_S,
    API_HEAD_TIMEOUT_S,
    API_IDLE_TIMEOUT_S,
    API_MAX_CONNECTIONS,
    API_MAX_EVENT_STREAMS,
)

from ..harness import PeerProcess, http, wait_for
from .rawhttp import build, exchange, parse, read_all

Spawn = Callable[..., PeerProcess]
FLOOD = 1100
# generous, for a loaded machine: without the defences the owner's connection is not slow but reset at once
# (the accept fails for want of descriptors), while the flood lasts (until the idle timeout)
OWNER_TIMEOUT_S = 20.0
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def enough_descriptors() -> Iterator[None]:
    """This test process holds the attacker's sockets: it needs more than the peer may have."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * FLOOD
    if soft < want:
        assert hard == resource.RLIM_INFINITY or hard >= want, f"the test needs {want} open files"
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def owner_trades(peer: PeerProcess) -> None:
    """The owner posts an offer and cancels it, each within OWNER_TIMEOUT_S."""
    offer = http("POST", peer.url + "/api/offers", {"side": "sell", "amount": "1", "price": "8000"},
                 timeout=OWNER_TIMEOUT_S, token=peer.token)  # fmt: skip
    closed = http("DELETE", f"{peer.url}/api/offers/{offer['id']}", timeout=OWNER_TIMEOUT_S, token=peer.token)
    assert closed["status"] == "cancelled"


def connect_many(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        socks.append(sock)
    return socks


def still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def test_a_flood_of_idle_sockets_cannot_lock_the_owner_out(spawn: Spawn) -> None:
    alice = spawn("alice", nofile=(1024, 1024))
    rss_before = alice.rss_kb()
    socks = connect_many(alice.api_port, FLOOD)  # more than the peer has descriptors
    try:
        owner_trades(alice)  # at once, well within the idle timeout that would end the flood anyway
        # the peer took them all in, closing the oldest idle ones to make room: the cap holds
        wait_for(lambda: sum(still_open(s) for s in socks) <= API_MAX_CONNECTIONS, 10, 0.2, "the cap")
        owner_trades(alice)
        assert alice.get("/api/health")["name"] == "alice"
        assert alice.rss_kb() - rss_before < 16 * 1024
    finally:
        for s in socks:
            s.close()
    owner_trades(alice)


def timed_close(port: int, first: bytes, trickle: bytes = b"", every: float = 0.5) -> tuple[float, bytes]:
    """Send ``first``, then ``trickle`` a byte at a time every ``every`` s; return when the server closed
    the connection (seconds after ``first``) and what it answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        start = time.monotonic()
        if first:
            sock.sendall(first)
        answer = b""
        i = 0
        while True:
            sock.settimeout(every if trickle else 20)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                if time.monotonic() - start > 15:
                    return float("inf"), answer  # never closed
                try:
                    sock.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
                except OSError:
                    break
                i += 1
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return time.monotonic() - start, answer


def test_slow_heads_stalled_bodies_and_idle_connections_are_closed_at_their_timeouts(spawn: Spawn) -> None:
    alice = spawn("alice", nofile=(1024, 1024))
    port = alice.api_port
    head = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    body_head = build("POST", "/api/offers", port, token=alice.token, headers={
        "Content-Type": "application/json", "Content-Length": "100", "Connection": None})  # fmt: skip
    keep_alive = build("GET", "/api/health", port, token=alice.token, headers={"Connection": None})
    cases: dict[str, tuple[bytes, bytes]] = {
        "slowloris": (head, b"X-Slow: " + b"a" * 100),  # one header byte every 0.5 s, never finished
        "stalled body": (body_head + b'{"side": ', b""),
        "silent": (b"", b""),
        "idle keep-alive": (keep_alive, b""),
    }
    results: dict[str, tuple[float, bytes]] = {}

    def run(name: str) -> None:
        results[name] = timed_close(port, *cases[name])

    threads = [threading.Thread(target=run, args=(name,)) for name in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    took, answer = results["slowloris"]
    assert API_HEAD_TIMEOUT_S - 0.2 <= took < API_HEAD_TIMEOUT_S + 3, took
    assert (parse(answer).status, parse(answer).code) == (408, "ERR_REQUEST_TIMEOUT")
    took, answer = results["stalled body"]
    assert API_BODY_TIMEOUT_S - 0.2 <= took < API_BODY_TIMEOUT_S + 3, took
    assert (parse(answer).status, parse(answer).code) == (408, "ERR_REQUEST_TIMEOUT")
    took, answer = results["silent"]
    assert API_IDLE_TIMEOUT_S - 0.2 <= took < API_IDLE_TIMEOUT_S + 3 and answer == b"", (took, answer)
    took, answer = results["idle keep-alive"]  # answered at once, then closed after the idle timeout
    assert API_IDLE_TIMEOUT_S - 0.2 <= took < API_IDLE_TIMEOUT_S + 3, took
    assert parse(answer).status == 200 and parse(answer).headers["connection"] == "keep-alive"
    assert alice.get("/api/offers") == []  # the stalled offer never happened


def flood(port: int, prefix: bytes, filler: bytes, total: int, peer: PeerProcess) -> tuple[int, int]:
    """Send ``prefix`` then ``filler`` up to ``total`` bytes; return the bytes the server took before it
    closed, and the peer's RSS growth (KiB) measured with the connection still ours."""
    before = peer.rss_kb()
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(prefix)
            chunk = filler * (256 * 1024 // len(filler))
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # reset or broken pipe: the server has hung up
            pass
        grown = peer.rss_kb() - before
    return sent, grown


def test_oversized_heads_urls_and_bodies_get_an_error_and_a_close(spawn: Spawn) -> None:
    alice = spawn("alice", nofile=(1024, 1024))
    port, token = alice.api_port, alice.token

    def answer(data: bytes) -> tuple[int, str | None]:
        reply = exchange(port, data)
        return reply.status, reply.code

    assert answer(build("GET", "/api/book?pair=" + "x" * 20_000, port, token=token)) == (
        414,
        "ERR_URL_TOO_LONG",
    )
    big = build("GET", "/api/health", port, token=token, headers={"X-Big": "a" * 32_000})
    assert answer(big) == (431, "ERR_HEADERS_TOO_LARGE")
    many = build("GET", "/api/health", port, token=token, headers={f"X-H{i}": "1" for i in range(101)})
    assert answer(many) == (431, "ERR_HEADERS_TOO_LARGE")
    chunked = build("POST", "/api/offers", port, token=token,
                    headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})  # fmt: skip
    assert answer(chunked + b"5\r\n{}{}{\r\n0\r\n\r\n") == (411, "ERR_LENGTH_REQUIRED")
    # a declared body over the cap is refused at once, before a byte of it is sent
    huge = build("POST", "/api/offers", port, token=token,
                 headers={"Content-Type": "application/json", "Content-Length": str(10 * MiB)})  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(huge)
        reply = parse(read_all(sock))
    assert (reply.status, reply.code) == (413, "ERR_INVALID_PAYLOAD")

    # 64 MiB of header, or of URL: cut off early; the peer holds none of it
    header_flood = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Big: ".encode()
    for prefix, filler in ((header_flood, b"a"), (b"GET /api/book?pair=", b"x")):
        sent, grown = flood(port, prefix, filler, 64 * MiB, alice)
        assert sent < 32 * MiB, sent  # what the kernel's socket buffers took, not the peer
        assert grown < 8 * 1024, f"RSS grew {grown} KiB"
    assert alice.get("/api/health")["name"] == "alice"
    owner_trades(alice)


def test_event_streams_are_bounded(spawn: Spawn) -> None:
    alice = spawn("alice")
    port = alice.api_port
    request = build("GET", "/api/events", port, token=alice.token)

    def subscribe() -> tuple[socket.socket, bytes]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return sock, data

    streams = [subscribe() for _ in range(API_MAX_EVENT_STREAMS)]
    try:
        assert all(head.startswith(b"HTTP/1.1 200") for _, head in streams)
        extra = exchange(port, request)
        assert (extra.status, extra.code) == (503, "ERR_SERVER_BUSY")
        owner_trades(alice)  # streams do not hold the owner's other requests up
        streams.pop()[0].close()

        def reopened() -> Any:
            sock, head = subscribe()
            sock.close()
            return head.startswith(b"HTTP/1.1 200")

        deadline = time.monotonic() + 5
        while not reopened():
            assert time.monotonic() < deadline, "a closed stream's slot was not given back"
            time.sleep(0.1)
    finally:
        for sock, _ in streams:
            sock.close()


def test_pipelined_requests_are_answered_in_order(spawn: Spawn) -> None:
    alice = spawn("alice")
    port = alice.api_port
    one = build("GET", "/api/offers", port, token=alice.token, headers={"Connection": None})
    last = build("GET", "/api/health", port, token=alice.token)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(one * 30 + last)  # more than the pipelining depth: reading pauses, then resumes
        raw = read_all(sock)
    assert raw.count(b"HTTP/1.1 200 OK") == 31
    assert raw.rstrip().endswith(b"}") and b'"name":"alice"' in raw.rsplit(b"HTTP/1.1", 1)[1]


def test_the_owner_keeps_the_api_while_the_rpc_port_is_flooded(spawn: Spawn) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Debian's soft default, with room above it that the peer may take (as root, we may grant it)
    alice = spawn("alice", nofile=(1024, max(8192, hard if hard != resource.RLIM_INFINITY else 8192)))
    rpc_port = alice.get("/api/health")["rpc_port"]
    socks = connect_many(rpc_port, FLOOD)
    try:
        # once the RPC server has taken in what it can (all of them, or as many as it has descriptors for)
        wait_for(lambda: len(os.listdir(f"/proc/{alice.pid}/fd")) >= 1000, 10, 0.1, "the flood to arrive")
        for _ in range(3):
            owner_trades(alice)
    finally:
        for s in socks:
            s.close()
