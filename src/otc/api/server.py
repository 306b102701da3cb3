"""A small HTTP/1.1 server for the local control API, on llhttp (``httptools``).

Why not aiohttp: the control API is a dozen JSON routes and one event stream on loopback, and aiohttp
alone added 12 MB to every peer process (measured: 48 MB idle with it, the target being 40). Parsing
stays with a library; what is left here is routing, body limits and response framing.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import parse_qsl, unquote

import httptools

log = logging.getLogger("otc.api")
MAX_STREAM_BACKLOG = 1024 * 1024  # bytes of events a client may leave unread before we hang up

REASONS = {
    200: "OK", 201: "Created", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 413: "Payload Too Large", 500: "Internal Server Error",
}  # fmt: skip


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    match_info: dict[str, str] = field(default_factory=dict)

    async def read(self) -> bytes:
        return self.body


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"


class EventStream:
    """A streamed response (server-sent events): ``await send(bytes)`` until the client goes away."""

    def __init__(self, run: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]) -> None:
        self.run = run


Handler = Callable[[Request], Awaitable[Response | EventStream]]


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        for existing, methods in self._routes:
            if existing.pattern == regex.pattern:
                methods[method] = handler
                return
        self._routes.append((regex, {method: handler}))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        for regex, methods in self._routes:
            match = regex.match(path)
            if match:
                if method not in methods:
                    raise HTTPError(405, f"{method} not allowed on {path}")
                return methods[method], {k: unquote(v) for k, v in match.groupdict().items()}
        raise HTTPError(404, f"no endpoint {method} {path}")


ErrorRenderer = Callable[[HTTPError], Response]


class WebServer:
    def __init__(self, router: Router, on_error: ErrorRenderer, *, max_body: int = 64 * 1024) -> None:
        self.router = router
        self.on_error = on_error
        self.max_body = max_body
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None


class _Connection(asyncio.Protocol):
    """Requests on one connection are answered one at a time, in order."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Request | HTTPError, bool]] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.too_large = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        if self.worker is not None:
            self.worker.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # not a subclass of HttpParserError
            self.queue.append((HTTPError(400, "protocol upgrades are not supported"), False))
            self._kick()
        except httptools.HttpParserError as exc:
            self.queue.append((HTTPError(400, f"malformed HTTP: {exc}"), False))
            self._kick()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.server.max_body:
            self.too_large, self.body = True, []
        elif not self.too_large:
            self.body.append(data)

    def on_message_complete(self) -> None:
        keep_alive = self.parser.should_keep_alive()
        if self.too_large:
            item: Request | HTTPError = HTTPError(413, f"body larger than {self.server.max_body} bytes")
        else:
            try:
                url = httptools.parse_url(self.url)
                path = unquote(url.path.decode("latin-1"))
                query = dict(parse_qsl((url.query or b"").decode("latin-1"), keep_blank_values=True))
            except (httptools.HttpParserInvalidURLError, UnicodeDecodeError, ValueError):
                item = HTTPError(400, "malformed URL")
            else:
                method = self.parser.get_method().decode("latin-1")
                item = Request(method, path, query, self.headers, b"".join(self.body))
        self.queue.append((item, keep_alive))
        self._kick()

    def _kick(self) -> None:
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        while self.queue and self.transport is not None:
            item, keep_alive = self.queue.popleft()
            if isinstance(item, HTTPError):
                self._write(self.server.on_error(item), keep_alive=False)
                self.close()
                return
            try:
                handler, item.match_info = self.server.router.resolve(item.method, item.path)
                response = await handler(item)
            except HTTPError as exc:
                response = self.server.on_error(exc)
            except Exception:
                log.exception("API handler failed")
                response = self.server.on_error(HTTPError(500, "internal error"))
            if isinstance(response, EventStream):
                await self._stream(response)
                return
            self._write(response, keep_alive)
            if not keep_alive:
                self.close()
                return

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None:
            return
        head = (
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
            f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + response.body)

    async def _stream(self, stream: EventStream) -> None:
        transport = self.transport
        if transport is None:
            return
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )

        async def send(data: bytes) -> None:
            if self.transport is None:
                raise ConnectionResetError("client went away")
            if self.transport.get_write_buffer_size() > MAX_STREAM_BACKLOG:
                raise ConnectionResetError("client does not read its stream")  # a stalled watcher
            self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

        with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
            await stream.run(send)
        if self.transport is not None:
            self.transport.write(b"0\r\n\r\n")
        self.close()


__all__ = ["EventStream", "HTTPError", "Request", "Response", "Router", "WebServer"]
