"""``Link``: the client of a Grape's HTTP API (announce, lookup, put, get).

Mirrors grenache-nodejs-link 1.0.2 on the wire (``POST /<type>`` with ``{"rid", "data"}``), minus its
bugs: every call has a timeout, Grape errors that arrive as HTTP-200 JSON strings raise ``GrapeError``,
and empty lookups are never cached, so a newly announced service shows up at the next lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from typing import Any, Self
from urllib.parse import urlsplit

import msgspec

from .errors import GrapeError
from .http import ConnectFailed, ConnectionPool, exchange

log = logging.getLogger("grenache.link")

ERR_GRAPE_LOOKUP_EMPTY = "ERR_GRAPE_LOOKUP_EMPTY"
ERR_GRAPE_TIMEOUT = "ERR_GRAPE_TIMEOUT"
ERR_GRAPE_UNREACHABLE = "ERR_GRAPE_UNREACHABLE"
ERR_GRAPE_REPLY = "ERR_GRAPE_REPLY_INVALID"


class Link:
    """A connection to one Grape.

    ``lookup_cache_ttl`` bounds how long a non-empty lookup is reused; ``announce_interval`` is the mean
    re-announce period of :meth:`start_announcing` (each wait is drawn from 0.5–1.5 × interval, well
    inside the 80–160 s a Grape keeps a record with ``--dpa 120000``). A lookup of a name this Link
    announces that does not list its port (a restarted Grape forgets every record) brings the next
    announce of every name forward, at most once per ``reannounce_gap`` seconds each.
    """

    def __init__(
        self,
        grape: str = "http://127.0.0.1:30001",
        *,
        request_timeout: float = 2.5,
        lookup_cache_ttl: float = 2.0,
        announce_interval: float = 30.0,
        reannounce_gap: float = 5.0,
    ) -> None:
        self.grape = grape.rstrip("/")  # a trailing slash breaks the Grape's dispatch
        url = urlsplit(self.grape)
        if url.scheme != "http" or not url.hostname or not url.port:
            raise ValueError(f"a Grape URL looks like http://127.0.0.1:30001, not {grape!r}")
        self._dest = f"{url.hostname}:{url.port}"
        self.request_timeout = request_timeout
        self.lookup_cache_ttl = lookup_cache_ttl
        self.announce_interval = announce_interval
        self.reannounce_gap = reannounce_gap
        # the Grape (Node's http server) closes idle keep-alive sockets after 5 s: reuse ours for 4 s
        self._pool: ConnectionPool | None = None
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._inflight: dict[str, asyncio.Task[list[str]]] = {}
        self._announcers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._missing: dict[tuple[str, int], asyncio.Event] = {}  # set when a lookup does not list us

    # lifecycle ---------------------------------------------------------------------------------------
    async def start(self) -> Self:
        if self._pool is None:
            # Grape replies are small (lookups list at most 100 addresses, DHT values < 1000 bytes)
            self._pool = ConnectionPool(self._dest, limit=64, idle_timeout=4.0, max_reply=1024 * 1024)
        return self

    async def stop(self) -> None:
        for task in self._announcers.values():
            task.cancel()
        for task in list(self._announcers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._announcers.clear()
        self._missing.clear()
        self._cache.clear()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # transport ---------------------------------------------------------------------------------------
    async def _call(self, kind: str, data: Any, timeout: float | None = None) -> Any:
        if self._pool is None:
            await self.start()
        assert self._pool is not None
        body = msgspec.json.encode({"rid": str(uuid.uuid4()), "data": data})
        head = (
            b"POST /%s HTTP/1.1\r\nHost: %s\r\ncontent-type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (
                kind.encode(),
                self._dest.encode(),
                len(body),
            )
        )
        deadline = time.monotonic() + (timeout or self.request_timeout)
        try:
            status, raw = await exchange(self._pool, head + body, deadline)
        except TimeoutError:
            raise GrapeError(ERR_GRAPE_TIMEOUT, f"{kind} on {self.grape} timed out") from None
        except (ConnectFailed, ConnectionError) as exc:
            raise GrapeError(ERR_GRAPE_UNREACHABLE, f"{self.grape}/{kind}: {exc}") from None
        if status != 200:
            text = raw.decode("utf-8", "replace").strip()
            with contextlib.suppress(msgspec.DecodeError):
                decoded = msgspec.json.decode(raw)
                if isinstance(decoded, str):
                    text = decoded
            raise GrapeError(text.split(" ", 1)[0] if text.startswith("ERR_") else "ERR_GRAPE", text, status)
        if not raw:
            return None  # /get answers "not found" with an empty body
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise GrapeError(ERR_GRAPE_REPLY, raw[:200].decode("utf-8", "replace")) from None

    # API ---------------------------------------------------------------------------------------------
    async def announce(self, name: str, port: int) -> int:
        """Announce ``name`` on ``port``; returns how many DHT nodes acknowledged it."""
        if not isinstance(name, str) or not name:
            raise GrapeError("ERR_GRAPE_ANNOUNCE", "name must be a non-empty string")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise GrapeError("ERR_GRAPE_SERVICE_PORT", f"invalid port {port!r}")
        result = await self._call("announce", [name, port])
        if isinstance(result, str):  # Grape errors arrive as HTTP-200 strings (grape issue #40)
            raise GrapeError(result if result.startswith("ERR_") else "ERR_GRAPE_ANNOUNCE", result)
        if not isinstance(result, int):
            raise GrapeError(ERR_GRAPE_REPLY, f"announce answered {result!r}")
        return result

    async def lookup(self, name: str, *, cache: bool = True) -> list[str]:
        """The ``"ip:port"`` destinations announced for ``name``; raises if there are none.

        Concurrent lookups of one name share a single Grape request. Only non-empty answers are
        cached, for ``lookup_cache_ttl`` seconds.
        """
        if not isinstance(name, str) or not name:
            raise GrapeError("ERR_GRAPE_LOOKUP", "name must be a non-empty string")
        now = time.monotonic()
        if cache:
            hit = self._cache.get(name)
            if hit is not None and hit[0] > now:
                return list(hit[1])
        task = self._inflight.get(name)
        if task is None:
            # the request runs as its own task, so one caller giving up (its timeout, a cancelled
            # handler) never cancels it for the others that share it
            task = asyncio.ensure_future(self._lookup_uncached(name))
            self._inflight[name] = task
            task.add_done_callback(
                lambda t: self._inflight.pop(name, None) if self._inflight.get(name) is t else None
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved, even if unawaited
        dests = await asyncio.shield(task)
        if not dests:
            raise GrapeError(ERR_GRAPE_LOOKUP_EMPTY, f"no service announced as {name!r}")
        return list(dests)

    async def _lookup_uncached(self, name: str) -> list[str]:
        result = await self._call("lookup", name)
        if isinstance(result, str):
            raise GrapeError(result if result.startswith("ERR_") else "ERR_GRAPE_LOOKUP", result)
        if not isinstance(result, list) or not all(isinstance(d, str) for d in result):
            raise GrapeError(ERR_GRAPE_REPLY, f"lookup answered {result!r}")
        if result:
            self._cache[name] = (time.monotonic() + self.lookup_cache_ttl, result)
        else:
            self._cache.pop(name, None)
        if any(
            announced == name and not any(d.endswith(f":{port}") for d in result)
            for announced, port in self._missing
        ):
            # the Grape lost our record: it restarted, so it lost every other one of ours too
            for missing in self._missing.values():
                missing.set()
        return result

    def forget(self, name: str, dest: str | None = None) -> None:
        """Drop ``dest`` (or every destination) of ``name`` from the lookup cache, e.g. after it failed."""
        hit = self._cache.get(name)
        if hit is None:
            return
        if dest is None:
            del self._cache[name]
            return
        remaining = [d for d in hit[1] if d != dest]
        if remaining:
            self._cache[name] = (hit[0], remaining)
        else:
            del self._cache[name]

    async def put(self, data: str | dict[str, Any]) -> str:
        """Store a value in the DHT (BEP 44); returns its 40-hex key. A string is an immutable value."""
        payload = {"v": data} if isinstance(data, str) else data
        result = await self._call("put", payload)
        if not isinstance(result, str):
            raise GrapeError(ERR_GRAPE_REPLY, f"put answered {result!r}")
        if len(result) != 40 or any(c not in "0123456789abcdef" for c in result):
            raise GrapeError(result if result.startswith("ERR_") else "ERR_GRAPE_PUT", result)
        return result

    async def get(self, key: str | dict[str, Any]) -> dict[str, Any] | None:
        """Fetch a DHT item by its 40-hex key (or ``{"hash", "salt"}``); None when not found."""
        result = await self._call("get", key)
        if result is None:
            return None
        if isinstance(result, str):
            raise GrapeError(result if result.startswith("ERR_") else "ERR_GRAPE_GET", result)
        if not isinstance(result, dict):
            raise GrapeError(ERR_GRAPE_REPLY, f"get answered {result!r}")
        return result

    # announcing loops --------------------------------------------------------------------------------
    def start_announcing(
        self, name: str, port: int, interval: float | None = None
    ) -> asyncio.Future[int | GrapeError]:
        """Announce now, then keep re-announcing with jitter until :meth:`stop_announcing`.

        Returns a future with the first announce's outcome (the node count, or the ``GrapeError``),
        so callers may ``await`` it or ignore it.
        """
        key = (name, port)
        first: asyncio.Future[int | GrapeError] = asyncio.get_running_loop().create_future()
        old = self._announcers.pop(key, None)
        if old is not None:
            old.cancel()
        missing = self._missing[key] = asyncio.Event()
        self._announcers[key] = asyncio.create_task(
            self._announce_loop(name, port, interval or self.announce_interval, first, missing),
            name=f"announce {name}:{port}",
        )
        return first

    def stop_announcing(self, name: str, port: int) -> None:
        task = self._announcers.pop((name, port), None)
        self._missing.pop((name, port), None)
        if task is not None:
            task.cancel()

    async def _announce_loop(
        self,
        name: str,
        port: int,
        interval: float,
        first: asyncio.Future[int | GrapeError],
        missing: asyncio.Event,
    ) -> None:
        failures = 0
        while True:
            missing.clear()
            announced = time.monotonic()
            outcome: int | GrapeError
            try:
                outcome = await self.announce(name, port)
                failures = 0
            except GrapeError as exc:
                outcome = exc
                failures += 1
                # "No nodes to query" is normal for a lone Grape bound with -b: it still stores the record
                level = logging.DEBUG if "No nodes" in exc.message else logging.WARNING
                log.log(level, "announce %s:%d failed: %s", name, port, exc)
            if not first.done():
                first.set_result(outcome)
            # retry failures sooner, but never hammer a Grape that is down
            base = interval if failures == 0 else min(interval, 1.0 * 2 ** min(failures, 5))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(base * (0.5 + random.random())):
                    await missing.wait()  # a lookup did not list us: the Grape lost the record
                    await asyncio.sleep(max(0.0, announced + self.reannounce_gap - time.monotonic()))
