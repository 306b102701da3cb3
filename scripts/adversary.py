"""The chaos run's adversary (`make chaos` runs it; `--no-adversary` leaves it out): four strangers on
the same Grapes as the honest peers, each built from raw parts (the grenache library and messages signed
with their own keys, never the project's ``Peer``), attacking for the whole run:

- a squatter announces itself on every honest peer's ``otc:peer:<id>`` and answers every request with an
  unsigned ``ERR_OFFER_CLOSED`` (TLS pinning must keep every honest request from reaching it: the run
  counts those that do, ``squatter reached``, and wants none);
- a griefer takes the best offers it sees in the books, under fresh keys and its own, and never confirms
  (per-taker limits must keep honest takers filling);
- an equivocator signs two versions of one offer (same id and seq, two prices) and gossips one to half
  the peers and the other to the rest, with a matching head for each (the proof must hide it everywhere);
- a silent listener is announced on ``otc:market`` and never answers a byte (nobody may wait on it).

``Adversary.findings`` says what each did, for the report; the invariants are the run's own, plus two:
no book shows an offer of the equivocator at the end, and no request reached the squatter.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from grenache import GrenacheError, Link, PeerRPCClient, PeerRPCServer, RPCError
from grenache.tls import client_context, self_signed, server_context
from otc.core.desk import Desk
from otc.core.identity import Identity
from otc.core.messages import Gossip, Offer, Take
from otc.core.offer import content_hash, digest
from otc.core.signing import sign


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def wire(msg: msgspec.Struct) -> Any:
    return msgspec.to_builtins(msg)


@dataclass
class Target:
    """An honest peer as the adversary sees it: its id and where its RPC server listens."""

    peer_id: str
    rpc: str


@dataclass
class Adversary:
    grapes: list[str]
    targets: list[Target]
    book: Any  # () -> the open offers of some honest peer's book (the adversary reads books like anyone)
    seed: int = 1
    findings: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.equivocator = Identity.generate()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="adversary", daemon=True)
        self._silent = socket.socket()
        self._silent.bind(("127.0.0.1", 0))
        self._silent.listen(256)
        self._held: list[socket.socket] = []
        for key in ("squatter reached", "griefer takes", "equivocations sent", "silent connections"):
            self.findings[key] = 0

    # --- lifecycle ---------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        threading.Thread(target=self._accept_silently, daemon=True).start()
        for coro in (self._squat(), self._grief(), self._equivocate(), self._announce_silent()):
            asyncio.run_coroutine_threadsafe(coro, self._loop)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(cancel_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._silent.close()
        for conn in self._held:
            conn.close()
        self._held.clear()

    def retarget(self, targets: list[Target]) -> None:
        """Restarted peers come back on new RPC ports."""
        self.targets = targets

    # --- the squatter ------------------------------------------------------------------------------------
    async def _squat(self) -> None:
        me = Identity.generate()
        cert, key = self_signed(me.seed(), "squatter")
        async with Link(self.grapes[0]) as link:
            server = PeerRPCServer(link, ssl=server_context(cert, key))

            async def answer(payload: Any) -> Any:
                self.findings["squatter reached"] += 1  # a request got past TLS pinning: a finding
                raise_closed()

            squatted: set[str] = set()
            try:
                await server.listen(0)
                while True:
                    for t in self.targets:
                        name = f"otc:peer:{t.peer_id}"
                        if name not in squatted:  # announced from here on, again and again
                            squatted.add(name)
                            server.add_handler(name, answer)
                            with contextlib.suppress(GrenacheError):
                                await server.announce(name)
                    await asyncio.sleep(2)
            finally:
                await server.stop()

    # --- the griefer -------------------------------------------------------------------------------------
    async def _grief(self) -> None:
        keys = [Identity.generate() for _ in range(3)]
        async with Link(self.grapes[1 % len(self.grapes)]) as link:
            client = PeerRPCClient(link, timeout=2, ssl=client_context())
            try:
                while True:
                    offers = await asyncio.to_thread(self._offers)
                    for offer in offers[:4]:
                        taker = self.rng.choice(keys)
                        amount = offer.get("available") or offer["remaining"]
                        take = sign(taker, Take(
                            trade_id=uuid.uuid4().hex, offer_id=offer["id"], amount=amount,
                            price=offer["price"], taker=taker.peer_id, taker_name="griefer", ts=now_ms(),
                        ))  # fmt: skip
                        rpc = {t.peer_id: t.rpc for t in self.targets}.get(offer["maker"])
                        if rpc is None:
                            continue
                        with contextlib.suppress(GrenacheError, OSError):  # straight to the maker
                            await client.request_dest(
                                rpc, f"otc:peer:{offer['maker']}", wire(take), timeout=2
                            )
                        self.findings["griefer takes"] += 1
                    await asyncio.sleep(0.5)
            finally:
                await client.stop()

    def _offers(self) -> list[dict[str, Any]]:
        try:
            return list(self.book())
        except Exception:  # a peer paused or restarting: try again later
            return []

    # --- the equivocator ---------------------------------------------------------------------------------
    async def _equivocate(self) -> None:
        desk = Desk(self.equivocator, "twofaced")
        async with Link(self.grapes[0]) as link:
            client = PeerRPCClient(link, timeout=2, ssl=client_context())
            try:
                while True:
                    offer, _ = desk.create(
                        side="sell", amount="1", price="7990", pair="BTC/USD", now=now_ms()
                    )
                    twin = sign(self.equivocator, msgspec.structs.replace(offer, price="7991", sig=""))
                    head = desk.head(now_ms(), self._silent_addr)
                    other = msgspec.structs.replace(head, digest=_digest([twin]), sig="")
                    other = sign(self.equivocator, other)
                    targets = list(self.targets)
                    self.rng.shuffle(targets)
                    for i, t in enumerate(targets):
                        version = (
                            Gossip(offers=[offer], heads=[head])
                            if i % 2
                            else Gossip(offers=[twin], heads=[other])
                        )
                        with contextlib.suppress(GrenacheError, OSError):
                            await client.request_dest(t.rpc, "otc:market", wire(version), timeout=2)
                    self.findings["equivocations sent"] += 1
                    await asyncio.sleep(5)
            finally:
                await client.stop()

    # --- the silent listener -----------------------------------------------------------------------------
    @property
    def _silent_addr(self) -> str:
        return f"127.0.0.1:{self._silent.getsockname()[1]}"

    def _accept_silently(self) -> None:
        while True:
            try:
                conn, _ = self._silent.accept()
            except OSError:
                return
            self._held.append(conn)  # never read, never answered
            self.findings["silent connections"] += 1
            if len(self._held) > 512:  # bounded: the oldest go (the peers gave up on them long ago)
                self._held.pop(0).close()

    async def _announce_silent(self) -> None:
        port = self._silent.getsockname()[1]
        links = [Link(g) for g in self.grapes]
        for link in links:
            await link.start()
        try:
            while True:
                for link in links:
                    with contextlib.suppress(GrenacheError):
                        await link.announce("otc:market", port)
                await asyncio.sleep(5)
        finally:
            for link in links:
                await link.stop()


def _digest(offers: list[Offer]) -> str:
    return digest([content_hash(o) for o in offers])


def raise_closed() -> None:
    raise RPCError("ERR_OFFER_CLOSED", "closed (says the squatter, unsigned)")
