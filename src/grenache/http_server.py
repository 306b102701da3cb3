"""The HTTP(S) transport of ``PeerRPCServer``, as grenache-nodejs-http 1.0.2 speaks it.

One asyncio protocol per connection with llhttp (``httptools``) parsing: HTTP/1.1 keep-alive, chunked
request bodies, pipelined requests answered in order, streaming requests (``_gr`` header) handed to
their handler while the body arrives. Every limit of ``ServerLimits`` is enforced here, as bytes arrive:

* connections: counted at ``connection_made``; at the cap the longest-idle keep-alive connection is
  closed to make room, and if none is idle the newcomer gets 503 and is closed;
* URL and header bytes: the URL is counted as llhttp delivers it; httptools accumulates a header's name
  and value internally before calling ``on_header``, so while a request's head is incomplete bytes are
  fed in slices of ``_HEAD_SLICE`` and counted, which bounds what it holds to the cap plus one slice;
* time: a deadline for the head (and the TLS handshake), a stall timer inside bodies, an idle timer
  between requests;
* body bytes: per request, and a budget across all connections (``BodyBudget``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import httptools

from . import wire
from .errors import RPCError
from .limits import BodyBudget
from .server import ERR_INTERNAL, Request, RequestStream, StreamReply

if TYPE_CHECKING:
    from .server import PeerRPCServer

log = logging.getLogger("grenache.server")

ERR_HEADERS_TOO_LARGE = "ERR_HEADERS_TOO_LARGE"
ERR_URL_TOO_LONG = "ERR_URL_TOO_LONG"
ERR_SERVER_BUSY = "ERR_SERVER_BUSY"
ERR_REQUEST_TIMEOUT = "ERR_REQUEST_TIMEOUT"
ERR_TOO_MANY_CONNECTIONS = "ERR_TOO_MANY_CONNECTIONS"
ERR_HEADER_PARSE_GR = "ERR_HEADER_PARSE_GR"

_HEAD_BYTES = 512  # of an oversize body kept to find its rid
_HEAD_SLICE = 16 * 1024
_LINGER = 1.0  # seconds a refused connection is drained before it is closed

_STATUS = {
    200: b"200 OK",
    400: b"400 Bad Request",
    408: b"408 Request Timeout",
    413: b"413 Payload Too Large",
    414: b"414 URI Too Long",
    431: b"431 Request Header Fields Too Large",
    500: b"500 Internal Server Error",
    503: b"503 Service Unavailable",
}

_SPECIAL = frozenset((b"content-length", b"transfer-encoding", b"grc-compress", b"_gr", b"_a", b"_ar"))
_SPECIAL_FIRST = frozenset(b"cCtTgG_")  # first bytes of those names, any case

# connection phases
_IDLE, _HEAD, _BODY = 0, 1, 2


class HTTPListener:
    """The listening socket and the state shared by its connections (count, body budget)."""

    def __init__(self, server: PeerRPCServer) -> None:
        self.server = server
        self.limits = server.limits
        self.connections: set[_Connection] = set()
        self.budget = BodyBudget(server.limits.body_budget, server.limits.body_reserve)
        self.max_connections = server.limits.effective_max_connections()
        self._server: asyncio.Server | None = None
        # one sweep over the connections' deadlines every ``tick`` seconds instead of a timer per
        # connection re-armed several times per request (measured: a third of the per-request cost)
        limits = server.limits
        timeouts = [t for t in (limits.header_timeout, limits.body_timeout, limits.idle_timeout) if t]
        self.tick = min([0.25, *(t / 4 for t in timeouts)])
        self.loop = asyncio.get_running_loop()
        self._sweeper: asyncio.TimerHandle | None = None

    def watch(self) -> None:
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(self.tick, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self.loop.time()
        for conn in list(self.connections):
            if conn.deadline <= now:
                conn.deadline = math.inf
                callback, conn.on_deadline = conn.on_deadline, None
                if callback is not None:
                    callback()
        if self.connections:
            self.watch()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        ssl = self.server.ssl
        self._server = await loop.create_server(
            lambda: _Connection(self),
            host,
            port,
            reuse_address=True,
            backlog=1024,
            ssl=ssl,
            ssl_handshake_timeout=self.limits.header_timeout if ssl is not None else None,
        )
        return int(self._server.sockets[0].getsockname()[1])

    def admit(self, conn: _Connection) -> bool:
        if len(self.connections) >= self.max_connections:
            idle = [c for c in self.connections if c.is_idle]
            if idle:
                victim = min(idle, key=lambda c: c.idle_since)
                victim.dead = True
                victim.close()
                self.connections.discard(victim)  # its connection_lost comes later
        if len(self.connections) >= self.max_connections:
            return False
        self.connections.add(conn)
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self.connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _Reply:
    """One request's place in the connection's reply order."""

    __slots__ = ("charged", "future", "status")

    def __init__(self, future: asyncio.Future[bytes | StreamReply], charged: int, status: int = 200) -> None:
        self.future = future
        self.charged = charged
        self.status = status


class _Connection(asyncio.Protocol):
    def __init__(self, listener: HTTPListener) -> None:
        self.listener = listener
        self.server = listener.server
        self.limits = listener.limits
        self.max_header_bytes = listener.limits.max_header_bytes
        self.head_cap = listener.limits.max_header_bytes + listener.limits.max_url_bytes
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.peer: str | None = None
        self.cert: bytes | None = None
        self.phase = _IDLE
        self.idle_since = time.monotonic()
        self.deadline = math.inf  # loop time at which on_deadline runs (checked by the listener's sweep)
        self.on_deadline: Callable[[], None] | None = None
        self.pending: collections.deque[_Reply] = collections.deque()
        self.closing = False  # close once the pending replies are written
        self.dead = False  # stop parsing: the connection is being refused or closed
        self.pauses: set[str] = set()
        self.write_paused: asyncio.Future[None] | None = None
        self.streaming_reply = False
        self.fed = 0  # bytes fed to the parser so far
        self._reset_request()

    def _reset_request(self) -> None:
        self.head_base = self.fed
        self.url_bytes = 0
        self.header_bytes = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.special: dict[bytes, bytes] = {}  # the headers Grenache gives a meaning to
        self.compress = False
        self.content_length: int | None = None
        self.body: list[bytes] = []
        self.size = 0
        self.charged = 0
        self.too_large = False
        self.head = b""
        self.stream: RequestStream | None = None
        self.request: Request | None = None
        self.gr: list[Any] | None = None

    # asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's TCPTransport does not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        if not self.listener.admit(self):
            body = wire.encode_reply(None, f"{ERR_TOO_MANY_CONNECTIONS}: server at its connection cap", None)
            self.transport.write(self._head(503, len(body), close=True) + body)
            self.transport.close()
            self.transport = None
            self.dead = True
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert = ssl_object.getpeercert(binary_form=True)
        # a new connection must send its first request's headers promptly (an idle flood is closed)
        self._arm(self.limits.header_timeout, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.transport = None
        self.dead = True
        self._cancel_timer()
        budget = self.listener.budget
        budget.give(self.charged)
        self.charged = 0
        for reply in self.pending:
            budget.give(reply.charged)
            reply.future.cancel()
        self.pending.clear()
        if self.stream is not None:
            self.stream.end(ConnectionResetError("connection closed mid-stream"))
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def pause_writing(self) -> None:
        # the client does not read its replies: read no more requests from it until it does
        self._pause("write", True)
        if self.write_paused is None or self.write_paused.done():
            self.write_paused = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._pause("write", False)
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.dead:
            return
        phase = self.phase
        if phase == _BODY:
            self._arm(self.limits.body_timeout, self._body_timeout)
        if phase == _BODY or len(data) <= _HEAD_SLICE:
            # the common case: one read holds whole small requests (or the middle of a body)
            self.fed += len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                self._refuse(400, wire.ERR_BAD_REQUEST, "protocol upgrade not supported")
            except httptools.HttpParserError as exc:
                if not self.dead:
                    self._refuse(400, wire.ERR_BAD_REQUEST, f"malformed HTTP: {exc}")
            else:
                if self.phase == _HEAD and self.fed - self.head_base > self.head_cap + _HEAD_SLICE:
                    self._refuse(431, ERR_HEADERS_TOO_LARGE, f"request head exceeds {self.head_cap} bytes")
            return
        head_cap = self.limits.max_header_bytes + self.limits.max_url_bytes
        view = memoryview(data)
        offset = 0
        try:
            while offset < len(view) and not self.dead:
                # while a head is incomplete, feed small slices and count (httptools buffers header
                # values whole before it calls on_header); bodies go in one piece
                step = len(view) - offset if self.phase == _BODY else _HEAD_SLICE
                piece = view[offset : offset + step]
                offset += len(piece)
                self.fed += len(piece)
                self.parser.feed_data(piece)
                if self.phase == _HEAD and self.fed - self.head_base > head_cap + _HEAD_SLICE:
                    self._refuse(431, ERR_HEADERS_TOO_LARGE, f"request head exceeds {head_cap} bytes")
        except httptools.HttpParserUpgrade:
            self._refuse(400, wire.ERR_BAD_REQUEST, "protocol upgrade not supported")
        except httptools.HttpParserError as exc:
            if not self.dead:
                self._refuse(400, wire.ERR_BAD_REQUEST, f"malformed HTTP: {exc}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def is_idle(self) -> bool:
        return self.phase == _IDLE and not self.pending and not self.dead

    # httptools callbacks -----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_request()
        self.phase = _HEAD
        self._arm(self.limits.header_timeout, self._head_timeout)  # a deadline: bytes do not extend it

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.url_bytes > self.limits.max_url_bytes:
            self._refuse(414, ERR_URL_TOO_LONG, f"request target exceeds {self.limits.max_url_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.headers
        headers.append((name, value))
        self.header_bytes += len(name) + len(value) + 4
        if self.header_bytes > self.max_header_bytes or len(headers) > self.limits.max_headers:
            self._refuse(
                431,
                ERR_HEADERS_TOO_LARGE,
                f"headers exceed {self.max_header_bytes} bytes or {self.limits.max_headers} lines",
            )
            return
        if name[0] in _SPECIAL_FIRST:  # most headers are none of ours: skip lower() and the lookup
            lname = name.lower()
            if lname in _SPECIAL:
                self.special[lname] = value
                if lname == b"content-length":
                    with contextlib.suppress(ValueError):
                        self.content_length = int(value)

    def on_headers_complete(self) -> None:
        if self.dead:
            return
        self.phase = _BODY
        self.head_base = self.fed
        self._arm(self.limits.body_timeout, self._body_timeout)
        special = self.special
        request = self.request = Request("", None, "http", self.peer, self.cert, self.headers, special)
        self.compress = b"grc-compress" in special and wire.is_gzip(special[b"grc-compress"])
        gr_raw = special.get(b"_gr")
        if gr_raw is not None:
            try:
                gr = wire.decode(gr_raw)
            except Exception:
                gr = None
            if not isinstance(gr, list):
                # as grenache-nodejs-http answers an unparsable _gr header
                self._refuse(500, ERR_HEADER_PARSE_GR, "", raw=b'[null, "ERR_HEADER_PARSE_GR", null]')
                return
            self.gr = gr
            request.rid = gr[0] if gr else None
            request.key = gr[1] if len(gr) > 1 and isinstance(gr[1], str) else ""
            handler = self.server.stream_handler(request.key)
            if handler is not None:
                self._start_stream(handler, request)
                return
        length = self.content_length
        if length is not None:
            if length > self.limits.max_body:
                self.too_large = True  # drained, not kept; answered at the end with the rid it started with
            elif not self._charge(length, length <= self.limits.small_body):
                return

    def on_body(self, data: bytes) -> None:
        if self.dead:
            return
        if self.stream is not None:
            self.stream.feed(data)
            return
        self.size += len(data)
        if self.too_large or self.size > self.limits.max_body:
            if len(self.head) < _HEAD_BYTES:  # keep the start, to echo the rid in the error reply
                self.head = (self.head + b"".join(self.body) + data)[:_HEAD_BYTES]
            self.too_large = True
            self.body = []
            self._uncharge()
            return
        # chunked: charged as it grows
        if self.content_length is None and not self._charge(len(data), self.size <= self.limits.small_body):
            return
        self.body.append(data)

    def on_message_complete(self) -> None:
        if self.dead:
            return
        self.phase = _IDLE
        self.idle_since = time.monotonic()
        self._cancel_timer()
        keep_alive = self.parser.should_keep_alive()
        if not keep_alive:
            self.closing = True
        if self.stream is not None:
            self.stream.end()
            self.stream = None
            self._after_enqueue()
            return
        request = self.request
        assert request is not None
        charged, self.charged = self.charged, 0
        if self.too_large:
            rid = None if self.compress else wire.rid_of_head(self.head)
            reply = wire.encode_reply(
                rid, f"{wire.ERR_REQUEST_TOO_LARGE}: body exceeds {self.limits.max_body} bytes", None
            )
            self._enqueue_ready(wire.gzip_bytes(reply) if self.compress else reply, charged)
            return
        body = b"".join(self.body)
        self.body = []
        fut: asyncio.Future[bytes | StreamReply] = asyncio.get_running_loop().create_future()
        entry = _Reply(fut, charged)
        self.pending.append(entry)
        fut.add_done_callback(lambda _f: self._flush())
        task = asyncio.ensure_future(self._answer(body, request, self.gr, entry, self.compress))
        task.add_done_callback(lambda t: _settle(fut, t))
        self._after_enqueue()

    # budget ------------------------------------------------------------------------------------------
    def _charge(self, n: int, small: bool) -> bool:
        if self.listener.budget.take(n, small):
            self.charged += n
            return True
        self._uncharge()
        self._refuse(
            503,
            ERR_SERVER_BUSY,
            f"request bodies in progress use the server's {self.limits.body_budget}-byte budget",
        )
        return False

    def _uncharge(self) -> None:
        self.listener.budget.give(self.charged)
        self.charged = 0

    # replies -----------------------------------------------------------------------------------------
    async def _answer(
        self, body: bytes, request: Request, gr: list[Any] | None, entry: _Reply, gzip: bool
    ) -> bytes:
        rid: Any = request.rid
        try:
            if gzip:
                # as the Node server does: if it is not gzip after all, parse it raw
                with contextlib.suppress(zlib.error):
                    inflated = wire.gunzip_bytes(body, self.limits.max_body)
                    if not self.listener.budget.take(len(inflated), len(inflated) <= self.limits.small_body):
                        raise RPCError(ERR_SERVER_BUSY, "inflated body does not fit the server's budget")
                    entry.charged += len(inflated)
                    body = inflated
            try:
                if gr is not None:
                    rid, key, payload = wire.parse_request_with_info(body, gr)
                else:
                    rid, key, payload = wire.parse_request(body)
            except RPCError:
                rid = rid if gr is not None else wire.rid_of(body)
                raise
            request.rid, request.key = rid, key
            del body
            result = await self.server.dispatch(key, payload, request)
            reply = wire.encode_reply(rid, None, result)
        except RPCError as exc:
            reply = wire.encode_reply(rid, exc.wire, None)
        except Exception:
            log.exception("RPC handler failed")
            reply = wire.encode_reply(rid, ERR_INTERNAL, None)
        return wire.gzip_bytes(reply) if gzip else reply

    def _start_stream(self, handler: Any, request: Request) -> None:
        stream = self.stream = RequestStream(request, self.limits.stream_buffer, self._stream_pause)
        fut: asyncio.Future[bytes | StreamReply] = asyncio.get_running_loop().create_future()
        self.pending.append(_Reply(fut, 0))
        fut.add_done_callback(lambda _f: self._flush())

        async def run() -> bytes | StreamReply:
            try:
                result = await handler(stream)
                if isinstance(result, StreamReply):
                    return result
                return wire.encode_reply(request.rid, None, result)
            except RPCError as exc:
                return wire.encode_reply(request.rid, exc.wire, None)
            except ConnectionError:
                raise
            except Exception:
                log.exception("RPC stream handler failed")
                return wire.encode_reply(request.rid, ERR_INTERNAL, None)

        task = asyncio.ensure_future(run())
        task.add_done_callback(lambda t: _settle(fut, t))

    def _stream_pause(self, pause: bool) -> None:
        self._pause("stream", pause)
        if pause:
            self._cancel_timer()  # our handler is slow, not the client
        elif self.phase == _BODY:
            self._arm(self.limits.body_timeout, self._body_timeout)

    def _pause(self, reason: str, pause: bool) -> None:
        transport = self.transport
        was = bool(self.pauses)
        if pause:
            self.pauses.add(reason)
        else:
            self.pauses.discard(reason)
        if transport is None or was == bool(self.pauses):
            return
        if self.pauses:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _after_enqueue(self) -> None:
        if len(self.pending) >= self.limits.max_pipelined:
            self._pause("pipeline", True)
        if not self.pending or self.pending[0].future.done():  # else the reply's own callback flushes
            self._flush()

    def _enqueue_ready(self, reply: bytes, charged: int = 0, status: int = 200) -> None:
        fut: asyncio.Future[bytes | StreamReply] = asyncio.get_running_loop().create_future()
        fut.set_result(reply)
        self.pending.append(_Reply(fut, charged, status))
        self._after_enqueue()

    def _flush(self) -> None:
        if self.streaming_reply:
            return
        transport = self.transport
        budget = self.listener.budget
        while self.pending and self.pending[0].future.done():
            entry = self.pending.popleft()
            budget.give(entry.charged)
            if transport is None or entry.future.cancelled():
                continue
            last = not self.pending
            # a streaming request answered before its body ended: the rest of it is not read
            close = (self.closing and last) or (self.stream is not None and last)
            result = entry.future.result()
            if isinstance(result, StreamReply):
                self.streaming_reply = True
                task = asyncio.ensure_future(self._write_stream(result, close))
                task.add_done_callback(lambda t: t.cancelled() or t.exception())
                return
            transport.write(self._head(entry.status, len(result), close) + result)  # one TLS record
            if close:
                self.closing = True
        if len(self.pending) < self.limits.max_pipelined:
            self._pause("pipeline", False)
        if transport is not None and not self.pending:
            if self.closing:
                self._linger(transport)
            elif self.phase == _IDLE:
                self.idle_since = time.monotonic()
                self._arm(self.limits.idle_timeout, self.close)

    async def _write_stream(self, reply: StreamReply, close: bool) -> None:
        try:
            transport = self.transport
            if transport is None:
                return
            transport.write(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: %s\r\n\r\n"
                % (b"close" if close else b"keep-alive")
            )
            async for chunk in reply.chunks:
                if self.transport is None:
                    return
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                if self.write_paused is not None:
                    await self.write_paused
            if self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
                if close:
                    self.closing = True
        except Exception:
            log.exception("streamed reply failed")
            self.closing = True
            if self.transport is not None:
                self.transport.abort()
        finally:
            self.streaming_reply = False
            self._flush()

    def _linger(self, transport: asyncio.Transport) -> None:
        """Close after the last reply. If the client may still be sending (a refused request), closing
        with unread bytes would reset the connection and could destroy our reply in flight: send FIN,
        go on reading and discarding for ``_LINGER`` seconds, then close (Apache's lingering close)."""
        refused = self.dead
        self.dead = True
        if not refused or not transport.can_write_eof():
            transport.close()
            return
        with contextlib.suppress(Exception):
            transport.resume_reading()
        transport.write_eof()
        self._arm(_LINGER, transport.close)

    @staticmethod
    def _head(status: int, length: int, close: bool) -> bytes:
        return b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (
            _STATUS.get(status, b"400 Bad Request"),
            length,
            b"close" if close else b"keep-alive",
        )

    def _refuse(self, status: int, code: str, message: str, raw: bytes | None = None) -> None:
        """Answer (after the replies already owed, in order) and close; read nothing more."""
        if self.dead:
            return
        self.dead = True
        self._cancel_timer()
        self._uncharge()
        self.body = []  # what was charged goes, now
        if self.stream is not None:
            self.stream.end(RPCError(code, message))
            self.stream = None
        body = raw if raw is not None else wire.encode_reply(None, f"{code}: {message}", None)
        self.closing = True
        self.pauses.clear()
        fut: asyncio.Future[bytes | StreamReply] = asyncio.get_running_loop().create_future()
        fut.set_result(body)
        self.pending.append(_Reply(fut, 0, status))
        self._flush()

    # timers ------------------------------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        if self.transport is not None and seconds:
            self.deadline = self.listener.loop.time() + seconds
            self.on_deadline = callback
            self.listener.watch()
        else:
            self.deadline = math.inf

    def _cancel_timer(self) -> None:
        self.deadline = math.inf

    def _head_timeout(self) -> None:
        if self.phase == _IDLE and not self.pending and self.fed == 0:
            self.close()  # connected and never said anything
            return
        self._refuse(408, ERR_REQUEST_TIMEOUT, f"headers not complete in {self.limits.header_timeout:g} s")

    def _body_timeout(self) -> None:
        self._refuse(408, ERR_REQUEST_TIMEOUT, f"body stalled for {self.limits.body_timeout:g} s")


def _settle(fut: asyncio.Future[bytes | StreamReply], task: asyncio.Future[Any]) -> None:
    if fut.done():
        return
    if task.cancelled():
        fut.cancel()
    else:
        with contextlib.suppress(Exception):
            fut.set_result(task.result())
        if not fut.done():
            fut.cancel()
