"""Signed direct messages between peers, addressed by peer id or by a name that is unambiguous.

Names are labels anyone can claim. A name resolves only to a live peer, and only if every peer we know
by it is that one: live peers, silent ones the book still remembers, and our contacts (peers we have
chatted or traded with, stored with the name they used). So after alice leaves, "alice" never quietly
reaches whoever claims the name next: it is ambiguous, and the caller must use an id.

Incoming messages are rate limited per sender and in all, and the inbox keeps the latest messages by
our own receive time (a sender's timestamp is its claim, never the order).
"""

from __future__ import annotations

import uuid
from typing import Any

from grenache import GrenacheError

from ..core import errors as E
from ..core import limits
from ..core.book import Book
from ..core.errors import OTCError
from ..core.identity import Identity
from ..core.messages import Chat
from ..core.ratelimit import RateLimiter
from ..core.signing import is_signed, sign
from .clock import now_ms
from .config import PeerConfig
from .directory import Directory
from .events import Listeners
from .store import Store


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
        self._per_sender = RateLimiter(
            limits.CHAT_PER_SENDER_PER_MINUTE, limits.CHAT_BURST, limits.PEERS_TRACKED
        )
        self._all = RateLimiter(limits.CHAT_PER_MINUTE, limits.CHAT_PER_MINUTE / 4, 1)

    def resolve_peer(self, who: str) -> str:
        """A peer id, id prefix or name -> the id of a live peer; ambiguity is an error, never a guess."""
        now = now_ms()
        who = who.strip()
        if len(who) == 64 and all(c in "0123456789abcdef" for c in who.lower()):
            return who.lower()
        live = self.book.peers(now)
        if len(who) >= 4 and all(c in "0123456789abcdef" for c in who.lower()):
            by_prefix = [p for p in live if p.peer_id.startswith(who.lower())]
            if len(by_prefix) == 1:
                return by_prefix[0].peer_id
            if len(by_prefix) > 1:
                ids = ", ".join(p.peer_id[:12] for p in by_prefix)
                raise OTCError(E.ERR_AMBIGUOUS_PEER, f"{len(by_prefix)} peers match {who!r}: {ids}")
        wanted = who.casefold()
        named_live = {p.peer_id for p in live if p.name.casefold() == wanted}
        named_known = {p.peer_id for p in self.book.peers(now, hidden=True) if p.name.casefold() == wanted}
        named_known |= set(self.store.contacts_named(who)) | named_live
        named_known.discard(self.peer_id)
        if not named_known and self.config.name.casefold() == wanted:
            raise OTCError(E.ERR_INVALID_MESSAGE, f"{who!r} is your own name: you cannot message yourself")
        if len(named_known) > 1:
            ids = ", ".join(
                f"{pid[:12]} ({'online' if pid in named_live else 'offline'})" for pid in sorted(named_known)
            )
            raise OTCError(
                E.ERR_AMBIGUOUS_PEER,
                f"{len(named_known)} peers have used the name {who!r}: {ids}; use an id",
            )
        if not named_live:
            if named_known:
                (pid,) = named_known
                raise OTCError(E.ERR_PEER_NOT_FOUND, f"{who!r} ({pid[:12]}) is not online")
            raise OTCError(E.ERR_PEER_NOT_FOUND, f"no live peer named {who!r}")
        (found,) = named_live
        return found

    async def send(self, to: str, text: Any) -> Chat:
        if not isinstance(text, str) or not text.strip() or len(text) > limits.CHAT_TEXT_MAX:
            raise OTCError(E.ERR_INVALID_MESSAGE, f"text must be 1 to {limits.CHAT_TEXT_MAX} characters")
        peer_id = self.resolve_peer(to)
        if peer_id == self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "you cannot message yourself")
        now = now_ms()
        msg = sign(
            self.identity,
            Chat(
                id=uuid.uuid4().hex,
                sender=self.peer_id,
                sender_name=self.config.name,
                to=peer_id,
                text=text,
                ts=now,
            ),
        )
        try:
            await self.directory.ask(peer_id, msg, timeout=self.config.rpc_timeout_s)
        except GrenacheError as exc:
            code = E.ERR_PEER_NOT_FOUND if "LOOKUP_EMPTY" in exc.code else E.ERR_MAKER_UNREACHABLE
            raise OTCError(code, f"could not deliver to {peer_id[:12]}: {exc}") from None
        self.store.add_message(msg, "out", now, limits.INBOX_MAX)
        self.events.emit({"type": "message", "message": msg, "direction": "out", "received_at": now})
        name = self._name_of(peer_id)
        if name is not None:
            self.store.add_contact(peer_id, name, now)
        return msg

    def receive(self, msg: Chat) -> dict[str, Any]:
        if msg.to != self.peer_id:
            raise OTCError(E.ERR_INVALID_MESSAGE, "message is addressed to another peer")
        now = now_ms()
        # the per-sender bucket first: a flooding sender cannot drain the shared one for everyone else
        if not self._per_sender.allow(msg.sender, now):
            raise OTCError(
                E.ERR_RATE_LIMITED,
                f"at most {limits.CHAT_PER_SENDER_PER_MINUTE} messages a minute per sender",
            )
        if not self._all.allow("", now):
            raise OTCError(E.ERR_RATE_LIMITED, "this peer receives too many messages right now")
        if not is_signed(msg):
            raise OTCError(E.ERR_BAD_SIGNATURE, "message is not signed by its sender")
        if self.store.add_message(msg, "in", now, limits.INBOX_MAX):
            self.events.emit({"type": "message", "message": msg, "direction": "in", "received_at": now})
        return {"ok": True}

    def _name_of(self, peer_id: str) -> str | None:
        view = self.book.makers.get(peer_id)
        return view.head.name if view is not None and view.head is not None else None
