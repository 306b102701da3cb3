"""``PeerRPCClient``: the Grenache HTTP RPC transport, client side.

``request`` sends to one random destination of a key, ``map`` to all of them. Each destination has a
small pool of keep-alive HTTP/1.1 connections (llhttp parsing, one request in flight per connection).
Fixes over grenache-nodejs-http: a default timeout, ``map`` returns every destination's outcome instead
of failing as a whole, and a connection failure is retried on another destination (only then: a request
that may have reached a server is never sent twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from typing import Any

from . import wire
from .errors import GrapeError, RPCError, split_wire_error
from .http import MAX_REPLY, ConnectFailed, ConnectionPool, exchange, loop_deadline
from .link import Link

ERR_TIMEOUT = "ERR_TIMEOUT"
ERR_REQUEST_GENERIC = "ERR_REQUEST_GENERIC"
ERR_REPLY_MISMATCH = "ERR_REPLY_RID_MISMATCH"


class PeerRPCClient:
    """Call Grenache RPC services found through ``link``.

    ``timeout`` (seconds) applies to a whole request unless a call gives its own; ``max_conns_per_dest``
    bounds the connections kept to one destination; ``attempts`` bounds how many destinations one
    ``request`` tries when connections are refused.
    """

    def __init__(
        self,
        link: Link,
        *,
        timeout: float = 10.0,
        max_conns_per_dest: int = 64,
        idle_timeout: float = 4.0,  # under Node's 5 s keep-alive, so we never reuse a socket it closes
        attempts: int = 32,
    ) -> None:
        self.link = link
        self.timeout = timeout
        self.max_conns_per_dest = max_conns_per_dest
        self.idle_timeout = idle_timeout
        self.attempts = attempts
        self._pools: dict[str, ConnectionPool] = {}

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
            except ConnectFailed as exc:
                last = exc
                self.link.forget(key, dest)
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
        except ConnectFailed as exc:
            raise RPCError(ERR_REQUEST_GENERIC, f"connect to {dest} failed: {exc}", dest) from None

    async def stop(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def close(self) -> None:
        await self.stop()

    # internals ---------------------------------------------------------------------------------------
    async def _lookup(self, key: str, deadline: float, cache: bool = True) -> list[str]:
        try:
            async with asyncio.timeout_at(loop_deadline(deadline)):
                return await self.link.lookup(key, cache=cache)
        except TimeoutError:
            raise RPCError(ERR_TIMEOUT, f"lookup of {key!r} timed out") from None

    async def _send(
        self, dest: str, key: str, payload: Any, deadline: float, compress: bool, result_type: Any = None
    ) -> Any:
        pool = self._pools.get(dest)
        if pool is None:
            pool = self._pools[dest] = ConnectionPool(dest, self.max_conns_per_dest, self.idle_timeout)
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
        try:
            status, reply = await exchange(pool, head + body, deadline)
        except TimeoutError:
            raise RPCError(ERR_TIMEOUT, f"{key!r} at {dest} did not answer in time", dest) from None
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
                reply = wire.gunzip_bytes(reply, MAX_REPLY)
            except Exception:
                raise RPCError(wire.ERR_REPLY_ENCODING, f"reply from {dest} is not gzip", dest) from None
        reply_rid, err, result = wire.parse_reply(reply, result_type)
        # a null rid with an error: the server could not read ours (oversize, not gzip, not JSON)
        if reply_rid != rid and not (reply_rid is None and err is not None):
            raise RPCError(ERR_REPLY_MISMATCH, f"{dest} answered rid {reply_rid!r}, expected {rid!r}", dest)
        if err is not None:
            code, message = split_wire_error(err)
            raise RPCError(code, message, dest)
        return result
