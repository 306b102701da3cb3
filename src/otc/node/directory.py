"""Where other peers are: what the Grape lists for the market, which addresses it has vouched for, and
how to reach one peer by its id.

Grenache service names (see docs/protocol.md):
- ``otc:market``      announced by every peer; the market overlay: gossip, probes, reconciliation, snapshots.
- ``otc:peer:<id>``   announced by each peer for itself; receives takes, confirms, offer-list requests, chat.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from grenache import GrenacheError, Link, PeerRPCClient, RPCError
from grenache.client import ERR_REQUEST_GENERIC, ERR_TIMEOUT
from grenache.server import ERR_UNKNOWN_SERVICE

MARKET = "otc:market"


def peer_key(peer_id: str) -> str:
    return f"otc:peer:{peer_id}"


class Directory:
    """``addr_of(peer_id)`` gives the address a peer's latest signed heartbeat names, if any."""

    def __init__(self, link: Link, client: PeerRPCClient, addr_of: Callable[[str], str | None]) -> None:
        self.link = link
        self.client = client
        self.addr_of = addr_of
        self._market_dests: list[str] = []
        # addresses the DHT has listed for the market, and when it last did: a maker's signed heartbeat
        # address is used directly only if the Grape vouched for it (no aiming the market at a stranger)
        self._vouched: dict[str, float] = {}
        self._listed_at = 0.0  # monotonic time of the last market lookup that worked

    async def market_destinations(self) -> list[str]:
        """What the Grape lists for the market (the last list while it cannot answer)."""
        try:
            listed = await self.link.lookup(MARKET)
        except GrenacheError:
            return self._market_dests
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

    async def ask(self, peer_id: str, msg: Any, *, timeout: float, result_type: Any = None) -> Any:
        """A request to one peer's own service (``otc:peer:<id>``): first straight to the address its
        signed heartbeat gives, when the Grape has listed it (no lookup, works while a Grape has
        forgotten the name, and a squatter on the name cannot intercept it); then through the DHT, if
        that address is gone (the peer restarted on another port) or we have none."""
        deadline = time.monotonic() + timeout
        addr = self.addr_of(peer_id)
        if addr is not None and self.is_listed(addr):
            try:
                return await self.client.request_dest(
                    addr, peer_key(peer_id), msg, timeout=timeout, result_type=result_type
                )
            except RPCError as exc:
                # every request to a peer is idempotent, so sending it again elsewhere is safe
                if exc.code not in (ERR_REQUEST_GENERIC, ERR_UNKNOWN_SERVICE):
                    raise
        left = deadline - time.monotonic()
        if left <= 0:
            raise RPCError(ERR_TIMEOUT, f"{peer_id[:12]} did not answer in time")
        return await self.client.request(peer_key(peer_id), msg, timeout=left, result_type=result_type)
