"""``PeerRPCClient``: Grenache RPC, client side, on the HTTP or the WebSocket transport.

``request`` sends to one random destination of a key, ``map`` to all of them. On HTTP each destination
has a small pool of keep-alive HTTP/1.1 connections (llhttp parsing, one request in flight per
connection); on WebSocket one connection per destination carries every request (``ws_client.py``).
Fixes over the Node originals: a default timeout (enforced at its deadline, not by a 10 s monitor),
``map`` returns every destination's outcome instead of failing as a whole, and a connection failure is
retried on another destination (only then: a request that may have reached a server is never sent
twice).

TLS: pass a client ``ssl.SSLContext`` (``grenache.tls.client_context``). ``verify_peer(dest, key,
cert_der) -> bool`` is called after the handshake and before any byte of a request is written; a
refusal fails that request with ``ERR_PEER_AUTH`` (``request`` then tries another destination: nothing
was sent) and closes the connection. A connection remembers the keys it was approved for, so the hook
runs once per connection and key, not per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl as _ssl
import time
import uuid
from typing import Any, Literal, Protocol

from . import wire
from .errors import GrapeError, RPCError, split_wire_error
from .http import (
    ConnectFailed,
    ConnectionPool,
    HTTPConnection,
    PeerAuthFailed,
    ReplyTooLarge,
    exchange,
    loop_deadline,
)
from .limits import ClientLimits
from .link import Link
from .stream import RPCStream
from .tls import VerifyPeer

ERR_TIMEOUT = "ERR_TIMEOUT"
ERR_REQUEST_GENERIC = "ERR_REQUEST_GENERIC"
ERR_REPLY_MISMATCH = "ERR_REPLY_RID_MISMATCH"
ERR_PEER_AUTH = "ERR_PEER_AUTH"
ERR_REPLY_TOO_LARGE = "ERR_REPLY_TOO_LARGE"


class ClientTransport(Protocol):
    async def send(
        self, dest: str, key: str, payload: Any, deadline: float, compress: bool, result_type: Any
    ) -> Any: ...

    async def close(self) -> None: ...


class PeerRPCClient:
    """Call Grenache RPC services found through ``link``.

    ``transport``: ``"http"`` (grenache-nodejs-http) or ``"ws"`` (grenache-nodejs-ws). ``timeout``
    (seconds) applies to a whole request unless a call gives its own; ``max_conns_per_dest`` bounds the
    HTTP connections kept to one destination; ``attempts`` bounds how many destinations one ``request``
    tries when connections are refused; ``limits`` (or ``max_reply``) bounds what a reply may make us
    hold.
    """

    def __init__(
        self,
        link: Link,
        *,
        transport: Literal["http", "ws"] = "http",
        ssl: _ssl.SSLContext | None = None,
        verify_peer: VerifyPeer | None = None,
        timeout: float = 10.0,
        max_conns_per_dest: int = 64,
        idle_timeout: float = 4.0,  # under Node's 5 s keep-alive, so we never reuse a socket it closes
        attempts: int = 32,
        limits: ClientLimits | None = None,
        max_reply: int | None = None,
    ) -> None:
        if transport not in ("http", "ws"):
            raise ValueError(f"transport must be 'http' or 'ws', not {transport!r}")
        self.link = link
        self.transport = transport
        self.ssl = ssl
        self.verify_peer = verify_peer
        self.timeout = timeout
        self.max_conns_per_dest = max_conns_per_dest
        self.idle_timeout = idle_timeout
        self.attempts = attempts
        limits = limits or ClientLimits()
        if max_reply is not None:
            limits = ClientLimits(max_reply, limits.max_reply_header_bytes, max_reply)
        self.limits = limits
        self._pools: dict[str, ConnectionPool] = {}
        self._ws: ClientTransport | None = None
        if transport == "ws":
            from .ws_client import WSClientTransport

            self._ws = WSClientTransport(self)

    async def request(
        self,
        key: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        compress: bool = False,
        result_type: Any = None,
    ) -> Any:
        """Send ``payload`` to one random destination announced for ``key`` and return its result.

        With ``result_type`` (a msgspec Struct or any type msgspec decodes) the result is decoded into
        it in one validated pass; a result that does not fit raises ``RPCError("ERR_REPLY_INVALID")``.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        dests = await self._lookup(key, deadline)
        tried: set[str] = set()
        last: Exception | None = None
        auth_failed: PeerAuthFailed | None = None
        refreshed = False
        # a stopped service stays in lookups for minutes, and a refused connect costs next to nothing:
        # go on through the other destinations (within the deadline) rather than give up after a few
        for _ in range(self.attempts):
            candidates = [d for d in dests if d not in tried]
            if not candidates and not refreshed:
                # every known destination refused the connection: ask the Grape again, once
                refreshed = True
                with contextlib.suppress(GrapeError):
                    dests = await self._lookup(key, deadline, cache=False)
                candidates = [d for d in dests if d not in tried]
            if not candidates or time.monotonic() >= deadline:
                break
            dest = random.choice(candidates)
            tried.add(dest)
            try:
                return await self._send(dest, key, payload, deadline, compress, result_type)
            except PeerAuthFailed as exc:
                last = auth_failed = exc  # not forgotten: the Grape lists it, it just is not who we want
            except ConnectFailed as exc:
                last = exc
                self.link.forget(key, dest)
        if auth_failed is not None:
            raise RPCError(ERR_PEER_AUTH, f"no destination of {key!r} passed authentication: {auth_failed}")
        raise RPCError(ERR_REQUEST_GENERIC, f"could not connect to any destination of {key!r}: {last}")

    async def map(
        self,
        key: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        limit: int | None = None,
        compress: bool = False,
    ) -> list[Any]:
        """Send ``payload`` to every destination of ``key`` (or ``limit`` random ones) in parallel.

        Returns one entry per destination, in lookup order: the result, or the ``RPCError`` that
        destination failed with (its ``dest`` says which). It never fails as a whole because one
        destination failed; only a failed lookup raises.
        """
        deadline = time.monotonic() + (timeout or self.timeout)
        dests = await self._lookup(key, deadline)
        if limit is not None:
            random.shuffle(dests)
            dests = dests[:limit]
        return await self.map_dests(dests, key, payload, deadline=deadline, compress=compress)

    async def map_dests(
        self,
        dests: list[str],
        key: str,
        payload: Any = None,
        *,
        deadline: float | None = None,
        compress: bool = False,
    ) -> list[Any]:
        """``map`` to an explicit list of ``"host:port"`` destinations."""
        deadline = deadline or time.monotonic() + self.timeout

        async def one(dest: str) -> Any:
            try:
                return await self._send(dest, key, payload, deadline, compress)
            except PeerAuthFailed as exc:
                return RPCError(ERR_PEER_AUTH, str(exc), dest)
            except ConnectFailed as exc:
                self.link.forget(key, dest)
                return RPCError(ERR_REQUEST_GENERIC, f"connect to {dest} failed: {exc}", dest)
            except RPCError as exc:
                exc.dest = dest
                return exc

        return list(await asyncio.gather(*(one(d) for d in dests)))

    async def request_dest(
        self,
        dest: str,
        key: str,
        payload: Any = None,
        *,
        timeout: float | None = None,
        compress: bool = False,
        result_type: Any = None,
    ) -> Any:
        """Send to one known ``"host:port"`` destination, bypassing the lookup."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            return await self._send(dest, key, payload, deadline, compress, result_type)
        except PeerAuthFailed as exc:
            raise RPCError(ERR_PEER_AUTH, str(exc), dest) from None
        except ConnectFailed as exc:
            raise RPCError(ERR_REQUEST_GENERIC, f"connect to {dest} failed: {exc}", dest) from None

    def stream(
        self,
        key: str,
        *,
        headers: dict[str, Any] | None = None,
        timeout: float | None = None,
        dest: str | None = None,
    ) -> RPCStream:
        """A streaming request to one destination of ``key`` (or ``dest``), as grenache-nodejs-http's
        ``peer.stream``: ``async with client.stream(key) as s: await s.write(b"..."); result = await
        s.reply()``. HTTP only (grenache-nodejs-ws has no streams)."""
        if self.transport != "http":
            raise RPCError("ERR_STREAM_UNSUPPORTED", "streams need the HTTP transport")
        return RPCStream(self, key, headers=headers, timeout=timeout, dest=dest)

    @property
    def opened(self) -> int:
        """Connections made so far (HTTP transport): each one a handshake, so a number that grows
        much faster than the peers we talk to means connections are not being reused."""
        return sum(pool.opened for pool in self._pools.values())

    def _pick(self, dests: list[str]) -> str:
        return random.choice(dests)

    async def stop(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if self._ws is not None:
            await self._ws.close()

    async def close(self) -> None:
        await self.stop()

    # internals ---------------------------------------------------------------------------------------
    async def _lookup(self, key: str, deadline: float, cache: bool = True) -> list[str]:
        try:
            async with asyncio.timeout_at(loop_deadline(deadline)):
                return await self.link.lookup(key, cache=cache)
        except TimeoutError:
            raise RPCError(ERR_TIMEOUT, f"lookup of {key!r} timed out") from None

    def _pool(self, dest: str) -> ConnectionPool:
        pool = self._pools.get(dest)
        if pool is None:
            pool = self._pools[dest] = ConnectionPool(
                dest,
                self.max_conns_per_dest,
                self.idle_timeout,
                ssl=self.ssl,
                max_reply=self.limits.max_reply,
                max_reply_head=self.limits.max_reply_header_bytes,
            )
        return pool

    def approve(self, dest: str, key: str, cert: bytes | None, approved: set[str]) -> bool:
        """Run ``verify_peer`` once per connection and key (``approved`` is the connection's memory)."""
        if self.verify_peer is None or key in approved:
            return True
        if not self.verify_peer(dest, key, cert):
            return False
        approved.add(key)
        return True

    async def _send(
        self, dest: str, key: str, payload: Any, deadline: float, compress: bool, result_type: Any = None
    ) -> Any:
        if self._ws is not None:
            return await self._ws.send(dest, key, payload, deadline, compress, result_type)
        pool = self._pool(dest)
        rid = str(uuid.uuid4())
        body = wire.encode_request(rid, key, payload)
        if compress:
            body = wire.gzip_bytes(body)
        head = b"POST / HTTP/1.1\r\nHost: %s\r\ngrc-compress: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            dest.encode(),
            b"gzip" if compress else b"none",
            len(body),
            b"" if compress else b"Content-Type: text/plain;charset=UTF-8\r\n",
        )
        verify = None
        if self.verify_peer is not None:

            def verify(conn: HTTPConnection) -> bool:
                return self.approve(dest, key, conn.cert, conn.approved)

        try:
            status, reply = await exchange(pool, head + body, deadline, verify)
        except TimeoutError:
            raise RPCError(ERR_TIMEOUT, f"{key!r} at {dest} did not answer in time", dest) from None
        except ReplyTooLarge as exc:
            raise RPCError(ERR_REPLY_TOO_LARGE, f"{dest}: {exc}", dest) from None
        except ConnectionError as exc:
            raise RPCError(ERR_REQUEST_GENERIC, f"{dest}: {exc}", dest) from None
        if status != 200:
            text = reply[:500].decode("utf-8", "replace")
            with contextlib.suppress(RPCError):
                _, err, _ = wire.parse_reply(reply)
                if err:
                    code, message = split_wire_error(err)
                    raise RPCError(code, message, dest)
            raise RPCError(ERR_REQUEST_GENERIC, f"HTTP {status} from {dest}: {text}", dest)
        if compress:
            try:
                reply = wire.gunzip_bytes(reply, self.limits.max_reply)
            except RPCError:
                raise RPCError(
                    ERR_REPLY_TOO_LARGE, f"inflated reply from {dest} is too large", dest
                ) from None
            except Exception:
                raise RPCError(wire.ERR_REPLY_ENCODING, f"reply from {dest} is not gzip", dest) from None
        return check_reply(dest, rid, reply, result_type)


def check_reply(dest: str, rid: str, reply: bytes, result_type: Any = None) -> Any:
    """The result of a ``[rid, error, result]`` reply to the request ``rid``, or the RPCError."""
    reply_rid, err, result = wire.parse_reply(reply, result_type)
    # a null rid with an error: the server could not read ours (oversize, not gzip, not JSON)
    if reply_rid != rid and not (reply_rid is None and err is not None):
        raise RPCError(ERR_REPLY_MISMATCH, f"{dest} answered rid {reply_rid!r}, expected {rid!r}", dest)
    if err is not None:
        code, message = split_wire_error(err)
        raise RPCError(code, message, dest)
    return result
