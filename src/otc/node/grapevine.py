"""Grapevine, the Node chat on Grape this project grew from, for an otc peer.

With ``--grapevine`` the peer also answers Grapevine clients under its name (a grenache-nodejs-ws server
announced as the name, payload ``{"message": m}``, reply ``"Echo: m"`` as the Node server answers), and
``send`` reaches a Grapevine server by name. Nothing in Grapevine is signed: anyone can announce any
name, and a message says nothing of who sent it. So these messages are kept apart from our signed chat
(``GrapevineNote``), shown as unverified, and limited like it. Signed chat stays the default between
otc peers.
"""

from __future__ import annotations

import uuid

from grenache import Link, RPCError
from grenache.grapevine import Grapevine, send
from grenache.server import Request

from ..core import errors as E
from ..core import limits
from ..core.errors import OTCError
from ..core.messages import GrapevineNote
from ..core.ratelimit import RateLimiter
from .clock import now_ms
from .config import PeerConfig
from .events import Listeners
from .store import Store


class GrapevineBridge:
    def __init__(self, config: PeerConfig, link: Link, store: Store, events: Listeners) -> None:
        self.config = config
        self.link = link
        self.store = store
        self.events = events
        self.endpoint: Grapevine | None = None
        # unsigned callers cannot be told apart: one budget for all of them, per caller address too
        self._all = RateLimiter(limits.CHAT_PER_MINUTE, limits.CHAT_PER_MINUTE / 4, 1)
        self._per_caller = RateLimiter(
            limits.CHAT_PER_SENDER_PER_MINUTE, limits.CHAT_BURST, limits.PEERS_TRACKED
        )

    @property
    def port(self) -> int:
        return self.endpoint.port if self.endpoint is not None else 0

    async def start(self) -> None:
        if self.config.grapevine:
            self.endpoint = Grapevine(
                self.link, self.config.name, self._on_message, host=self.config.rpc_host
            )
            await self.endpoint.start()

    async def stop(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.stop()

    async def _on_message(self, message: str, request: Request) -> str:
        now = now_ms()
        caller = request.peer or "?"
        if not self._per_caller.allow(caller.rpartition(":")[0], now) or not self._all.allow("", now):
            raise RPCError(E.ERR_RATE_LIMITED, "too many messages")
        if not message.strip() or len(message) > limits.CHAT_TEXT_MAX:
            raise RPCError(E.ERR_INVALID_MESSAGE, f"a message is 1 to {limits.CHAT_TEXT_MAX} characters")
        note = GrapevineNote(id=uuid.uuid4().hex, peer=caller[:128], text=message, ts=now)
        self.store.add_message(note, "in", now, limits.INBOX_MAX)
        event = {"type": "message", "grapevine": True, "note": note, "direction": "in", "received_at": now}
        self.events.emit(event)
        return f"Echo: {message}"

    async def send(self, name: str, text: str) -> tuple[GrapevineNote, str]:
        """Send ``text`` to the Grapevine peer announced as ``name``; (what we sent, its reply)."""
        if not text.strip() or len(text) > limits.CHAT_TEXT_MAX:
            raise OTCError(E.ERR_INVALID_MESSAGE, f"text must be 1 to {limits.CHAT_TEXT_MAX} characters")
        try:
            reply = await send(self.link, name, text, timeout=self.config.rpc_timeout_s)
        except RPCError as exc:
            code = E.ERR_PEER_NOT_FOUND if "LOOKUP_EMPTY" in exc.code else E.ERR_MAKER_UNREACHABLE
            raise OTCError(code, f"no Grapevine peer {name!r} answered: {exc}") from None
        except OSError as exc:
            raise OTCError(E.ERR_MAKER_UNREACHABLE, f"Grapevine peer {name!r}: {exc}") from None
        now = now_ms()
        note = GrapevineNote(id=uuid.uuid4().hex, peer=name[:128], text=text, ts=now)
        self.store.add_message(note, "out", now, limits.INBOX_MAX)
        return note, reply if isinstance(reply, str) else str(reply)
