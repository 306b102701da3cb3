"""Where other peers are: what the Grape lists for the market, which addresses it has vouched for, and
how to reach one peer by its id.

Grenache service names (see docs/protocol.md):
- ``otc:market``      announced by every peer; the market overlay: gossip, probes, reconciliation, snapshots.
- ``otc:peer:<id>``   announced by each peer for itself; receives takes, confirms, offer-list requests, chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from grenache import GrenacheError, Link, PeerRPCClient, RPCError
from grenache.client import ERR_PEER_AUTH, ERR_REQUEST_GENERIC, ERR_TIMEOUT
from grenache.link import ERR_GRAPE_LOOKUP_EMPTY
from grenache.server import ERR_UNKNOWN_SERVICE

from ..core import limits
from ..core.messages import Knock
from .grapestatus import GrapeStatus

# failures that mean the peer did not answer us (as opposed to answering with an error)
SILENCE = frozenset({ERR_TIMEOUT, ERR_REQUEST_GENERIC, ERR_GRAPE_LOOKUP_EMPTY})

MARKET = "otc:market"


def peer_key(peer_id: str) -> str:
    return f"otc:peer:{peer_id}"


class Directory:
    """``addr_of(peer_id)`` gives the address a peer's latest signed head names, if any.

    It also remembers which peers answered lately and which did not (``reachable``): a peer that did
    not answer a request is unreachable for a while (limits.UNREACHABLE_S, doubling), so its offers are
    shown as such and sweeps skip it rather than wait on it again."""

    def __init__(
        self,
        link: Link,
        client: PeerRPCClient,
        addr_of: Callable[[str], str | None],
        grape: GrapeStatus | None = None,
    ) -> None:
        self.link = link
        self.grape = grape  # told how each market lookup went: whether we reach the Grape at all
        self.client = client
        self.addr_of = addr_of
        self._market_dests: list[str] = []
        # addresses the DHT has listed for the market, and when it last did: a maker's signed head
        # address is used directly only if the Grape vouched for it (no aiming the market at a stranger)
        self._vouched: dict[str, float] = {}
        self._listed_at = 0.0  # monotonic time of the last market lookup that worked
        self._answered: OrderedDict[str, float] = OrderedDict()  # peer -> when it last answered
        self._silent: OrderedDict[str, tuple[float, float]] = OrderedDict()  # peer -> (until, wait)

    async def market_destinations(self) -> list[str]:
        """What the Grape lists for the market (the last list while it cannot answer)."""
        try:
            listed = await self.link.lookup(MARKET)
        except GrenacheError as exc:
            if self.grape is not None:
                self.grape.note(exc)
            return self._market_dests
        if self.grape is not None:
            self.grape.note(None)
        self._market_dests = listed
        self._listed_at = seen = time.monotonic()
        for dest in listed:
            self._vouched[dest] = seen
        return listed

    def refresh(self) -> None:
        """Drop the cached market list: the next push asks the Grape (a newcomer was heard)."""
        self.link.forget(MARKET)

    def is_listed(self, addr: str) -> bool:
        """Whether a Grape has listed this address for the market (recently enough to use it directly)."""
        return addr in self._vouched

    def forget_vouched(self, older_than_s: float = 600.0) -> None:
        # counted from the last lookup that worked: while the Grapes are down, what they listed stands
        cutoff = self._listed_at - older_than_s
        for dest in [d for d, t in self._vouched.items() if t < cutoff]:
            del self._vouched[dest]

    # --- reachability -----------------------------------------------------------------------------
    def reachable(self, peer_id: str) -> bool:
        silent = self._silent.get(peer_id)
        return silent is None or time.monotonic() >= silent[0]

    def silent(self, peer_id: str) -> None:
        """The market's failure detector could not reach this peer (core/replication.py ``Silent``)."""
        if self.reachable(peer_id):
            self._note(peer_id, answered=False)

    def answered_within(self, peer_id: str, seconds: float) -> bool:
        at = self._answered.get(peer_id)
        return at is not None and time.monotonic() - at <= seconds

    def _note(self, peer_id: str, answered: bool) -> None:
        now = time.monotonic()
        if answered:
            self._silent.pop(peer_id, None)
            self._answered.pop(peer_id, None)
            self._answered[peer_id] = now
            while len(self._answered) > limits.PEERS_TRACKED:
                self._answered.popitem(last=False)
        else:
            _, wait = self._silent.pop(peer_id, (0.0, limits.UNREACHABLE_S / 2))
            wait = min(wait * 2, limits.MAX_UNREACHABLE_S)
            self._silent[peer_id] = (now + wait, wait)
            while len(self._silent) > limits.PEERS_TRACKED:
                self._silent.popitem(last=False)

    async def probe(self, peer_ids: list[str], timeout: float) -> None:
        """Knock peers at once; each has answered, or is unreachable, when this returns (in ``timeout``)."""
        if not peer_ids:
            return
        started = time.monotonic()
        pings = [asyncio.ensure_future(self._ping(p, timeout)) for p in peer_ids]
        _, late = await asyncio.wait(pings, timeout=timeout)
        for ping in late:
            ping.cancel()
        for peer_id in peer_ids:
            if self._answered.get(peer_id, 0.0) < started and self.reachable(peer_id):
                self._note(peer_id, answered=False)

    async def _ping(self, peer_id: str, timeout: float) -> None:
        with contextlib.suppress(GrenacheError):
            await self.ask(peer_id, Knock(), timeout=timeout)

    # --- requests -----------------------------------------------------------------------------------
    async def ask(self, peer_id: str, msg: Any, *, timeout: float, result_type: Any = None) -> Any:
        """``_ask``, noting whether the peer answered (an error answer is an answer)."""
        try:
            result = await self._ask(peer_id, msg, timeout=timeout, result_type=result_type)
        except RPCError as exc:
            self._note(peer_id, answered=exc.code not in SILENCE)
            raise
        except GrenacheError as exc:  # the Grape failed us: says nothing about the peer, unless empty
            if exc.code == ERR_GRAPE_LOOKUP_EMPTY:
                self._note(peer_id, answered=False)
            raise
        except asyncio.CancelledError:
            raise
        self._note(peer_id, answered=True)
        return result

    async def _ask(self, peer_id: str, msg: Any, *, timeout: float, result_type: Any = None) -> Any:
        """A request to one peer's own service (``otc:peer:<id>``): first straight to the address its
        signed head gives (no lookup: works while a Grape has forgotten the name, or is buried in junk),
        then through the DHT if that address does not answer as that peer (it restarted elsewhere).
        Either way the far end must prove it holds the peer's key in the TLS handshake before a byte is
        sent (``tls.verify_peer``), so neither a head's address nor a squatter on the name can divert
        the request; a head cannot aim our requests anywhere but at a TLS handshake either."""
        deadline = time.monotonic() + timeout
        addr = self.addr_of(peer_id)
        if addr is not None:
            try:
                return await self.client.request_dest(
                    addr, peer_key(peer_id), msg, timeout=timeout, result_type=result_type
                )
            except RPCError as exc:
                # every request to a peer is idempotent, so sending it again elsewhere is safe
                if exc.code not in (ERR_REQUEST_GENERIC, ERR_UNKNOWN_SERVICE, ERR_PEER_AUTH):
                    raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise RPCError(ERR_TIMEOUT, f"{peer_id[:12]} did not answer in time")
        return await self.client.request(peer_key(peer_id), msg, timeout=left, result_type=result_type)
