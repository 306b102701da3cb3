"""A small HTTP/1.1 client on llhttp (``httptools``): keep-alive connection pools, one request in
flight per connection, optionally over TLS. Used by the RPC client and by ``Link`` for the Grape API:
both send short POSTs to few hosts, where a general-purpose client costs more time and memory than it
gives. A reply is bounded in header bytes and body bytes (``limits.ClientLimits``)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import ssl as _ssl
import time
from collections.abc import Callable
from typing import cast

import httptools

from .limits import ClientLimits


class ConnectFailed(Exception):
    """The request never left: safe to try another destination."""


class PeerAuthFailed(ConnectFailed):
    """The server's TLS certificate was refused (verification or pinning); nothing was sent."""


class ReplyTooLarge(ConnectionError):
    """The reply exceeded the client's cap; the connection was closed."""


MAX_REPLY = ClientLimits().max_reply
MAX_REPLY_HEAD = ClientLimits().max_reply_header_bytes


class HTTPConnection(asyncio.Protocol):
    def __init__(self, max_body: int = MAX_REPLY, max_head: int = MAX_REPLY_HEAD) -> None:
        self.max_body = max_body
        self.max_head = max_head
        self.size = 0
        self.head_bytes = 0
        self.in_head = True
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.body: list[bytes] = []
        self.keep_alive = True
        self.idle_since = time.monotonic()
        self.lost = False
        self.cert: bytes | None = None  # the server's TLS certificate (DER), once connected
        self.approved: set[str] = set()  # service keys the verify hook accepted for this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's TCPTransport does not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert = ssl_object.getpeercert(binary_form=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("connection closed before the reply"))

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            # httptools holds a header whole until it ends: count the bytes of an unfinished head
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionError(f"malformed HTTP reply: {exc}"))
            return
        if self.in_head and self.head_bytes > self.max_head:
            self._fail(ReplyTooLarge(f"reply headers exceed {self.max_head} bytes"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def on_message_begin(self) -> None:
        self.body = []
        self.size = 0

    def on_headers_complete(self) -> None:
        self.in_head = False

    def on_body(self, data: bytes) -> None:
        if self.lost:
            return
        self.size += len(data)
        if self.size > self.max_body:
            self._fail(ReplyTooLarge(f"reply larger than {self.max_body} bytes"))
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self.in_head = True
        self.head_bytes = 0
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), b"".join(self.body)))

    @property
    def usable(self) -> bool:
        return not self.lost and self.keep_alive and self.transport is not None

    def send(self, data: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


class ConnectionPool:
    """Keep-alive connections to one ``host:port``."""

    def __init__(
        self,
        dest: str,
        limit: int,
        idle_timeout: float,
        *,
        ssl: _ssl.SSLContext | None = None,
        max_reply: int = MAX_REPLY,
        max_reply_head: int = MAX_REPLY_HEAD,
    ) -> None:
        host, _, port = dest.rpartition(":")
        self.dest = dest
        self.host = host.strip("[]")
        self.port = int(port)
        self.limit = limit
        self.idle_timeout = idle_timeout
        self.ssl = ssl
        self.max_reply = max_reply
        self.max_reply_head = max_reply_head
        self.idle: collections.deque[HTTPConnection] = collections.deque()
        self.late: set[HTTPConnection] = set()  # busy waiting for a timed-out request's reply (_salvage)
        self.closed = False
        self.busy = 0
        self.opened = 0  # connections made (each a TCP, and with ``ssl`` a TLS, handshake)
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def try_acquire(self) -> HTTPConnection | None:
        """An idle keep-alive connection, at once, or None."""
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # most recently used first: the likeliest to be alive
            if conn.usable and now - conn.idle_since < self.idle_timeout:
                self.busy += 1
                return conn
            conn.close()
        return None

    async def acquire(self) -> HTTPConnection:
        conn = self.try_acquire()
        if conn is not None:
            return conn
        while self.busy >= self.limit:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiters.append(fut)
            try:
                await fut
            finally:
                with contextlib.suppress(ValueError):
                    self.waiters.remove(fut)
            if self.idle:
                return await self.acquire()
        self.busy += 1
        self.opened += 1
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                lambda: HTTPConnection(self.max_reply, self.max_reply_head),
                self.host,
                self.port,
                ssl=self.ssl,
                ssl_handshake_timeout=10.0 if self.ssl is not None else None,
            )
        except _ssl.SSLCertVerificationError as exc:
            self.busy -= 1
            self._wake()
            raise PeerAuthFailed(f"TLS certificate of {self.dest} refused: {exc.verify_message}") from None
        except OSError as exc:
            self.busy -= 1
            self._wake()
            raise ConnectFailed(
                f"{type(exc).__name__}: {exc}" if isinstance(exc, _ssl.SSLError) else str(exc)
            ) from None
        except BaseException:
            self.busy -= 1
            self._wake()
            raise
        return conn

    def release(self, conn: HTTPConnection, reusable: bool) -> None:
        self.busy -= 1
        self.late.discard(conn)
        if reusable and conn.usable and not self.closed:
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            conn.close()
        self._wake()

    def _wake(self) -> None:
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def close(self) -> None:
        self.closed = True
        for conn in [*self.idle, *self.late]:
            conn.close()  # a late one's waiter fails, and its release closes it (the pool is closed)
        self.idle.clear()


Verify = Callable[[HTTPConnection], bool]


async def exchange(
    pool: ConnectionPool, data: bytes, deadline: float, verify: Verify | None = None
) -> tuple[int, bytes]:
    """Send one request (head and body in ``data``) on a pooled connection; (status, body).

    ``verify`` is called with the connection (its ``cert`` known) before anything is written: if it
    returns False the connection is closed and ``PeerAuthFailed`` raised. Raises ``ConnectFailed`` when
    no connection could be made (nothing was sent), ``TimeoutError`` at the deadline (a
    ``time.monotonic()`` value) and ``ConnectionError`` if the connection broke."""
    loop = asyncio.get_running_loop()
    when = loop_deadline(deadline)
    conn = pool.try_acquire()
    if conn is None:
        async with asyncio.timeout_at(when):
            conn = await pool.acquire()
    reusable = False
    try:
        if verify is not None and not verify(conn):
            raise PeerAuthFailed(f"{pool.dest} refused by the verify_peer hook")
        waiter = conn.send(data)
        caller: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        waiter.add_done_callback(functools.partial(_relay, caller))
        # a timer on the reply, not a timeout scope per request: the cheaper of the two
        timer = loop.call_at(when, _expire, caller)
        try:
            result = await caller
        except TimeoutError:
            _salvage(pool, conn, waiter)  # the connection waits on for its reply: not closed here
            conn = None
            raise
        finally:
            timer.cancel()
        reusable = True
        return result
    finally:
        if conn is not None:
            pool.release(conn, reusable)


LATE_REPLY_S = 10.0
"""How long a connection whose request timed out waits on for the late reply before it is closed. A
timed-out request used to close its connection, and over TLS the next request paid a new handshake: on
an overloaded machine (150 peers on 2 cores) handshakes took half the CPU, which made more requests time
out. Kept busy meanwhile (counted against the pool's limit), then reused once the reply is in."""


def _relay(caller: asyncio.Future[tuple[int, bytes]], waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    exc = None if waiter.cancelled() else waiter.exception()  # retrieved: never "never retrieved"
    if caller.done():
        return
    if waiter.cancelled():
        caller.set_exception(ConnectionResetError("request cancelled"))
    elif exc is not None:
        caller.set_exception(exc)
    else:
        caller.set_result(waiter.result())


def _salvage(pool: ConnectionPool, conn: HTTPConnection, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    def settled(w: asyncio.Future[tuple[int, bytes]]) -> None:
        give_up.cancel()
        ok = not w.cancelled() and w.exception() is None
        pool.release(conn, ok)

    give_up = asyncio.get_running_loop().call_later(LATE_REPLY_S, waiter.cancel)
    pool.late.add(conn)
    waiter.add_done_callback(settled)


def _expire(waiter: asyncio.Future[tuple[int, bytes]]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def loop_deadline(deadline: float) -> float:
    # deadlines are time.monotonic(); asyncio's clock is too, but may differ under uvloop
    loop = asyncio.get_running_loop()
    return loop.time() + (deadline - time.monotonic())
