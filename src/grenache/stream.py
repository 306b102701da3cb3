"""Streaming requests on the HTTP transport, as grenache-nodejs-http's ``peer.stream(key, opts)`` sends them.

The request is ``POST /`` with ``_gr: [rid, key]`` (so the server knows the rid and key before the
body), ``Transfer-Encoding: chunked``, ``Connection: close`` and the caller's headers (non-string values
JSON-encoded, e.g. ``_a`` / ``_ar``); its body is raw bytes, written as they come. The reply body is read
as it arrives, at the same time: iterate it raw, or ``reply()`` parses a ``[rid, error, result]``
reply. Each stream has its own connection (Node's does too), with TLS and ``verify_peer`` as for
requests. Bounds: the reply body is queued up to 256 KiB before we stop reading the socket, and
``reply()`` reads at most the client's ``max_reply`` bytes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl as _ssl
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Self, cast

import httptools

from . import wire
from .errors import RPCError
from .http import ConnectFailed, PeerAuthFailed, loop_deadline

if TYPE_CHECKING:
    from .client import PeerRPCClient

_QUEUE_HIGH = 256 * 1024


class _StreamConnection(asyncio.Protocol):
    def __init__(self, max_head: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.max_head = max_head
        self.head_bytes = 0
        self.in_head = True
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.chunks: collections.deque[bytes] = collections.deque()
        self.queued = 0
        self.done = False
        self.error: BaseException | None = None
        self.wakeup: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.cert: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert = ssl_object.getpeercert(binary_form=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.done:
            self._finish(ConnectionResetError("connection closed before the reply ended"))
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def pause_writing(self) -> None:
        self.drained = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(ConnectionError(f"malformed HTTP reply: {exc}"))
            self.close()
            return
        if self.in_head and self.head_bytes > self.max_head:
            self._finish(ConnectionError(f"reply headers exceed {self.max_head} bytes"))
            self.close()

    def on_headers_complete(self) -> None:
        self.in_head = False
        if not self.status.done():
            self.status.set_result(self.parser.get_status_code())

    def on_body(self, data: bytes) -> None:
        self.chunks.append(data)
        self.queued += len(data)
        if self.queued > _QUEUE_HIGH and self.transport is not None:
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        self.done = True
        self.error = error
        if not self.status.done():
            self.status.set_exception(error or ConnectionError("no reply"))
            self.status.exception()  # retrieved: the reader sees it through next_chunk
        self._wake()

    def _wake(self) -> None:
        if self.wakeup is not None and not self.wakeup.done():
            self.wakeup.set_result(None)

    async def next_chunk(self) -> bytes | None:
        while not self.chunks:
            if self.done:
                if self.error is not None:
                    raise self.error
                return None
            self.wakeup = asyncio.get_running_loop().create_future()
            await self.wakeup
        chunk = self.chunks.popleft()
        self.queued -= len(chunk)
        if self.queued <= _QUEUE_HIGH // 2 and self.transport is not None:
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()
        return chunk

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class RPCStream:
    """One streaming request. Use as ``async with client.stream(key, headers=...) as s``: ``await
    s.write(data)`` any number of times, ``await s.end()``, then ``async for chunk in s`` (the raw reply)
    or ``await s.reply()`` (the result of a ``[rid, error, result]`` reply, or its ``RPCError``)."""

    def __init__(
        self,
        client: PeerRPCClient,
        key: str,
        *,
        headers: dict[str, Any] | None = None,
        timeout: float | None = None,
        dest: str | None = None,
    ) -> None:
        self.client = client
        self.key = key
        self.rid = str(uuid.uuid4())
        self.headers = headers or {}
        self.deadline = time.monotonic() + (timeout or client.timeout)
        self.dest = dest
        self._conn: _StreamConnection | None = None
        self._ended = False

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def open(self) -> None:
        try:
            async with asyncio.timeout_at(loop_deadline(self.deadline)):
                if self.dest is None:
                    self.dest = self.client._pick(await self.client.link.lookup(self.key))
                self._conn = await self._connect(self.dest)
        except TimeoutError:
            raise RPCError(
                "ERR_TIMEOUT", f"stream to {self.key!r} could not start in time", self.dest
            ) from None
        except PeerAuthFailed as exc:
            raise RPCError("ERR_PEER_AUTH", str(exc), self.dest) from None
        except ConnectFailed as exc:
            raise RPCError(
                "ERR_REQUEST_GENERIC", f"connect to {self.dest} failed: {exc}", self.dest
            ) from None
        head = [
            "POST / HTTP/1.1",
            f"Host: {self.dest}",
            f"_gr: {wire.encode([self.rid, self.key]).decode()}",
            "Connection: close",
            "Transfer-Encoding: chunked",
        ]
        for name, value in self.headers.items():
            text = value if isinstance(value, str) else wire.encode(value).decode()
            if "\r" in name + text or "\n" in name + text or ":" in name:
                raise ValueError(f"invalid header {name!r}")
            head.append(f"{name}: {text}")
        self._write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))

    async def _connect(self, dest: str) -> _StreamConnection:
        host, _, port = dest.rpartition(":")
        host = host.strip("[]")
        ssl = self.client.ssl
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _StreamConnection(self.client.limits.max_reply_header_bytes),
                host,
                int(port),
                ssl=ssl,
                server_hostname=host if ssl else None,
            )
        except _ssl.SSLCertVerificationError as exc:
            raise PeerAuthFailed(f"TLS certificate of {dest} refused: {exc.verify_message}") from None
        except OSError as exc:
            raise ConnectFailed(str(exc)) from None
        if not self.client.approve(dest, self.key, conn.cert, set()):
            conn.close()
            raise PeerAuthFailed(f"{dest} refused by the verify_peer hook")
        return conn

    def _write(self, data: bytes) -> None:
        conn = self._conn
        if conn is None or conn.transport is None:
            raise RPCError("ERR_REQUEST_GENERIC", f"stream to {self.dest} is closed", self.dest)
        conn.transport.write(data)

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one chunk; waits while the socket's write buffer is full."""
        if self._ended:
            raise RuntimeError("write() after end()")
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data))
        conn = self._conn
        if conn is not None and conn.drained is not None and not conn.drained.done():
            async with asyncio.timeout_at(loop_deadline(self.deadline)):
                await conn.drained

    async def end(self) -> None:
        """End the request body."""
        if not self._ended:
            self._ended = True
            self._write(b"0\r\n\r\n")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        conn = self._conn
        assert conn is not None, "open() first"
        try:
            async with asyncio.timeout_at(loop_deadline(self.deadline)):
                while (chunk := await conn.next_chunk()) is not None:
                    yield chunk
        except TimeoutError:
            raise RPCError("ERR_TIMEOUT", f"stream to {self.key!r} did not end in time", self.dest) from None
        except ConnectionError as exc:
            raise RPCError("ERR_REQUEST_GENERIC", f"{self.dest}: {exc}", self.dest) from None

    async def status(self) -> int:
        """The reply's HTTP status, once its headers arrived."""
        conn = self._conn
        assert conn is not None, "open() first"
        async with asyncio.timeout_at(loop_deadline(self.deadline)):
            return await asyncio.shield(conn.status)

    async def reply(self, result_type: Any = None) -> Any:
        """Read the whole reply (ending the request first) as ``[rid, error, result]``."""
        await self.end()
        parts: list[bytes] = []
        size = 0
        limit = self.client.limits.max_reply
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                self.close()
                raise RPCError("ERR_REPLY_TOO_LARGE", f"stream reply exceeds {limit} bytes", self.dest)
            parts.append(chunk)
        from .client import check_reply

        assert self.dest is not None
        return check_reply(self.dest, self.rid, b"".join(parts), result_type)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
