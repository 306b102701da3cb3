"""A peer's settings, with the reason for each timing (the market's own are in core/timing.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.money import DEFAULT_PAIR


@dataclass
class PeerConfig:
    grape: str = "http://127.0.0.1:30001"
    name: str = "anon"
    data_dir: Path | None = None  # None: a temporary directory, i.e. a new identity every run
    rpc_host: str = "127.0.0.1"
    rpc_port: int = 0
    default_pair: str = DEFAULT_PAIR
    # market replication timings (probes, suspicion, reconciliation, forgetting): core/timing.py
    reserve_ms: int = 10_000  # how long a maker holds a reserved amount for the taker's confirm
    rpc_timeout_s: float = 3.0
    take_deadline_s: float = 10.0  # a take whose maker has not answered by then is given up
    announce_interval_s: float = 30.0
