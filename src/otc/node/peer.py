"""The peer: a thin composition of parts, each with one concern, around the pure core.

- ``Market``    (market.py)    the market overlay (core/replication.py): gossip, probes, sync, join
- ``Trading``   (trading.py)   our desk as maker, our takes as taker
- ``Messenger`` (chat.py)      signed direct messages
- ``Sweeper``   (sweeps.py)    sweep orders across makers
- ``Directory`` (directory.py) where other peers are, and how to reach one by id
- ``RFQ``       (rfq.py)       requests for quote, quotes, quoting rules, the quote desk
- ``Settlements`` (settlement.py) the steps after a trade is done, kept level on both sides
- ``Notifier``  (notify.py)    webhooks
- ``Templates`` (templates.py) offers posted again, amended
- ``Recovery``  (recovery.py)  our own history: refuse to trade on a store that lost some, rebuild it

``Peer`` owns what they share (identity, store, book, desk, the Grenache link, server and client), wires
the RPC keys to the parts, and runs the lifecycle. Everything that mutates the core runs synchronously
inside one event-loop callback and is persisted before any answer leaves, so the core's decisions are
atomic and survive a crash.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import tempfile
from pathlib import Path
from typing import Any

from grenache import GrenacheError, Link, PeerRPCClient, PeerRPCServer, RPCError

from ..core import limits as L
from ..core.book import Book
from ..core.desk import Desk
from ..core.errors import OTCError
from ..core.messages import (
    Chat,
    Confirm,
    HeldRequest,
    Knock,
    OffersRequest,
    PeerRequest,
    Quote,
    QuoteRequest,
    ReceiptsRequest,
    SettleSync,
    Take,
)
from ..core.taker import Taker
from . import tls
from .chat import Messenger
from .config import PeerConfig, announced_host
from .directory import MARKET, Directory, peer_key
from .events import Listeners
from .grapestatus import GrapeStatus
from .grapevine import GrapevineBridge
from .keyfile import load_or_create
from .market import Market
from .notify import Notifier
from .recovery import Recovery, open_store
from .rfq import RFQ
from .settlement import Settlements
from .sweeps import Sweeper
from .tasks import Tasks
from .templates import Templates
from .trading import KEEP_SETTLED, Trading
from .wire import decode

log = logging.getLogger("otc.node.peer")
PEER_IDLE_S = 30.0  # under the 60 s our RPC servers keep an idle connection (grenache.limits)


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
        ran_before = (self.data_dir / "lock").exists()  # a peer has run here: it had a store
        self._lock = open(self.data_dir / "lock", "a+")  # noqa: SIM115 - held for the peer's lifetime
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another peer is running on the data directory {self.data_dir}") from None
        had_key = (self.data_dir / "identity.key").exists()
        self.identity = load_or_create(self.data_dir / "identity.key")
        self.peer_id = self.identity.peer_id
        self.name = config.name
        # raises StoreDamaged (or, with --recover, moves the damaged file aside); see recovery.py
        self.store, local = open_store(
            self.data_dir / "peer.sqlite", self.peer_id, had_key=had_key, ran_before=ran_before,
            recover=config.recover,
        )  # fmt: skip
        self.desk = Desk(self.identity, self.name, reserve_ms=config.reserve_ms)
        self.desk.load(
            self.store.open_offers(), self.store.maker_trades_to_load(KEEP_SETTLED), self.store.seq()
        )
        self.book = Book(self.peer_id)
        for offer in self.desk.open_offers():
            self.book.apply(offer)
        self.link = Link(config.grape, announce_interval=config.announce_interval_s)
        server_tls, client_tls = tls.contexts(self.identity)
        self.server = PeerRPCServer(self.link, host=config.rpc_host, ssl=server_tls)
        # Idle connections are kept 30 s (the library's 4 s suits Node servers, which close at 5 s; ours
        # keep them 60 s): neighbours are probed every 4 s at most, and a TLS handshake per probe was over a
        # third of a peer's CPU in a 150-peer market
        rpc_client = functools.partial(
            PeerRPCClient, self.link, timeout=config.rpc_timeout_s, ssl=client_tls,
            verify_peer=tls.verify_peer, idle_timeout=PEER_IDLE_S,
        )  # fmt: skip
        self.client = rpc_client()  # trades, chat, offer lists: the library's 64 connections per peer
        # The overlay's own clients: its data (gossip, repairs) to one peer shares at most
        # MARKET_CONNS_PER_PEER connections, so when that peer answers slowly our requests queue (and
        # gossip batches) rather than each opening a TLS connection: at 150 peers on 2 cores those
        # handshakes (hundreds a second) kept the machine saturated. Probes have connections of their
        # own, so a liveness check never waits behind data
        self.market_client = rpc_client(max_conns_per_dest=L.MARKET_CONNS_PER_PEER)
        self.probe_client = rpc_client(max_conns_per_dest=L.PROBE_CONNS_PER_PEER)
        self.events = Listeners()
        self.tasks = Tasks()
        self.grape = GrapeStatus(config.grape, self.events)
        self.directory = Directory(self.link, self.client, self._head_addr, self.grape)
        self.market = Market(
            config, self.desk, self.book, self.market_client, self.probe_client, self.directory,
            self.tasks, self.events,
        )  # fmt: skip
        self.trading = Trading(
            config, self.desk, Taker(self.identity, self.name), self.book, self.store, self.market,
            self.directory, self.tasks, self.events,
        )  # fmt: skip
        self.chat = Messenger(config, self.identity, self.book, self.store, self.directory, self.events)
        self.grapevine = GrapevineBridge(config, self.link, self.store, self.events)
        self.sweeps = Sweeper(
            self.peer_id, self.book, config.default_pair, self.trading.take, self.market.sync_maker,
            self.trading.post_offer, self.directory,
        )  # fmt: skip
        self.templates = Templates(self.trading, self.store)
        self.rfq = RFQ(
            config, self.identity, self.book, self.desk, self.store, self.directory, self.tasks, self.events,
            self.trading,
        )  # fmt: skip
        self.settlements = Settlements(
            config, self.identity, self.store, self.directory, self.tasks, self.events
        )
        self.notify = Notifier(
            self.peer_id, self.data_dir, self.store, self.events, self.tasks, config.notify_urls
        )
        self.recovery = Recovery(
            config, self.identity, local, self.store, self.desk, self.book, self.directory, self.trading,
            self.market, self.tasks, quotes=self.rfq,
        )  # fmt: skip
        # no trading, no quoting, until our history is whole
        self.trading.blocked = self.rfq.blocked = self.recovery.blocked
        self._started = False

    @property
    def rpc_port(self) -> int:
        return self.server.port

    @property
    def addr(self) -> str:
        """Our address as others should dial it (and as our signed heads say)."""
        return f"{announced_host(self.config)}:{self.server.port}"

    @property
    def started(self) -> bool:
        """The start is over: the market joined and our own history checked (trading allowed or not)."""
        return self._started

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
        self.trading.start()  # the head we sign on joining the overlay commits to its offers
        await self.grapevine.start()
        self.rfq.start()
        self.settlements.start()
        self.notify.start()
        # Our head and pushes go out only once our history is known to be whole: at once for a new
        # identity, after a bounded check alongside the join otherwise. A head or offers signed from a
        # store that is behind could bring back what books know to be closed; and offers we may not be
        # able to honour stay hidden meanwhile (see recovery.py).
        checked = self.recovery.start(self.market.started, on_trading=lambda: self.market.start(self.addr))
        await self.market.join(
            me={self.addr, f"127.0.0.1:{self.rpc_port}", f"{self.config.rpc_host}:{self.rpc_port}"}
        )
        await checked
        self._started = True
        log.info("peer %s (%s) serving RPC on %s", self.name, self.peer_id[:8], self.addr)

    async def _announce(self) -> None:
        for first in [self.server.announce(peer_key(self.peer_id)), self.server.announce(MARKET)]:
            outcome = await first
            self.grape.note(outcome if isinstance(outcome, GrenacheError) else None)

    async def leave(self, drain_s: float = 3.0) -> None:
        """Stopping on purpose: say goodbye to the market (our offers leave every book at once), then
        give our takes in flight up to ``drain_s`` to be answered. The API may still answer meanwhile."""
        await self.market.depart()
        await self.trading.wind_down(drain_s)

    async def stop(self) -> None:
        self.tasks.stopping = True  # no new background work from here on
        await self.market.depart()  # once: a no-op after leave()
        await self.server.stop()  # first: no handler may start work on what we are closing
        await self.grapevine.stop()
        await self.tasks.stop()
        await self.client.stop()
        await self.market_client.stop()
        await self.probe_client.stop()
        await self.link.stop()
        self.market.stop()
        self.notify.stop()
        self.store.close()
        self._lock.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    # --- our own RPC key: trades, offer lists, chat -------------------------------------------------
    async def _on_peer(self, payload: Any) -> Any:
        msg = decode(payload, PeerRequest)
        try:
            # while our history is not whole, trading answers every take and confirm (it refuses)
            quoting = self.recovery.blocked() is None
            if isinstance(msg, (Take, Confirm)) and quoting and (quoted := self.rfq.route(msg)) is not None:
                return quoted  # about a quote: the quote desk's
            if isinstance(msg, Take):
                return await self.trading.on_take(msg)
            if isinstance(msg, Confirm):
                return await self.trading.on_confirm(msg)
            if isinstance(msg, OffersRequest):
                return self.market.own_offers(msg)
            if isinstance(msg, Knock):
                return {"ok": True}
            if isinstance(msg, QuoteRequest):
                if (blocked := self.recovery.blocked()) is not None:
                    raise blocked  # a rule would quote from a quote desk that may have lost history
                return self.rfq.on_request(msg)
            if isinstance(msg, Quote):
                return self.rfq.on_quote(msg)
            if isinstance(msg, SettleSync):
                return self.settlements.on_sync(msg)
            if isinstance(msg, HeldRequest):
                return self.recovery.on_held(msg)
            if isinstance(msg, ReceiptsRequest):
                return self.recovery.on_receipts(msg)
            assert isinstance(msg, Chat)
            return self.chat.receive(msg)
        except OTCError as exc:
            raise RPCError(exc.code, exc.message) from None
