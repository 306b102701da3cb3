"""A peer's settings, with the reason for each timing (the market's own are in core/timing.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..core.money import DEFAULT_PAIR


@dataclass
class PeerConfig:
    grape: str = "http://127.0.0.1:30001"
    name: str = "anon"
    data_dir: Path | None = None  # None: a temporary directory, i.e. a new identity every run
    rpc_host: str = "127.0.0.1"  # where the RPC server listens (--bind); 0.0.0.0 for every interface
    rpc_port: int = 0
    announce_host: str | None = None  # the address others should dial (--announce); see announced_host
    default_pair: str = DEFAULT_PAIR
    # market replication timings (probes, suspicion, reconciliation, forgetting): core/timing.py
    reserve_ms: int = 10_000  # how long a maker holds a reserved amount for the taker's confirm
    rpc_timeout_s: float = 3.0
    take_deadline_s: float = 10.0  # a take whose maker has not answered by then is given up
    announce_interval_s: float = 30.0
    grapevine: bool = False  # also answer Grapevine (Node chat) clients under our name (unsigned)
    # --- requests for quote, settlement, notifications (issue 12) ---
    # per open settlement state, ms until it is overdue (the rest: core/settlement.py's defaults)
    settlement_deadlines_ms: dict[str, int] = field(default_factory=dict)
    settle_interval_s: float = 0.5  # how often settlements are re-sent and deadlines checked
    notify_urls: list[str] = field(default_factory=list)  # webhooks given at start (--notify-url)
    # --- recovery of our own history (issue 8 item 7; node/recovery.py) ---
    recover: bool = False  # --recover: rebuild what the network holds of our history before trading


def announced_host(config: PeerConfig) -> str:
    """The host our signed heads give as our address. Others use it only if a Grape lists it for the
    market, and a Grape records the address it sees us from on its own host: so by default it is the
    address we listen on, or, listening on every interface, the address of our (same-host) Grape."""
    if config.announce_host:
        return config.announce_host
    if config.rpc_host not in ("0.0.0.0", "", "::"):
        return config.rpc_host
    grape_host = urlsplit(config.grape).hostname or "127.0.0.1"
    return "127.0.0.1" if grape_host == "localhost" else grape_host
