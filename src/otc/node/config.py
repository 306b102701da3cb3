"""A peer's settings, with the reason for each timing."""

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
    heartbeat_s: float = 2.0
    liveness_ms: int = 8000  # offers of a silent maker vanish from books after this (+ one heartbeat)
    forget_after_ms: int = 600_000  # a maker silent this long is forgotten, offers and all
    reserve_ms: int = 10_000  # how long a maker holds a reserved amount for the taker's confirm
    rpc_timeout_s: float = 3.0
    take_deadline_s: float = 10.0  # a take whose maker has not answered by then is given up
    announce_interval_s: float = 30.0
    snapshot_sources: int = 2  # peers a joiner reads the book from at once
