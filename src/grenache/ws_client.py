"""The WebSocket transport of ``PeerRPCClient``, as grenache-nodejs-ws 0.7.10 / 1.0.0 speak it.

One connection per destination, to ``ws://ip:port/ws`` (``wss://`` with TLS), opened on first use and
again after it closed; every request to that destination is multiplexed on it as a text frame and its
reply matched by rid. Unlike Node's client: a request's timeout fires at its deadline (Node's only every
10 s), a refused connection is an error (Node's crashes the process: no ``error`` listener), a
connection that closes fails the requests in flight on it at once with ``ERR_TRANSPORT_CLOSE`` (Node's
wait for their timeout; none is re-sent, as it may have reached the server), and a connection idle for
30 s is replaced before use, so we never send on one that the server is closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as _ssl
import time
import uuid
from typing import TYPE_CHECKING, Any

from websockets.client import ClientProtocol
from websockets.frames import CloseCode
from websockets.http11 import Response as WSResponse
from websockets.protocol import State
from websockets.uri import parse_uri

from . import wire
from .errors import RPCError
from .http import ConnectFailed, PeerAuthFailed, loop_deadline
from .ws import WSProtocol

if TYPE_CHECKING:
    from .client import PeerRPCClient

ERR_TRANSPORT_CLOSE = "ERR_TRANSPORT_CLOSE"
_IDLE_REUSE = 30.0  # seconds: under the server's 60 s idle timeout (ours; Node's never closes idle)
_OPEN_TIMEOUT = 10.0


class _Connection(WSProtocol):
    def __init__(self, dest: str, url: str, max_size: int) -> None:
        super().__init__(ClientProtocol(parse_uri(url), max_size=max_size))
        self.dest = dest
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting: dict[str, asyncio.Future[bytes]] = {}
        self.cert: bytes | None = None
        self.approved: set[str] = set()
        self.last_used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert = ssl_object.getpeercert(binary_form=True)
        proto = self.proto
        assert isinstance(proto, ClientProtocol)
        request = proto.connect()
        request.headers["User-Agent"] = "grenache-py"
        proto.send_request(request)
        self.flush()

    def on_handshake(self, event: Any) -> None:
        if not isinstance(event, WSResponse) or self.opened.done():
            return
        exc = self.proto.handshake_exc
        if exc is not None:
            self.opened.set_exception(
                ConnectFailed(f"{self.dest} refused the WebSocket handshake: HTTP {event.status_code}")
            )
            self.abort()
        else:
            self.opened.set_result(None)

    def on_message(self, data: bytes) -> None:
        rid = wire.rid_of_head(data[:512])
        if rid is None:
            rid = wire.rid_of(data)
        fut = self.waiting.get(rid) if isinstance(rid, str) else None
        if fut is not None and not fut.done():
            fut.set_result(data)
        # a reply nobody waits for (late, or an unknown rid) is dropped, as Node does

    def on_closed(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectFailed(f"{self.dest} closed during the WebSocket handshake"))
        reason = f"connection closed ({exc})" if exc else "connection closed"
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_exception(RPCError(ERR_TRANSPORT_CLOSE, f"{self.dest}: {reason}", self.dest))
        self.waiting.clear()

    def usable(self) -> bool:
        return (
            self.transport is not None
            and self.proto.state is State.OPEN
            and time.monotonic() - self.last_used < _IDLE_REUSE
        )


def _expire(fut: asyncio.Future[bytes], key: str, dest: str) -> None:
    if not fut.done():
        fut.set_exception(RPCError("ERR_TIMEOUT", f"{key!r} at {dest} did not answer in time", dest))


class WSClientTransport:
    def __init__(self, client: PeerRPCClient) -> None:
        self.client = client
        self.conns: dict[str, _Connection] = {}
        self.connecting: dict[str, asyncio.Future[_Connection]] = {}

    async def send(
        self, dest: str, key: str, payload: Any, deadline: float, compress: bool, result_type: Any
    ) -> Any:
        # (``compress`` has no meaning here: grenache-nodejs-ws has no compression either)
        rid = str(uuid.uuid4())
        loop = asyncio.get_running_loop()
        when = loop_deadline(deadline)
        conn = self.conns.get(dest)
        if conn is None or not conn.usable():
            try:
                async with asyncio.timeout_at(when):
                    conn = await self._connection(dest)
            except TimeoutError:
                raise RPCError("ERR_TIMEOUT", f"could not connect to {dest} in time", dest) from None
        if not self.client.approve(dest, key, conn.cert, conn.approved):
            self.conns.pop(dest, None)
            conn.close(CloseCode.POLICY_VIOLATION, "peer authentication failed")
            conn.abort()
            raise PeerAuthFailed(f"{dest} refused by the verify_peer hook")
        fut: asyncio.Future[bytes] = loop.create_future()
        conn.waiting[rid] = fut
        conn.last_used = time.monotonic()
        # a timer on the future, not a timeout scope per request: the cheaper of the two
        timer = loop.call_at(when, _expire, fut, key, dest)
        try:
            conn.send_text(wire.encode_request(rid, key, payload))
            reply = await fut
        finally:
            timer.cancel()
            conn.waiting.pop(rid, None)
        from .client import check_reply

        return check_reply(dest, rid, reply, result_type)

    async def _connection(self, dest: str) -> _Connection:
        conn = self.conns.get(dest)
        if conn is not None:
            if conn.usable():
                return conn
            del self.conns[dest]
            if not conn.waiting:
                conn.close(CloseCode.GOING_AWAY, "idle")
        pending = self.connecting.get(dest)
        if pending is None:
            pending = self.connecting[dest] = asyncio.ensure_future(self._connect(dest))
            pending.add_done_callback(lambda f: f.cancelled() or f.exception())
            pending.add_done_callback(lambda f: self.connecting.pop(dest, None))
        # shielded: one caller's deadline must not cancel the connection others wait for
        return await asyncio.shield(pending)

    async def _connect(self, dest: str) -> _Connection:
        ssl: _ssl.SSLContext | None = self.client.ssl
        host, _, port = dest.rpartition(":")
        host = host.strip("[]")
        url = f"{'wss' if ssl else 'ws'}://{dest}/ws"
        loop = asyncio.get_running_loop()
        max_size = self.client.limits.ws_max_message
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                _, conn = await loop.create_connection(
                    lambda: _Connection(dest, url, max_size),
                    host,
                    int(port),
                    ssl=ssl,
                    server_hostname=host if ssl else None,
                )
                await conn.opened
        except BaseException as exc:
            if conn is not None:
                conn.abort()
            if isinstance(exc, _ssl.SSLCertVerificationError):
                raise PeerAuthFailed(f"TLS certificate of {dest} refused: {exc.verify_message}") from None
            if isinstance(exc, (OSError, TimeoutError)):
                raise ConnectFailed(f"{type(exc).__name__}: {exc}") from None
            raise
        self.conns[dest] = conn
        return conn

    async def close(self) -> None:
        conns, self.conns = self.conns, {}
        for conn in conns.values():
            conn.close(CloseCode.GOING_AWAY, "client stopped")
        for conn in conns.values():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await asyncio.shield(conn.closed)
            conn.abort()
