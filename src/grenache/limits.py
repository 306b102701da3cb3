"""Every resource bound of the Grenache RPC server and client, in one place, each with its reason.

The server's worst case is what an attacker on the network can make it hold: connections, header bytes,
buffered body bytes, time. Each is capped here, and each cap has a test that attacks a real server
(``tests/grenache/test_limits.py``). Defaults suit a peer on a LAN or the Internet serving JSON RPCs of at
most a few MiB; raise them for bulk transfers, or use streaming handlers (bounded per stream).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, replace

KiB = 1024
MiB = 1024 * KiB


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = 512
    """Open connections at once; one more is answered 503 and closed at once, after the longest-idle
    keep-alive connection (if any) was closed to make room. Why 512: Debian's default soft limit is
    1024 file descriptors, and a process that runs out of them fails its accept loop and its outgoing
    connections alike; half stays free for the client pools, the Grape link and files. Clamped to half
    the process's actual soft limit at ``listen``."""

    max_url_bytes: int = 2 * KiB
    """The request target (Grenache always sends ``/``); longer is 414 and close. Counted as llhttp
    delivers it (``on_url``), before anything is buffered."""

    max_header_bytes: int = 16 * KiB
    """All header names and values of one request; more is 431 and close. Node's http server has the
    same default (``--max-http-header-size``); a Grenache request carries about 250 bytes."""

    max_headers: int = 100
    """Header lines per request (Node's client sends 9): a cheap guard against many tiny headers."""

    header_timeout: float = 10.0
    """From a connection's opening (or a request's first byte) to the end of its headers, and for the
    TLS handshake. Slowloris trickles header bytes to hold a connection slot: a per-byte idle timer
    never fires on it, a deadline does. 10 s is ample for one packet of headers across the Internet."""

    idle_timeout: float = 60.0
    """Silence on a keep-alive connection between requests before it is closed (clients reuse
    connections idle for less: ours 4 s, Node's agent 5 s)."""

    body_timeout: float = 10.0
    """Longest silence in the middle of a request body (a stalled upload holds its buffered bytes)."""

    max_body: int = 8 * MiB
    """One request body, after gunzip too. Larger bodies are drained (not kept) and answered
    ``ERR_REQUEST_TOO_LARGE`` with the rid from their first bytes, so Node clients match the reply."""

    body_budget: int = 32 * MiB
    """Body bytes buffered at once across all connections, held from a request's headers until its
    reply is written (so it also bounds requests being handled). A request whose declared length
    (or chunked body so far) does not fit is answered ``ERR_SERVER_BUSY`` and its connection closed.
    32 MiB = four maximal bodies at once: 40 connections each sending part of an 8 MiB body hold at
    most this much, not 320 MiB. Gunzipped bodies are charged again for their inflated size;
    WebSocket messages are charged as their bytes arrive."""

    small_body: int = 64 * KiB
    """Bodies up to this size may also draw on ``body_reserve``."""

    body_reserve: int = 16 * MiB
    """Budget only small bodies may use, so uploads that exhaust ``body_budget`` never starve
    ordinary RPCs (a Grenache request is typically under 1 KiB). All buffered bodies together stay
    under ``body_budget + body_reserve`` = 48 MiB."""

    max_pipelined: int = 16
    """HTTP requests of one connection being handled or awaiting their turn to be answered
    (pipelining); beyond it the server stops reading that connection until replies go out
    (backpressure, not an error)."""

    ws_max_inflight: int = 128
    """WebSocket requests of one connection being handled at once (clients multiplex on one socket:
    Node's keeps every request of a destination on at most 3); beyond it the server stops reading that
    connection until replies go out."""

    stream_buffer: int = 256 * KiB
    """Body bytes queued for a streaming handler before the server stops reading that connection."""

    ws_max_message: int = 8 * MiB
    """One WebSocket message (the ``max_size`` of ``websockets``): the same cap as ``max_body``."""

    def with_overrides(self, **changes: object) -> ServerLimits:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def effective_max_connections(self) -> int:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft // 2))


@dataclass(frozen=True, slots=True)
class ClientLimits:
    max_reply: int = 16 * MiB
    """One reply body, after gunzip too. Was 256 MiB: a peer could then make us hold 256 MiB per
    request in flight. 16 MiB is twice the server's request cap (a reply may carry pages of results:
    5,000 signed offers are about 3 MiB); larger replies fail ``ERR_REPLY_TOO_LARGE``."""

    max_reply_header_bytes: int = 64 * KiB
    """All header bytes of one reply (Node's server sends about 100)."""

    ws_max_message: int = 16 * MiB
    """One WebSocket reply message: the same as ``max_reply``."""


class BodyBudget:
    """Bytes buffered across all connections of one server: try to take, always give back. Small
    bodies may go ``reserve`` bytes past ``capacity``."""

    __slots__ = ("capacity", "reserve", "used")

    def __init__(self, capacity: int, reserve: int = 0) -> None:
        self.capacity = capacity
        self.reserve = reserve
        self.used = 0

    def take(self, n: int, small: bool = False) -> bool:
        if n <= 0:
            return True
        if self.used + n > self.capacity + (self.reserve if small else 0):
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used = max(0, self.used - n)
