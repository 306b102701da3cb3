"""The peer: a thin composition of parts, each with one concern, around the pure core.

- ``Market``    (market.py)    the market overlay (core/replication.py): gossip, probes, sync, join
- ``Trading``   (trading.py)   our desk as maker, our takes as taker
- ``Messenger`` (chat.py)      signed direct messages
- ``Sweeper``   (sweeps.py)    sweep orders across makers
- ``Directory`` (directory.py) where other peers are, and how to reach one by id

``Peer`` owns what they share (identity, store, book, desk, the Grenache link, server and client), wires
the RPC keys to the parts, and runs the lifecycle. Everything that mutates the core runs synchronously
inside one event-loop callback and is persisted before any answer leaves, so the core's decisions are
atomic and survive a crash.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
from pathlib import Path
from typing import Any

from grenache import Link, PeerRPCClient, PeerRPCServer, RPCError

from ..core.book import Book
from ..core.desk import Desk
from ..core.errors import OTCError
from ..core.messages import Chat, Confirm, OffersRequest, PeerRequest, Take
from ..core.taker import Taker
from .chat import Messenger
from .config import PeerConfig
from .directory import MARKET, Directory, peer_key
from .events import Listeners
from .keyfile import load_or_create
from .market import Market
from .store import Store
from .sweeps import Sweeper
from .tasks import Tasks
from .trading import KEEP_SETTLED, Trading
from .wire import decode

log = logging.getLogger("otc.node.peer")


class Peer:
    def __init__(self, config: PeerConfig) -> None:
        self.config = config
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if config.data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="otc-peer-")
            self.data_dir = Path(self._tmp.name)
        else:
            self.data_dir = config.data_dir
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # one process per data directory: two desks on one key and one database would overfill
        self._lock = open(self.data_dir / "lock", "a+")  # noqa: SIM115 - held for the peer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another peer is running on the data directory {self.data_dir}") from None
        self.identity = load_or_create(self.data_dir / "identity.key")
        self.peer_id = self.identity.peer_id
        self.name = config.name
        self.store = Store(self.data_dir / "peer.sqlite")
        self.desk = Desk(self.identity, self.name, reserve_ms=config.reserve_ms)
        self.desk.load(
            self.store.open_offers(), self.store.maker_trades_to_load(KEEP_SETTLED), self.store.seq()
        )
        self.book = Book(self.peer_id)
        for offer in self.desk.open_offers():
            self.book.apply(offer)
        self.link = Link(config.grape, announce_interval=config.announce_interval_s)
        self.server = PeerRPCServer(self.link, host=config.rpc_host)
        self.client = PeerRPCClient(self.link, timeout=config.rpc_timeout_s)
        self.events = Listeners()
        self.tasks = Tasks()
        self.directory = Directory(self.link, self.client, self._head_addr)
        self.market = Market(
            config, self.desk, self.book, self.client, self.directory, self.tasks, self.events
        )
        self.trading = Trading(
            config, self.desk, Taker(self.identity, self.name), self.book, self.store, self.market,
            self.directory, self.tasks, self.events,
        )  # fmt: skip
        self.chat = Messenger(config, self.identity, self.book, self.store, self.directory, self.events)
        self.sweeps = Sweeper(
            self.peer_id, self.book, config.default_pair, self.trading.take, self.market.sync_maker,
            self.trading.post_offer,
        )  # fmt: skip

    @property
    def rpc_port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        return f"{self.config.rpc_host}:{self.server.port}"

    @property
    def started(self) -> bool:
        return self.market.started.is_set()

    def _head_addr(self, peer_id: str) -> str | None:
        view = self.book.makers.get(peer_id)
        return view.head.addr if view is not None and view.head is not None else None

    # --- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.link.start()
        self.server.add_handler(MARKET, self.market.on_request)
        self.server.add_handler(peer_key(self.peer_id), self._on_peer)
        await self.server.listen(self.config.rpc_port)
        self.store.set_meta("name", self.name)
        await self._announce()
        self.market.start(self.addr)
        self.trading.start()
        await self.market.join(me={self.addr, f"127.0.0.1:{self.rpc_port}"})
        log.info("peer %s (%s) serving RPC on %s", self.name, self.peer_id[:8], self.addr)

    async def _announce(self) -> None:
        for first in [self.server.announce(peer_key(self.peer_id)), self.server.announce(MARKET)]:
            await first

    async def stop(self) -> None:
        self.tasks.stopping = True  # no new background work from here on
        await self.server.stop()  # first: no handler may start work on what we are closing
        await self.tasks.stop()
        await self.client.stop()
        await self.link.stop()
        self.market.stop()
        self.store.close()
        self._lock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- our own RPC key: trades, offer lists, chat -------------------------------------------------
    async def _on_peer(self, payload: Any) -> Any:
        msg = decode(payload, PeerRequest)
        try:
            if isinstance(msg, Take):
                return self.trading.on_take(msg)
            if isinstance(msg, Confirm):
                return self.trading.on_confirm(msg)
            if isinstance(msg, OffersRequest):
                return self.market.own_offers(msg)
            assert isinstance(msg, Chat)
            return self.chat.receive(msg)
        except OTCError as exc:
            raise RPCError(exc.code, exc.message) from None
