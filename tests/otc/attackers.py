"""Attackers for the hostile-network tests: strangers built from raw parts (the grenache library's Link,
PeerRPCServer and PeerRPCClient, hand-built messages signed with their own keys, raw Grape announcements,
bare sockets), never the project's ``Peer``. Each runs on an asyncio loop in a background thread, so a
test can drive real peer processes through their APIs while the attack goes on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from typing import Any, Self, TypeVar

import msgspec

from grenache import GrenacheError, Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.tls import client_context, self_signed, server_context
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import Chat, Gossip, Offer, Take
from otc.core.signing import sign

T = TypeVar("T")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wire(msg: msgspec.Struct) -> Any:
    return msgspec.to_builtins(msg)


def raw_client(link: Link, timeout: float = 5) -> PeerRPCClient:
    """A Grenache client that speaks TLS to peers, as they require, and checks nobody's identity."""
    return PeerRPCClient(link, timeout=timeout, ssl=client_context())


class BackgroundLoop:
    """An asyncio loop in a thread: ``run(coro)`` waits for a result, ``spawn(coro)`` does not."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="attacker", daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel_all(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


async def announce_junk(grape: str, name: str, count: int) -> None:
    """Raw Grape announcements of ``name`` on ports nobody listens on (one announce each)."""
    async with Link(grape) as link:
        ports = random.sample(range(20_000, 60_000), count)
        for start in range(0, count, 50):
            await asyncio.gather(*(link.announce(name, p) for p in ports[start : start + 50]))


class Squatter:
    """Answers on ``otc:peer:<maker id>`` without the maker's key (over TLS, as peers require, with a
    certificate of its own): relays every take and confirm to the real maker, then tells the taker the
    offer is closed (an unsigned refusal)."""

    def __init__(self, grape: str, maker_id: str, maker_addr: str) -> None:
        self.grape = grape
        self.key = f"otc:peer:{maker_id}"
        self.maker_addr = maker_addr
        self.relayed: Counter[str] = Counter()
        self.link = Link(grape)
        cert, key = self_signed(Identity.generate().seed(), "squatter")
        self.server = PeerRPCServer(self.link, ssl=server_context(cert, key))
        self.client = raw_client(self.link)

    async def start(self) -> Self:
        await self.link.start()
        self.server.add_handler(self.key, self.relay)
        await self.server.listen(0)
        # announced behind a counting proxy: how many connections came to it, whatever happened next
        self.front = await CountingProxy(f"127.0.0.1:{self.server.port}").start()
        self.link.start_announcing(self.key, self.front.port)
        return self

    async def relay(self, payload: Any) -> Any:
        kind = payload.get("type") if isinstance(payload, dict) else None
        result = await self.client.request_dest(self.maker_addr, self.key, payload)
        if kind in ("take", "confirm"):
            self.relayed[kind] += 1
            raise RPCError("ERR_OFFER_CLOSED", "offer is filled")  # a lie, unsigned
        return result

    async def listed(self) -> bool:
        """Whether a lookup of the maker's name lists us."""
        try:
            dests = await self.link.lookup(self.key, cache=False)
        except GrenacheError:
            return False
        return any(d.endswith(f":{self.front.port}") for d in dests)

    async def feed(self, victim_rpc: str, every_s: float = 1.0) -> None:
        """Relay the maker's signed head and offers to a victim, so it trades with the maker (through
        us: it has no Grape-vouched address for the maker, so it asks the DHT name we share)."""
        while True:
            listed = await self.client.request_dest(self.maker_addr, self.key, {"type": "offers"})
            await self.client.request_dest(
                victim_rpc, "otc:market", {"type": "updates", "offers": listed["offers"]}
            )
            await self.client.request_dest(
                victim_rpc, "otc:market", {"type": "heartbeat", "head": listed["head"]}
            )
            await asyncio.sleep(every_s)

    async def stop(self) -> None:
        await self.front.stop()
        await self.server.stop()
        await self.client.stop()
        await self.link.stop()


class CountingProxy:
    """Forwards TCP connections to ``target`` byte for byte, counting them."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.target = (host, int(port))
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Self:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()


class SilentListener:
    """A TCP port that accepts connections and never answers a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)
        self.port = int(self.sock.getsockname()[1])
        self.addr = f"127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


class FakeMaker:
    """A maker with a real key and signed offers, whose announced address never answers: it keeps its
    offers alive in a peer's book by pushing them to it as overlay gossip, with a fresh signed head every
    ``every_s`` (a stranger's gossip, within what the book allows strangers)."""

    def __init__(self, silent: SilentListener) -> None:
        self.identity = Identity.generate()
        self.desk = Desk(self.identity, "cheap")
        self.silent = silent
        self.offers: list[Offer] = []

    def offer(self, side: str, amount: str, price: str) -> Offer:
        made, _ = self.desk.create(side=side, amount=amount, price=price, pair="BTC/USD", now=now_ms())
        self.offers.append(made)
        return made

    async def announce(self, grape: str) -> None:
        async with Link(grape) as link:
            await link.announce("otc:market", self.silent.port)
            await link.announce(f"otc:peer:{self.identity.peer_id}", self.silent.port)

    async def keep_alive(self, client: PeerRPCClient, victim_rpc: str, every_s: float = 1.5) -> None:
        offers = self.offers
        while True:
            head = self.desk.head(now_ms(), self.silent.addr)
            await client.request_dest(victim_rpc, "otc:market", wire(Gossip(offers=offers, heads=[head])))
            offers = []
            await asyncio.sleep(every_s)


def signed_take(taker: Identity, offer: dict[str, Any], amount: str) -> Take:
    return sign(
        taker,
        Take(
            trade_id=uuid.uuid4().hex, offer_id=offer["id"], amount=amount, price=offer["price"],
            taker=taker.peer_id, taker_name="stranger", ts=now_ms(),
        ),
    )  # fmt: skip


def signed_chat(sender: Identity, to: str, text: str, ts: int | None = None) -> Chat:
    return sign(
        sender,
        Chat(id=uuid.uuid4().hex, sender=sender.peer_id, sender_name="stranger", to=to, text=text,
             ts=now_ms() if ts is None else ts),
    )  # fmt: skip
