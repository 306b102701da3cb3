"""``PeerRPCServer``: serve Grenache RPC on the HTTP or the WebSocket transport.

The server holds the handlers and announces its keys; the transport (``http_server.py``,
``ws_server.py``) carries the ``[rid, key, payload]`` → ``[rid, error, result]`` frames. Unlike the Node
originals it answers every request: malformed bodies get ``[rid, "ERR_BAD_REQUEST: …", null]``, oversize
ones ``ERR_REQUEST_TOO_LARGE``, unknown keys ``ERR_UNKNOWN_SERVICE``, never a hang. Every resource it
spends on a client is bounded (``limits.ServerLimits``).

Handlers are async functions of the payload, optionally with a second parameter, the
:class:`Request` (the caller's address and TLS certificate, Node's ``meta``). Streaming handlers
(HTTP only, Node's ``stream`` event with ``disableBuffered``) get a :class:`RequestStream`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as _ssl
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import msgspec

from .errors import RPCError
from .limits import ServerLimits
from .link import Link

log = logging.getLogger("grenache.server")

Handler = Callable[..., Awaitable[Any]]
H = TypeVar("H", bound=Handler)
Transport = Literal["http", "ws"]

ERR_UNKNOWN_SERVICE = "ERR_UNKNOWN_SERVICE"
ERR_INVALID_PAYLOAD = "ERR_INVALID_PAYLOAD"
ERR_INTERNAL = "ERR_INTERNAL"


class Request:
    """What a handler may know about a request besides its payload (Node's ``meta`` and ``cert``).

    Built for every request, so it stores what it is given and works out the rest when asked."""

    __slots__ = ("_special", "cert", "key", "peer", "raw_headers", "rid", "transport")

    def __init__(
        self,
        key: str,
        rid: Any,
        transport: Transport,
        peer: str | None = None,
        cert: bytes | None = None,
        raw_headers: list[tuple[bytes, bytes]] | None = None,
        special: dict[bytes, bytes] | None = None,
    ) -> None:
        self.key = key
        self.rid = rid
        self.transport: Transport = transport
        self.peer = peer
        """The caller's ``"ip:port"``."""
        self.cert = cert
        """The caller's TLS certificate (DER) when it presented one (see ``grenache.tls.public_key_of``)."""
        self.raw_headers = raw_headers or []
        """The request's HTTP headers as received (the WebSocket handshake's on WebSocket)."""
        self._special = special or {}

    @property
    def headers(self) -> dict[str, str]:
        """The headers, names lower-cased."""
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.raw_headers}

    @property
    def action(self) -> str | None:
        """Node's ``meta.action``: the ``_a`` header (HTTP)."""
        value = self._special.get(b"_a")
        return None if value is None else value.decode("latin-1")

    @property
    def args(self) -> Any:
        """Node's ``meta.args``: the ``_ar`` header parsed as JSON, ``{}`` when absent or invalid."""
        value = self._special.get(b"_ar")
        if value is None:
            return {}
        try:
            return msgspec.json.decode(value)
        except msgspec.DecodeError:
            return {}

    @property
    def is_stream(self) -> bool:
        """The body came chunked (Node's ``meta.isStream``)."""
        return b"chunked" in self._special.get(b"transfer-encoding", b"").lower()

    @property
    def compress(self) -> bool:
        """``grc-compress: gzip`` (Node's ``meta.compress``)."""
        return b"gzip" in self._special.get(b"grc-compress", b"").lower()


class RequestStream:
    """A streaming request (``_gr`` header, chunked body) as its handler sees it: iterate the body's
    chunks as they arrive (the server stops reading the connection while ``stream_buffer`` bytes wait),
    then return a result (sent as ``[rid, null, result]``), raise ``RPCError``, or return a
    :class:`StreamReply` to send raw bytes back."""

    def __init__(self, request: Request, high_water: int, pause: Callable[[bool], None]) -> None:
        self.request = request
        self._chunks: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        self._queued = 0
        self._high = high_water
        self._pause = pause
        self._paused = False
        self.received = 0

    @property
    def rid(self) -> Any:
        return self.request.rid

    @property
    def key(self) -> str:
        return self.request.key

    def feed(self, data: bytes) -> None:
        self._queued += len(data)
        self.received += len(data)
        self._chunks.put_nowait(data)
        if self._queued > self._high and not self._paused:
            self._paused = True
            self._pause(True)

    def end(self, error: BaseException | None = None) -> None:
        self._chunks.put_nowait(error)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        item = await self._chunks.get()
        if item is None:
            self._chunks.put_nowait(None)  # stay at the end for later reads
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            self._chunks.put_nowait(item)
            raise item
        self._queued -= len(item)
        if self._paused and self._queued <= self._high // 2:
            self._paused = False
            self._pause(False)
        return item

    async def read(self, limit: int) -> bytes:
        """The whole body, or ``RPCError(ERR_REQUEST_TOO_LARGE)`` past ``limit`` bytes."""
        parts: list[bytes] = []
        size = 0
        async for chunk in self:
            size += len(chunk)
            if size > limit:
                raise RPCError("ERR_REQUEST_TOO_LARGE", f"stream exceeds {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)


@dataclass(slots=True)
class StreamReply:
    """Returned by a streaming handler: the reply body is these bytes, sent chunked as they come
    (Node's handler writing to ``rep``), instead of a ``[rid, error, result]`` array."""

    chunks: AsyncIterable[bytes]


class PeerRPCServer:
    """Serve Grenache RPC and announce the served keys through ``link``.

    ``transport``: ``"http"`` (grenache-nodejs-http) or ``"ws"`` (grenache-nodejs-ws); ``ssl``: a server
    ``ssl.SSLContext`` for HTTPS/WSS (Node's ``secure``; see ``grenache.tls``). ``limits`` bounds what a
    client can make the server hold; ``max_body`` and ``idle_timeout`` override those two fields.
    """

    def __init__(
        self,
        link: Link,
        *,
        host: str = "127.0.0.1",
        transport: Transport = "http",
        ssl: _ssl.SSLContext | None = None,
        limits: ServerLimits | None = None,
        max_body: int | None = None,
        idle_timeout: float | None = None,
    ) -> None:
        if transport not in ("http", "ws"):
            raise ValueError(f"transport must be 'http' or 'ws', not {transport!r}")
        self.link = link
        self.host = host
        self.transport: Transport = transport
        self.ssl = ssl
        self.limits = (limits or ServerLimits()).with_overrides(max_body=max_body, idle_timeout=idle_timeout)
        self.port: int = 0
        self._handlers: dict[str, tuple[Handler, type[Any] | None, bool]] = {}
        self._stream_handlers: dict[str, Callable[[RequestStream], Awaitable[Any]]] = {}
        self._listener: Any = None
        self._announced: set[str] = set()

    @property
    def max_body(self) -> int:
        return self.limits.max_body

    @property
    def idle_timeout(self) -> float:
        return self.limits.idle_timeout

    @property
    def _connections(self) -> set[Any]:
        return cast(set[Any], getattr(self._listener, "connections", set()))

    # registration ------------------------------------------------------------------------------------
    def handle(self, key: str, payload_type: type[Any] | None = None) -> Callable[[H], H]:
        """Register an async handler for requests sent to ``key``: ``async def f(payload)`` or
        ``async def f(payload, request: Request)``.

        With ``payload_type`` (a msgspec Struct or any type msgspec can convert to), the payload is
        validated and converted first; a mismatch is answered ``ERR_INVALID_PAYLOAD: <where>``.
        """

        def register(fn: H) -> H:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"handler for {key!r} must be an async function")
            self._handlers[key] = (fn, payload_type, _wants_request(fn))
            return cast(H, fn)

        return register

    def add_handler(self, key: str, fn: Handler, payload_type: type[Any] | None = None) -> None:
        self.handle(key, payload_type)(fn)

    def handle_stream(self, key: str) -> Callable[[H], H]:
        """Register a streaming handler for ``key`` (HTTP only): ``async def f(stream: RequestStream)``.

        Requests with a ``_gr: [rid, key]`` header naming ``key`` reach it while their body arrives
        (Node's ``stream`` event with ``disableBuffered``); others still go to :meth:`handle`'s."""

        def register(fn: H) -> H:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"stream handler for {key!r} must be an async function")
            self._stream_handlers[key] = fn
            return cast(H, fn)

        return register

    # lifecycle ---------------------------------------------------------------------------------------
    async def listen(self, port: int = 0) -> int:
        if self.transport == "ws":
            from .ws_server import WSListener

            self._listener = WSListener(self)
        else:
            from .http_server import HTTPListener

            self._listener = HTTPListener(self)
        self.port = await self._listener.start(self.host, port)
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
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None

    # dispatch ----------------------------------------------------------------------------------------
    def stream_handler(self, key: Any) -> Callable[[RequestStream], Awaitable[Any]] | None:
        return self._stream_handlers.get(key) if isinstance(key, str) else None

    async def dispatch(self, key: str, payload: Any, request: Request | None = None) -> Any:
        entry = self._handlers.get(key)
        if entry is None:
            raise RPCError(ERR_UNKNOWN_SERVICE, f"no handler for {key!r}")
        fn, payload_type, wants_request = entry
        if payload_type is not None:
            try:
                payload = msgspec.convert(payload, payload_type, strict=True)
            except msgspec.ValidationError as exc:
                raise RPCError(ERR_INVALID_PAYLOAD, str(exc)) from None
        if wants_request:
            return await fn(payload, request or Request(key=key, rid=None, transport=self.transport))
        return await fn(payload)


def _wants_request(fn: Callable[..., Any]) -> bool:
    """True if ``fn`` takes a second positional parameter without a default (the Request)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is inspect.Parameter.empty
    ]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
