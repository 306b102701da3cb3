"""``PeerRPCServer``: the Grenache HTTP RPC transport, server side.

One asyncio protocol per connection with llhttp (``httptools``) parsing: HTTP/1.1 keep-alive, chunked
request bodies, pipelined requests answered in order. Unlike grenache-nodejs-http it answers every
request: malformed bodies get ``[rid, "ERR_BAD_REQUEST: …", null]``, oversize ones
``ERR_REQUEST_TOO_LARGE``, unknown keys ``ERR_UNKNOWN_SERVICE`` — never a hang.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import httptools
import msgspec

from . import wire
from .errors import RPCError
from .link import Link

log = logging.getLogger("grenache.server")

Handler = Callable[[Any], Awaitable[Any]]
H = TypeVar("H", bound=Handler)

ERR_UNKNOWN_SERVICE = "ERR_UNKNOWN_SERVICE"
ERR_INVALID_PAYLOAD = "ERR_INVALID_PAYLOAD"
ERR_INTERNAL = "ERR_INTERNAL"

_HEAD_BYTES = 512  # of an oversize body kept to find its rid

_STATUS = {200: b"200 OK", 400: b"400 Bad Request", 413: b"413 Payload Too Large"}


class PeerRPCServer:
    """Serve Grenache RPC over HTTP and announce the served keys through ``link``.

    ``max_body`` caps a request body (after gunzip too); ``idle_timeout`` closes silent connections.
    """

    def __init__(
        self,
        link: Link,
        *,
        host: str = "127.0.0.1",
        max_body: int = 8 * 1024 * 1024,
        idle_timeout: float = 60.0,
    ) -> None:
        self.link = link
        self.host = host
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.port: int = 0
        self._handlers: dict[str, tuple[Handler, type[Any] | None]] = {}
        self._server: asyncio.Server | None = None
        self._announced: set[str] = set()
        self._connections: set[_Connection] = set()

    def handle(self, key: str, payload_type: type[Any] | None = None) -> Callable[[H], H]:
        """Register an async handler for requests sent to ``key``.

        With ``payload_type`` (a msgspec Struct or any type msgspec can convert to), the payload is
        validated and converted first; a mismatch is answered ``ERR_INVALID_PAYLOAD: <where>``.
        """

        def register(fn: H) -> H:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"handler for {key!r} must be an async function")
            self._handlers[key] = (fn, payload_type)
            return cast(H, fn)

        return register

    def add_handler(self, key: str, fn: Handler, payload_type: type[Any] | None = None) -> None:
        self.handle(key, payload_type)(fn)

    async def listen(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, port, reuse_address=True, backlog=1024
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def announce(self, key: str, interval: float | None = None) -> asyncio.Future[Any]:
        """Keep announcing ``key`` on this server's port until :meth:`stop` (await for the first result)."""
        if not self.port:
            raise RuntimeError("listen() before announce()")
        self._announced.add(key)
        return self.link.start_announcing(key, self.port, interval)

    def unannounce(self, key: str) -> None:
        self._announced.discard(key)
        self.link.stop_announcing(key, self.port)

    async def stop(self) -> None:
        for key in list(self._announced):
            self.unannounce(key)
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None

    # dispatch --------------------------------------------------------------------------------------
    async def dispatch(self, key: str, payload: Any) -> Any:
        entry = self._handlers.get(key)
        if entry is None:
            raise RPCError(ERR_UNKNOWN_SERVICE, f"no handler for {key!r}")
        fn, payload_type = entry
        if payload_type is not None:
            try:
                payload = msgspec.convert(payload, payload_type, strict=True)
            except msgspec.ValidationError as exc:
                raise RPCError(ERR_INVALID_PAYLOAD, str(exc)) from None
        return await fn(payload)


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection. Replies are written in request order even if handlers finish out of order."""

    def __init__(self, server: PeerRPCServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.body: list[bytes] = []
        self.size = 0
        self.too_large = False
        self.head = b""
        self.gzip = False
        self.pending: collections.deque[asyncio.Future[bytes]] = collections.deque()
        self.closing = False
        self.idle: asyncio.TimerHandle | None = None
        self._header_name = b""

    # asyncio.Protocol --------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: uvloop's TCPTransport does not subclass asyncio.Transport
        self.transport = cast(asyncio.Transport, transport)
        self.server._connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        if self.idle is not None:
            self.idle.cancel()
        for fut in self.pending:
            fut.cancel()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()  # silence is measured from the last byte, mid-request too
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail_and_close(400, None, wire.ERR_BAD_REQUEST, "protocol upgrade not supported")
        except httptools.HttpParserError as exc:
            self._fail_and_close(400, None, wire.ERR_BAD_REQUEST, f"malformed HTTP: {exc}")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks -----------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.body = []
        self.size = 0
        self.too_large = False
        self.head = b""
        self.gzip = False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"grc-compress" and wire.is_gzip(value):
            self.gzip = True

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.server.max_body:
            if not self.too_large:  # keep the start, to echo the rid in the error reply
                self.head = (b"".join(self.body) + data)[:_HEAD_BYTES]
            self.too_large = True
            self.body = []
        elif not self.too_large:
            self.body.append(data)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.too_large:
            # the body was drained by the parser, so the connection stays usable
            rid = None if self.gzip else wire.rid_of_head(self.head)
            reply = wire.encode_reply(
                rid, f"{wire.ERR_REQUEST_TOO_LARGE}: body exceeds {self.server.max_body} bytes", None
            )
            self._enqueue_ready(reply, keep_alive, gzip=self.gzip)
            return
        body = b"".join(self.body)
        gzip = self.gzip
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        fut.add_done_callback(lambda _f: self._flush())
        task = asyncio.ensure_future(self._answer(body, gzip))
        task.add_done_callback(lambda t: _settle(fut, t))
        if not keep_alive:
            self.closing = True

    # replies -----------------------------------------------------------------------------------------
    async def _answer(self, body: bytes, gzip: bool) -> bytes:
        rid: Any = None
        try:
            if gzip:
                # as the Node server does: if it is not gzip after all, parse it raw
                with contextlib.suppress(zlib.error):
                    body = wire.gunzip_bytes(body, self.server.max_body)
            try:
                rid, key, payload = wire.parse_request(body)
            except RPCError:
                rid = wire.rid_of(body)
                raise
            result = await self.server.dispatch(key, payload)
            reply = wire.encode_reply(rid, None, result)
        except RPCError as exc:
            reply = wire.encode_reply(rid, exc.wire, None)
        except Exception:
            log.exception("RPC handler failed")
            reply = wire.encode_reply(rid, ERR_INTERNAL, None)
        return wire.gzip_bytes(reply) if gzip else reply

    def _enqueue_ready(self, reply: bytes, keep_alive: bool, gzip: bool = False) -> None:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        fut.set_result(wire.gzip_bytes(reply) if gzip else reply)
        self.pending.append(fut)
        if not keep_alive:
            self.closing = True
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        while self.pending and self.pending[0].done():
            fut = self.pending.popleft()
            if transport is None or fut.cancelled():
                continue
            body = fut.result()
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: %s\r\n\r\n" % (
                len(body),
                b"close" if self.closing and not self.pending else b"keep-alive",
            )
            transport.write(head + body)
        if transport is not None and not self.pending:
            if self.closing:
                transport.close()
            else:
                self._arm_idle()

    def _fail_and_close(self, status: int, rid: Any, code: str, message: str) -> None:
        if self.transport is None:
            return
        body = wire.encode_reply(rid, f"{code}: {message}", None)
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (_STATUS.get(status, b"400 Bad Request"), len(body), body)
        )
        self.transport.close()

    def _arm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None
        if self.transport is not None and self.server.idle_timeout:
            self.idle = asyncio.get_running_loop().call_later(self.server.idle_timeout, self.close)


def _settle(fut: asyncio.Future[bytes], task: asyncio.Future[bytes]) -> None:
    if fut.done():
        return
    if task.cancelled():
        fut.cancel()
    else:
        with contextlib.suppress(Exception):
            fut.set_result(task.result())
        if not fut.done():
            fut.cancel()
