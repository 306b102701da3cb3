"""Signed direct messages between peers, addressed by peer id (or a unique live name)."""

from __future__ import annotations

import uuid
from typing import Any

from grenache import GrenacheError

from ..core import errors as E
from ..core.book import Book
from ..core.errors import OTCError
from ..core.identity import Identity
from ..core.messages import Chat
from ..core.signing import is_signed, sign
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .events import Listeners
from .store import Store

MAX_TEXT = 2000


class Messenger:
    def __init__(
        self,
        config: PeerConfig,
        identity: Identity,
        book: Book,
        store: Store,
        directory: Directory,
        events: Listeners,
    ) -> None:
        self.config = config
        self.identity = identity
        self.peer_id = identity.peer_id
        self.book = book
        self.store = store
        self.directory = directory
        self.events = events

    def resolve_peer(self, who: str) -> str:
        """A peer id, id prefix or name -> a peer id; ambiguity is an error, never a guess."""
        peers = self.book.peers(now_ms())
        if len(who) == 64 and all(c in "0123456789abcdef" for c in who):
            return who
        by_name = [p for p in peers if p.name == who]
        by_prefix = [p for p in peers if len(who) >= 4 and p.peer_id.startswith(who)]
        found = by_name or by_prefix
        if not found:
            raise OTCError(E.ERR_PEER_NOT_FOUND, f"no live peer named {who!r}")
        if len(found) > 1:
            ids = ", ".join(p.peer_id[:12] for p in found)
            raise OTCError(E.ERR_AMBIGUOUS_PEER, f"{len(found)} peers match {who!r}: {ids}; use an id")
        return found[0].peer_id

    async def send(self, to: str, text: Any) -> Chat:
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            raise OTCError(E.ERR_INVALID_MESSAGE, f"text must be 1 to {MAX_TEXT} characters")
        peer_id = self.resolve_peer(to)
        if peer_id == self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "you cannot message yourself")
        msg = sign(
            self.identity,
            Chat(
                id=uuid.uuid4().hex,
                sender=self.peer_id,
                sender_name=self.config.name,
                to=peer_id,
                text=text,
                ts=now_ms(),
            ),
        )
        try:
            await self.directory.ask(peer_id, msg, timeout=self.config.rpc_timeout_s)
        except GrenacheError as exc:
            code = E.ERR_PEER_NOT_FOUND if "LOOKUP_EMPTY" in exc.code else E.ERR_MAKER_UNREACHABLE
            raise OTCError(code, f"could not deliver to {peer_id[:12]}: {exc}") from None
        self.store.add_message(msg, "out")
        return msg

    def receive(self, msg: Chat) -> dict[str, Any]:
        if msg.to != self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "message is addressed to another peer")
        if not is_signed(msg):
            raise OTCError(E.ERR_BAD_SIGNATURE, "message is not signed by its sender")
        if self.store.add_message(msg, "in"):
            self.events.emit({"type": "message", "message": msg})
        return {"ok": True}
