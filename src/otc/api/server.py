"""A small HTTP/1.1 server for the local control API, on llhttp (``httptools``).

Why not aiohttp: the control API is a dozen JSON routes and one event stream on loopback, and aiohttp
alone added 12 MB to every peer process (measured: 48 MB idle with it, the target being 40). Parsing
stays with a library; what is left here is routing, framing, and the bounds a mature server enforces
(core/limits.py, "control API"): connections (with eviction of idle ones), idle and request timeouts, URL,
head and body sizes, pipelining depth, event streams. A ``guard`` sees every request as soon as its head
is complete, before any body byte is kept: the API uses it for Host, Origin, media type and the token.

Theory of operation of a connection: bytes are fed to llhttp in measured slices (a head at most
``API_MAX_HEAD_BYTES`` at a time, a body exactly its declared length), so no part of a request is ever
buffered beyond its cap. A request whose head is complete and accepted is queued; a worker answers the
queue in order. A refusal is queued like an answer, after those owed; then the connection half-closes,
discards what the client still sends for a moment (so the refusal arrives instead of a reset), and
closes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import NoReturn, cast
from urllib.parse import parse_qsl, unquote

import httptools

from ..core.limits import (
    API_BODY_TIMEOUT_S,
    API_FD_SHARE,
    API_HEAD_TIMEOUT_S,
    API_IDLE_TIMEOUT_S,
    API_LINGER_BYTES,
    API_LINGER_S,
    API_MAX_BODY_BYTES,
    API_MAX_CONNECTIONS,
    API_MAX_EVENT_STREAMS,
    API_MAX_HEAD_BYTES,
    API_MAX_HEADERS,
    API_MAX_PIPELINED,
    API_MAX_STREAM_BACKLOG,
    API_MAX_URL_BYTES,
)

log = logging.getLogger("otc.api")
DEADLINE_TICK_S = 0.25  # how often connection deadlines (timeouts, linger) are checked

REASONS = {
    200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 409: "Conflict", 411: "Length Required",
    413: "Payload Too Large", 414: "URI Too Long", 415: "Unsupported Media Type",
    431: "Request Header Fields Too Large", 500: "Internal Server Error", 503: "Service Unavailable",
}  # fmt: skip

# Sent with every response. The API serves JSON only, so nothing may be sniffed, cached, framed or read
# by another origin; the CSP is the strict default for anything HTML later (a page sets its own).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}
# headers a request may carry once only: two Host or Authorization headers are an attack, not a mistake
SINGLE_HEADERS = frozenset(
    {"host", "authorization", "origin", "content-type", "content-length", "cookie", "sec-fetch-site"}
)


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes = b""
    match_info: dict[str, str] = field(default_factory=dict)
    principal: str | None = None  # who the guard found this request to come from ("token", "session")

    async def read(self) -> bytes:
        return self.body


@dataclass
class Response:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)  # added to (or overriding) SECURITY_HEADERS


class EventStream:
    """A streamed response (server-sent events): ``await send(bytes)`` until the client goes away."""

    def __init__(self, run: Callable[[Callable[[bytes], Awaitable[None]]], Awaitable[None]]) -> None:
        self.run = run


Handler = Callable[[Request], Awaitable[Response | EventStream]]


class HTTPError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


Guard = Callable[[Request], None]
"""Called with each request once its head is complete (body not read yet); raises ``HTTPError`` to
refuse it, or sets ``request.principal``."""


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


def connection_cap() -> int:
    """``API_MAX_CONNECTIONS``, but never more than 1/``API_FD_SHARE`` of the descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return API_MAX_CONNECTIONS
    return max(8, min(API_MAX_CONNECTIONS, soft // API_FD_SHARE))


class WebServer:
    def __init__(
        self,
        router: Router,
        on_error: ErrorRenderer,
        *,
        guard: Guard | None = None,
        max_body: int = API_MAX_BODY_BYTES,
    ) -> None:
        self.router = router
        self.on_error = on_error
        self.guard = guard
        self.max_body = max_body
        self.max_connections = API_MAX_CONNECTIONS
        self.streams = 0
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self.max_connections = connection_cap()
        self._server = await loop.create_server(
            lambda: _Connection(self), host, port, reuse_address=True, backlog=1024
        )
        self._sweep()
        return int(self._server.sockets[0].getsockname()[1])

    def _sweep(self) -> None:
        """Fire the deadlines that have passed. Connections keep a deadline (a number) instead of a timer
        each: arming one per request cost more than the rest of the request's handling."""
        now = time.monotonic()
        for conn in list(self._connections):
            if conn.deadline is not None and conn.deadline <= now:
                conn.deadline = None
                conn.on_deadline()
        # only while there are connections (``admit`` starts it again): an idle peer does not wake
        self._sweeper = (
            asyncio.get_running_loop().call_later(DEADLINE_TICK_S, self._sweep) if self._connections else None
        )

    def admit(self, conn: _Connection) -> bool:
        """Make room for ``conn`` if the cap is reached: close the connection that was idle (or has been
        sending an unauthenticated request) the longest. False if every connection is busy."""
        if len(self._connections) >= self.max_connections:
            idle = [c for c in self._connections if c.evictable]
            if idle:
                victim = min(idle, key=lambda c: (c.authenticated, c.since))
                self._connections.discard(victim)
                victim.abort()
        if len(self._connections) >= self.max_connections:
            return False
        self._connections.add(conn)
        if self._sweeper is None and self._server is not None:
            self._sweeper = asyncio.get_running_loop().call_later(DEADLINE_TICK_S, self._sweep)
        return True

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.close()
            await self._server.wait_closed()
            self._server = None


class _Stop(Exception):
    """Raised inside a parser callback to stop parsing a refused request."""


_IDLE, _HEAD, _BODY = 0, 1, 2


class _Connection(asyncio.Protocol):
    """Requests on one connection are answered one at a time, in order."""

    def __init__(self, server: WebServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[tuple[Request | HTTPError, bool]] = collections.deque()
        self.worker: asyncio.Task[None] | None = None
        self.deadline: float | None = None  # monotonic time at which ``on_deadline`` runs
        self.on_deadline: Callable[[], None] = self.abort
        self.phase = _IDLE
        self.head_fed = 0  # bytes fed to the parser since the current head began
        self.body_left = 0
        self.handling = False  # a handler (or an event stream) is running for this connection
        self.refused = False  # an error answer is queued: read nothing more
        self.lingering = 0  # bytes discarded since the refusal
        self.authenticated = False  # a request on it passed the guard
        self.read_paused = False
        self.since = time.monotonic()
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_count = 0
        self.body: list[bytes] = []
        self.request: Request | None = None

    @property
    def evictable(self) -> bool:
        return not self.handling and not self.queue

    # --- transport events -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        if not self.server.admit(self):
            self._write(self._error(HTTPError(503, "too many connections", "ERR_SERVER_BUSY")), False)
            self.abort()
            return
        self._arm(API_IDLE_TIMEOUT_S, self._idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.transport = None
        self._disarm()
        if self.worker is not None:
            self.worker.cancel()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        """Close now, without lingering (an evicted, refused or idle connection)."""
        self._disarm()
        if self.transport is not None:
            transport, self.transport = self.transport, None
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            self.lingering += len(data)
            if self.lingering > API_LINGER_BYTES:
                self.abort()
            return
        view: bytes | memoryview
        if self.phase != _BODY and self.head_fed + len(data) <= API_MAX_HEAD_BYTES:
            view = data  # the common case: a whole request (or more) that no cap can be crossed by
        else:
            view = memoryview(data)
        offset = 0
        try:
            while offset < len(view) and not self.refused:
                if self.phase == _BODY:
                    piece = view[offset : offset + max(1, self.body_left)]
                else:  # count head bytes as they go in: httptools keeps a header value whole until it ends
                    piece = view[offset : offset + API_MAX_HEAD_BYTES + 1 - self.head_fed]
                    self.head_fed += len(piece)
                offset += len(piece)
                self.parser.feed_data(piece)
                if self.phase == _HEAD and self.head_fed > API_MAX_HEAD_BYTES:
                    self._refuse(HTTPError(431, f"request head over {API_MAX_HEAD_BYTES} bytes",
                                           "ERR_HEADERS_TOO_LARGE"))  # fmt: skip
        except httptools.HttpParserUpgrade:  # not a subclass of HttpParserError
            self._refuse(HTTPError(400, "protocol upgrades are not supported"))
        except httptools.HttpParserError as exc:
            if not self.refused:  # else a callback stopped the parser on purpose
                self._refuse(HTTPError(400, f"malformed HTTP: {exc}"))
        if self.lingering > API_LINGER_BYTES:
            self.abort()

    # --- httptools callbacks --------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self.phase = _HEAD
        self.since = time.monotonic()
        self._arm(API_HEAD_TIMEOUT_S, self._head_timeout)  # a deadline: more bytes do not extend it

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > API_MAX_URL_BYTES:
            self.url = b""
            self._stop(HTTPError(414, f"URL over {API_MAX_URL_BYTES} bytes", "ERR_URL_TOO_LONG"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > API_MAX_HEADERS:
            self._stop(HTTPError(431, f"more than {API_MAX_HEADERS} headers", "ERR_HEADERS_TOO_LARGE"))
        key = name.decode("latin-1").lower()
        if key in SINGLE_HEADERS and key in self.headers:
            self._stop(HTTPError(400, f"more than one {key} header"))
        self.headers[key] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.phase = _BODY
        self.head_fed = 0
        if "transfer-encoding" in self.headers:
            self._stop(HTTPError(411, "a request body needs a Content-Length", "ERR_LENGTH_REQUIRED"))
        length = int(self.headers.get("content-length") or 0)  # llhttp has checked it is a number
        if length > self.server.max_body:
            self._stop(HTTPError(413, f"body larger than {self.server.max_body} bytes"))
        try:
            url = httptools.parse_url(self.url)
            path = unquote(url.path.decode("latin-1"))
            query = dict(parse_qsl(url.query.decode("latin-1"), keep_blank_values=True)) if url.query else {}
        except (httptools.HttpParserInvalidURLError, UnicodeDecodeError, ValueError):
            self._stop(HTTPError(400, "malformed URL"))
        if url.host is not None:  # absolute-form: meant for a proxy, and its host would outrank Host
            self._stop(HTTPError(400, "the request target must be a path"))
        method = self.parser.get_method().decode("latin-1")
        request = self.request = Request(method, path, query, self.headers)
        if self.server.guard is not None:
            try:
                self.server.guard(request)
            except HTTPError as exc:
                self._stop(exc)
            if request.principal is not None:
                self.authenticated = True
        self.body_left = length
        self._disarm()  # the head's deadline is met
        if length:
            self._arm(API_BODY_TIMEOUT_S, self._body_timeout)
            expects = self.headers.get("expect", "").lower() == "100-continue"
            if expects and self.transport is not None and not self.queue and not self.handling:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # curl waits a second for it

    def on_body(self, data: bytes) -> None:
        self.body.append(data)
        self.body_left -= len(data)

    def on_message_complete(self) -> None:
        self.phase = _IDLE
        self.head_fed = 0
        self._disarm()
        request = self.request
        assert request is not None
        request.body = b"".join(self.body)
        self._reset()
        self.queue.append((request, self.parser.should_keep_alive()))
        if len(self.queue) >= API_MAX_PIPELINED and self.transport is not None:
            self.read_paused = True
            self.transport.pause_reading()
        self._kick()

    # --- refusals and deadlines ------------------------------------------------------------------------
    def _stop(self, error: HTTPError) -> NoReturn:
        self._refuse(error)
        raise _Stop(str(error))

    def _refuse(self, error: HTTPError) -> None:
        """Answer ``error`` after the answers owed, then close; read nothing more."""
        if self.refused:
            return
        self.refused = True
        self._disarm()
        self._reset()
        self.queue.append((error, False))
        self._kick()

    def _idle_timeout(self) -> None:
        if self.phase == _IDLE and self.evictable:
            self.abort()

    def _head_timeout(self) -> None:
        message = f"headers not complete in {API_HEAD_TIMEOUT_S:g} s"
        self._refuse(HTTPError(408, message, "ERR_REQUEST_TIMEOUT"))

    def _body_timeout(self) -> None:
        self._refuse(HTTPError(408, f"body not complete in {API_BODY_TIMEOUT_S:g} s", "ERR_REQUEST_TIMEOUT"))

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` once ``seconds`` have passed (to within ``DEADLINE_TICK_S``)."""
        if self.transport is not None:
            self.deadline = time.monotonic() + seconds
            self.on_deadline = callback

    def _disarm(self) -> None:
        self.deadline = None

    def _linger(self) -> None:
        """Half-close after a refusal; close once the client has read it (or after a moment)."""
        transport = self.transport
        if transport is None:
            return
        if self.read_paused:
            transport.resume_reading()
        if not transport.can_write_eof():
            self.close()
            return
        transport.write_eof()
        self._arm(API_LINGER_S, self.abort)

    # --- answering ------------------------------------------------------------------------------------
    def _kick(self) -> None:
        if self.worker is None or self.worker.done():
            self.worker = asyncio.ensure_future(self._work())

    async def _work(self) -> None:
        while self.queue and self.transport is not None:
            item, keep_alive = self.queue.popleft()
            if self.read_paused and len(self.queue) < API_MAX_PIPELINED and not self.refused:
                self.read_paused = False
                self.transport.resume_reading()
            if isinstance(item, HTTPError):
                self._write(self._error(item), keep_alive=False)
                self._linger()
                return
            self.handling = True
            try:
                try:
                    handler, item.match_info = self.server.router.resolve(item.method, item.path)
                    response = await handler(item)
                except HTTPError as exc:
                    response = self._error(exc)
                except Exception:
                    log.exception("API handler failed")
                    response = self._error(HTTPError(500, "internal error"))
                if isinstance(response, EventStream):
                    await self._stream(response)
                    return
            finally:
                self.handling = False
            self._write(response, keep_alive)
            self.since = time.monotonic()
            if not keep_alive:
                self.close()
                return
        if self.transport is not None and self.phase == _IDLE and not self.refused:
            self._arm(API_IDLE_TIMEOUT_S, self._idle_timeout)

    def _error(self, exc: HTTPError) -> Response:
        response = self.server.on_error(exc)
        response.headers.update(exc.headers)
        return response

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None:
            return
        head = (
            f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}\r\n"
            f"Content-Type: {response.content_type}\r\nContent-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n{_headers(response.headers)}\r\n"
        )
        self.transport.write(head.encode("latin-1") + response.body)

    async def _stream(self, stream: EventStream) -> None:
        transport = self.transport
        if transport is None:
            return
        if self.server.streams >= API_MAX_EVENT_STREAMS:
            busy = HTTPError(503, f"more than {API_MAX_EVENT_STREAMS} event streams", "ERR_SERVER_BUSY")
            self._write(self._error(busy), keep_alive=False)
            self.close()
            return
        self.server.streams += 1
        try:
            transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n" + _headers({}).encode("latin-1") + b"\r\n"
            )

            async def send(data: bytes) -> None:
                if self.transport is None:
                    raise ConnectionResetError("client went away")
                if self.transport.get_write_buffer_size() > API_MAX_STREAM_BACKLOG:
                    raise ConnectionResetError("client does not read its stream")  # a stalled watcher
                self.transport.write(b"%x\r\n%s\r\n" % (len(data), data))

            with contextlib.suppress(ConnectionResetError, asyncio.CancelledError):
                await stream.run(send)
            if self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
            self.close()
        finally:
            self.server.streams -= 1


_SECURITY_BLOCK = "".join(f"{k}: {v}\r\n" for k, v in SECURITY_HEADERS.items())


def _headers(extra: dict[str, str]) -> str:
    if not extra:
        return _SECURITY_BLOCK
    return "".join(f"{k}: {v}\r\n" for k, v in (SECURITY_HEADERS | extra).items())


__all__ = ["EventStream", "Guard", "HTTPError", "Request", "Response", "Router", "WebServer"]
