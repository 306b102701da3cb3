"""The WebSocket (and WSS) transport of ``PeerRPCServer``, as grenache-nodejs-ws 0.7.10 / 1.0.0 speak it.

Text frames carry ``[rid, key, payload]`` and ``[rid, error, result]``; any URL path is accepted (Node's
client dials ``/ws``); replies go out as handlers finish, not in request order, exactly as Node's
server does. Unlike Node's server, a malformed message is answered (``ERR_BAD_REQUEST`` with its rid
when it can be read), not ignored. The protocol is the ``websockets`` library's (``ws.py``); the
bounds, from ``ServerLimits``, are enforced here:

* connections (handshaking ones included): at the cap the longest-idle open connection (no request in
  flight) makes room, otherwise the newcomer gets 503 ``ERR_TOO_MANY_CONNECTIONS`` and is closed;
* the handshake: ``websockets`` caps its request at 128 headers of at most 8 KiB each; it must complete
  within ``header_timeout`` of the connection;
* messages: at most ``ws_max_message`` bytes (close 1009); bytes of partly received messages are
  charged to the body budget as they arrive (close 1013 when they do not fit), and a complete message is
  charged until its reply is sent, so 40 half-sent 8 MiB messages hold no more than over HTTP;
* time: a partly received message must progress within ``body_timeout``; a connection without requests
  is closed after ``idle_timeout``;
* requests in flight per connection: at ``ws_max_inflight`` the server stops reading that connection
  until replies go out, and it stops reading while the client does not read its replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from websockets.frames import CloseCode
from websockets.http11 import Request as WSRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import wire
from .errors import RPCError
from .http_server import ERR_SERVER_BUSY, ERR_TOO_MANY_CONNECTIONS
from .limits import BodyBudget
from .server import ERR_INTERNAL, Request
from .ws import WSProtocol

if TYPE_CHECKING:
    from .server import PeerRPCServer

log = logging.getLogger("grenache.server")


class WSListener:
    def __init__(self, server: PeerRPCServer) -> None:
        self.server = server
        self.limits = server.limits
        self.budget = BodyBudget(server.limits.body_budget, server.limits.body_reserve)
        self.max_connections = server.limits.effective_max_connections()
        self.connections: set[_Connection] = set()  # open (handshake done)
        self.all: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        ssl = self.server.ssl
        self._server = await asyncio.get_running_loop().create_server(
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
        """Count a new TCP connection (handshaking ones too); at the cap, close the longest-idle open
        connection to make room, or refuse."""
        if len(self.all) >= self.max_connections:
            idle = [c for c in self.connections if not c.inflight]
            if idle:
                victim = min(idle, key=lambda c: c.idle_since)
                self.connections.discard(victim)
                self.all.discard(victim)
                victim.close(CloseCode.TRY_AGAIN_LATER, "connection cap: closing the longest idle")
                victim.abort()
        if len(self.all) >= self.max_connections:
            return False
        self.all.add(conn)
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            conns = list(self.all)
            for conn in conns:
                conn.close(CloseCode.GOING_AWAY, "server stopping")
            if conns:  # a moment for the closing handshakes, then whatever is left goes
                await asyncio.wait([asyncio.shield(c.closed) for c in conns], timeout=1.0)
            for conn in conns:
                conn.abort()
            await self._server.wait_closed()
            self._server = None


class _Connection(WSProtocol):
    def __init__(self, listener: WSListener) -> None:
        limits = listener.limits
        super().__init__(ServerProtocol(max_size=limits.ws_max_message))
        self.listener = listener
        self.server = listener.server
        self.limits = limits
        self.budget = listener.budget
        self.charged = 0  # for partly received messages
        self.inflight = 0
        self.idle_since = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.pauses: set[str] = set()
        self.peer: str | None = None
        self.cert: bytes | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.on_write_paused = lambda paused: self._pause("write", paused)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.listener.admit(self):
            body = wire.encode_reply(None, f"{ERR_TOO_MANY_CONNECTIONS}: server at its connection cap", None)
            assert self.transport is not None
            self.transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            self.transport.close()
            self.transport = None
            return
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.cert = ssl_object.getpeercert(binary_form=True)
        self._arm(self.limits.header_timeout, self.abort)  # the opening handshake's deadline

    def on_closed(self, exc: Exception | None) -> None:
        self.listener.connections.discard(self)
        self.listener.all.discard(self)
        self._cancel_timer()
        self.budget.give(self.charged)
        self.charged = 0
        for task in self.tasks:
            task.cancel()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport is None or self.proto.state is not State.OPEN:
            return
        held = self.held()
        delta = held - self.charged
        if delta > 0 and not self.budget.take(delta, held <= self.limits.small_body):
            self.budget.give(self.charged)
            self.charged = 0
            self.fail(CloseCode.TRY_AGAIN_LATER, f"{ERR_SERVER_BUSY}: over the server's body budget")
            return
        if delta < 0:
            self.budget.give(-delta)
        self.charged = held
        if held:
            self._arm(self.limits.body_timeout, self._stalled)
        elif self.inflight:
            self._cancel_timer()
        else:
            self._arm(self.limits.idle_timeout, self._idle)

    # handshake -----------------------------------------------------------------------------------------
    def on_handshake(self, event: Any) -> None:
        if not isinstance(event, WSRequest):
            return
        proto = self.proto
        assert isinstance(proto, ServerProtocol)
        response = proto.accept(event)
        proto.send_response(response)
        if response.status_code != 101:
            self.flush()
            return
        self.listener.connections.add(self)
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in event.headers.raw_items()]
        self.idle_since = time.monotonic()
        self._arm(self.limits.idle_timeout, self._idle)

    # requests ------------------------------------------------------------------------------------------
    def on_message(self, data: bytes) -> None:
        size = len(data)
        if not self.budget.take(size, size <= self.limits.small_body):
            reply = wire.encode_reply(wire.rid_of_head(data[:512]), f"{ERR_SERVER_BUSY}: over budget", None)
            self.send_text(reply)
            return
        self.inflight += 1
        if self.inflight >= self.limits.ws_max_inflight:
            self._pause("inflight", True)
        request = Request("", None, "ws", self.peer, self.cert, self.headers)
        task = asyncio.ensure_future(self._answer(data, request, size))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, message: bytes, request: Request, size: int) -> None:
        rid: Any = None
        try:
            try:
                rid, key, payload = wire.parse_request(message)
            except RPCError:
                rid = wire.rid_of(message)
                raise
            del message
            request.rid, request.key = rid, key
            result = await self.server.dispatch(key, payload, request)
            reply = wire.encode_reply(rid, None, result)
        except RPCError as exc:
            reply = wire.encode_reply(rid, exc.wire, None)
        except Exception:
            log.exception("RPC handler failed")
            reply = wire.encode_reply(rid, ERR_INTERNAL, None)
        finally:
            self.budget.give(size)
            self.inflight -= 1
            self.idle_since = time.monotonic()
            if self.inflight < self.limits.ws_max_inflight:
                self._pause("inflight", False)
        self.send_text(reply)
        if not self.inflight and not self.charged and self.transport is not None:
            self._arm(self.limits.idle_timeout, self._idle)

    # flow control and timers -------------------------------------------------------------------------------
    def _pause(self, reason: str, pause: bool) -> None:
        was = bool(self.pauses)
        if pause:
            self.pauses.add(reason)
        else:
            self.pauses.discard(reason)
        if self.transport is None or was == bool(self.pauses):
            return
        with contextlib.suppress(RuntimeError):
            if self.pauses:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _arm(self, seconds: float, callback: Any) -> None:
        self._cancel_timer()
        if seconds and self.transport is not None:
            self.timer = asyncio.get_running_loop().call_later(seconds, callback)

    def _cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _stalled(self) -> None:
        self.timer = None
        self.fail(CloseCode.POLICY_VIOLATION, f"message stalled for {self.limits.body_timeout:g} s")

    def _idle(self) -> None:
        self.timer = None
        if self.inflight:
            return
        self.close(CloseCode.GOING_AWAY, "idle")
