from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from grenache.grapes import GrapeNetwork

from ..harness import PeerProcess


@pytest.fixture
def spawn(grapes: GrapeNetwork, tmp_path: Path) -> Iterator[Callable[..., PeerProcess]]:
    """Start ``otc peer`` processes on the session's Grapes (alternating between them); all are stopped
    at teardown."""
    started: list[PeerProcess] = []

    def start(
        name: str, *, grape: int | None = None, data_dir: Path | None = None, **options: Any
    ) -> PeerProcess:
        url = grapes.urls[len(started) % len(grapes.urls) if grape is None else grape]
        peer = PeerProcess(url, name, data_dir=data_dir, log_dir=tmp_path, **options)
        started.append(peer)
        return peer.start()

    yield start
    for peer in started:
        peer.stop()
