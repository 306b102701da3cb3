"""The live event stream of the control API (``GET /api/events``): server-sent events for the web desk,
``otc watch`` and bots.

Each event is one ``data:`` line of JSON whose ``type`` says what it is; the rest is the same object the
matching endpoint returns, so a client keeps one copy of the state and patches it:

- ``{"type": "status", "now", "peers", "market"}``: at once, then every ``API_EVENT_STATUS_S``: the
  peer's clock (ms; pages hide expired offers by it), how many peers are live, and whether its Grape
  answered lately (false: new peers and announcements wait; trading with known peers goes on). It is
  also the stream's keep-alive: a client that hears nothing for a few periods knows the peer is gone,
  even when a stopped process leaves the connection open.
- ``{"type": "offer", ...}``: an offer in the book changed (as ``GET /api/book`` shows it, with
  ``available``, ``mine``, ``status``); a newer ``seq`` replaces an older one.
- ``{"type": "trade", ...}``: a trade of ours is done (as ``GET /api/trades``: ``role``, ``verified``).
- ``{"type": "message", ...}``: a chat message received or sent (as ``GET /api/messages``; a
  Grapevine message, unsigned, with ``verified`` false).
- ``{"type": "peers", "peers": [...]}``: the peers (as ``GET /api/peers?all=1``) whenever one's name,
  liveness, sync or reachability changed; checked every ``API_EVENT_PEERS_CHECK_S``, since a maker
  falls silent without a message.
- ``{"type": "grape", "ok", "grape", "error"}``: the Grape was lost (``ok`` false: out of the market
  until it answers again) or reached again.
- ``{"type": "book"}``: a maker's offers were replaced by its authoritative list: read the book again.
- ``{"type": "resync"}``: the client fell more than ``QUEUE`` events behind and some were dropped:
  read everything again. Nothing else is ever dropped silently.
- ``{"type": "rfq" | "quote" | "settlement" | "overdue", "data": ...}``: requests for quote, quotes
  and settlement steps (see node/notify.py).

An event that is a notification (a trade, a message, the kinds above) also carries ``"data"``: what
``node.notify.notice`` makes of it, the same JSON that webhooks get (``otc watch`` shows it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from ..core.limits import API_EVENT_PEERS_CHECK_S, API_EVENT_STATUS_S
from ..core.messages import Chat, GrapevineNote, Offer, Receipt
from ..node.clock import now_ms
from ..node.notify import notice
from ..node.peer import Peer
from .server import EventStream

log = logging.getLogger("otc.api.events")
QUEUE = 1000  # events waiting for one slow subscriber before it is told to resync
RESYNC = b'{"type":"resync"}'
_encoder = msgspec.json.Encoder()


class Views(Protocol):
    """How the API shows things (routes.py): the stream sends the same objects as the endpoints."""

    def offer_view(self, offer: Offer) -> Any: ...

    def receipt_view(self, receipt: Receipt) -> Any: ...

    def message_view(self, direction: str, msg: Chat | GrapevineNote, received_at: int) -> Any: ...

    def peers_view(self) -> list[Any]: ...


def tagged(kind: bytes, view: Any) -> bytes:
    """``{"type": kind, ...the view's fields}`` without building a dict: the view encodes as an object."""
    body = _encoder.encode(view)
    return b'{"type":"' + kind + b'",' + body[1:] if body != b"{}" else b'{"type":"' + kind + b'"}'


def payload(event: dict[str, Any], views: Views, me: str) -> bytes:
    kind = event["type"]
    msg = event.get("message") or event.get("note")  # a signed chat message, or a Grapevine one
    if kind == "offer":
        body = tagged(b"offer", views.offer_view(event["offer"]))
    elif kind == "trade":
        body = tagged(b"trade", views.receipt_view(event["receipt"]))
    elif kind == "message" and msg is not None:
        at = event.get("received_at") or now_ms()
        body = tagged(b"message", views.message_view(event.get("direction", "in"), msg, at))
    elif kind == "grape":  # the Grape was lost or reached again (node/grapestatus.py)
        body = _encoder.encode(
            {"type": kind, "ok": event["ok"], "grape": event["grape"], "error": event["error"]}
        )
    else:
        body = _encoder.encode({"type": kind})
    note = notice(event, me)
    if note is None:
        return body
    return body[:-1] + b',"data":' + _encoder.encode(note["data"]) + b"}"


def peers_key(peers: list[Any]) -> tuple[tuple[Any, ...], ...]:
    """What a change of is worth an event (not ``last_seen``, which every new head moves)."""
    return tuple((p.id, p.name, p.alive, p.in_sync, p.reachable, p.listed) for p in peers)


def stream(peer: Peer, views: Views) -> EventStream:
    async def run(send: Callable[[bytes], Awaitable[None]]) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=QUEUE)
        behind = False  # events were dropped: a resync is queued, nothing more until it is sent

        def push(event: dict[str, Any]) -> None:
            nonlocal behind
            if behind:
                return
            try:
                data = payload(event, views, peer.peer_id)
            except Exception:  # a listener must never break the code that emitted the event
                log.exception("cannot show event %r", event.get("type"))
                return
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                behind = True
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(RESYNC)

        def status() -> bytes:
            market = peer.grape.ok is not False  # its last request to the Grape was answered
            live = len(peer.book.peers(now_ms()))
            return _encoder.encode({"type": "status", "now": now_ms(), "peers": live, "market": market})

        peer.events.callbacks.append(push)
        try:
            await send(b": connected\n\ndata: " + status() + b"\n\n")
            next_status = time.monotonic() + API_EVENT_STATUS_S
            next_peers = time.monotonic()
            last_peers: tuple[tuple[Any, ...], ...] | None = None
            while True:
                wait = max(0.0, min(next_status, next_peers) - time.monotonic())
                out: list[bytes] = []
                with contextlib.suppress(TimeoutError):
                    out.append(await asyncio.wait_for(queue.get(), wait))
                    while not queue.empty() and len(out) < 256:  # a burst goes out in one write
                        out.append(queue.get_nowait())
                if any(data is RESYNC for data in out):
                    behind = False
                now = time.monotonic()
                if now >= next_peers:
                    next_peers = now + API_EVENT_PEERS_CHECK_S
                    peers = views.peers_view()
                    key = peers_key(peers)
                    if key != last_peers:
                        last_peers = key
                        out.append(tagged(b"peers", {"peers": peers}))
                if now >= next_status:
                    next_status = now + API_EVENT_STATUS_S
                    out.append(status())
                if out:
                    await send(b"".join(b"data: " + data + b"\n\n" for data in out))
        finally:
            peer.events.callbacks.remove(push)

    return EventStream(run)


__all__ = ["Views", "payload", "stream"]
